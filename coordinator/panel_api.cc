// The admin panel's routes (issue 7): live events, the hosts list with server-side filters,
// completion, bulk host actions, the audit log, credential profiles, collectors' load history,
// the connection probe and the Zabbix settings. HttpApi member functions (http_api.h) on the
// API's loop; the pure parts are in panel_api.h.
//
// Live events: a pg::Client of its own LISTENs on trapline_events (raised by the v5 triggers,
// so whatever changes the registry, this coordinator or another or psql, is seen); payloads
// go through an EventCoalescer and out to every open stream. When that connection comes back
// after a loss, every stream gets {"type": T, "many": true, "resync": true} for every type
// (notifications may have been missed: refetch), as after a folded burst.
//
// Events (SSE event name = type): "hello" {"live"} first; "host", "service", "collector",
// "task", "error", "audit" hints ({"type", "id", "host"?, ...}; {"type", "many": true} means
// "refetch the list"); "denied" {"error"} then the end of the stream when a session cookie
// turned out not to grant access, at the start or later (its session ended: re-checked every
// HttpApiOptions::events_recheck_s, and soon after a logout or a change to a user).
//
// Lifetime: Stop() (http_api.cc) marks the API dead; the panel's timer notices within 100 ms
// and closes the events connection, its timers, the streams and kills running probes, so the
// loop can run out. The destructor does the same for what is left.

#include "coordinator/panel_api.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <set>

#include "common/log.h"
#include "common/uv.h"
#include "coordinator/coordinator.h"
#include "coordinator/discovery.h"
#include "coordinator/http_api.h"
#include "coordinator/http_api_internal.h"

namespace trapline::coordinator {

using nlohmann::json;
using namespace api;  // NOLINT: the API's shared helpers (http_api_internal.h)

namespace panel {

namespace {

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

Result<std::optional<double>> TimeParam(const HttpRequest& r, const char* key) {
  std::string v = r.QueryParam(key);
  if (v.empty()) return std::optional<double>();
  auto t = ParseRfc3339(v);
  if (!t.ok()) return t.status().WithContext(key);
  return std::optional<double>(*t);
}

Status CheckText(std::string_view s, std::string_view what, size_t max) {
  if (s.size() > max) {
    return Status::InvalidArgument(std::string(what) + " is longer than " + std::to_string(max) +
                                   " bytes");
  }
  for (char c : s) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return Status::InvalidArgument(std::string(what) + " has a control character");
    }
  }
  return Status::OK();
}

}  // namespace

Result<HostFilter> ParseHostFilter(const HttpRequest& r) {
  HostFilter f;
  TRAPLINE_ASSIGN_OR_RETURN(f.paging, ParsePaging(r));
  TRAPLINE_ASSIGN_OR_RETURN(f.enabled, ParseBoolParam(r.QueryParam("enabled"), "enabled"));
  TRAPLINE_ASSIGN_OR_RETURN(f.maintenance,
                            ParseBoolParam(r.QueryParam("maintenance"), "maintenance"));
  f.status = r.QueryParam("status");
  if (!f.status.empty() && f.status != "ok" && f.status != "error" && f.status != "unknown" &&
      f.status != "disabled" && f.status != "maintenance") {
    return Status::InvalidArgument(
        "status must be ok, error, unknown, disabled or maintenance, not '" + Shown(f.status) +
        "'");
  }
  f.plugin = r.QueryParam("plugin");
  if (!f.plugin.empty())
    TRAPLINE_RETURN_IF_ERROR(CheckChars(f.plugin, "plugin", 64, "_-:.", false));
  f.group = r.QueryParam("group");
  if (!f.group.empty()) TRAPLINE_RETURN_IF_ERROR(ValidateGroup(f.group));
  f.q = r.QueryParam("q");
  TRAPLINE_RETURN_IF_ERROR(CheckText(f.q, "q", kMaxAddressBytes));
  return f;
}

Result<CompleteRequest> ParseCompleteRequest(const HttpRequest& r) {
  CompleteRequest c;
  c.field = r.QueryParam("field");
  if (c.field != "host" && c.field != "group" && c.field != "plugin") {
    return Status::InvalidArgument("field must be host, group or plugin, not '" + Shown(c.field) +
                                   "'");
  }
  c.prefix = r.QueryParam("prefix");
  TRAPLINE_RETURN_IF_ERROR(CheckText(c.prefix, "prefix", kMaxGroupBytes));
  return c;
}

Result<BulkRequest> ParseBulkRequest(std::string_view body) {
  TRAPLINE_ASSIGN_OR_RETURN(json j, ParseObject(body, {"hosts", "action", "until", "group"}));
  BulkRequest b;
  if (!j.contains("action") || !j["action"].is_string()) {
    return Status::InvalidArgument(
        "'action' is required: enable, disable, maintenance_on, maintenance_off, move_group or "
        "delete");
  }
  std::string action = j["action"].get<std::string>();
  static const std::pair<const char*, BulkAction> kActions[] = {
      {"enable", BulkAction::kEnable},
      {"disable", BulkAction::kDisable},
      {"maintenance_on", BulkAction::kMaintenanceOn},
      {"maintenance_off", BulkAction::kMaintenanceOff},
      {"move_group", BulkAction::kMoveGroup},
      {"delete", BulkAction::kDelete}};
  bool known = false;
  for (const auto& [name, a] : kActions) {
    if (action == name) {
      b.action = a;
      known = true;
    }
  }
  if (!known) {
    return Status::InvalidArgument("unknown action '" + Shown(action) +
                                   "' (enable, disable, maintenance_on, maintenance_off, "
                                   "move_group, delete)");
  }
  if (!j.contains("hosts") || !j["hosts"].is_array() || j["hosts"].empty()) {
    return Status::InvalidArgument("'hosts' must be a non-empty array of host names");
  }
  if (j["hosts"].size() > kMaxBulkHosts) {
    return Status::InvalidArgument("'hosts' has more than " + std::to_string(kMaxBulkHosts) +
                                   " names; split the request");
  }
  std::set<std::string> seen;
  for (const json& h : j["hosts"]) {
    if (!h.is_string()) return Status::InvalidArgument("'hosts' must be an array of host names");
    std::string name = h.get<std::string>();
    TRAPLINE_RETURN_IF_ERROR(ValidateName(name, "host name"));
    if (seen.insert(name).second) b.hosts.push_back(std::move(name));
  }
  if (j.contains("until")) {
    if (b.action != BulkAction::kMaintenanceOn) {
      return Status::InvalidArgument("'until' goes only with maintenance_on");
    }
    if (!j["until"].is_null()) {
      if (!j["until"].is_string()) {
        return Status::InvalidArgument("'until' must be an RFC 3339 time or null");
      }
      TRAPLINE_ASSIGN_OR_RETURN(double t, ParseRfc3339(j["until"].get<std::string>()));
      b.until = t;
    }
  }
  if (b.action == BulkAction::kMoveGroup) {
    if (!j.contains("group") || !j["group"].is_string()) {
      return Status::InvalidArgument("move_group needs 'group' (a group name)");
    }
    b.group = j["group"].get<std::string>();
    TRAPLINE_RETURN_IF_ERROR(ValidateGroup(b.group));
  } else if (j.contains("group")) {
    return Status::InvalidArgument("'group' goes only with move_group");
  }
  return b;
}

std::string_view BulkAuditAction(BulkAction a) {
  switch (a) {
    case BulkAction::kEnable:
      return "host.enable";
    case BulkAction::kDisable:
      return "host.disable";
    case BulkAction::kMaintenanceOn:
      return "maintenance.set";
    case BulkAction::kMaintenanceOff:
      return "maintenance.clear";
    case BulkAction::kMoveGroup:
      return "host.move_group";
    case BulkAction::kDelete:
      return "host.delete";
  }
  return "host.bulk";
}

Result<AuditFilter> ParseAuditFilter(const HttpRequest& r) {
  AuditFilter f;
  TRAPLINE_ASSIGN_OR_RETURN(f.paging, ParsePaging(r));
  f.actor = r.QueryParam("actor");
  f.action = r.QueryParam("action");
  f.object_type = r.QueryParam("object_type");
  f.object = r.QueryParam("object");
  TRAPLINE_RETURN_IF_ERROR(CheckText(f.actor, "actor", kMaxNameBytes));
  TRAPLINE_RETURN_IF_ERROR(CheckText(f.action, "action", 64));
  TRAPLINE_RETURN_IF_ERROR(CheckText(f.object_type, "object_type", 64));
  TRAPLINE_RETURN_IF_ERROR(CheckText(f.object, "object", kMaxGroupBytes));
  TRAPLINE_ASSIGN_OR_RETURN(f.since, TimeParam(r, "since"));
  TRAPLINE_ASSIGN_OR_RETURN(f.until, TimeParam(r, "until"));
  if (f.since && f.until && *f.since > *f.until) {
    return Status::InvalidArgument("since is after until");
  }
  return f;
}

// ---- credential profiles ------------------------------------------------------------------------

namespace {

constexpr size_t kMaxSecretBytes = 16 << 10;
constexpr size_t kMaxOptionPathBytes = 4096;

Status CheckKind(std::string_view kind) {
  if (kind == "ssh" || kind == "postgresql" || kind == "redis") return Status::OK();
  return Status::InvalidArgument("'kind' must be ssh, postgresql or redis, not '" + Shown(kind) +
                                 "'");
}

Result<std::string> CheckSecret(const json& s, std::string_view kind) {
  if (!s.is_object()) return Status::InvalidArgument("'secret' must be an object");
  std::vector<std::string_view> known;
  if (kind == "ssh") {
    known = {"private_key", "passphrase", "password"};
  } else {
    known = {"password"};
  }
  for (const auto& [key, value] : s.items()) {
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      std::string list;
      for (auto k : known) list += (list.empty() ? "" : ", ") + std::string(k);
      return Status::InvalidArgument("unknown 'secret' field '" + Shown(key) + "' for kind " +
                                     std::string(kind) + " (known: " + list + ")");
    }
    // The value is never repeated in an error.
    if (!value.is_string()) return Status::InvalidArgument("'secret." + key + "' must be a string");
    const std::string& v = value.get_ref<const std::string&>();
    if (v.size() > kMaxSecretBytes) {
      return Status::InvalidArgument("'secret." + key + "' is longer than 16 KiB");
    }
    if (v.find('\0') != std::string::npos) {
      return Status::InvalidArgument("'secret." + key + "' has a NUL byte");
    }
    if (key != "private_key" && v.find_first_of("\r\n") != std::string::npos) {
      return Status::InvalidArgument("'secret." + key + "' has a line break");
    }
  }
  if (kind == "ssh" && s.contains("passphrase") && !s.contains("private_key")) {
    return Status::InvalidArgument("'secret.passphrase' needs 'secret.private_key'");
  }
  return Dump(s);
}

Result<std::string> CheckOptions(const json& o, std::string_view kind) {
  if (!o.is_object()) return Status::InvalidArgument("'options' must be an object");
  bool ssh = kind == "ssh";
  for (const auto& [key, value] : o.items()) {
    if (ssh && (key == "identity" || key == "known_hosts")) {
      if (!value.is_string() || value.get_ref<const std::string&>().empty() ||
          value.get_ref<const std::string&>().front() != '/') {
        return Status::InvalidArgument("'options." + key + "' must be an absolute file path");
      }
      TRAPLINE_RETURN_IF_ERROR(
          CheckText(value.get_ref<const std::string&>(), "options." + key, kMaxOptionPathBytes));
    } else if (ssh && (key == "trust_on_first_use" || key == "use_agent")) {
      if (!value.is_boolean())
        return Status::InvalidArgument("'options." + key + "' must be true or false");
    } else if (key == "interval") {
      if (!value.is_number_integer() || value.get<int64_t>() < 1 || value.get<int64_t>() > 3600) {
        return Status::InvalidArgument(
            "'options.interval' must be an integer from 1 to 3600 (seconds)");
      }
    } else if (key == "plugin") {
      if (!value.is_object())
        return Status::InvalidArgument("'options.plugin' must be an object of strings");
      for (const auto& [k, v] : value.items()) {
        TRAPLINE_RETURN_IF_ERROR(CheckChars(k, "'options.plugin' key", 64, "_-.", false));
        if (!v.is_string())
          return Status::InvalidArgument("'options.plugin." + k + "' must be a string");
        TRAPLINE_RETURN_IF_ERROR(
            CheckText(v.get_ref<const std::string&>(), "options.plugin." + k, 1024));
      }
    } else {
      return Status::InvalidArgument(
          "unknown 'options' field '" + Shown(key) + "' for kind " + std::string(kind) +
          (ssh ? " (known: identity, known_hosts, trust_on_first_use, use_agent, interval, plugin)"
               : " (known: interval, plugin)"));
    }
  }
  return Dump(o);
}

Status ReadProfileFields(const json& j, std::string_view kind, ProfileInput* p) {
  if (j.contains("username")) {
    if (!j["username"].is_string()) return Status::InvalidArgument("'username' must be a string");
    std::string u = j["username"].get<std::string>();
    if (!u.empty())
      TRAPLINE_RETURN_IF_ERROR(CheckChars(u, "username", kMaxNameBytes, "._-", false));
    p->username = u;
  }
  if (j.contains("secret")) {
    p->set_secret = true;
    if (j["secret"].is_null()) {
      p->secret_json = "{}";
    } else {
      TRAPLINE_ASSIGN_OR_RETURN(p->secret_json, CheckSecret(j["secret"], kind));
    }
  }
  if (j.contains("options")) {
    TRAPLINE_ASSIGN_OR_RETURN(std::string o, CheckOptions(j["options"], kind));
    p->options_json = o;
  }
  if (j.contains("host_groups")) {
    const json& g = j["host_groups"];
    if (!g.is_array() || g.size() > kMaxGroups) {
      return Status::InvalidArgument("'host_groups' must be an array of at most " +
                                     std::to_string(kMaxGroups) + " group names");
    }
    std::vector<std::string> groups;
    for (const json& x : g) {
      if (!x.is_string())
        return Status::InvalidArgument("'host_groups' must be an array of group names");
      TRAPLINE_RETURN_IF_ERROR(ValidateGroup(x.get_ref<const std::string&>()));
      if (std::find(groups.begin(), groups.end(), x.get<std::string>()) == groups.end()) {
        groups.push_back(x.get<std::string>());
      }
    }
    p->host_groups = groups;
  }
  if (j.contains("is_default")) {
    if (!j["is_default"].is_boolean())
      return Status::InvalidArgument("'is_default' must be true or false");
    p->is_default = j["is_default"].get<bool>();
  }
  return Status::OK();
}

}  // namespace

Result<ProfileInput> ParseNewProfile(std::string_view body) {
  TRAPLINE_ASSIGN_OR_RETURN(json j, ParseObject(body, {"name", "kind", "username", "secret",
                                                       "options", "host_groups", "is_default"}));
  ProfileInput p;
  if (!j.contains("name") || !j["name"].is_string()) {
    return Status::InvalidArgument("'name' (a string) is required");
  }
  p.name = j["name"].get<std::string>();
  TRAPLINE_RETURN_IF_ERROR(ValidateName(p.name, "credential profile name"));
  if (!j.contains("kind") || !j["kind"].is_string()) {
    return Status::InvalidArgument("'kind' (ssh, postgresql or redis) is required");
  }
  p.kind = j["kind"].get<std::string>();
  TRAPLINE_RETURN_IF_ERROR(CheckKind(p.kind));
  TRAPLINE_RETURN_IF_ERROR(ReadProfileFields(j, p.kind, &p));
  return p;
}

Result<ProfileInput> ParseProfilePatch(std::string_view body, std::string_view kind) {
  TRAPLINE_ASSIGN_OR_RETURN(json j, ParseObject(body, {"kind", "username", "secret", "options",
                                                       "host_groups", "is_default"}));
  if (j.empty()) return Status::InvalidArgument("nothing to change");
  ProfileInput p;
  p.kind = std::string(kind);
  if (j.contains("kind") && (!j["kind"].is_string() || j["kind"].get<std::string>() != kind)) {
    return Status::InvalidArgument("'kind' cannot change (make a new profile)");
  }
  TRAPLINE_RETURN_IF_ERROR(ReadProfileFields(j, kind, &p));
  return p;
}

// ---- probe --------------------------------------------------------------------------------------

Result<ProbeRequest> ParseProbeRequest(std::string_view body) {
  TRAPLINE_ASSIGN_OR_RETURN(json j, ParseObject(body, {"uri", "credential_profile"}));
  ProbeRequest p;
  if (!j.contains("uri") || !j["uri"].is_string()) {
    return Status::InvalidArgument("'uri' (a string) is required");
  }
  std::string uri = j["uri"].get<std::string>();
  if (uri.empty() || uri.size() > kMaxProbeUriBytes) {
    return Status::InvalidArgument("'uri' must be 1 to " + std::to_string(kMaxProbeUriBytes) +
                                   " bytes");
  }
  for (char c : uri) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f) {
      return Status::InvalidArgument("'uri' has a space or a control character");
    }
  }
  size_t colon = uri.find("://");
  std::string scheme = colon == std::string::npos ? "" : uri.substr(0, colon);
  if (scheme == "ssh") {
    p.kind = "ssh";
  } else if (scheme == "postgresql" || scheme == "postgres") {
    p.kind = "postgresql";
  } else if (scheme == "redis") {
    p.kind = "redis";
  } else {
    return Status::InvalidArgument(
        "'uri' must start with ssh://, postgresql://, postgres:// or redis://");
  }
  if (uri[0] == '-') return Status::InvalidArgument("'uri' must not start with '-'");
  // The authority: up to the first '/', '?' or '#' after the scheme.
  size_t start = colon + 3;
  size_t end = uri.find_first_of("/?#", start);
  if (end == std::string::npos) end = uri.size();
  std::string authority = uri.substr(start, end - start);
  size_t at = authority.rfind('@');
  std::string hostport = at == std::string::npos ? authority : authority.substr(at + 1);
  if (hostport.empty() || hostport.front() == ':')
    return Status::InvalidArgument("'uri' names no host");
  if (at != std::string::npos) {
    std::string userinfo = authority.substr(0, at);
    size_t pw = userinfo.find(':');
    if (pw != std::string::npos) {
      // Percent-decoded as a URI's password is; it goes to the probe through a file.
      std::string enc = userinfo.substr(pw + 1), dec;
      for (size_t i = 0; i < enc.size(); ++i) {
        if (enc[i] == '%' && i + 2 < enc.size()) {
          int v = 0;
          auto [ptr, ec] = std::from_chars(enc.data() + i + 1, enc.data() + i + 3, v, 16);
          if (ec == std::errc() && ptr == enc.data() + i + 3) {
            dec += static_cast<char>(v);
            i += 2;
            continue;
          }
        }
        dec += enc[i];
      }
      p.password = dec;
      userinfo = userinfo.substr(0, pw);
    }
    authority = userinfo.empty() ? hostport : userinfo + "@" + hostport;
  }
  p.uri = scheme + "://" + authority + uri.substr(end);
  // A secret in the query (libpq's password=, passfile=, sslpassword=) would be on the probe's
  // command line, readable by every local user: credentials go in the user info or a profile.
  if (size_t q = uri.find('?', end); q != std::string::npos) {
    std::string query = uri.substr(q + 1);
    for (size_t pos = 0; pos <= query.size();) {
      size_t amp = query.find('&', pos);
      std::string param = query.substr(pos, amp == std::string::npos ? std::string::npos : amp - pos);
      std::string name = param.substr(0, param.find('='));
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (name == "password" || name == "passfile" || name == "sslpassword") {
        return Status::InvalidArgument("'uri' has a '" + name + "' parameter: put the password in "
                                       "the URI's user info or in a credential profile");
      }
      if (amp == std::string::npos) break;
      pos = amp + 1;
    }
  }
  if (j.contains("credential_profile") && !j["credential_profile"].is_null()) {
    if (!j["credential_profile"].is_string()) {
      return Status::InvalidArgument("'credential_profile' must be a profile name or null");
    }
    std::string cp = j["credential_profile"].get<std::string>();
    TRAPLINE_RETURN_IF_ERROR(ValidateName(cp, "credential profile"));
    p.credential_profile = cp;
  }
  return p;
}

std::string UriWithUser(std::string_view uri, std::string_view user) {
  size_t colon = uri.find("://");
  if (user.empty() || colon == std::string_view::npos) return std::string(uri);
  size_t start = colon + 3;
  size_t end = uri.find_first_of("/?#", start);
  if (end == std::string_view::npos) end = uri.size();
  if (uri.substr(start, end - start).find('@') != std::string_view::npos) return std::string(uri);
  return std::string(uri.substr(0, start)) + std::string(user) + "@" +
         std::string(uri.substr(start));
}

std::string ProbeAnswer(int64_t exit_status, bool timed_out, std::string_view out,
                        std::string_view err) {
  json entities = json::array();
  json examples = json::array();
  int64_t samples = 0;
  size_t pos = 0;
  while (pos < out.size()) {
    size_t nl = out.find('\n', pos);
    std::string_view line =
        out.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    pos = nl == std::string_view::npos ? out.size() : nl + 1;
    if (line.empty()) continue;
    json j = json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) continue;
    if (j.contains("entity") && j["entity"].is_string()) {
      if (entities.size() < 1000) {
        json e = j;
        e.erase("entity");
        e["kind"] = j["entity"];
        entities.push_back(std::move(e));
      }
    } else if (j.contains("key")) {
      ++samples;
      if (examples.size() < 10 && j.contains("value")) {
        examples.push_back({{"key", j["key"]}, {"value", j["value"]}});
      }
    }
  }
  json a = {{"ok", false}, {"entities", entities}, {"samples", samples}, {"examples", examples}};
  if (timed_out) {
    a["error"] = "the probe did not finish in time";
  } else if (exit_status != 0) {
    // The last line the probe wrote to stderr: "trapline probe: <uri>: <reason>".
    std::string_view e = err;
    while (!e.empty() && (e.back() == '\n' || e.back() == '\r' || e.back() == ' '))
      e.remove_suffix(1);
    size_t last = e.rfind('\n');
    if (last != std::string_view::npos) e = e.substr(last + 1);
    constexpr std::string_view kPrefix = "trapline probe: ";
    if (e.substr(0, kPrefix.size()) == kPrefix) e.remove_prefix(kPrefix.size());
    if (e.size() > 2000) e = e.substr(0, 2000);
    a["error"] = e.empty() ? "the probe failed (exit status " + std::to_string(exit_status) + ")"
                           : std::string(e);
  } else if (samples == 0 && entities.empty()) {
    a["error"] = "connected, but no data within the probe's time";
  } else {
    a["ok"] = true;
  }
  return Dump(a);
}

// ---- events ------------------------------------------------------------------------------------

bool EventCoalescer::Add(uint64_t now_ms, std::string_view payload, std::vector<Event>* out) {
  json j = json::parse(payload, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("type") || !j["type"].is_string()) {
    return false;
  }
  std::string type = j["type"].get<std::string>();
  if (type.empty() || type.size() > 32) return false;
  std::string id = j.contains("id") ? j["id"].dump() : "";
  Offer(now_ms, type + "\n" + id, Event{type, std::string(payload)}, out);
  if ((type == "service" || type == "task" || type == "error") && j.contains("host") &&
      j["host"].is_string()) {
    const std::string& host = j["host"].get_ref<const std::string&>();
    json h = {{"type", "host"}, {"id", host}, {"host", host}, {"cause", type}};
    Offer(now_ms, "host\n" + json(host).dump(), Event{"host", Dump(h)}, out);
  }
  return true;
}

void EventCoalescer::Offer(uint64_t now_ms, const std::string& key, Event e,
                           std::vector<Event>* out) {
  TypeWindow& w = types_[e.type];
  if (now_ms >= w.start_ms + 1000) {
    if (w.overflow) out->push_back(Event{e.type, Dump({{"type", e.type}, {"many", true}})});
    w = TypeWindow{now_ms, 0, false};
  }
  if (w.overflow || w.sent >= burst_) {
    w.overflow = true;  // the whole list is refetched at the window's end
    objects_.erase(key);
    return;
  }
  Object& o = objects_[key];
  if (o.last_sent_ms == 0 || now_ms >= o.last_sent_ms + min_gap_ms_) {
    o.last_sent_ms = std::max<uint64_t>(now_ms, 1);
    o.pending.reset();
    ++w.sent;
    out->push_back(std::move(e));
  } else {
    o.pending = std::move(e);
  }
}

void EventCoalescer::Flush(uint64_t now_ms, std::vector<Event>* out) {
  for (auto it = objects_.begin(); it != objects_.end();) {
    Object& o = it->second;
    if (o.pending && now_ms >= o.last_sent_ms + min_gap_ms_) {
      TypeWindow& w = types_[o.pending->type];
      if (!w.overflow) {
        ++w.sent;
        out->push_back(std::move(*o.pending));
      }
      o.pending.reset();
      o.last_sent_ms = std::max<uint64_t>(now_ms, 1);
    }
    if (!o.pending && now_ms >= o.last_sent_ms + 5 * min_gap_ms_) {
      it = objects_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto it = types_.begin(); it != types_.end();) {
    TypeWindow& w = it->second;
    if (now_ms >= w.start_ms + 1000) {
      if (w.overflow) out->push_back(Event{it->first, Dump({{"type", it->first}, {"many", true}})});
      it = types_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace panel

using panel::BulkAction;

// ---- the panel's state --------------------------------------------------------------------------

namespace {

constexpr int kMaxProbes = 4;
constexpr uint64_t kProbeTimeoutMs = 10000;
constexpr size_t kMaxProbeOutputBytes = 1 << 20;
constexpr size_t kMaxStreams = 200;
// After a "session.*" or "user.*" audit event (a logout, a user disabled, deleted or given a
// new password), the session streams are re-checked this soon (events in a burst share it).
constexpr uint64_t kRecheckSoonMs = 200;

// The message of an {"error": ...} refusal.
std::string RefusalMessage(const HttpResponse& refusal) {
  json j = json::parse(refusal.body, nullptr, false);
  return j.is_object() && j.contains("error") && j["error"].is_string()
             ? j["error"].get<std::string>()
             : "access refused";
}

// Whether a trapline_events payload says that sessions may have ended.
bool EndsSessions(const std::string& payload) {
  json j = json::parse(payload, nullptr, false);
  if (!j.is_object() || j.value("type", "") != "audit") return false;
  std::string action = j.contains("action") && j["action"].is_string() ? j["action"].get<std::string>() : "";
  return (action.rfind("session.", 0) == 0 && action != "session.login" &&
          action != "session.login_failed") ||
         action.rfind("user.", 0) == 0;
}

// The files a probe's secrets are written to, in its own 0700 folder (removed with them).
constexpr const char* kProbeSecretFiles[] = {"/key", "/password", "/passphrase"};

// One `trapline probe` child: its process, two pipes and a deadline. Frees itself once every
// handle is closed (libuv's rule); answers once through `done`.
class ProbeRun {
 public:
  using Done = std::function<void(std::string answer)>;

  static Status Start(uv_loop_t* loop, const std::string& exe, std::vector<std::string> args,
                      std::string tmpdir, Done done, std::shared_ptr<int> running,
                      std::set<ProbeRun*>* registry) {
    auto* p = new ProbeRun();
    p->done_ = std::move(done);
    p->tmpdir_ = std::move(tmpdir);
    p->running_ = std::move(running);
    p->registry_ = registry;
    uv_pipe_init(loop, &p->out_, 0);
    uv_pipe_init(loop, &p->err_, 0);
    uv_timer_init(loop, &p->timer_);
    p->out_.data = p->err_.data = p->timer_.data = p->proc_.data = p;
    p->open_ = 3;
    std::vector<char*> argv;
    std::string argv0 = "trapline";  // what ps shows; `exe` may be /proc/self/exe
    argv.push_back(argv0.data());
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    uv_stdio_container_t stdio[3];
    stdio[0].flags = UV_IGNORE;
    stdio[1].flags = static_cast<uv_stdio_flags>(UV_CREATE_PIPE | UV_WRITABLE_PIPE);
    stdio[1].data.stream = reinterpret_cast<uv_stream_t*>(&p->out_);
    stdio[2].flags = static_cast<uv_stdio_flags>(UV_CREATE_PIPE | UV_WRITABLE_PIPE);
    stdio[2].data.stream = reinterpret_cast<uv_stream_t*>(&p->err_);
    uv_process_options_t o{};
    o.file = exe.c_str();
    o.args = argv.data();
    o.exit_cb = &ProbeRun::OnExit;
    o.stdio_count = 3;
    o.stdio = stdio;
    int rc = uv_spawn(loop, &p->proc_, &o);
    if (rc != 0) {
      // The process handle must be closed too (libuv: even when uv_spawn fails).
      ++p->open_;
      p->exited_ = true;
      p->answered_ = true;
      uv_close(reinterpret_cast<uv_handle_t*>(&p->proc_), &ProbeRun::OnClose);
      p->CloseAll();
      return Status::Internal(std::string("cannot start the probe: ") + uv_strerror(rc));
    }
    ++p->open_;
    ++*p->running_;
    registry->insert(p);
    uv_read_start(reinterpret_cast<uv_stream_t*>(&p->out_), &ProbeRun::Alloc, &ProbeRun::OnRead);
    uv_read_start(reinterpret_cast<uv_stream_t*>(&p->err_), &ProbeRun::Alloc, &ProbeRun::OnRead);
    uv_timer_start(&p->timer_, &ProbeRun::OnTimeout, kProbeTimeoutMs, 0);
    return Status::OK();
  }

  // The API is going away: no answer (the server answers 503), the child is killed.
  void Abandon() {
    done_ = nullptr;
    registry_ = nullptr;
    Kill();
  }

 private:
  ProbeRun() = default;
  ~ProbeRun() { RemoveSecrets(); }

  // The secrets' folder: its files, then the folder. Done once the child has exited, before the
  // answer goes out (a caller that lists the folder after the answer finds nothing), and again
  // by the destructor for the paths that never answer (a failed spawn, an abandoned probe).
  void RemoveSecrets() {
    if (tmpdir_.empty()) return;
    for (const char* f : kProbeSecretFiles) ::unlink((tmpdir_ + f).c_str());
    ::rmdir(tmpdir_.c_str());
    tmpdir_.clear();
  }

  void Kill() {
    if (!exited_) uv_process_kill(&proc_, SIGKILL);
  }

  static void Alloc(uv_handle_t*, size_t suggested, uv_buf_t* buf) {
    buf->base = static_cast<char*>(std::malloc(suggested));
    buf->len = buf->base ? suggested : 0;
  }

  static void OnRead(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
    auto* p = static_cast<ProbeRun*>(s->data);
    bool is_out = s == reinterpret_cast<uv_stream_t*>(&p->out_);
    std::string& into = is_out ? p->out_buf_ : p->err_buf_;
    if (n > 0 && into.size() < kMaxProbeOutputBytes) into.append(buf->base, static_cast<size_t>(n));
    std::free(buf->base);
    if (n < 0) {
      uv_read_stop(s);
      uv_close(reinterpret_cast<uv_handle_t*>(s), &ProbeRun::OnClose);
      ++p->eofs_;
      p->MaybeFinish();
    }
  }

  static void OnExit(uv_process_t* proc, int64_t exit_status, int term_signal) {
    auto* p = static_cast<ProbeRun*>(proc->data);
    p->exited_ = true;
    p->exit_status_ = term_signal != 0 ? 128 + term_signal : exit_status;
    uv_close(reinterpret_cast<uv_handle_t*>(proc), &ProbeRun::OnClose);
    p->MaybeFinish();
  }

  static void OnTimeout(uv_timer_t* t) {
    auto* p = static_cast<ProbeRun*>(t->data);
    p->timed_out_ = true;
    p->Kill();
  }

  void MaybeFinish() {
    if (!exited_ || eofs_ < 2 || answered_) return;
    answered_ = true;
    uv_timer_stop(&timer_);
    uv_close(reinterpret_cast<uv_handle_t*>(&timer_), &ProbeRun::OnClose);
    --*running_;
    if (registry_) registry_->erase(this);
    RemoveSecrets();
    if (done_) done_(panel::ProbeAnswer(exit_status_, timed_out_, out_buf_, err_buf_));
  }

  void CloseAll() {
    for (uv_handle_t* h :
         {reinterpret_cast<uv_handle_t*>(&out_), reinterpret_cast<uv_handle_t*>(&err_),
          reinterpret_cast<uv_handle_t*>(&timer_)}) {
      uv_close(h, &ProbeRun::OnClose);
    }
  }

  static void OnClose(uv_handle_t* h) {
    auto* p = static_cast<ProbeRun*>(h->data);
    if (--p->open_ == 0) delete p;
  }

  uv_process_t proc_{};
  uv_pipe_t out_{}, err_{};
  uv_timer_t timer_{};
  int open_ = 0;
  int eofs_ = 0;
  bool exited_ = false, answered_ = false, timed_out_ = false;
  int64_t exit_status_ = 0;
  std::string out_buf_, err_buf_;
  std::string tmpdir_;
  Done done_;
  std::shared_ptr<int> running_;
  std::set<ProbeRun*>* registry_ = nullptr;
};

Status WriteSecretFile(const std::string& path, const std::string& content) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return Status::IoError("cannot create a file for the probe's credentials");
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n <= 0) {
      ::close(fd);
      return Status::IoError("cannot write the probe's credentials");
    }
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  return Status::OK();
}

}  // namespace

struct HttpApi::Panel {
  explicit Panel(uv_loop_t* loop) : recheck(loop), tick(loop), history(loop) {}
  ~Panel() { Shutdown(); }

  void Shutdown() {
    if (down) return;
    down = true;
    tick.Stop();
    history.Stop();
    recheck.Stop();
    watched.clear();
    if (events) events->Close();
    for (auto& s : streams) s->Close();
    streams.clear();
    for (ProbeRun* p : std::set<ProbeRun*>(probes)) p->Abandon();
    probes.clear();
  }

  void Broadcast(const std::vector<panel::EventCoalescer::Event>& out) {
    if (out.empty()) return;
    streams.erase(
        std::remove_if(streams.begin(), streams.end(),
                       [](const std::shared_ptr<HttpServer::Stream>& s) { return !s->open(); }),
        streams.end());
    for (const auto& e : out) {
      for (auto& s : streams) s->Send(e.data, e.type);
    }
  }

  bool down = false;
  std::unique_ptr<pg::Client> events;
  bool events_seen_up = false;
  std::vector<std::shared_ptr<HttpServer::Stream>> streams;
  // The streams opened with a session cookie: access is re-checked (RecheckEventSessions) every
  // events_recheck_s and soon after an audit event that may end sessions, so a stream does not
  // outlive its session (logout, a user disabled or deleted, a new password, expiry). The API
  // token's and open_reads streams are not in here.
  struct Watched {
    std::weak_ptr<HttpServer::Stream> stream;
    std::shared_ptr<const HttpRequest> request;  // its cookie, for Authenticate
    std::string user;
  };
  std::vector<Watched> watched;
  Timer recheck;             // runs while `watched` is not empty
  uint64_t recheck_at = 0;   // uv_now() when it fires next
  panel::EventCoalescer coalescer;
  Timer tick;     // 100 ms: coalesced events, and noticing Stop()
  Timer history;  // leader only: collector load history
  std::shared_ptr<int> probes_running = std::make_shared<int>(0);
  std::set<ProbeRun*> probes;
};

// ---- registration ---------------------------------------------------------------------------

void HttpApi::StopPanel() {
  if (panel_) panel_->Shutdown();
}

void HttpApi::RegisterPanel() {
  auto bind = [this](void (HttpApi::*fn)(const HttpRequest&, Call)) {
    return [this, fn](const HttpRequest& r, Call call) { (this->*fn)(r, std::move(call)); };
  };
  panel_ = std::make_shared<Panel>(loop_);
  server_->HandleStream("/api/v1/events",
                        [this](const HttpRequest& r, std::shared_ptr<HttpServer::Stream> s) {
                          return OpenEvents(r, std::move(s));
                        });
  Add("POST", "/api/v1/hosts/bulk", Access::kWrite, bind(&HttpApi::BulkHosts));
  Add("GET", "/api/v1/complete", Access::kRead, bind(&HttpApi::Complete));
  Add("GET", "/api/v1/audit", Access::kRead, bind(&HttpApi::Audit));
  Add("GET", "/api/v1/credential-profiles", Access::kRead, bind(&HttpApi::CredentialProfiles));
  Add("POST", "/api/v1/credential-profiles", Access::kAdmin, bind(&HttpApi::PostCredentialProfile));
  Add("PATCH", "/api/v1/credential-profiles", Access::kAdmin,
      bind(&HttpApi::PatchCredentialProfile));
  Add("DELETE", "/api/v1/credential-profiles", Access::kAdmin,
      bind(&HttpApi::DeleteCredentialProfile));
  Add("POST", "/api/v1/probe", Access::kWrite, bind(&HttpApi::Probe));
  Add("GET", "/api/v1/settings/zabbix", Access::kRead, bind(&HttpApi::ZabbixSettings));

  Panel* p = panel_.get();
  if (!options_.events_conninfo.empty()) {
    pg::Client::Options o;
    o.conninfo = options_.events_conninfo;
    o.name = "events";
    o.application_name = "trapline coordinator events";
    o.query_timeout_s = 0;
    o.reconnect_max_s = 5;
    p->events = std::make_unique<pg::Client>(loop_, o);
    p->events->SetNotifyCallback([this, p, loop = loop_](const std::string&,
                                                          const std::string& payload) {
      if (p->streams.empty()) return;
      if (!p->watched.empty() && EndsSessions(payload)) ScheduleEventsRecheck(kRecheckSoonMs);
      std::vector<panel::EventCoalescer::Event> out;
      p->coalescer.Add(uv_now(loop), payload, &out);
      p->Broadcast(out);
    });
    p->events->SetStateCallback([p](bool connected, const Status& why) {
      if (!connected) {
        spdlog::debug("[panel] events connection: {}", why.message());
        return;
      }
      if (p->events_seen_up) {
        // Notifications sent while we were away are lost: every client refetches.
        // As after a folded burst: one {"type": T, "many": true} per type (pages refetch).
        spdlog::info("[panel] events connection back; streams told to refetch");
        std::vector<panel::EventCoalescer::Event> all;
        for (const char* t : {"host", "service", "collector", "task", "error", "audit"}) {
          all.push_back({t, panel::Dump({{"type", t}, {"many", true}, {"resync", true}})});
        }
        p->Broadcast(all);
      }
      p->events_seen_up = true;
    });
    (void)p->events->Listen(panel::kEventsChannel);
    p->events->Start();
  }
  p->tick.Start(100, 100, [this, p, alive = alive_] {
    if (!*alive) return p->Shutdown();
    if (p->coalescer.idle()) return;
    std::vector<panel::EventCoalescer::Event> out;
    p->coalescer.Flush(uv_now(loop_), &out);
    p->Broadcast(out);
  });
  if (options_.load_history_interval_s > 0) {
    auto ms = static_cast<uint64_t>(options_.load_history_interval_s * 1000);
    p->history.Start(ms, ms, [this, alive = alive_] {
      if (*alive) SampleLoadHistory();
    });
  }
}

// The same check as every kRead route (Authenticate, session_api.cc: the API token, a
// session cookie, or open_reads). A refusal known at once is the answer (401 or 403, as on
// every route); one that needs the registry (a session cookie) comes after the stream
// opened: a "denied" event, then the stream ends. Nothing is sent before access is granted.
// A stream granted by a session stays under watch (Panel::watched) while it is open.
Status HttpApi::OpenEvents(const HttpRequest& r, std::shared_ptr<HttpServer::Stream> stream) {
  if (!*alive_ || !panel_ || panel_->down) return Status::Unavailable("stopping");
  if (!r.rest.empty()) return Status::NotFound("no such resource: " + r.path);
  Panel* p = panel_.get();
  p->streams.erase(
      std::remove_if(p->streams.begin(), p->streams.end(),
                     [](const std::shared_ptr<HttpServer::Stream>& s) { return !s->open(); }),
      p->streams.end());
  if (p->streams.size() >= kMaxStreams) {
    return Status::Unavailable("too many event streams open (" + std::to_string(kMaxStreams) + ")");
  }
  struct Pending {
    bool in_call = true;
    bool decided = false;
    Status refusal;
    Principal who;
  };
  auto pending = std::make_shared<Pending>();
  auto peer = r.peer;
  auto req = std::make_shared<const HttpRequest>(r);
  auto grant = [this, peer, req](const std::shared_ptr<HttpServer::Stream>& s, const Principal& who) {
    Panel* pl = panel_.get();
    bool live = pl->events && pl->events->connected();
    s->Send(panel::Dump({{"type", "hello"}, {"live", live}}), "hello");
    pl->streams.push_back(s);
    if (who.session) {
      pl->watched.push_back({s, req, who.name});
      if (!pl->recheck.active()) {
        ScheduleEventsRecheck(static_cast<uint64_t>(options_.events_recheck_s * 1000));
      }
    }
    spdlog::debug("[panel] {} events stream open ({} open)", peer, pl->streams.size());
  };
  std::weak_ptr<HttpServer::Stream> weak = stream;
  Authenticate(req, Access::kRead,
               [this, pending, weak, grant, alive = alive_](std::optional<Principal> who,
                                                            HttpResponse refusal) {
                 Status why;
                 if (!who) {
                   std::string msg = RefusalMessage(refusal);
                   why = refusal.status == 401 ? Status::Unauthenticated(msg) : Status::Rejected(msg);
                 }
                 if (pending->in_call) {
                   pending->decided = true;
                   pending->refusal = why;
                   if (who) pending->who = *who;
                   return;
                 }
                 auto s = weak.lock();
                 if (!s || !s->open() || !*alive || !panel_ || panel_->down) return;
                 if (!why.ok()) {
                   s->Send(panel::Dump({{"type", "denied"}, {"error", why.message()}}), "denied");
                   s->Close();
                   return;
                 }
                 grant(s, *who);
               });
  pending->in_call = false;
  if (pending->decided) {
    if (!pending->refusal.ok()) return pending->refusal;
    grant(stream, pending->who);
  }
  return Status::OK();
}

void HttpApi::ScheduleEventsRecheck(uint64_t in_ms) {
  Panel* p = panel_.get();
  if (p == nullptr || p->down) return;
  uint64_t now = uv_now(loop_);
  // Only ever brought forward: a stream of audit events cannot postpone it for ever.
  if (p->recheck.active() && p->recheck_at <= now + in_ms) return;
  p->recheck_at = now + in_ms;
  p->recheck.Start(in_ms, 0, [this, alive = alive_] {
    if (*alive) RecheckEventSessions();
  });
}

// The same lookup as every request's (LookupSession, as Authenticate does for a kRead route),
// without counting as use (an open tab alone does not keep a session from idling out); a
// session that ended gets "denied" and the end of its stream, unless open_reads lets anyone
// read. A registry error is not a refusal: the next round tries again.
void HttpApi::RecheckEventSessions() {
  Panel* p = panel_.get();
  if (p == nullptr || p->down) return;
  p->watched.erase(std::remove_if(p->watched.begin(), p->watched.end(),
                                  [](const Panel::Watched& w) {
                                    auto s = w.stream.lock();
                                    return !s || !s->open();
                                  }),
                   p->watched.end());
  if (p->watched.empty()) return;
  for (const Panel::Watched& w : std::vector<Panel::Watched>(p->watched)) {
    LookupSession(
        *w.request,
        [this, weak = w.stream, user = w.user, alive = alive_](
            Result<std::optional<Principal>> who) {
          if (!who.ok() || *who || options_.open_reads) return;
          if (!*alive || !panel_ || panel_->down) return;
          auto s = weak.lock();
          if (!s || !s->open()) return;
          const char* msg = "the session has ended or is unknown; sign in again";
          spdlog::info("[panel] events stream of {} ends: {}", user, msg);
          s->Send(panel::Dump({{"type", "denied"}, {"error", msg}}), "denied");
          s->Close();
        },
        /*touch=*/false);
  }
  ScheduleEventsRecheck(static_cast<uint64_t>(options_.events_recheck_s * 1000));
}

// ---- hosts ------------------------------------------------------------------------------------

void HttpApi::PanelHostRoute(const HttpRequest& r, Call call) {
  if (r.rest.empty()) return PanelHosts(r, std::move(call));
  HostRoute(r, std::move(call));
}

void HttpApi::PanelHosts(const HttpRequest& r, Call call) {
  auto f = panel::ParseHostFilter(r);
  if (!f.ok()) return call.Send(f.status());
  auto text = [](const std::string& s) { return s.empty() ? pg::Value() : pg::Value(s); };
  // Status: disabled > maintenance > error (an enabled service failing) > unknown (no enabled
  // service, or one not reported yet) > ok, over the services whose plugin runs as a task ($9;
  // a discovered "generic:nginx" never reports a state). Aggregated once over services (one
  // pass), then the page's rows get their details.
  Sql(call, "panel hosts",
      "WITH agg AS (SELECT s.host_id, count(*) FILTER (WHERE s.enabled AND NOT s.gone AND s.plugin "
      "= ANY ($9::text[])) AS active, "
      "  coalesce(bool_or(s.state = 'error') FILTER (WHERE s.enabled AND NOT s.gone AND s.plugin = "
      "ANY ($9::text[])), false) AS "
      "any_error, "
      "  coalesce(bool_or(s.state = 'unknown') FILTER (WHERE s.enabled AND NOT s.gone AND s.plugin "
      "= ANY ($9::text[])), false) AS "
      "any_unknown, "
      "  array_agg(DISTINCT s.plugin) AS plugins FROM services s GROUP BY s.host_id), "
      "f AS (SELECT h.*, CASE WHEN NOT h.enabled THEN 'disabled' WHEN h.maintenance THEN "
      "'maintenance' "
      "  WHEN coalesce(a.any_error, false) THEN 'error' WHEN coalesce(a.active, 0) = 0 OR "
      "a.any_unknown "
      "  THEN 'unknown' ELSE 'ok' END AS status FROM hosts h LEFT JOIN agg a ON a.host_id = h.id "
      "  WHERE ($1::boolean IS NULL OR h.enabled = $1::boolean) "
      "  AND ($2::boolean IS NULL OR h.maintenance = $2::boolean) "
      "  AND ($3::text IS NULL OR $3 = ANY (a.plugins)) "
      "  AND ($4::text IS NULL OR EXISTS (SELECT 1 FROM unnest(h.groups) g WHERE g = $4 "
      "       OR left(g, length($4) + 1) = $4 || '/')) "
      "  AND ($5::text IS NULL OR strpos(lower(h.name), lower($5)) > 0 "
      "       OR strpos(lower(h.address), lower($5)) > 0)), "
      "g AS (SELECT * FROM f WHERE $6::text IS NULL OR status = $6), "
      "page AS (SELECT * FROM g ORDER BY name LIMIT $7::int OFFSET $8::int) "
      "SELECT json_build_object('total', (SELECT count(*) FROM g), 'limit', $7::int, 'offset', "
      "$8::int, 'hosts', coalesce((SELECT json_agg(json_build_object('name', p.name, 'address', "
      "p.address, 'enabled', p.enabled, 'status', p.status, 'groups', p.groups, 'maintenance', "
      "p.maintenance, 'maintenance_until', p.maintenance_until, 'first_seen', p.first_seen, "
      "'last_seen', p.last_seen, 'discovered', p.discovered, 'last_report', p.last_report, "
      "'facts', p.facts, "
      "'services', coalesce((SELECT json_agg(json_build_object('id', s.id, 'plugin', s.plugin, "
      "  'port', s.port, 'state', s.state, 'enabled', s.enabled, 'gone', s.gone) ORDER BY "
      "s.plugin, "
      "  s.port) FROM services s WHERE s.host_id = p.id), '[]'::json), "
      "'services_enabled', (SELECT count(*) FROM services s WHERE s.host_id = p.id AND s.enabled), "
      "'collectors', coalesce((SELECT json_agg(DISTINCT c.name) FROM services s JOIN tasks t ON "
      "  t.service_id = s.id JOIN collectors c ON c.id = t.collector_id WHERE s.host_id = p.id), "
      "  '[]'::json), "
      "'last_error', (SELECT json_build_object('at', le.at, 'message', le.message, 'plugin', "
      "  s.plugin, 'port', s.port) FROM services s JOIN tasks t ON t.service_id = s.id CROSS JOIN "
      "  LATERAL (SELECT e.at, e.message FROM errors e WHERE e.task_id = t.id ORDER BY e.at DESC "
      "  LIMIT 1) le WHERE s.host_id = p.id AND s.state = 'error' ORDER BY le.at DESC LIMIT 1)"
      ") ORDER BY p.name) FROM page p), '[]'::json))::text",
      {OptBool(f->enabled), OptBool(f->maintenance), text(f->plugin), text(f->group), text(f->q),
       text(f->status), std::to_string(f->paging.limit), std::to_string(f->paging.offset),
       TaskPluginsArray()},
      [](const pg::Rows& rows) { return JsonOf(rows); });
}

void HttpApi::Complete(const HttpRequest& r, Call call) {
  if (!r.rest.empty()) return call.Send(Status::NotFound("no such resource: " + r.path));
  auto c = panel::ParseCompleteRequest(r);
  if (!c.ok()) return call.Send(c.status());
  std::string source;
  if (c->field == "host") {
    source = "SELECT name AS v FROM hosts";
  } else if (c->field == "group") {
    source = "SELECT DISTINCT g AS v FROM hosts, unnest(groups) g";
  } else {
    source = "SELECT DISTINCT plugin AS v FROM services";
  }
  // Those that start with the prefix first, then those that contain it.
  Sql(call, "panel complete",
      "SELECT json_build_object('field', $2::text, 'prefix', $1::text, 'suggestions', "
      "coalesce((SELECT json_agg(x.v ORDER BY x.rank, x.v) FROM (SELECT v, CASE WHEN "
      "starts_with(lower(v), lower($1)) THEN 0 ELSE 1 END AS rank FROM (" +
          source + ") s WHERE strpos(lower(v), lower($1)) > 0 ORDER BY 2, 1 LIMIT " +
          std::to_string(panel::kMaxSuggestions) + ") x), '[]'::json))::text",
      {c->prefix, c->field}, [](const pg::Rows& rows) { return JsonOf(rows); });
}

void HttpApi::BulkHosts(const HttpRequest& r, Call call) {
  if (!r.rest.empty()) {
    // POST /api/v1/hosts/bulk/clone: a host named "bulk", not a bulk operation.
    HttpRequest host_route = r;
    host_route.rest = "bulk/" + r.rest;
    return PostHost(host_route, std::move(call));
  }
  auto b = panel::ParseBulkRequest(r.body);
  if (!b.ok()) return call.Send(b.status());
  std::string action(panel::BulkAuditAction(b->action));
  // $1: the names (JSON array), $2: the actor, $3: until (maintenance_on), $4: group, $5: the
  // plugins that run as tasks (enable turns on those services only, as PATCH /hosts does).
  std::string head =
      "WITH req AS (SELECT n, min(i) AS i FROM jsonb_array_elements_text($1::jsonb) WITH "
      "  ORDINALITY AS r(n, i) GROUP BY n), "
      "old AS (SELECT h.* FROM hosts h WHERE h.name IN (SELECT n FROM req) FOR UPDATE), "
      // Every parameter is typed even when the action does not use it.
      "params AS (SELECT $3::float8 AS until, $4::text AS grp, $5::text[] AS plugins), ";
  std::string ok = "ok AS (SELECT true AS v), ";
  std::string told = "told AS (SELECT 1 WHERE false), ";
  std::string change, audit_before, audit_after;
  switch (b->action) {
    case BulkAction::kEnable:
      change =
          "h AS (UPDATE hosts SET enabled = true FROM old WHERE hosts.id = old.id RETURNING "
          "hosts.id), "
          "s AS (UPDATE services SET enabled = true FROM old WHERE services.host_id = old.id AND "
          "  NOT services.gone AND NOT services.enabled AND services.plugin = ANY ($5::text[]) "
          "  RETURNING services.host_id), ";
      audit_before = "jsonb_build_object('enabled', old.enabled)";
      audit_after =
          "jsonb_build_object('enabled', true, 'services_enabled', (SELECT count(*) FROM s "
          "WHERE s.host_id = old.id))";
      break;
    case BulkAction::kDisable:
      change =
          "h AS (UPDATE hosts SET enabled = false FROM old WHERE hosts.id = old.id RETURNING "
          "hosts.id), ";
      audit_before = "jsonb_build_object('enabled', old.enabled)";
      audit_after = "jsonb_build_object('enabled', false)";
      break;
    case BulkAction::kMaintenanceOn:
      ok = "ok AS (SELECT $3::float8 IS NULL OR to_timestamp($3::float8) > now() AS v), ";
      change =
          "h AS (UPDATE hosts SET maintenance = true, maintenance_until = to_timestamp($3::float8) "
          "  FROM old, ok WHERE hosts.id = old.id AND ok.v RETURNING hosts.id), ";
      audit_before =
          "jsonb_build_object('maintenance', old.maintenance, 'until', old.maintenance_until)";
      audit_after = "jsonb_build_object('maintenance', true, 'until', to_timestamp($3::float8))";
      break;
    case BulkAction::kMaintenanceOff:
      change =
          "h AS (UPDATE hosts SET maintenance = false, maintenance_until = NULL FROM old "
          "  WHERE hosts.id = old.id RETURNING hosts.id), ";
      audit_before =
          "jsonb_build_object('maintenance', old.maintenance, 'until', old.maintenance_until)";
      audit_after = "jsonb_build_object('maintenance', false, 'until', NULL)";
      break;
    case BulkAction::kMoveGroup:
      change =
          "h AS (UPDATE hosts SET groups = ARRAY[$4::text] FROM old WHERE hosts.id = old.id "
          "  RETURNING hosts.id), ";
      audit_before = "jsonb_build_object('groups', old.groups)";
      audit_after = "jsonb_build_object('groups', jsonb_build_array($4::text))";
      break;
    case BulkAction::kDelete:
      // Services, tasks, entities and errors go with the hosts (ON DELETE CASCADE); the
      // collectors running their tasks are told at commit.
      told = "told AS (SELECT pg_notify('" + std::string(kAssignChannel) +
             "', c.name) FROM collectors c WHERE c.id IN (SELECT t.collector_id FROM tasks t JOIN "
             "  services s ON s.id = t.service_id JOIN old ON s.host_id = old.id)), ";
      change = "h AS (DELETE FROM hosts USING old WHERE hosts.id = old.id RETURNING hosts.id), ";
      audit_before =
          "jsonb_build_object('name', old.name, 'address', old.address, 'groups', old.groups, "
          "'enabled', old.enabled, 'services', (SELECT count(*) FROM services x WHERE x.host_id = "
          "old.id))";
      audit_after = "NULL::jsonb";
      break;
  }
  std::string sql =
      head + ok + told + change + "a AS (" + kAudit + "SELECT $2, '" + action +
      "', 'host', old.name, " + audit_before + ", " + audit_after +
      " FROM old JOIN h ON h.id = old.id) "
      "SELECT (SELECT v FROM ok), (SELECT count(*) FROM told), json_build_object('action', '" +
      (b->action == BulkAction::kMaintenanceOn ? std::string("maintenance_on") : action) +
      "', 'results', coalesce((SELECT json_agg(json_strip_nulls(json_build_object('host', req.n, "
      "'ok', old.id IS NOT NULL, 'error', CASE WHEN old.id IS NULL THEN 'no host ''' || req.n || "
      "'''' END)) ORDER BY req.i) FROM req LEFT JOIN old ON old.name = req.n), '[]'::json))::text";
  size_t n = b->hosts.size();
  spdlog::info("[panel] bulk {} on {} host{} by {}", action, n, n == 1 ? "" : "s", call.actor());
  Sql(call, "panel bulk " + action, std::move(sql),
      {JsonStringArray(b->hosts), call.actor(),
       b->until ? pg::Value(FormatDouble(*b->until)) : pg::Value(),
       b->group.empty() ? pg::Value() : pg::Value(b->group), TaskPluginsArray()},
      [](const pg::Rows& rows) -> Result<HttpResponse> {
        if (Cell(rows, 0).value_or("f") != "t")
          return Status::InvalidArgument("'until' is in the past");
        if (!Cell(rows, 2)) return Status::Internal("the registry returned no results");
        return HttpResponse::Json(*Cell(rows, 2));
      });
}

// ---- audit --------------------------------------------------------------------------------------

void HttpApi::Audit(const HttpRequest& r, Call call) {
  if (!r.rest.empty()) return call.Send(Status::NotFound("no such resource: " + r.path));
  auto f = panel::ParseAuditFilter(r);
  if (!f.ok()) return call.Send(f.status());
  auto text = [](const std::string& s) { return s.empty() ? pg::Value() : pg::Value(s); };
  // "host.*": every action starting with "host.".
  pg::Value exact, prefix;
  if (f->action.size() > 1 && f->action.substr(f->action.size() - 2) == ".*") {
    prefix = f->action.substr(0, f->action.size() - 1);
  } else {
    exact = text(f->action);
  }
  auto time = [](const std::optional<double>& t) {
    return t ? pg::Value(FormatDouble(*t)) : pg::Value();
  };
  // One row more than asked tells whether there are more ("more": true).
  Sql(call, "panel audit",
      "WITH x AS (SELECT * FROM audit_log WHERE ($1::text IS NULL OR actor = $1) "
      "  AND ($2::text IS NULL OR action = $2) AND ($3::text IS NULL OR starts_with(action, $3)) "
      "  AND ($4::text IS NULL OR object_type = $4) AND ($5::text IS NULL OR object_id = $5) "
      "  AND ($6::float8 IS NULL OR at >= to_timestamp($6::float8)) "
      "  AND ($7::float8 IS NULL OR at <= to_timestamp($7::float8)) "
      "  ORDER BY at DESC, id DESC LIMIT $8::int + 1 OFFSET $9::int) "
      "SELECT json_build_object('limit', $8::int, 'offset', $9::int, 'more', (SELECT count(*) FROM "
      "x) "
      "> $8::int, 'audit', coalesce((SELECT json_agg(json_build_object('id', y.id, 'at', y.at, "
      "'actor', y.actor, 'action', y.action, 'object_type', y.object_type, 'object', y.object_id, "
      "'object_id', y.object_id, "
      "'before', y.before, 'after', y.after) ORDER BY y.at DESC, y.id DESC) FROM (SELECT * FROM x "
      "ORDER BY at DESC, id DESC LIMIT $8::int) y), '[]'::json))::text",
      {text(f->actor), exact, prefix, text(f->object_type), text(f->object), time(f->since),
       time(f->until), std::to_string(f->paging.limit), std::to_string(f->paging.offset)},
      [](const pg::Rows& rows) { return JsonOf(rows); });
}

// ---- credential profiles ------------------------------------------------------------------------

namespace {
// A profile as answers show it: never the secret, only whether there is one.
std::string ProfileObject(const std::string& cp) {
  return "json_build_object('name', " + cp + ".name, 'kind', " + cp + ".kind, 'username', " + cp +
         ".username, 'options', " + cp + ".options, 'host_groups', " + cp +
         ".host_groups, "
         "'is_default', " +
         cp + ".is_default, 'has_secret', " + cp +
         ".secret <> '{}'::jsonb, 'services', (SELECT count(*) FROM services s WHERE "
         "s.credential_profile_id = " +
         cp + ".id), 'created_at', " + cp +
         ".created_at, "
         "'updated_at', " +
         cp + ".updated_at)";
}
}  // namespace

void HttpApi::CredentialProfiles(const HttpRequest& r, Call call) {
  if (!r.rest.empty()) {
    const std::string& name = r.rest;
    if (Status st = ValidateName(name, "credential profile name"); !st.ok()) return call.Send(st);
    return Sql(
        call, "panel credential profile",
        "SELECT " + ProfileObject("cp") + "::text FROM credential_profiles cp WHERE cp.name = $1",
        {name}, [name](const pg::Rows& rows) {
          return JsonOf(rows, 200, "no credential profile '" + name + "'");
        });
  }
  Sql(call, "panel credential profiles",
      "SELECT json_build_object('profiles', coalesce(json_agg(" + ProfileObject("cp") +
          " ORDER BY cp.name), '[]'::json))::text FROM credential_profiles cp",
      {}, [](const pg::Rows& rows) { return JsonOf(rows); });
}

void HttpApi::PostCredentialProfile(const HttpRequest& r, Call call) {
  if (!r.rest.empty())
    return call.Send(HttpResponse::Error(405, "POST is for /api/v1/credential-profiles"));
  auto p = panel::ParseNewProfile(r.body);
  if (!p.ok()) return call.Send(p.status());
  std::string name = p->name;
  Sql(call, "panel add credential profile",
      "WITH other AS (SELECT name FROM credential_profiles WHERE $7::boolean AND kind = $2 AND "
      "  is_default AND name <> $1), "
      "ins AS (INSERT INTO credential_profiles (name, kind, username, secret, options, "
      "host_groups, "
      "  is_default) SELECT $1, $2, $3, $4::jsonb, $5::jsonb, ARRAY(SELECT "
      "  jsonb_array_elements_text($8::jsonb)), $7::boolean WHERE NOT EXISTS (SELECT 1 FROM other) "
      "  ON CONFLICT (name) DO NOTHING RETURNING *), "
      "a AS (" +
          std::string(kAudit) +
          "SELECT $6, 'credential_profile.create', 'credential_profile', ins.name, NULL, "
          "  jsonb_build_object('name', ins.name, 'kind', ins.kind, 'username', ins.username, "
          "  'options', ins.options, 'host_groups', ins.host_groups, 'is_default', ins.is_default, "
          "  'secret', CASE WHEN ins.secret <> '{}'::jsonb THEN 'set' ELSE 'none' END) FROM ins) "
          "SELECT (SELECT " +
          ProfileObject("ins") + "::text FROM ins), (SELECT name FROM other LIMIT 1)",
      {p->name, p->kind, p->username.value_or(""), p->secret_json, p->options_json.value_or("{}"),
       call.actor(), Bool(p->is_default.value_or(false)),
       JsonStringArray(p->host_groups.value_or(std::vector<std::string>()))},
      [name, kind = p->kind](const pg::Rows& rows) -> Result<HttpResponse> {
        if (Cell(rows, 1)) {
          return HttpResponse::Error(409, "credential profile '" + *Cell(rows, 1) +
                                              "' is the default for " + kind +
                                              "; make it not the default first");
        }
        if (!Cell(rows, 0))
          return HttpResponse::Error(409, "credential profile '" + name + "' exists");
        return HttpResponse::Json(*Cell(rows, 0), 201);
      });
}

void HttpApi::PatchCredentialProfile(const HttpRequest& r, Call call) {
  std::string name = r.rest;
  if (name.empty()) return call.Send(Status::NotFound("PATCH /api/v1/credential-profiles/{name}"));
  if (Status st = ValidateName(name, "credential profile name"); !st.ok()) return call.Send(st);
  std::string body = r.body;
  // The secret's shape depends on the kind: read it first; the update is conditional on it.
  registry_->Query(
      "panel credential profile kind", "SELECT kind FROM credential_profiles WHERE name = $1",
      {name}, [this, call, name, body, alive = alive_](Result<pg::Rows> kind) {
        if (!*alive) return;
        if (!kind.ok()) return call.Send(RegistryError(kind.status()));
        if (!Cell(*kind, 0))
          return call.Send(Status::NotFound("no credential profile '" + name + "'"));
        auto p = panel::ParseProfilePatch(body, *Cell(*kind, 0));
        if (!p.ok()) return call.Send(p.status());
        // Tasks using the profile get a new generation: their collectors restart them with
        // the new credentials (as PATCH /services does for a new profile).
        Sql(call, "panel update credential profile",
            "WITH old AS (SELECT * FROM credential_profiles WHERE name = $1 AND kind = $2 FOR "
            "UPDATE), "
            "other AS (SELECT name FROM credential_profiles WHERE $8::boolean AND kind = $2 AND "
            "  is_default AND name <> $1), "
            "cp AS (UPDATE credential_profiles SET username = coalesce($3, "
            "credential_profiles.username), "
            "  secret = CASE WHEN $4::boolean THEN $5::jsonb ELSE credential_profiles.secret END, "
            "  options = coalesce($6::jsonb, credential_profiles.options), host_groups = CASE WHEN "
            "  $9::jsonb IS NULL THEN credential_profiles.host_groups ELSE ARRAY(SELECT "
            "  jsonb_array_elements_text($9::jsonb)) END, is_default = coalesce($8::boolean, "
            "  credential_profiles.is_default), updated_at = now() "
            "  FROM old WHERE credential_profiles.id = old.id AND NOT EXISTS (SELECT 1 FROM other) "
            "  RETURNING credential_profiles.*), "
            "t AS (UPDATE tasks SET generation = tasks.generation + 1 FROM services s, cp "
            "  WHERE tasks.service_id = s.id AND s.credential_profile_id = cp.id AND "
            "  tasks.collector_id IS NOT NULL RETURNING tasks.collector_id), "
            "told AS (SELECT pg_notify('" +
                std::string(kAssignChannel) +
                "', c.name) FROM collectors c WHERE c.id IN (SELECT collector_id FROM t)), "
                "a AS (" +
                kAudit +
                "SELECT $7, 'credential_profile.update', 'credential_profile', cp.name, "
                "  jsonb_build_object('username', old.username, 'options', old.options, "
                "'host_groups', "
                "  old.host_groups, 'is_default', old.is_default), jsonb_build_object('username', "
                "  cp.username, 'options', cp.options, 'host_groups', cp.host_groups, "
                "'is_default', "
                "  cp.is_default) || CASE WHEN "
                "  $4::boolean THEN jsonb_build_object('secret', 'changed') ELSE '{}'::jsonb END "
                "  FROM cp JOIN old ON old.id = cp.id) "
                "SELECT (SELECT count(*) FROM told), (SELECT " +
                ProfileObject("cp") + "::text FROM cp), (SELECT name FROM other LIMIT 1)",
            {name, p->kind, p->username, Bool(p->set_secret), p->secret_json, p->options_json,
             call.actor(), OptBool(p->is_default),
             p->host_groups ? pg::Value(JsonStringArray(*p->host_groups)) : pg::Value()},
            [name, kind = p->kind](const pg::Rows& rows) -> Result<HttpResponse> {
              if (Cell(rows, 2)) {
                return HttpResponse::Error(409, "credential profile '" + *Cell(rows, 2) +
                                                    "' is the default for " + kind +
                                                    "; make it not the default first");
              }
              if (!Cell(rows, 1)) return Status::NotFound("no credential profile '" + name + "'");
              return HttpResponse::Json(*Cell(rows, 1));
            });
      });
}

// A profile that services use is not deleted (409 naming how many): taking credentials away
// from running tasks silently would turn them into errors. Move the services first.
void HttpApi::DeleteCredentialProfile(const HttpRequest& r, Call call) {
  std::string name = r.rest;
  if (name.empty()) return call.Send(Status::NotFound("DELETE /api/v1/credential-profiles/{name}"));
  if (Status st = ValidateName(name, "credential profile name"); !st.ok()) return call.Send(st);
  Sql(call, "panel delete credential profile",
      "WITH old AS (SELECT * FROM credential_profiles WHERE name = $1 FOR UPDATE), "
      "used AS (SELECT count(*) AS n FROM services s JOIN old ON s.credential_profile_id = "
      "old.id), "
      "d AS (DELETE FROM credential_profiles USING old, used WHERE credential_profiles.id = old.id "
      "  AND used.n = 0 RETURNING credential_profiles.id), "
      "a AS (" +
          std::string(kAudit) +
          "SELECT $2, 'credential_profile.delete', 'credential_profile', old.name, "
          "  jsonb_build_object('name', old.name, 'kind', old.kind, 'username', old.username, "
          "  'options', old.options), NULL FROM old JOIN d ON d.id = old.id) "
          "SELECT (SELECT count(*) FROM old), (SELECT n FROM used), (SELECT count(*) FROM d)",
      {name, call.actor()}, [name](const pg::Rows& rows) -> Result<HttpResponse> {
        if (Cell(rows, 0).value_or("0") == "0")
          return Status::NotFound("no credential profile '" + name + "'");
        if (Cell(rows, 2).value_or("0") == "0") {
          return HttpResponse::Error(409, "credential profile '" + name + "' is used by " +
                                              Cell(rows, 1).value_or("?") +
                                              " service(s); give them another profile first");
        }
        return HttpResponse::Json("{\"deleted\": " + JsonQuote(name) + "}");
      });
}

// ---- collectors' load history
// ---------------------------------------------------------------------

void HttpApi::PanelCollectorRoute(const HttpRequest& r, Call call) {
  if (r.rest.empty()) return Collectors(r, std::move(call));
  std::string_view rest(r.rest);
  size_t slash = rest.find('/');
  if (slash == std::string_view::npos || rest.substr(slash + 1) != "history") {
    return call.Send(Status::NotFound("no such resource: " + r.path));
  }
  std::string name(rest.substr(0, slash));
  if (Status st = ValidateName(name, "collector name"); !st.ok()) return call.Send(st);
  CollectorHistory(name, r, std::move(call));
}

void HttpApi::CollectorHistory(const std::string& name, const HttpRequest& r, Call call) {
  int64_t minutes = 60;
  if (std::string m = r.QueryParam("minutes"); !m.empty()) {
    auto [p, ec] = std::from_chars(m.data(), m.data() + m.size(), minutes);
    if (ec != std::errc() || p != m.data() + m.size() || minutes < 1 || minutes > 1440) {
      return call.Send(Status::InvalidArgument("minutes must be an integer from 1 to 1440, not '" +
                                               Shown(m) + "'"));
    }
  }
  Sql(call, "panel collector history",
      "SELECT json_build_object('collector', c.name, 'minutes', $2::int, 'interval_s', $3::float8, "
      "'points', coalesce((SELECT json_agg(json_build_object('at', h.at, 'lag_p50_ms', "
      "h.lag_p50_ms, "
      "'lag_p99_ms', h.lag_p99_ms, 'cpu_pct', h.cpu_pct, 'tasks', h.tasks) ORDER BY h.at) FROM "
      "collector_load_history h WHERE h.collector_id = c.id AND h.at > now() - make_interval(mins "
      "=> "
      "$2::int)), '[]'::json))::text FROM collectors c WHERE c.name = $1",
      {name, std::to_string(minutes), FormatDouble(options_.load_history_interval_s)},
      [name](const pg::Rows& rows) { return JsonOf(rows, 200, "no collector '" + name + "'"); });
}

void HttpApi::SampleLoadHistory() {
  if (!self_().leader || !registry_->connected()) return;
  auto num = [](const char* key) {
    std::string k(key);
    return "CASE WHEN jsonb_typeof(load -> '" + k + "') = 'number' AND abs((load ->> '" + k +
           "')::numeric) < 1e12 THEN (load ->> '" + k + "')::float8 END";
  };
  // Collectors that heartbeat (a dead one's last load would repeat); a day is kept.
  registry_->Query(
      "panel sample load history",
      "WITH ins AS (INSERT INTO collector_load_history (collector_id, at, lag_p50_ms, lag_p99_ms, "
      "  cpu_pct, tasks) SELECT id, now(), " +
          num("lag_p50_ms") + ", " + num("lag_p99_ms") + ", " + num("cpu_pct") + ", least(greatest(" +
          num("tasks") +
          ", 0), 2147483647)::bigint::integer FROM collectors WHERE state <> "
          "'dead' AND last_heartbeat > now() - interval '1 minute' ON CONFLICT DO NOTHING "
          "RETURNING 1), "
          "del AS (DELETE FROM collector_load_history WHERE at < now() - interval '24 hours' "
          "RETURNING 1) "
          "SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM del)",
      {}, [](Result<pg::Rows> r) {
        if (!r.ok()) spdlog::warn("[panel] load history: {}", r.status().message());
      });
}

// ---- probe --------------------------------------------------------------------------------------

void HttpApi::Probe(const HttpRequest& r, Call call) {
  if (!r.rest.empty()) return call.Send(Status::NotFound("no such resource: " + r.path));
  auto req = panel::ParseProbeRequest(r.body);
  if (!req.ok()) return call.Send(req.status());
  if (req->credential_profile && !call.admin()) {
    return call.Send(call.NeedsAdmin("a probe with a credential profile"));
  }
  if (!panel_ || panel_->down) return call.Send(Status::Unavailable("stopping"));
  if (*panel_->probes_running >= kMaxProbes) {
    HttpResponse res = HttpResponse::Error(
        429, std::to_string(kMaxProbes) + " probes are running; try again in a few seconds");
    res.headers.emplace_back("retry-after", "5");
    return call.Send(std::move(res));
  }
  // Runs the probe once the profile (if any) is read: its secret goes to files in a 0700
  // folder (0600 files) named on the command line, never the secret itself.
  auto run = [this, call, req = *req](const json& profile) {
    if (!panel_ || panel_->down) return call.Send(Status::Unavailable("stopping"));
    if (*panel_->probes_running >= kMaxProbes) {
      HttpResponse res =
          HttpResponse::Error(429, "too many probes running; try again in a few seconds");
      res.headers.emplace_back("retry-after", "5");
      return call.Send(std::move(res));
    }
    std::string uri = req.uri;
    std::string password = req.password;
    std::string key;
    std::string passphrase;
    std::vector<std::string> args = {"probe", "--seconds",   "2",    "--format",
                                     "json",  "--log-level", "error"};
    if (profile.is_object()) {
      const json& secret = profile.value("secret", json::object());
      const json& options = profile.value("options", json::object());
      uri = panel::UriWithUser(uri, profile.value("username", std::string()));
      if (password.empty() && secret.contains("password") && secret["password"].is_string()) {
        password = secret["password"].get<std::string>();
      }
      if (secret.contains("private_key") && secret["private_key"].is_string()) {
        key = secret["private_key"].get<std::string>();
      }
      if (secret.contains("passphrase") && secret["passphrase"].is_string()) {
        passphrase = secret["passphrase"].get<std::string>();
      }
      if (options.contains("identity") && options["identity"].is_string() && key.empty()) {
        args.push_back("--identity");
        args.push_back(options["identity"].get<std::string>());
      }
      if (options.contains("known_hosts") && options["known_hosts"].is_string()) {
        args.push_back("--known-hosts");
        args.push_back(options["known_hosts"].get<std::string>());
      }
      // Options edited by hand into nonsense: a 400, never an exception on the loop.
      for (auto [option, flag] : {std::pair{"trust_on_first_use", "--trust-on-first-use"},
                                  std::pair{"use_agent", "--agent"}}) {
        if (!options.contains(option)) continue;
        if (!options[option].is_boolean()) {
          return call.Send(Status::InvalidArgument(std::string("the credential profile's option '") +
                                                   option + "' must be true or false"));
        }
        if (options[option].get<bool>()) args.push_back(flag);
      }
    }
    std::string dir;
    if (!password.empty() || !key.empty() || !passphrase.empty()) {
      const char* tmp = std::getenv("TMPDIR");
      std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/trapline-probe-XXXXXX";
      if (::mkdtemp(tmpl.data()) == nullptr) {
        return call.Send(Status::IoError("cannot make a folder for the probe's credentials"));
      }
      dir = tmpl;
      Status st;
      if (!key.empty()) {
        if (key.back() != '\n') key += '\n';
        st = WriteSecretFile(dir + "/key", key);
        args.push_back("--identity");
        args.push_back(dir + "/key");
      }
      if (st.ok() && !password.empty()) {
        st = WriteSecretFile(dir + "/password", password + "\n");
        args.push_back("--password-file");
        args.push_back(dir + "/password");
      }
      if (st.ok() && !passphrase.empty()) {
        st = WriteSecretFile(dir + "/passphrase", passphrase + "\n");
        args.push_back("--passphrase-file");
        args.push_back(dir + "/passphrase");
      }
      if (!st.ok()) {
        for (const char* f : kProbeSecretFiles) ::unlink((dir + f).c_str());
        ::rmdir(dir.c_str());
        return call.Send(st);
      }
    }
    args.push_back(uri);
    spdlog::info("[panel] probe {} by {}", uri.substr(0, uri.find('?')), call.actor());
    Status st = ProbeRun::Start(
        loop_, options_.probe_exe, std::move(args), dir,
        [call](std::string answer) { call.Send(HttpResponse::Json(std::move(answer))); },
        panel_->probes_running, &panel_->probes);
    if (!st.ok()) {
      spdlog::error("[panel] {}", st.message());
      call.Send(st);
    }
  };
  if (!req->credential_profile) return run(json());
  std::string cp = *req->credential_profile;
  std::string kind = req->kind;
  registry_->Query(
      "panel probe profile",
      "SELECT kind, username, secret::text, options::text FROM credential_profiles WHERE name = $1",
      {cp}, [call, cp, kind, run, alive = alive_](Result<pg::Rows> rows) {
        if (!*alive) return;
        if (!rows.ok()) return call.Send(RegistryError(rows.status()));
        if (rows->rows.empty())
          return call.Send(Status::InvalidArgument("no credential profile '" + cp + "'"));
        const pg::Row& row = rows->rows[0];
        if (row[0].value_or("") != kind) {
          return call.Send(Status::InvalidArgument("credential profile '" + cp + "' is for " +
                                                   row[0].value_or("?") + ", the URI for " + kind));
        }
        json profile = {{"username", row[1].value_or("")},
                        {"secret", json::parse(row[2].value_or("{}"), nullptr, false)},
                        {"options", json::parse(row[3].value_or("{}"), nullptr, false)}};
        if (!profile["secret"].is_object()) profile["secret"] = json::object();
        if (!profile["options"].is_object()) profile["options"] = json::object();
        run(profile);
      });
}

// ---- settings ---------------------------------------------------------------------------------

void HttpApi::ZabbixSettings(const HttpRequest& r, Call call) {
  if (r.rest != "") return call.Send(Status::NotFound("no such resource: " + r.path));
  json j = {{"url", options_.zabbix_url},
            {"user", options_.zabbix_user},
            {"frontend_url", options_.zabbix_frontend_url},
            {"host_group", options_.zabbix_host_group},
            {"configured", !options_.zabbix_url.empty()}};
  call.Send(HttpResponse::Json(panel::Dump(j)));
}

}  // namespace trapline::coordinator
