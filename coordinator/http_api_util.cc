#include "coordinator/http_api_internal.h"

#include <array>
#include <charconv>
#include <cmath>
#include <set>

namespace trapline::coordinator::api {

using nlohmann::json;



bool IsAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

// A short, printable rendering of untrusted text for an error message.
std::string Shown(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 40)) {
    auto u = static_cast<unsigned char>(c);
    out += (u >= 0x20 && u < 0x7f) ? c : '?';
  }
  if (s.size() > 40) out += "...";
  return out;
}

Status CheckChars(std::string_view s, std::string_view what, size_t max, std::string_view extra,
                  bool inner_space) {
  if (s.empty()) return Status::InvalidArgument(std::string(what) + " is empty");
  if (s.size() > max) {
    return Status::InvalidArgument(std::string(what) + " is longer than " + std::to_string(max) +
                                   " bytes");
  }
  for (char c : s) {
    if (IsAlnum(c) || extra.find(c) != std::string_view::npos || (inner_space && c == ' ')) continue;
    return Status::InvalidArgument(std::string(what) + " '" + Shown(s) +
                                   "' has a character other than letters, digits and '" +
                                   std::string(extra) + "'" + (inner_space ? " or spaces" : ""));
  }
  if (inner_space && (s.front() == ' ' || s.back() == ' ')) {
    return Status::InvalidArgument(std::string(what) + " '" + Shown(s) +
                                   "' starts or ends with a space");
  }
  return Status::OK();
}

// The deepest nesting of arrays and objects in `body` (strings skipped), stopping early past
// `limit`: nlohmann's parser is not the place to find out about 60,000 '['.
int JsonDepth(std::string_view body, int limit) {
  int depth = 0, max = 0;
  bool in_string = false;
  for (size_t i = 0; i < body.size(); ++i) {
    char c = body[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      max = std::max(max, ++depth);
      if (max > limit) return max;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return max;
}

// The body as a JSON object whose keys are all in `known`.
Result<json> ParseObject(std::string_view body, std::initializer_list<std::string_view> known) {
  if (body.find_first_not_of(" \t\r\n") == std::string_view::npos) {
    return Status::InvalidArgument("the request body is empty (a JSON object is expected)");
  }
  if (JsonDepth(body, kMaxJsonDepth) > kMaxJsonDepth) {
    return Status::InvalidArgument("the request body is nested too deeply");
  }
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Status::InvalidArgument("the request body is not valid JSON");
  if (!j.is_object()) return Status::InvalidArgument("the request body is not a JSON object");
  for (const auto& [key, value] : j.items()) {
    bool ok = false;
    for (std::string_view k : known) ok = ok || key == k;
    if (!ok) {
      std::string list;
      for (std::string_view k : known) list += (list.empty() ? "" : ", ") + std::string(k);
      return Status::InvalidArgument("unknown field '" + Shown(key) + "' (known: " + list + ")");
    }
  }
  return j;
}

Result<bool> GetBool(const json& j, const char* key) {
  const json& v = j.at(key);
  if (!v.is_boolean()) return Status::InvalidArgument(std::string("'") + key + "' must be true or false");
  return v.get<bool>();
}

Result<std::vector<std::string>> GetGroups(const json& j) {
  const json& v = j.at("groups");
  if (!v.is_array()) return Status::InvalidArgument("'groups' must be an array of group names");
  if (v.size() > kMaxGroups) {
    return Status::InvalidArgument("'groups' has more than " + std::to_string(kMaxGroups) + " names");
  }
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const json& g : v) {
    if (!g.is_string()) return Status::InvalidArgument("'groups' must be an array of group names");
    std::string name = g.get<std::string>();
    TRAPLINE_RETURN_IF_ERROR(ValidateGroup(name));
    if (seen.insert(name).second) out.push_back(std::move(name));
  }
  return out;
}

Result<std::string> GetAddress(const json& j) {
  const json& v = j.at("address");
  if (!v.is_string()) return Status::InvalidArgument("'address' must be a string");
  std::string a = v.get<std::string>();
  TRAPLINE_RETURN_IF_ERROR(ValidateAddress(a));
  return a;
}

int DaysInMonth(int y, int m) {
  static constexpr std::array<int, 12> kDays = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return m == 2 && leap ? 29 : kDays[static_cast<size_t>(m - 1)];
}

// Days since 1970-01-01 of a civil date (H. Hinnant's days_from_civil).
int64_t DaysFromCivil(int64_t y, int64_t m, int64_t d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

// ---- SQL ------------------------------------------------------------------------------------

// A password in a URI's user info is masked.
const char* const kUriMasked =
    R"sql(regexp_replace(s.uri, '^([A-Za-z][A-Za-z0-9+.-]*://[^:/@]*):[^@/]*@', '\1:***@'))sql";

std::string HostObject(const std::string& h) {
  return "json_build_object('name', " + h + ".name, 'address', " + h + ".address, 'enabled', " + h +
         ".enabled, 'groups', " + h + ".groups, 'maintenance', " + h +
         ".maintenance, 'maintenance_until', " + h + ".maintenance_until, 'first_seen', " + h +
         ".first_seen, 'last_seen', " + h + ".last_seen, 'discovered', " + h + ".discovered, "
         "'last_report', " + h + ".last_report, 'facts', " + h + ".facts)";
}

// Desired (hosts.maintenance/_until) against what the leader applied to Zabbix.
std::string MaintenanceObject(const std::string& h) {
  return "json_build_object('host', " + h + ".name, 'desired', json_build_object('on', " + h +
         ".maintenance, 'until', " + h + ".maintenance_until), 'applied', json_build_object('on', " +
         h + ".maintenance_applied LIKE 'on:%', 'until', CASE WHEN " + h +
         ".maintenance_applied ~ '^on:[1-9][0-9]{0,11}$' THEN to_timestamp(substr(" + h +
         ".maintenance_applied, 4)::bigint) END), 'in_sync', " + h +
         ".maintenance_applied = CASE WHEN " + h + ".maintenance THEN 'on:' || coalesce(extract(epoch "
         "FROM " + h + ".maintenance_until)::bigint::text, '0') ELSE 'off' END)";
}

// s: services (with host name as `host_expr`), cp: credential_profiles, t: tasks, c: collectors.
std::string ServiceObject(const std::string& host_expr) {
  return "json_build_object('id', s.id, 'host', " + host_expr +
         ", 'plugin', s.plugin, 'port', s.port, 'uri', " + std::string(kUriMasked) +
         ", 'enabled', s.enabled, 'state', s.state, 'gone', s.gone, 'credential_profile', cp.name, "
         "'task', t.id, 'collector', c.name, 'generation', t.generation, 'first_seen', s.first_seen, "
         "'last_seen', s.last_seen)";
}

const char* const kServiceJoins =
    " LEFT JOIN credential_profiles cp ON cp.id = s.credential_profile_id"
    " LEFT JOIN tasks t ON t.service_id = s.id LEFT JOIN collectors c ON c.id = t.collector_id";

const char* const kAudit =
    "INSERT INTO audit_log (actor, action, object_type, object_id, before, after) ";

pg::Value Opt(const std::optional<std::string>& v) { return v; }
pg::Value OptBool(const std::optional<bool>& v) {
  if (!v) return std::nullopt;
  return std::string(*v ? "true" : "false");
}
std::string Bool(bool v) { return v ? "true" : "false"; }

std::string FormatDouble(double v) {
  char buf[64];
  auto [p, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  return ec == std::errc() ? std::string(buf, p) : std::to_string(v);
}

// The first column of the first row: the JSON document the statement built.
Result<HttpResponse> JsonOf(const pg::Rows& rows, int status, std::string_view not_found) {
  if (rows.rows.empty() || rows.rows[0].empty() || !rows.rows[0][0]) {
    if (!not_found.empty()) return Status::NotFound(std::string(not_found));
    return Status::Internal("the registry returned no rows");
  }
  return HttpResponse::Json(*rows.rows[0][0], status);
}

const pg::Value& Cell(const pg::Rows& rows, size_t col) {
  static const pg::Value kNull;
  if (rows.rows.empty() || rows.rows[0].size() <= col) return kNull;
  return rows.rows[0][col];
}

// The registry's error as an answer: unreachable 503, a constraint 409, bad data 400.
HttpResponse RegistryError(const Status& st) {
  if (st.code() == StatusCode::kUnavailable) {
    return HttpResponse::Error(503, "registry unavailable: " + st.message());
  }
  const std::string& m = st.message();
  if (m.find("SQLSTATE 23") != std::string::npos) return HttpResponse::Error(409, m);
  if (m.find("SQLSTATE 22") != std::string::npos) return HttpResponse::Error(400, m);
  return HttpResponse::Error(500, m);
}

}  // namespace trapline::coordinator::api
