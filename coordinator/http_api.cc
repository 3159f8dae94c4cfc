#include "coordinator/http_api.h"
#include "coordinator/http_api_internal.h"

#include <array>
#include <charconv>
#include <cmath>
#include <set>

#include <nlohmann/json.hpp>

#include "common/log.h"
#include "common/metrics_text.h"
#include "coordinator/coordinator.h"
#include "trapline/version.h"

namespace trapline::coordinator {

using nlohmann::json;

using namespace api;  // NOLINT: the API's shared helpers (http_api_internal.h)

// ---- pure parts -------------------------------------------------------------------------------

Status ValidateName(std::string_view name, std::string_view what) {
  return CheckChars(name, what, kMaxNameBytes, "._-", true);
}

Status ValidateGroup(std::string_view group) {
  return CheckChars(group, "group name", kMaxGroupBytes, "._-/", true);
}

Status ValidateAddress(std::string_view address) {
  if (address.empty()) return Status::OK();
  return CheckChars(address, "address", kMaxAddressBytes, ".:-_[]", false);
}

Result<double> ParseRfc3339(std::string_view t) {
  auto bad = [&] {
    return Status::InvalidArgument("'" + Shown(t) +
                                   "' is not an RFC 3339 time (2026-11-21T18:00:00Z or with an "
                                   "offset such as +02:00)");
  };
  auto digits = [&](size_t pos, size_t n, int* out) {
    if (pos + n > t.size()) return false;
    int v = 0;
    for (size_t i = pos; i < pos + n; ++i) {
      if (t[i] < '0' || t[i] > '9') return false;
      v = v * 10 + (t[i] - '0');
    }
    *out = v;
    return true;
  };
  int y, mo, d, h, mi, s;
  if (t.size() < 20 || !digits(0, 4, &y) || t[4] != '-' || !digits(5, 2, &mo) || t[7] != '-' ||
      !digits(8, 2, &d) || (t[10] != 'T' && t[10] != 't') || !digits(11, 2, &h) || t[13] != ':' ||
      !digits(14, 2, &mi) || t[16] != ':' || !digits(17, 2, &s)) {
    return bad();
  }
  if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > DaysInMonth(y, mo) || h > 23 || mi > 59 ||
      s > 60) {
    return bad();
  }
  size_t pos = 19;
  double frac = 0;
  if (pos < t.size() && t[pos] == '.') {
    ++pos;
    double scale = 0.1;
    size_t start = pos;
    while (pos < t.size() && t[pos] >= '0' && t[pos] <= '9' && pos - start < 9) {
      frac += (t[pos] - '0') * scale;
      scale /= 10;
      ++pos;
    }
    if (pos == start) return bad();
  }
  int offset_s = 0;
  if (pos < t.size() && (t[pos] == 'Z' || t[pos] == 'z')) {
    ++pos;
  } else if (pos < t.size() && (t[pos] == '+' || t[pos] == '-')) {
    int oh, om;
    if (!digits(pos + 1, 2, &oh) || pos + 3 >= t.size() || t[pos + 3] != ':' ||
        !digits(pos + 4, 2, &om) || oh > 23 || om > 59) {
      return bad();
    }
    offset_s = (oh * 3600 + om * 60) * (t[pos] == '-' ? -1 : 1);
    pos += 6;
  } else {
    return bad();
  }
  if (pos != t.size()) return bad();
  int64_t secs = DaysFromCivil(y, mo, d) * 86400 + h * 3600 + mi * 60 + std::min(s, 59) - offset_s;
  return static_cast<double>(secs) + frac;
}

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  // Every byte of the longer one is looked at; the result does not stop early.
  size_t n = std::max(a.size(), b.size());
  unsigned diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < n; ++i) {
    unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned>(x ^ y);
  }
  return diff == 0;
}

std::string BearerToken(std::string_view authorization) {
  std::string_view a = authorization;
  while (!a.empty() && a.front() == ' ') a.remove_prefix(1);
  constexpr std::string_view kScheme = "bearer ";
  if (a.size() <= kScheme.size()) return "";
  for (size_t i = 0; i < kScheme.size(); ++i) {
    char c = a[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != kScheme[i]) return "";
  }
  a.remove_prefix(kScheme.size());
  while (!a.empty() && a.front() == ' ') a.remove_prefix(1);
  while (!a.empty() && a.back() == ' ') a.remove_suffix(1);
  return std::string(a);
}

BearerCheck CheckBearer(std::string_view authorization, std::string_view token) {
  if (authorization.find_first_not_of(' ') == std::string_view::npos) return BearerCheck::kMissing;
  std::string given = BearerToken(authorization);
  if (token.empty() || given.empty()) return BearerCheck::kWrong;
  return ConstantTimeEquals(given, token) ? BearerCheck::kOk : BearerCheck::kWrong;
}

namespace {
Result<int64_t> ParseCount(std::string_view text, std::string_view what, int64_t min, int64_t max) {
  int64_t v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || p != text.data() + text.size() || v < min || v > max) {
    return Status::InvalidArgument(std::string(what) + " must be an integer from " +
                                   std::to_string(min) + " to " + std::to_string(max) + ", not '" +
                                   Shown(text) + "'");
  }
  return v;
}
}  // namespace

Result<Paging> ParsePaging(const HttpRequest& request) {
  Paging p;
  std::string limit = request.QueryParam("limit");
  std::string offset = request.QueryParam("offset");
  if (!limit.empty()) {
    TRAPLINE_ASSIGN_OR_RETURN(p.limit, ParseCount(limit, "limit", 1, 1000));
  }
  if (!offset.empty()) {
    TRAPLINE_ASSIGN_OR_RETURN(p.offset, ParseCount(offset, "offset", 0, 1000000000));
  }
  return p;
}

Result<std::optional<bool>> ParseBoolParam(std::string_view text, std::string_view what) {
  if (text.empty()) return std::optional<bool>();
  if (text == "true" || text == "1") return std::optional<bool>(true);
  if (text == "false" || text == "0") return std::optional<bool>(false);
  return Status::InvalidArgument(std::string(what) + " must be true or false, not '" + Shown(text) +
                                 "'");
}

Result<int64_t> ParseId(std::string_view text, std::string_view what) {
  return ParseCount(text, what, 1, INT64_MAX);
}

Result<WeightPatch> ParseWeightPatch(std::string_view body) {
  TRAPLINE_ASSIGN_OR_RETURN(json j, ParseObject(body, {"weight"}));
  if (!j.contains("weight")) return Status::InvalidArgument("'weight' is missing");
  const json& w = j["weight"];
  if (!w.is_number()) return Status::InvalidArgument("'weight' must be a number");
  WeightPatch p;
  p.weight = w.get<double>();
  if (!std::isfinite(p.weight) || !(p.weight > 0) || p.weight > kMaxWeight) {
    return Status::InvalidArgument("'weight' must be greater than 0 and at most 1000000");
  }
  return p;
}

Result<NewHost> ParseNewHost(std::string_view body) {
  TRAPLINE_ASSIGN_OR_RETURN(json j, ParseObject(body, {"name", "address", "groups", "enabled"}));
  NewHost h;
  if (!j.contains("name") || !j["name"].is_string()) {
    return Status::InvalidArgument("'name' (a string) is required");
  }
  h.name = j["name"].get<std::string>();
  TRAPLINE_RETURN_IF_ERROR(ValidateName(h.name, "host name"));
  if (j.contains("address")) {
    TRAPLINE_ASSIGN_OR_RETURN(h.address, GetAddress(j));
  }
  if (j.contains("groups")) {
    TRAPLINE_ASSIGN_OR_RETURN(h.groups, GetGroups(j));
  }
  if (j.contains("enabled")) {
    TRAPLINE_ASSIGN_OR_RETURN(h.enabled, GetBool(j, "enabled"));
  }
  return h;
}

Result<HostPatch> ParseHostPatch(std::string_view body) {
  TRAPLINE_ASSIGN_OR_RETURN(json j, ParseObject(body, {"enabled", "services", "address", "groups"}));
  if (j.empty()) return Status::InvalidArgument("nothing to change");
  HostPatch p;
  if (j.contains("enabled")) {
    TRAPLINE_ASSIGN_OR_RETURN(p.enabled, GetBool(j, "enabled"));
  }
  if (j.contains("services")) {
    if (!j["services"].is_string() || j["services"].get<std::string>() != "all") {
      return Status::InvalidArgument("'services' can only be \"all\"");
    }
    if (!p.enabled) return Status::InvalidArgument("'services': \"all\" needs 'enabled'");
    p.all_services = true;
  }
  if (j.contains("address")) {
    TRAPLINE_ASSIGN_OR_RETURN(p.address, GetAddress(j));
  }
  if (j.contains("groups")) {
    TRAPLINE_ASSIGN_OR_RETURN(p.groups, GetGroups(j));
  }
  return p;
}

Result<ServicePatch> ParseServicePatch(std::string_view body) {
  TRAPLINE_ASSIGN_OR_RETURN(json j, ParseObject(body, {"enabled", "credential_profile"}));
  if (j.empty()) return Status::InvalidArgument("nothing to change");
  ServicePatch p;
  if (j.contains("enabled")) {
    TRAPLINE_ASSIGN_OR_RETURN(p.enabled, GetBool(j, "enabled"));
  }
  if (j.contains("credential_profile")) {
    const json& v = j["credential_profile"];
    p.set_credential_profile = true;
    if (v.is_string()) {
      p.credential_profile = v.get<std::string>();
      TRAPLINE_RETURN_IF_ERROR(ValidateName(*p.credential_profile, "credential profile"));
    } else if (!v.is_null()) {
      return Status::InvalidArgument("'credential_profile' must be a profile name or null");
    }
  }
  return p;
}

Result<std::optional<double>> ParseMaintenanceBody(std::string_view body) {
  if (body.find_first_not_of(" \t\r\n") == std::string_view::npos) {
    return std::optional<double>();  // no body: open-ended
  }
  TRAPLINE_ASSIGN_OR_RETURN(json j, ParseObject(body, {"until"}));
  if (!j.contains("until") || j["until"].is_null()) return std::optional<double>();
  if (!j["until"].is_string()) {
    return Status::InvalidArgument("'until' must be an RFC 3339 time or null");
  }
  TRAPLINE_ASSIGN_OR_RETURN(double t, ParseRfc3339(j["until"].get<std::string>()));
  return std::optional<double>(t);
}

std::string JsonStringArray(const std::vector<std::string>& values) {
  json a = json::array();
  for (const auto& v : values) a.push_back(v);
  return a.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string RenderCoordinatorMetrics(const CoordinatorSelf& self,
                                     const std::optional<RegistryCounts>& counts,
                                     const std::map<std::pair<std::string, int>, uint64_t>& requests) {
  MetricsText m;
  m.Gauge("trapline_coordinator_info", "Always 1; the labels name this coordinator.", 1,
          {{"name", self.name}, {"version", kVersion}});
  m.Gauge("trapline_coordinator_leader", "1 while this coordinator is the leader.",
          self.leader ? 1 : 0);
  m.Gauge("trapline_coordinator_epoch", "The leader epoch this coordinator last held (0: never).",
          static_cast<double>(self.epoch));
  m.Gauge("trapline_coordinator_schema_version", "Registry schema version (0 before migrating).",
          self.schema_version);
  m.Gauge("trapline_coordinator_registry_connected", "1 while the registry connection is up.",
          self.registry_connected ? 1 : 0);
  if (counts) {
    m.Family("trapline_coordinator_collectors", MetricsText::Type::kGauge,
             "Collectors in the registry by state.");
    m.Sample(static_cast<double>(counts->collectors_active), {{"state", "active"}});
    m.Sample(static_cast<double>(counts->collectors_draining), {{"state", "draining"}});
    m.Sample(static_cast<double>(counts->collectors_dead), {{"state", "dead"}});
    m.Gauge("trapline_coordinator_tasks", "Tasks in the registry.",
            static_cast<double>(counts->tasks));
    m.Gauge("trapline_coordinator_tasks_unassigned", "Tasks without a collector.",
            static_cast<double>(counts->tasks_unassigned));
    m.Gauge("trapline_coordinator_hosts", "Hosts in the registry.", static_cast<double>(counts->hosts));
    m.Gauge("trapline_coordinator_hosts_enabled", "Enabled hosts.",
            static_cast<double>(counts->hosts_enabled));
    m.Gauge("trapline_coordinator_services_enabled", "Enabled services.",
            static_cast<double>(counts->services_enabled));
  }
  if (self.zabbix_sync) {
    m.Counter("trapline_coordinator_zabbix_syncs_done_total",
              "zabbix-sync runs that succeeded on this coordinator.",
              static_cast<double>(self.syncs_done));
    m.Counter("trapline_coordinator_zabbix_syncs_failed_total",
              "zabbix-sync runs that failed on this coordinator.",
              static_cast<double>(self.syncs_failed));
    m.Gauge("trapline_coordinator_zabbix_syncs_queued", "zabbix-sync runs waiting.",
            static_cast<double>(self.syncs_queued));
  }
  m.Family("trapline_coordinator_http_requests_total", MetricsText::Type::kCounter,
           "HTTP API requests answered, by route and status code.");
  for (const auto& [key, n] : requests) {
    m.Sample(static_cast<double>(n), {{"route", key.first}, {"code", std::to_string(key.second)}});
  }
  return m.Take();
}

// ---- the API ----------------------------------------------------------------------------------

HttpApi::HttpApi(uv_loop_t* loop, pg::Client* registry, HttpApiOptions options, SelfSource self)
    : loop_(loop), registry_(registry), options_(std::move(options)), self_(std::move(self)) {}

HttpApi::~HttpApi() { Stop(); }

Status HttpApi::Start() {
  if (server_) return Status::OK();
  HttpServerOptions so;
  so.name = "api";
  // Discovery reports may be 256 KiB (checked against Content-Length before a byte of the
  // body is read); every other route keeps 64 KiB (Add()).
  so.max_body_bytes = kMaxDiscoveryBodyBytes;
  so.max_connections = 256;
  if (Status st = auth::Init(); !st.ok()) return st;
  server_ = std::make_unique<HttpServer>(loop_, so);
  Register();
  Status st = server_->Listen(options_.listen);
  if (!st.ok()) return st.WithContext("[http] listen");
  return Status::OK();
}

void HttpApi::Stop() {
  if (!*alive_) return;
  *alive_ = false;
  StopPanel();
  if (server_) server_->Stop();
}

void HttpApi::Add(const std::string& method, const std::string& prefix, Access access,
                  Route route) {
  std::string label = method + " " + prefix;
  // Who asks (the API token, a session cookie, or nobody where reads are open) and whether
  // that role may use the route: Authenticate (session_api.cc). The route runs with the
  // user's name as the audit actor.
  server_->HandleDeferred(
      method, prefix,
      [this, alive = alive_, label, prefix, access, route = std::move(route)](
          const HttpRequest& r, HttpServer::Responder responder) {
        if (!*alive) {
          return Call(this, alive, label, std::move(responder), options_.actor)
              .Send(Status::Unavailable("stopping"));
        }
        // The server takes discovery reports' size; every other route 64 KiB.
        // Bulk operations name up to 5,000 hosts (about 150 KiB of names).
        if (r.body.size() > (64 << 10) && prefix != "/api/v1/discovery" &&
            r.path != "/api/v1/hosts/bulk") {
          return Call(this, alive, label, std::move(responder), options_.actor)
              .Send(HttpResponse::Error(413, "request body larger than 64 KiB"));
        }
        auto req = std::make_shared<const HttpRequest>(r);
        Authenticate(req, access,
                     [this, alive, label, route, req, responder = std::move(responder)](
                         std::optional<Principal> who, HttpResponse refusal) {
                       Call call(this, alive, label, responder, who ? who->name : options_.actor,
                                 who && who->role == auth::Role::kAdmin);
                       if (!*alive) return call.Send(Status::Unavailable("stopping"));
                       if (!who) return call.Send(std::move(refusal));
                       route(*req, call);
                     });
      });
}

void HttpApi::Register() {
  auto bind = [this](void (HttpApi::*fn)(const HttpRequest&, Call)) {
    return [this, fn](const HttpRequest& r, Call call) { (this->*fn)(r, std::move(call)); };
  };
  Add("GET", "/metrics", Access::kOpen, bind(&HttpApi::Metrics));
  Add("GET", "/api/v1/status", Access::kRead, bind(&HttpApi::SelfStatus));
  // The panel's: the collectors list or /{name}/history (panel_api.cc).
  Add("GET", "/api/v1/collectors", Access::kRead, bind(&HttpApi::PanelCollectorRoute));
  Add("PATCH", "/api/v1/collectors", Access::kWrite, bind(&HttpApi::PatchCollector));
  // The panel's filtered list, or HostRoute for /{name} (panel_api.cc).
  Add("GET", "/api/v1/hosts", Access::kRead, bind(&HttpApi::PanelHostRoute));
  Add("POST", "/api/v1/hosts", Access::kWrite, bind(&HttpApi::PostHost));
  Add("PATCH", "/api/v1/hosts", Access::kWrite, bind(&HttpApi::PatchHost));
  Add("PUT", "/api/v1/hosts", Access::kWrite, bind(&HttpApi::HostRoute));
  Add("DELETE", "/api/v1/hosts", Access::kWrite, bind(&HttpApi::HostRoute));
  Add("GET", "/api/v1/services", Access::kRead, bind(&HttpApi::Services));
  Add("PATCH", "/api/v1/services", Access::kWrite, bind(&HttpApi::PatchService));
  Add("GET", "/api/v1/tasks", Access::kRead, bind(&HttpApi::Tasks));
  Add("GET", "/api/v1/errors", Access::kRead, bind(&HttpApi::Errors));
  RegisterPanel();  // the admin panel's routes (panel_api.cc)
  RegisterSessions();
  RegisterUi();
  RegisterDiscovery();
}

void HttpApi::Sql(Call call, std::string name, std::string sql, std::vector<pg::Value> params,
                  std::function<Result<HttpResponse>(const pg::Rows&)> make) {
  registry_->Query(std::move(name), std::move(sql), std::move(params),
                   [call, make = std::move(make), alive = alive_](Result<pg::Rows> r) {
                     if (!*alive) return;
                     if (!r.ok()) return call.Send(RegistryError(r.status()));
                     call.Send(make(*r));
                   });
}

void HttpApi::SelfStatus(const HttpRequest& r, Call call) {
  if (!r.rest.empty()) return call.Send(Status::NotFound("no such resource: " + r.path));
  CoordinatorSelf s = self_();
  json j = {{"name", s.name},
            {"role", s.leader ? "leader" : "standby"},
            {"epoch", s.epoch},
            {"schema_version", s.schema_version},
            {"registry_connected", s.registry_connected},
            {"zabbix_sync", s.zabbix_sync},
            {"version", kVersion}};
  call.Send(HttpResponse::Json(j.dump(-1, ' ', false, json::error_handler_t::replace)));
}

void HttpApi::Metrics(const HttpRequest& r, Call call) {
  if (!r.rest.empty()) return call.Send(Status::NotFound("no such resource: " + r.path));
  auto render = [this](const std::optional<RegistryCounts>& counts) {
    return HttpResponse::Text(RenderCoordinatorMetrics(self_(), counts, requests_), 200,
                              std::string(MetricsText::kContentType));
  };
  if (!registry_->connected()) return call.Send(render(std::nullopt));
  registry_->Query(
      "api metrics",
      "SELECT (SELECT count(*) FROM collectors WHERE state = 'active'), "
      "(SELECT count(*) FROM collectors WHERE state = 'draining'), "
      "(SELECT count(*) FROM collectors WHERE state = 'dead'), (SELECT count(*) FROM tasks), "
      "(SELECT count(*) FROM tasks WHERE collector_id IS NULL), (SELECT count(*) FROM hosts), "
      "(SELECT count(*) FROM hosts WHERE enabled), (SELECT count(*) FROM services WHERE enabled)",
      {}, [call, render, alive = alive_](Result<pg::Rows> rows) {
        if (!*alive) return;
        std::optional<RegistryCounts> counts;
        if (rows.ok() && !rows->rows.empty() && rows->rows[0].size() == 8) {
          std::array<int64_t, 8> v{};
          for (size_t i = 0; i < 8; ++i) v[i] = std::atoll(rows->rows[0][i].value_or("0").c_str());
          counts = RegistryCounts{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]};
        }
        call.Send(render(counts));
      });
}

void HttpApi::Collectors(const HttpRequest& r, Call call) {
  if (!r.rest.empty()) return call.Send(Status::NotFound("no such resource: " + r.path));
  Sql(call, "api collectors",
      "SELECT json_build_object('collectors', coalesce((SELECT json_agg(json_build_object("
      "'name', c.name, 'weight', c.weight, 'state', c.state, 'address', c.address, 'version', "
      "c.version, 'protocol', c.protocol, 'registered_at', c.registered_at, 'last_heartbeat', "
      "c.last_heartbeat, 'heartbeat_age_s', round(extract(epoch FROM now() - c.last_heartbeat)::numeric, 1), "
      "'tasks', (SELECT count(*) FROM tasks t WHERE t.collector_id = c.id), 'load', c.load) "
      "ORDER BY c.name) FROM collectors c), '[]'::json))::text",
      {}, [](const pg::Rows& rows) { return JsonOf(rows); });
}

void HttpApi::PatchCollector(const HttpRequest& r, Call call) {
  const std::string& name = r.rest;
  if (name.empty()) return call.Send(Status::NotFound("PATCH /api/v1/collectors/{name}"));
  if (Status st = ValidateName(name, "collector name"); !st.ok()) return call.Send(st);
  auto p = ParseWeightPatch(r.body);
  if (!p.ok()) return call.Send(p.status());
  Sql(call, "api collector weight",
      std::string("WITH old AS (SELECT id, weight FROM collectors WHERE name = $1 FOR UPDATE), "
                  "c AS (UPDATE collectors SET weight = $2::float8 FROM old WHERE collectors.id = old.id "
                  "  RETURNING collectors.*), "
                  "a AS (") + kAudit +
          "SELECT $3, 'collector.weight', 'collector', c.name, jsonb_build_object('weight', old.weight), "
          "  jsonb_build_object('weight', c.weight) FROM c JOIN old ON old.id = c.id) "
          "SELECT json_build_object('name', c.name, 'weight', c.weight, 'state', c.state)::text FROM c",
      {name, FormatDouble(p->weight), call.actor()}, [name](const pg::Rows& rows) {
        return JsonOf(rows, 200, "no collector '" + name + "'");
      });
}

void HttpApi::HostRoute(const HttpRequest& r, Call call) {
  std::string_view rest(r.rest);
  size_t slash = rest.find('/');
  std::string name(rest.substr(0, slash));
  std::string sub(slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1));
  if (name.empty()) {  // the list is PanelHosts' (GET only)
    return call.Send(HttpResponse::Error(405, "method " + r.method + " not allowed on " + r.path));
  }
  if (Status st = ValidateName(name, "host name"); !st.ok()) return call.Send(st);
  if (!sub.empty() && sub != "maintenance") {
    return call.Send(Status::NotFound("no such resource: " + r.path));
  }
  bool maintenance = sub == "maintenance";
  if (r.method == "PUT") {
    if (!maintenance) return call.Send(HttpResponse::Error(405, "PUT is for " + r.path + "/maintenance"));
    return PutMaintenance(name, r, std::move(call));
  }
  if (r.method == "DELETE") {
    if (maintenance) return DeleteMaintenance(name, std::move(call));
    return DeleteHost(r, std::move(call));
  }
  // GET
  if (maintenance) {
    return Sql(call, "api host maintenance",
               "SELECT " + MaintenanceObject("h") + "::text FROM hosts h WHERE h.name = $1", {name},
               [name](const pg::Rows& rows) { return JsonOf(rows, 200, "no host '" + name + "'"); });
  }
  Sql(call, "api host",
      "SELECT json_build_object('host', " + HostObject("h") +
          ", 'maintenance', " + MaintenanceObject("h") +
          ", 'services', coalesce((SELECT json_agg(" + ServiceObject("h.name") +
          " ORDER BY s.plugin, s.port) FROM services s" + kServiceJoins +
          " WHERE s.host_id = h.id), '[]'::json), "
          "'entities', coalesce((SELECT json_agg(json_build_object('task', e.task_id, 'plugin', "
          "t.plugin, 'kind', e.kind, 'name', e.name, 'gone', e.gone, 'last_seen', e.last_seen) "
          "ORDER BY t.plugin, e.kind, e.name) FROM entities e JOIN tasks t ON t.id = e.task_id "
          "JOIN services s ON s.id = t.service_id WHERE s.host_id = h.id), '[]'::json), "
          "'errors', coalesce((SELECT json_agg(x ORDER BY x.at DESC, x.id DESC) FROM (SELECT er.id, "
          "er.at, er.message, t.plugin, c.name AS collector FROM errors er JOIN tasks t ON t.id = "
          "er.task_id JOIN services s ON s.id = t.service_id LEFT JOIN collectors c ON c.id = "
          "er.collector_id WHERE s.host_id = h.id ORDER BY er.at DESC, er.id DESC LIMIT 20) x), "
          "'[]'::json))::text FROM hosts h WHERE h.name = $1",
      {name}, [name](const pg::Rows& rows) { return JsonOf(rows, 200, "no host '" + name + "'"); });
}

void HttpApi::PostHost(const HttpRequest& r, Call call) {
  if (!r.rest.empty()) {  // clone, services: they carry credential profiles to hosts
    if (!call.admin()) return call.Send(call.NeedsAdmin("cloning a host or adding a service"));
    return PostHostSub(r, std::move(call));
  }
  auto h = ParseNewHost(r.body);
  if (!h.ok()) return call.Send(h.status());
  if (!h->address.empty() && !call.admin()) return call.Send(call.NeedsAdmin("setting an address"));
  std::string name = h->name;
  Sql(call, "api add host",
      "WITH ins AS (INSERT INTO hosts (name, address, groups, enabled) VALUES ($1, $2, "
      "  ARRAY(SELECT jsonb_array_elements_text($3::jsonb)), $4::boolean) "
      "  ON CONFLICT (name) DO NOTHING RETURNING *), "
      "a AS (" + std::string(kAudit) +
          "SELECT $5, 'host.create', 'host', ins.name, NULL, jsonb_build_object('name', ins.name, "
          "  'address', ins.address, 'groups', ins.groups, 'enabled', ins.enabled) FROM ins) "
          "SELECT " + HostObject("h") + "::text FROM ins h",
      {h->name, h->address, JsonStringArray(h->groups), Bool(h->enabled), call.actor()},
      [name](const pg::Rows& rows) -> Result<HttpResponse> {
        if (rows.rows.empty()) return HttpResponse::Error(409, "host '" + name + "' exists");
        return JsonOf(rows, 201);
      });
}

void HttpApi::PatchHost(const HttpRequest& r, Call call) {
  const std::string& name = r.rest;
  if (name.empty() || name.find('/') != std::string::npos) {
    return call.Send(Status::NotFound("PATCH /api/v1/hosts/{name}"));
  }
  if (Status st = ValidateName(name, "host name"); !st.ok()) return call.Send(st);
  auto p = ParseHostPatch(r.body);
  if (!p.ok()) return call.Send(p.status());
  if (p->address && !call.admin()) return call.Send(call.NeedsAdmin("changing an address"));
  // The host and (with "services": "all") every service of it that is not gone and has a
  // plugin (a discovered "generic:nginx" has none), one audit row each, in one statement.
  Sql(call, "api update host",
      "WITH old AS (SELECT * FROM hosts WHERE name = $1 FOR UPDATE), "
      "h AS (UPDATE hosts SET enabled = coalesce($2::boolean, hosts.enabled), "
      "  address = coalesce($3::text, hosts.address), groups = CASE WHEN $4::jsonb IS NULL THEN "
      "  hosts.groups ELSE ARRAY(SELECT jsonb_array_elements_text($4::jsonb)) END "
      "  FROM old WHERE hosts.id = old.id RETURNING hosts.*), "
      "s AS (UPDATE services SET enabled = $2::boolean FROM old WHERE $5::boolean AND "
      "  services.host_id = old.id AND NOT services.gone AND services.plugin = ANY ($7::text[]) AND "
      "  services.enabled IS DISTINCT FROM $2::boolean "
      "  RETURNING services.id, services.plugin, services.port, services.enabled), "
      "ah AS (" + std::string(kAudit) +
          "SELECT $6, 'host.update', 'host', h.name, jsonb_build_object('enabled', old.enabled, "
          "  'address', old.address, 'groups', old.groups), jsonb_build_object('enabled', "
          "  h.enabled, 'address', h.address, 'groups', h.groups) FROM h JOIN old ON old.id = h.id), "
          "asv AS (" + kAudit +
          "SELECT $6, CASE WHEN s.enabled THEN 'service.enable' ELSE 'service.disable' END, "
          "  'service', s.id::text, jsonb_build_object('enabled', NOT s.enabled), "
          "  jsonb_build_object('enabled', s.enabled, 'host', $1::text, 'plugin', s.plugin, 'port', "
          "  s.port) FROM s) "
          "SELECT json_build_object('host', " + HostObject("h") +
          ", 'services_changed', (SELECT count(*) FROM s))::text FROM h",
      {name, OptBool(p->enabled), Opt(p->address),
       p->groups ? pg::Value(JsonStringArray(*p->groups)) : pg::Value(), Bool(p->all_services),
       call.actor(), TaskPluginsArray()},
      [name](const pg::Rows& rows) { return JsonOf(rows, 200, "no host '" + name + "'"); });
}

void HttpApi::DeleteHost(const HttpRequest& r, Call call) {
  std::string name = r.rest;
  // Its services, tasks, entities and errors go with it (ON DELETE CASCADE); the collectors
  // running its tasks are told at commit.
  Sql(call, "api delete host",
      "WITH old AS (SELECT * FROM hosts WHERE name = $1), "
      "told AS (SELECT pg_notify('" + std::string(kAssignChannel) +
          "', c.name) FROM collectors c WHERE c.id IN (SELECT t.collector_id FROM tasks t JOIN "
          "  services s ON s.id = t.service_id JOIN old ON s.host_id = old.id)), "
          "d AS (DELETE FROM hosts USING old WHERE hosts.id = old.id RETURNING hosts.id), "
          "a AS (" + kAudit +
          "SELECT $2, 'host.delete', 'host', old.name, jsonb_build_object('name', old.name, "
          "  'address', old.address, 'groups', old.groups, 'enabled', old.enabled, 'services', "
          "  (SELECT count(*) FROM services s WHERE s.host_id = old.id)), NULL "
          "  FROM old JOIN d ON d.id = old.id) "
          "SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM told)",
      {name, call.actor()}, [name](const pg::Rows& rows) -> Result<HttpResponse> {
        if (Cell(rows, 0).value_or("0") == "0") return Status::NotFound("no host '" + name + "'");
        return HttpResponse::Json("{\"deleted\": " + JsonQuote(name) + "}");
      });
}

void HttpApi::PutMaintenance(const std::string& host, const HttpRequest& r, Call call) {
  auto until = ParseMaintenanceBody(r.body);
  if (!until.ok()) return call.Send(until.status());
  pg::Value until_param;
  if (*until) until_param = FormatDouble(**until);
  // The database's clock decides whether `until` is in the past.
  Sql(call, "api maintenance on",
      "WITH old AS (SELECT * FROM hosts WHERE name = $1 FOR UPDATE), "
      "ok AS (SELECT $2::float8 IS NULL OR to_timestamp($2::float8) > now() AS v), "
      "h AS (UPDATE hosts SET maintenance = true, maintenance_until = to_timestamp($2::float8) "
      "  FROM old, ok WHERE hosts.id = old.id AND ok.v RETURNING hosts.*), "
      "a AS (" + std::string(kAudit) +
          "SELECT $3, 'maintenance.set', 'host', h.name, jsonb_build_object('maintenance', "
          "  old.maintenance, 'until', old.maintenance_until), jsonb_build_object('maintenance', "
          "  h.maintenance, 'until', h.maintenance_until) FROM h JOIN old ON old.id = h.id) "
          "SELECT (SELECT count(*) FROM old), (SELECT v FROM ok), (SELECT " +
          MaintenanceObject("h") + "::text FROM h)",
      {host, until_param, call.actor()}, [host](const pg::Rows& rows) -> Result<HttpResponse> {
        if (Cell(rows, 0).value_or("0") == "0") return Status::NotFound("no host '" + host + "'");
        if (Cell(rows, 1).value_or("f") != "t") {
          return Status::InvalidArgument("'until' is in the past");
        }
        if (!Cell(rows, 2)) return Status::Internal("maintenance not set");
        return HttpResponse::Json(*Cell(rows, 2));
      });
}

void HttpApi::DeleteMaintenance(const std::string& host, Call call) {
  Sql(call, "api maintenance off",
      "WITH old AS (SELECT * FROM hosts WHERE name = $1 FOR UPDATE), "
      "h AS (UPDATE hosts SET maintenance = false, maintenance_until = NULL FROM old "
      "  WHERE hosts.id = old.id RETURNING hosts.*), "
      "a AS (" + std::string(kAudit) +
          "SELECT $2, 'maintenance.clear', 'host', h.name, jsonb_build_object('maintenance', "
          "  old.maintenance, 'until', old.maintenance_until), jsonb_build_object('maintenance', "
          "  false, 'until', NULL) FROM h JOIN old ON old.id = h.id) "
          "SELECT " + MaintenanceObject("h") + "::text FROM h",
      {host, call.actor()},
      [host](const pg::Rows& rows) { return JsonOf(rows, 200, "no host '" + host + "'"); });
}

void HttpApi::Services(const HttpRequest& r, Call call) {
  if (!r.rest.empty()) return call.Send(Status::NotFound("no such resource: " + r.path));
  auto paging = ParsePaging(r);
  if (!paging.ok()) return call.Send(paging.status());
  auto enabled = ParseBoolParam(r.QueryParam("enabled"), "enabled");
  if (!enabled.ok()) return call.Send(enabled.status());
  std::string host = r.QueryParam("host");
  if (!host.empty()) {
    if (Status st = ValidateName(host, "host"); !st.ok()) return call.Send(st);
  }
  Sql(call, "api services",
      "WITH f AS (SELECT s.*, h.name AS host_name FROM services s JOIN hosts h ON h.id = s.host_id "
      "  WHERE ($1::text IS NULL OR h.name = $1) AND ($2::boolean IS NULL OR s.enabled = $2::boolean)), "
      "page AS (SELECT * FROM f ORDER BY host_name, plugin, port, id LIMIT $3::int OFFSET $4::int) "
      "SELECT json_build_object('total', (SELECT count(*) FROM f), 'limit', $3::int, 'offset', "
      "$4::int, 'services', coalesce((SELECT json_agg(" + ServiceObject("s.host_name") +
          " ORDER BY s.host_name, s.plugin, s.port, s.id) FROM page s" + kServiceJoins +
          "), '[]'::json))::text",
      {host.empty() ? pg::Value() : pg::Value(host), OptBool(*enabled),
       std::to_string(paging->limit), std::to_string(paging->offset)},
      [](const pg::Rows& rows) { return JsonOf(rows); });
}

void HttpApi::PatchService(const HttpRequest& r, Call call) {
  auto id = ParseId(r.rest, "service id");
  if (!id.ok()) return call.Send(id.status());
  auto p = ParseServicePatch(r.body);
  if (!p.ok()) return call.Send(p.status());
  if (p->set_credential_profile && p->credential_profile && !call.admin()) {
    return call.Send(call.NeedsAdmin("setting a service's credential profile"));
  }
  std::string sid = std::to_string(*id);
  // A new credential profile reaches the collector running the service's task through a new
  // task generation (it restarts the target with the new credentials) and a NOTIFY.
  Sql(call, "api update service",
      "WITH old AS (SELECT s.*, h.name AS host_name, cp.name AS cp_name FROM services s JOIN hosts h "
      "  ON h.id = s.host_id LEFT JOIN credential_profiles cp ON cp.id = s.credential_profile_id "
      "  WHERE s.id = $1::bigint FOR UPDATE OF s), "
      "cp AS (SELECT id, name FROM credential_profiles WHERE name = $4), "
      "ok AS (SELECT NOT $3::boolean OR $4::text IS NULL OR EXISTS (SELECT 1 FROM cp) AS v), "
      "s AS (UPDATE services SET enabled = coalesce($2::boolean, services.enabled), "
      "  credential_profile_id = CASE WHEN $3::boolean THEN (SELECT id FROM cp) ELSE "
      "  services.credential_profile_id END FROM old, ok WHERE services.id = old.id AND ok.v "
      "  RETURNING services.*), "
      "t AS (UPDATE tasks SET generation = tasks.generation + 1 FROM s, old WHERE tasks.service_id = "
      "  s.id AND s.credential_profile_id IS DISTINCT FROM old.credential_profile_id AND "
      "  tasks.collector_id IS NOT NULL RETURNING tasks.collector_id), "
      "told AS (SELECT pg_notify('" + std::string(kAssignChannel) +
          "', c.name) FROM collectors c WHERE c.id IN (SELECT collector_id FROM t)), "
          "a AS (" + kAudit +
          "SELECT $5, 'service.update', 'service', s.id::text, jsonb_build_object('enabled', "
          "  old.enabled, 'credential_profile', old.cp_name), jsonb_build_object('enabled', "
          "  s.enabled, 'credential_profile', CASE WHEN $3::boolean THEN (SELECT name FROM cp) "
          "  ELSE old.cp_name END, 'host', old.host_name, 'plugin', s.plugin, 'port', s.port) "
          "  FROM s JOIN old ON old.id = s.id) "
          "SELECT (SELECT count(*) FROM old), (SELECT v FROM ok), (SELECT count(*) FROM told), "
          "(SELECT json_build_object('id', s.id, 'host', old.host_name, 'plugin', s.plugin, 'port', "
          "  s.port, 'enabled', s.enabled, 'credential_profile', CASE WHEN $3::boolean THEN "
          "  (SELECT name FROM cp) ELSE old.cp_name END)::text FROM s JOIN old ON old.id = s.id)",
      {sid, OptBool(p->enabled), Bool(p->set_credential_profile), Opt(p->credential_profile),
       call.actor()},
      [sid, cp = p->credential_profile](const pg::Rows& rows) -> Result<HttpResponse> {
        if (Cell(rows, 0).value_or("0") == "0") return Status::NotFound("no service " + sid);
        if (Cell(rows, 1).value_or("f") != "t") {
          return Status::InvalidArgument("no credential profile '" + cp.value_or("") + "'");
        }
        if (!Cell(rows, 3)) return Status::Internal("service not updated");
        return HttpResponse::Json(*Cell(rows, 3));
      });
}

void HttpApi::Tasks(const HttpRequest& r, Call call) {
  if (!r.rest.empty()) return call.Send(Status::NotFound("no such resource: " + r.path));
  auto paging = ParsePaging(r);
  if (!paging.ok()) return call.Send(paging.status());
  std::string collector = r.QueryParam("collector");
  if (!collector.empty()) {
    if (Status st = ValidateName(collector, "collector"); !st.ok()) return call.Send(st);
  }
  Sql(call, "api tasks",
      "WITH f AS (SELECT t.*, c.name AS collector_name FROM tasks t LEFT JOIN collectors c ON "
      "  c.id = t.collector_id WHERE $1::text IS NULL OR c.name = $1), "
      "page AS (SELECT * FROM f ORDER BY id LIMIT $2::int OFFSET $3::int) "
      "SELECT json_build_object('total', (SELECT count(*) FROM f), 'unassigned', (SELECT count(*) "
      "FROM f WHERE collector_id IS NULL), 'limit', $2::int, 'offset', $3::int, 'tasks', "
      "coalesce((SELECT json_agg(json_build_object('id', p.id, 'service', p.service_id, 'host', "
      "h.name, 'plugin', p.plugin, 'port', s.port, 'cost', p.cost, 'collector', p.collector_name, "
      "'generation', p.generation, 'assigned_at', p.assigned_at) ORDER BY p.id) FROM page p JOIN "
      "services s ON s.id = p.service_id JOIN hosts h ON h.id = s.host_id), '[]'::json))::text",
      {collector.empty() ? pg::Value() : pg::Value(collector), std::to_string(paging->limit),
       std::to_string(paging->offset)},
      [](const pg::Rows& rows) { return JsonOf(rows); });
}

void HttpApi::Errors(const HttpRequest& r, Call call) {
  if (!r.rest.empty()) return call.Send(Status::NotFound("no such resource: " + r.path));
  auto paging = ParsePaging(r);
  if (!paging.ok()) return call.Send(paging.status());
  pg::Value since;
  if (std::string s = r.QueryParam("since"); !s.empty()) {
    auto t = ParseRfc3339(s);
    if (!t.ok()) return call.Send(t.status().WithContext("since"));
    since = FormatDouble(*t);
  }
  Sql(call, "api errors",
      "SELECT json_build_object('errors', coalesce((SELECT json_agg(x ORDER BY x.at DESC, x.id "
      "DESC) FROM (SELECT e.id, e.at, e.message, e.task_id AS task, h.name AS host, t.plugin, "
      "c.name AS collector FROM errors e LEFT JOIN tasks t ON t.id = e.task_id LEFT JOIN services "
      "s ON s.id = t.service_id LEFT JOIN hosts h ON h.id = s.host_id LEFT JOIN collectors c ON "
      "c.id = e.collector_id WHERE $1::float8 IS NULL OR e.at > to_timestamp($1::float8) "
      "ORDER BY e.at DESC, e.id DESC LIMIT $2::int OFFSET $3::int) x), '[]'::json))::text",
      {since, std::to_string(paging->limit), std::to_string(paging->offset)},
      [](const pg::Rows& rows) { return JsonOf(rows); });
}

}  // namespace trapline::coordinator
