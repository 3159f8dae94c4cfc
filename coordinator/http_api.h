#pragma once
// The coordinator's HTTP API (issue 5, point 7): JSON under /api/v1/ and Prometheus /metrics,
// on the coordinator's loop (common/http_server.h), reading and writing the registry through
// the coordinator's pg::Client. Every coordinator serves it, leader or standby: reads and
// writes go to the registry, and the leader acts on what was written (tasks from enabled
// services, weights, maintenance) at its next tick.
//
//   GET    /api/v1/status                   this coordinator: name, role, epoch, schema
//   GET    /api/v1/collectors               name, weight, state, address, version, load, ...
//   PATCH  /api/v1/collectors/{name}        {"weight": 2.5}
//   GET    /api/v1/hosts                    ?enabled=true|false &q=substring &limit= &offset=
//   POST   /api/v1/hosts                    {"name", "address", "groups": [...], "enabled"}
//   GET    /api/v1/hosts/{name}             with services, entities, last errors, maintenance
//   PATCH  /api/v1/hosts/{name}             {"enabled": true, "services": "all"}, address, groups
//   DELETE /api/v1/hosts/{name}
//   GET    /api/v1/hosts/{name}/maintenance desired vs applied to Zabbix
//   PUT    /api/v1/hosts/{name}/maintenance {"until": "<RFC 3339>" | null}
//   DELETE /api/v1/hosts/{name}/maintenance
//   GET    /api/v1/services                 ?host= &enabled= &limit= &offset=
//   PATCH  /api/v1/services/{id}            {"enabled": bool, "credential_profile": name|null}
//   GET    /api/v1/tasks                    ?collector= &limit= &offset=
//   GET    /api/v1/errors                   ?since=<RFC 3339> &limit=  (latest first)
//   GET    /metrics                         Prometheus text; no token needed
//
// Rules:
//  - Auth (Add -> Authenticate, session_api.cc): `Authorization: Bearer <token>` equal to the
//    configured token (constant time; actor "api", every right, no CSRF), or the session
//    cookie of a signed-in user (looked up in the registry on every request: roles viewer <
//    operator < admin for kRead/kWrite/kAdmin routes, else 403; POST/PUT/PATCH/DELETE also
//    need X-CSRF-Token equal to the session's and an Origin, when sent, naming this server).
//    Without either 401. Reads need neither with open_reads. /metrics is open.
//    A session ends at logout, after [http] session_idle unused or session_max after login,
//    and for all of a user's sessions at once when the user is disabled or deleted or gets a
//    new password (a trigger of migration 4; also the user's own session when changing their
//    own password through PATCH /api/v1/users/{name}: sign in again with the new one; and
//    `trapline user passwd`). An open events stream notices within events_recheck_s (30 s),
//    and within a second of a logout or a change to a user.
//  - Input is untrusted: names are checked for length and charset, numbers for range, bodies
//    for JSON shape; an unknown field is an error. Each failure is a 400 naming the reason,
//    before anything reaches the registry. SQL only with parameters.
//  - Every change writes an audit_log row (actor: the user, or "api") with before/after JSON in the
//    same statement (so the same transaction) as the change itself.
//  - Secrets: credential_profiles.secret is never selected; a password in a service's URI is
//    masked ("redis://u:***@h").
//  - Thread: the loop's. The API must be stopped (or destroyed) before the registry client
//    is closed: queries in flight then find the API gone and touch nothing.

#include <uv.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/http_server.h"
#include "common/pg_client.h"
#include "common/status.h"
#include "coordinator/auth.h"
#include "coordinator/discovery.h"

namespace trapline::coordinator {

struct HttpApiOptions {
  std::string listen;        // [http] listen: "127.0.0.1:8470"; empty: no HTTP server
  std::string api_token;     // first line of [http] api_token_file
  bool open_reads = false;   // [http] open_reads: GETs without a token
  std::string actor = "api";  // the audit log's actor for the token's holder

  // ---- H-auth: users and sessions (coordinator/session_api.cc, auth.h) ----
  bool secure_cookies = false;         // [http] secure_cookies: the session cookie gets Secure
  double session_idle_s = 12 * 3600;   // [http] session_idle: a session unused this long ends
  double session_max_s = 7 * 86400;    // [http] session_max: and any session this long after login

  // ---- H-disc: discovery (coordinator/discovery_api.cc) ----
  // [discovery]: enrolment secret, gone threshold, rate limits.
  DiscoveryOptions discovery;

  // ---- the admin panel's routes (coordinator/panel_api.cc) ----
  // The registry's conninfo: the live events (GET /api/v1/events) LISTEN on a connection of
  // their own. Empty: no live events (the stream still opens, and says so).
  std::string events_conninfo;
  // The leader samples collectors' load into collector_load_history this often ([coordinator]
  // load_history_interval); 0: never.
  double load_history_interval_s = 15;
  // An event stream opened with a session cookie checks that its session still exists this
  // often (and soon after a "session.*"/"user.*" audit event); when it ended: "denied", close.
  double events_recheck_s = 30;
  // GET /api/v1/settings/zabbix: [zabbix] url, user, frontend_url, host_group (no secrets).
  std::string zabbix_url, zabbix_user, zabbix_frontend_url, zabbix_host_group;
  // POST /api/v1/probe runs `<probe_exe> probe URI ...`.
  std::string probe_exe = "/proc/self/exe";
  // ---- H-ui: the admin panel (issue 7) ----
  // [http] ui_dir: the built panel (ui/dist) served at "/" (the API's longer prefixes win);
  // empty: no panel. Checked at config time: a folder with index.html.
  std::string ui_dir;
};
// H-ui: "" when `dir` is a readable folder with an index.html, else what is wrong with it.
std::string CheckUiDir(const std::string& dir);

// What the coordinator says about itself in /api/v1/status and /metrics.
struct CoordinatorSelf {
  std::string name;
  bool leader = false;
  int64_t epoch = 0;
  int schema_version = 0;  // 0 until migrated
  bool registry_connected = false;
  bool zabbix_sync = false;
  uint64_t syncs_done = 0;
  uint64_t syncs_failed = 0;
  size_t syncs_queued = 0;
};

// ---- pure parts (unit-tested) -------------------------------------------------------------

// Host and collector names: 1..128 bytes of letters, digits, '.', '_', '-' and inner spaces
// (Zabbix's host name charset). `what` names the field in the error.
Status ValidateName(std::string_view name, std::string_view what);
// Host group names: as names, plus '/' (nested groups), up to 255 bytes.
Status ValidateGroup(std::string_view group);
// Host addresses: empty, or up to 255 bytes of letters, digits, '.', ':', '-', '_', '[', ']'.
Status ValidateAddress(std::string_view address);

// RFC 3339 date-time ("2026-11-21T18:00:00Z", "...T18:00:00.5+02:00") to unix seconds.
Result<double> ParseRfc3339(std::string_view text);

// Constant-time comparison (the time depends on the lengths only).
bool ConstantTimeEquals(std::string_view a, std::string_view b);
// The token of an "Authorization: Bearer <token>" header (scheme in any case, spaces around
// the token dropped), or "" (no header, another scheme, no token). A discovery report's token is
// not known in advance (it is looked up by its hash): it takes the token from here.
std::string BearerToken(std::string_view authorization);
enum class BearerCheck { kOk, kMissing, kWrong };
// `authorization` is the header's value ("Bearer <token>"). An empty `token` never matches.
BearerCheck CheckBearer(std::string_view authorization, std::string_view token);

struct Paging {
  int64_t limit = 100;
  int64_t offset = 0;
};
// ?limit= (1..1000, default 100) and ?offset= (0..10^9, default 0).
Result<Paging> ParsePaging(const HttpRequest& request);
// "true"/"false" (also 1/0); "" is nullopt. `what` names the parameter.
Result<std::optional<bool>> ParseBoolParam(std::string_view text, std::string_view what);
// A positive row id (decimal, no sign, fits int64).
Result<int64_t> ParseId(std::string_view text, std::string_view what);

// Request bodies, checked for shape (an object, known fields only, types, ranges).
struct WeightPatch {
  double weight = 1;  // finite, > 0, <= 1e6
};
Result<WeightPatch> ParseWeightPatch(std::string_view body);

struct NewHost {
  std::string name;
  std::string address;
  std::vector<std::string> groups;
  bool enabled = false;
};
Result<NewHost> ParseNewHost(std::string_view body);

struct HostPatch {
  std::optional<bool> enabled;
  bool all_services = false;  // "services": "all": the same `enabled` for every service
  std::optional<std::string> address;
  std::optional<std::vector<std::string>> groups;
};
Result<HostPatch> ParseHostPatch(std::string_view body);

struct ServicePatch {
  std::optional<bool> enabled;
  bool set_credential_profile = false;
  std::optional<std::string> credential_profile;  // nullopt with set_: none
};
Result<ServicePatch> ParseServicePatch(std::string_view body);

// {"until": "<RFC 3339>"} / {"until": null} / {}: the end in unix seconds, nullopt for
// open-ended.
Result<std::optional<double>> ParseMaintenanceBody(std::string_view body);

// A JSON array of strings, for a jsonb parameter.
std::string JsonStringArray(const std::vector<std::string>& values);

// The /metrics text from the coordinator's figures and the registry's counts (absent when the
// registry could not be asked). `requests`: (route, status) -> count.
struct RegistryCounts {
  int64_t collectors_active = 0, collectors_draining = 0, collectors_dead = 0;
  int64_t tasks = 0, tasks_unassigned = 0;
  int64_t hosts = 0, hosts_enabled = 0, services_enabled = 0;
};
std::string RenderCoordinatorMetrics(const CoordinatorSelf& self,
                                     const std::optional<RegistryCounts>& counts,
                                     const std::map<std::pair<std::string, int>, uint64_t>& requests);

// ---- the API ------------------------------------------------------------------------------

class HttpApi {
 public:
  using SelfSource = std::function<CoordinatorSelf()>;

  // REQUIRES: `registry` outlives the API (or the API is stopped first).
  HttpApi(uv_loop_t* loop, pg::Client* registry, HttpApiOptions options, SelfSource self);
  ~HttpApi();
  HttpApi(const HttpApi&) = delete;
  HttpApi& operator=(const HttpApi&) = delete;

  // Listens on options.listen.
  Status Start();
  // Stops serving: requests waiting for the registry are answered 503. Idempotent.
  void Stop();
  int port() const { return server_ ? server_->port() : 0; }

 private:
  class Call;
  using Route = std::function<void(const HttpRequest&, Call)>;
  // kOpen: no token (/metrics); kRead: a token unless open_reads; kWrite: a token; kAdmin:
  // a token (users, credential profiles, settings: the admin role once sessions exist).
  enum class Access { kOpen, kRead, kWrite, kAdmin };
  // Registers a deferred route; auth and request counting are done here.
  void Add(const std::string& method, const std::string& prefix, Access access, Route route);
  void Register();
  // Runs one statement and answers the call with make(rows), or the registry's error.
  void Sql(Call call, std::string name, std::string sql, std::vector<pg::Value> params,
           std::function<Result<HttpResponse>(const pg::Rows&)> make);

  void SelfStatus(const HttpRequest& r, Call call);
  void Metrics(const HttpRequest& r, Call call);
  void HostRoute(const HttpRequest& r, Call call);
  void Collectors(const HttpRequest& r, Call call);
  void PatchCollector(const HttpRequest& r, Call call);
  void PostHost(const HttpRequest& r, Call call);
  void PatchHost(const HttpRequest& r, Call call);
  void DeleteHost(const HttpRequest& r, Call call);
  void PutMaintenance(const std::string& host, const HttpRequest& r, Call call);
  void DeleteMaintenance(const std::string& host, Call call);
  void Services(const HttpRequest& r, Call call);
  void PatchService(const HttpRequest& r, Call call);
  void Tasks(const HttpRequest& r, Call call);
  void Errors(const HttpRequest& r, Call call);

  // ---- the admin panel's routes (coordinator/panel_api.cc) ----
  //   GET    /api/v1/events                    server-sent events (hints: refetch)
  //   GET    /api/v1/hosts                     ?status= &plugin= &group= &q= &enabled= ...
  //   GET    /api/v1/complete                  ?field=host|group|plugin &prefix=
  //   POST   /api/v1/hosts/bulk                {"hosts", "action", "until"?, "group"?}
  //   GET    /api/v1/audit                     ?actor= &action= &object_type= &object= ...
  //   GET/POST /api/v1/credential-profiles, PATCH/DELETE /api/v1/credential-profiles/{name}
  //   GET    /api/v1/collectors/{name}/history ?minutes=60
  //   POST   /api/v1/probe                     {"uri", "credential_profile"?}
  //   GET    /api/v1/settings/zabbix
  struct Panel;  // events connection and streams, timers, running probes
  void RegisterPanel();  // called by Register()
  // Ends the event streams, the events connection, timers and probes (Stop() calls it before
  // stopping the server: an event stream still open then kept the process from exiting).
  void StopPanel();
  Status OpenEvents(const HttpRequest& r, std::shared_ptr<HttpServer::Stream> stream);
  // The session streams' re-check (OpenEvents): runs RecheckEventSessions in `in_ms` unless it
  // is due sooner already.
  void ScheduleEventsRecheck(uint64_t in_ms);
  void RecheckEventSessions();
  void PanelHostRoute(const HttpRequest& r, Call call);
  void PanelHosts(const HttpRequest& r, Call call);
  void PanelCollectorRoute(const HttpRequest& r, Call call);
  void CollectorHistory(const std::string& name, const HttpRequest& r, Call call);
  void Complete(const HttpRequest& r, Call call);
  void BulkHosts(const HttpRequest& r, Call call);
  void Audit(const HttpRequest& r, Call call);
  void CredentialProfiles(const HttpRequest& r, Call call);
  void PostCredentialProfile(const HttpRequest& r, Call call);
  void PatchCredentialProfile(const HttpRequest& r, Call call);
  void DeleteCredentialProfile(const HttpRequest& r, Call call);
  void Probe(const HttpRequest& r, Call call);
  void ZabbixSettings(const HttpRequest& r, Call call);
  void SampleLoadHistory();
  // shared_ptr: Panel is complete only in panel_api.cc (the deleter is bound there).
  std::shared_ptr<Panel> panel_;

  // ---- H-ui: the admin panel's static files (coordinator/http_ui.cc) ----
  // Serves options_.ui_dir at "/" when set; called from Register().
  void RegisterUi();

  // ---- H-auth: users and sessions (coordinator/session_api.cc) ----
  //   POST   /api/v1/session        {"user", "password"} -> {"user", "role", "csrf_token"} + cookie
  //   GET    /api/v1/session        the same object (no new token), or 401
  //   DELETE /api/v1/session        signs out (the session row is deleted, the cookie cleared)
  //   GET    /api/v1/users[/{name}] (admin) name, role, disabled, last_login, sessions
  //   POST   /api/v1/users          (admin) {"name", "role", "password"}
  //   PATCH  /api/v1/users/{name}   (admin) {"role"?, "password"?, "disabled"?}; a new
  //                                 password or disabled ends all the user's sessions
  //   DELETE /api/v1/users/{name}   (admin); the last enabled admin cannot be demoted,
  //                                 disabled or deleted (409)
  // Who a request comes from, once authenticated (Add() does it for every route).
  struct Principal {
    std::string name;                        // the user's name; options_.actor for the token
    auth::Role role = auth::Role::kViewer;
    bool session = false;                    // by session cookie (CSRF applies)
    std::string csrf_token;                  // the session's, when `session`
  };
  // Calls done(principal, {}) when `r` may use a route of `access`, else done(nullopt, the
  // refusal: 401/403/503). Asynchronous for session cookies (a registry query; nothing is
  // cached, so a deleted session stops working at once). `r` is copied by the caller.
  using AuthDone = std::function<void(std::optional<Principal>, HttpResponse)>;
  void Authenticate(std::shared_ptr<const HttpRequest> r, Access access, AuthDone done);
  // The session of the request's cookie: nullopt when there is none or it ended. `touch`:
  // counts as use (last_seen; the idle limit); false for checks the user did not ask for (an
  // open events stream's re-check).
  void LookupSession(const HttpRequest& r,
                     std::function<void(Result<std::optional<Principal>>)> done,
                     bool touch = true);
  void RegisterSessions();  // called by Register()
  void SessionRoute(const HttpRequest& r, Call call);
  void Login(const HttpRequest& r, Call call);
  void SessionInfo(const HttpRequest& r, Call call);
  void Logout(const HttpRequest& r, Call call);
  void UserRoute(const HttpRequest& r, Call call);
  void PostUser(const HttpRequest& r, Call call);
  void PatchUser(const std::string& name, const HttpRequest& r, Call call);
  void DeleteUser(const std::string& name, Call call);
  auth::LoginLimiter login_limiter_;
  std::map<std::string, int> logins_running_;  // source address -> password checks running

  // ---- H-disc: discovery and hosts by hand (coordinator/discovery_api.cc, issue 6) ----
  //   POST   /api/v1/discovery                 a trapline-discover report (open: its own
  //                                            enrolment secret / per-host token)
  //   DELETE /api/v1/discovery/tokens/{host}   forget a host's token (it may enrol again)
  //   POST   /api/v1/hosts/{name}/clone        {"to": [names]}: groups, enabled, services
  //   POST   /api/v1/hosts/{name}/services     {"plugin", "port", "uri"?, "credential_profile"?,
  //                                            "enabled"?}
  void RegisterDiscovery();  // called by Register()
  void Discovery(const HttpRequest& r, Call call);
  void DeleteHostToken(const HttpRequest& r, Call call);
  // POST /api/v1/hosts/{name}/...: called by PostHost when the path goes on after /hosts.
  void PostHostSub(const HttpRequest& r, Call call);
  void CloneHost(const std::string& host, const HttpRequest& r, Call call);
  void PostHostService(const std::string& host, const HttpRequest& r, Call call);
  std::unique_ptr<RateLimiter> discovery_by_peer_;
  std::unique_ptr<RateLimiter> discovery_by_token_;

  uv_loop_t* loop_;
  pg::Client* registry_;
  HttpApiOptions options_;
  SelfSource self_;
  std::unique_ptr<HttpServer> server_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace trapline::coordinator
