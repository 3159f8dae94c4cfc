#include "zabbix-sync/maintenance.h"

#include <cctype>
#include <ctime>

#include <fmt/format.h>

namespace trapline::zabbix {

using nlohmann::json;

namespace {

// Open-ended maintenance ends at the last minute Zabbix can store (2038-01-19).
constexpr int64_t kForever = 2147483647 / 60 * 60;
constexpr int64_t kMinPeriod = 300;  // Zabbix refuses shorter periods

std::string Str(const json& j) { return j.is_string() ? j.get<std::string>() : j.dump(); }

std::string FormatTime(int64_t t) {
  std::time_t tt = static_cast<std::time_t>(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M UTC", &tm);
  return buf;
}

Result<std::string> HostId(Api* api, const std::string& host, bool* in_maintenance) {
  auto hosts = api->Call("host.get", {{"output", {"hostid", "maintenance_status"}},
                                      {"filter", {{"host", {host}}}}});
  if (!hosts.ok()) return hosts.status().WithContext("host.get for host " + host);
  if (hosts->empty()) {
    return Status::NotFound("host " + host + " does not exist in Zabbix (sync it first)");
  }
  if (in_maintenance != nullptr) *in_maintenance = Str((*hosts)[0]["maintenance_status"]) == "1";
  return Str((*hosts)[0]["hostid"]);
}

Result<json> Existing(Api* api, const std::string& host) {
  auto found = api->Call("maintenance.get", {{"output", "extend"},
                                             {"filter", {{"name", {MaintenanceName(host)}}}}});
  if (!found.ok()) return found.status().WithContext("maintenance.get for host " + host);
  return found->empty() ? json() : (*found)[0];
}

}  // namespace

std::string MaintenanceName(const std::string& host) { return "trapline: " + host; }

std::string MaintenanceState::ToText(int64_t now) const {
  if (!configured) {
    return host_in_maintenance
               ? "not in trapline's maintenance; the host still shows maintenance (Zabbix "
                 "updates that within a minute, or another maintenance applies)"
               : "not in trapline's maintenance";
  }
  std::string when = active_since > now ? "from " + FormatTime(active_since) : "since " + FormatTime(active_since);
  std::string till = active_till >= kForever ? "until taken out" : "until " + FormatTime(active_till);
  return fmt::format("in maintenance with data collection {} {} ({})", when, till,
                     host_in_maintenance ? "the host shows it" : "the host does not show it yet: Zabbix applies it within a minute");
}

json MaintenanceObject(const std::string& host, const std::string& hostid, int64_t now,
                       int64_t until, const ApiVersion& version) {
  (void)version;  // "hosts" (not the removed "hostids") and timeperiod_type 0 serve 6.0 to 7.x
  int64_t since = now / 60 * 60;
  int64_t till = until == 0 ? kForever : (until + 59) / 60 * 60;
  return {{"name", MaintenanceName(host)},
          {"maintenance_type", 0},
          {"description", "Set by trapline: data keeps flowing, problems are suppressed."},
          {"active_since", since},
          {"active_till", till},
          {"hosts", {{{"hostid", hostid}}}},
          {"timeperiods", {{{"timeperiod_type", 0}, {"start_date", since}, {"period", till - since}}}}};
}

Status MaintenanceOn(Api* api, const std::string& host, int64_t now, int64_t until) {
  if (until != 0 && until < now + kMinPeriod) {
    return Status::InvalidArgument(fmt::format(
        "maintenance for host {}: the end time {} is less than 5 minutes away (Zabbix's shortest period)",
        host, FormatTime(until)));
  }
  TRAPLINE_ASSIGN_OR_RETURN(std::string hostid, HostId(api, host, nullptr));
  TRAPLINE_ASSIGN_OR_RETURN(json existing, Existing(api, host));
  json m = MaintenanceObject(host, hostid, now, until, api->version());
  if (existing.is_null()) {
    auto res = api->Call("maintenance.create", m);
    return res.ok() ? Status::OK() : res.status().WithContext("maintenance.create for host " + host);
  }
  // Keep the original start: a maintenance prolonged is the same maintenance.
  int64_t since = std::stoll(Str(existing["active_since"]));
  if (since <= now) {
    m["active_since"] = since;
    m["timeperiods"][0]["start_date"] = since;
    m["timeperiods"][0]["period"] = m["active_till"].get<int64_t>() - since;
  }
  m["maintenanceid"] = Str(existing["maintenanceid"]);
  auto res = api->Call("maintenance.update", m);
  return res.ok() ? Status::OK() : res.status().WithContext("maintenance.update for host " + host);
}

Status MaintenanceOff(Api* api, const std::string& host) {
  TRAPLINE_ASSIGN_OR_RETURN(json existing, Existing(api, host));
  if (existing.is_null()) return Status::OK();
  auto res = api->Call("maintenance.delete", json::array({Str(existing["maintenanceid"])}));
  return res.ok() ? Status::OK() : res.status().WithContext("maintenance.delete for host " + host);
}

Result<MaintenanceState> GetMaintenance(Api* api, const std::string& host) {
  MaintenanceState state;
  TRAPLINE_ASSIGN_OR_RETURN(std::string hostid, HostId(api, host, &state.host_in_maintenance));
  (void)hostid;
  TRAPLINE_ASSIGN_OR_RETURN(json existing, Existing(api, host));
  if (existing.is_null()) return state;
  state.configured = true;
  state.maintenanceid = Str(existing["maintenanceid"]);
  state.active_since = std::stoll(Str(existing["active_since"]));
  state.active_till = std::stoll(Str(existing["active_till"]));
  return state;
}

Result<int64_t> ParseUntil(const std::string& text, int64_t now) {
  auto bad = [&] {
    return Status::InvalidArgument("--until '" + text +
                                   "': expected 'YYYY-MM-DD HH:MM' (UTC), an ISO time ending in Z, "
                                   "+N[m|h|d] or unix seconds");
  };
  if (text.empty()) return bad();
  if (text[0] == '+') {
    size_t used = 0;
    long long n = 0;
    try {
      n = std::stoll(text.substr(1), &used);
    } catch (...) {
      return bad();
    }
    std::string unit = text.substr(1 + used);
    int64_t mult = unit == "m" ? 60 : unit == "h" ? 3600 : unit == "d" ? 86400 : 0;
    if (mult == 0 || n <= 0) return bad();
    return now + n * mult;
  }
  bool digits = true;
  for (char c : text) digits = digits && std::isdigit(static_cast<unsigned char>(c));
  if (digits) {
    if (text.size() > 12) return bad();
    return static_cast<int64_t>(std::stoll(text));
  }
  std::tm tm{};
  const char* end = strptime(text.c_str(), "%Y-%m-%d %H:%M", &tm);
  if (end == nullptr) {
    tm = {};
    end = strptime(text.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
    if (end != nullptr && *end == 'Z') ++end;
  }
  if (end == nullptr || *end != '\0') return bad();
  return static_cast<int64_t>(timegm(&tm));
}

}  // namespace trapline::zabbix
