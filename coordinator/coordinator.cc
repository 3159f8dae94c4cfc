#include "coordinator/coordinator.h"

#include <cstdlib>
#include <fstream>

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <unordered_map>

#include "common/config.h"
#include "trapline/version.h"
#include "coordinator/migrations.h"
#include "coordinator/registry_schema.h"

namespace trapline::coordinator {

namespace {

// An overloaded collector sheds at most this often.
constexpr uint64_t kShedEveryMs = 30000;
// Collectors retry the registry at least every 4 s (ClusterMember's reconnect_max_s) and
// heartbeat within a second of reconnecting.
constexpr uint64_t kCollectorReconnectGraceMs = 5000;
constexpr double kShedFraction = 0.1;

std::string HostName() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0 || buf[0] == '\0') return "coordinator";
  return buf;
}

// Collectors' liveness from the database's own clock. $1: heartbeat timeout in seconds;
// $2: whether collectors may be declared dead now (not during the grace after the registry
// connection came back: collectors could not heartbeat while the registry was unreachable).
constexpr const char* kLivenessSql = R"sql(
WITH judged AS (
  SELECT id,
         CASE WHEN last_heartbeat >= now() - make_interval(secs => $1::float8)
              THEN 'active' ELSE 'dead' END AS verdict
  FROM collectors WHERE state IN ('active', 'dead'))
UPDATE collectors c SET state = j.verdict
FROM judged j
WHERE c.id = j.id AND c.state <> j.verdict AND (j.verdict = 'active' OR $2::boolean)
RETURNING c.name, c.state,
          COALESCE(round(extract(epoch FROM now() - c.last_heartbeat)::numeric, 1)::text, 'never')
)sql";

constexpr const char* kCollectorsSql = R"sql(
SELECT id, name, weight, state,
       CASE WHEN jsonb_typeof(load -> 'lag_p99_ms') = 'number'
            THEN (load ->> 'lag_p99_ms')::float8 END,
       protocol
FROM collectors ORDER BY id
)sql";

constexpr const char* kTasksSql = "SELECT id, cost, collector_id, generation FROM tasks ORDER BY id";

// The moves in one statement, hence one transaction: the task rows (only those still as they
// were read: same collector, same generation) and one NOTIFY per collector concerned, which
// PostgreSQL delivers at commit. The fence locks the leader row FOR SHARE: a successor's epoch
// bump either waits for this write or makes the fence (and so the write) empty.
constexpr const char* kWriteMovesSql = R"sql(
WITH fence AS (
  SELECT epoch FROM coordinator_leader WHERE id = 1 AND epoch = $1::bigint FOR SHARE),
v AS (
  SELECT * FROM unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[])
    AS v(id, old_collector, new_collector, gen)),
moved AS (
  UPDATE tasks t
  SET collector_id = v.new_collector, generation = t.generation + 1, assigned_at = now()
  FROM v, fence
  WHERE t.id = v.id AND t.generation = v.gen AND t.collector_id IS NOT DISTINCT FROM v.old_collector
  RETURNING t.id, v.old_collector, v.new_collector),
notified AS (
  SELECT pg_notify('trapline_assign', c.name) FROM collectors c
  WHERE c.id IN (SELECT old_collector FROM moved UNION SELECT new_collector FROM moved))
SELECT (SELECT count(*) FROM moved), (SELECT count(*) FROM notified), (SELECT count(*) FROM fence)
)sql";

Result<int64_t> ParseInt(const pg::Value& v, std::string_view what) {
  if (!v) return Status::InvalidArgument(std::string(what) + " is NULL");
  int64_t out = 0;
  auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), out);
  if (ec != std::errc() || p != v->data() + v->size()) {
    return Status::InvalidArgument(std::string(what) + " '" + *v + "' is not an integer");
  }
  return out;
}

Result<double> ParseDouble(const pg::Value& v, std::string_view what) {
  if (!v) return Status::InvalidArgument(std::string(what) + " is NULL");
  double out = 0;
  auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), out);
  if (ec != std::errc() || p != v->data() + v->size() || !std::isfinite(out)) {
    return Status::InvalidArgument(std::string(what) + " '" + *v + "' is not a finite number");
  }
  return out;
}

std::string Join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
  return out;
}

}  // namespace

// ---- options ----------------------------------------------------------------------------------

Result<CoordinatorOptions> CoordinatorOptions::FromConfig(ConfigTable* root) {
  CoordinatorOptions o;
  TRAPLINE_ASSIGN_OR_RETURN(ConfigTable * c, root->GetTable("coordinator"));
  TRAPLINE_ASSIGN_OR_RETURN(o.name, c->GetString("name", ""));
  TRAPLINE_ASSIGN_OR_RETURN(o.registry, c->GetString("registry", ""));
  TRAPLINE_ASSIGN_OR_RETURN(o.heartbeat_timeout_s, c->GetDouble("heartbeat_timeout", 3, 0.5, 3600));
  TRAPLINE_ASSIGN_OR_RETURN(o.overload_lag_ms, c->GetDouble("overload_lag_ms", 500, 0, 1e7));
  TRAPLINE_ASSIGN_OR_RETURN(o.cost_refresh_s, c->GetDouble("cost_refresh", 30, 0, 86400));
  TRAPLINE_ASSIGN_OR_RETURN(o.log_level, c->GetString("log_level", "info"));
  TRAPLINE_ASSIGN_OR_RETURN(ConfigTable * z, root->GetTable("zabbix"));
  TRAPLINE_ASSIGN_OR_RETURN(o.zabbix.api.url, z->GetString("url", ""));
  TRAPLINE_ASSIGN_OR_RETURN(o.zabbix.api.user, z->GetString("user", ""));
  TRAPLINE_ASSIGN_OR_RETURN(std::string password_file, z->GetString("password_file", ""));
  TRAPLINE_ASSIGN_OR_RETURN(std::string token_file, z->GetString("token_file", ""));
  TRAPLINE_ASSIGN_OR_RETURN(o.zabbix.api.timeout_s, z->GetDouble("timeout", 30, 1, 600));
  TRAPLINE_ASSIGN_OR_RETURN(o.zabbix.sync.trapper_hosts, z->GetString("trapper_hosts", ""));
  TRAPLINE_ASSIGN_OR_RETURN(o.zabbix.sync.history, z->GetString("history", "14d"));
  TRAPLINE_ASSIGN_OR_RETURN(o.zabbix.sync.trends, z->GetString("trends", "365d"));
  TRAPLINE_ASSIGN_OR_RETURN(o.zabbix.sync.delete_vanished, z->GetBool("delete_vanished", false));
  TRAPLINE_ASSIGN_OR_RETURN(std::string group, z->GetString("host_group", "trapline"));
  o.zabbix.sync.host_groups = {group};
  TRAPLINE_ASSIGN_OR_RETURN(ConfigTable * h, root->GetTable("http"));
  TRAPLINE_ASSIGN_OR_RETURN(o.http.listen, h->GetString("listen", ""));
  TRAPLINE_ASSIGN_OR_RETURN(std::string api_token_file, h->GetString("api_token_file", ""));
  TRAPLINE_ASSIGN_OR_RETURN(o.http.open_reads, h->GetBool("open_reads", false));
  // H-auth: session cookies (Secure behind TLS) and how long sessions last, in seconds.
  TRAPLINE_ASSIGN_OR_RETURN(o.http.secure_cookies, h->GetBool("secure_cookies", false));
  TRAPLINE_ASSIGN_OR_RETURN(o.http.session_idle_s, h->GetDouble("session_idle", 12 * 3600, 60, 30 * 86400));
  TRAPLINE_ASSIGN_OR_RETURN(o.http.session_max_s, h->GetDouble("session_max", 7 * 86400, 60, 365 * 86400));
  // H-ui: the admin panel's built files (ui/dist); empty: no panel.
  TRAPLINE_ASSIGN_OR_RETURN(o.http.ui_dir, h->GetString("ui_dir", ""));
  // H-panelapi: what the panel's routes need (panel_api.cc): [zabbix] frontend_url for links
  // to Zabbix dashboards, the Zabbix settings shown (no secrets), how often the leader samples
  // collectors' load, the registry for the live events' own LISTEN connection.
  TRAPLINE_ASSIGN_OR_RETURN(o.http.zabbix_frontend_url, z->GetString("frontend_url", ""));
  if (!o.http.zabbix_frontend_url.empty() && o.http.zabbix_frontend_url.rfind("http://", 0) != 0 &&
      o.http.zabbix_frontend_url.rfind("https://", 0) != 0) {
    return Status::InvalidArgument(root->origin() + ": [zabbix] frontend_url must start with http:// or https://");
  }
  TRAPLINE_ASSIGN_OR_RETURN(o.http.load_history_interval_s,
                            c->GetDouble("load_history_interval", 15, 1, 3600));
  o.http.zabbix_url = o.zabbix.api.url;
  o.http.zabbix_user = o.zabbix.api.user;
  o.http.zabbix_host_group = group;
  o.http.events_conninfo = o.registry;
  // H-disc: [discovery] (discovery_api.cc): the enrolment secret, when a service missing from
  // reports is gone, rate limits per source address and per host token.
  TRAPLINE_ASSIGN_OR_RETURN(ConfigTable * d, root->GetTable("discovery"));
  TRAPLINE_ASSIGN_OR_RETURN(std::string enrolment_secret_file, d->GetString("enrolment_secret_file", ""));
  TRAPLINE_ASSIGN_OR_RETURN(int64_t gone_after, d->GetInt("gone_after_reports", 3, 1, 1000));
  o.http.discovery.gone_after_reports = static_cast<int>(gone_after);
  TRAPLINE_ASSIGN_OR_RETURN(o.http.discovery.rate_per_minute, d->GetDouble("rate_per_minute", 6, 0.01, 1e6));
  TRAPLINE_ASSIGN_OR_RETURN(o.http.discovery.burst, d->GetDouble("burst", 3, 1, 1e6));
  // Unknown keys first: a misspelt 'registry' is reported as such, not as a missing one.
  TRAPLINE_RETURN_IF_ERROR(root->CheckKnown());
  if (o.name.empty()) o.name = HostName();
  if (o.registry.empty()) {
    return Status::InvalidArgument(root->origin() +
                                   ": [coordinator] has no 'registry' (the PostgreSQL URI of the "
                                   "registry database)");
  }
  // Secrets of the Zabbix API from files (first line), so they stay out of the config.
  auto first_line = [&](const std::string& path, const char* what) -> Result<std::string> {
    std::ifstream in(path);
    std::string line;
    if (!in || !std::getline(in, line)) {
      return Status::InvalidArgument(root->origin() + ": [zabbix] " + what + " " + path + " cannot be read");
    }
    return line;
  };
  if (!password_file.empty()) {
    TRAPLINE_ASSIGN_OR_RETURN(o.zabbix.api.password, first_line(password_file, "password_file"));
  }
  if (!token_file.empty()) {
    TRAPLINE_ASSIGN_OR_RETURN(o.zabbix.api.token, first_line(token_file, "token_file"));
  }
  if (!api_token_file.empty()) {
    std::ifstream in(api_token_file);
    std::string line;
    if (!in || !std::getline(in, line)) {
      return Status::InvalidArgument(root->origin() + ": [http] api_token_file " + api_token_file +
                                     " cannot be read");
    }
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    // Short tokens can be guessed; the API can change what is monitored.
    if (line.size() < 16) {
      return Status::InvalidArgument(root->origin() + ": [http] api_token_file " + api_token_file +
                                     ": the token must be at least 16 characters");
    }
    o.http.api_token = line;
  }
  if (!enrolment_secret_file.empty()) {
    std::ifstream in(enrolment_secret_file);
    std::string line;
    if (!in || !std::getline(in, line)) {
      return Status::InvalidArgument(root->origin() + ": [discovery] enrolment_secret_file " +
                                     enrolment_secret_file + " cannot be read");
    }
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    // Whoever holds it can add hosts to the registry.
    if (line.size() < 16) {
      return Status::InvalidArgument(root->origin() + ": [discovery] enrolment_secret_file " +
                                     enrolment_secret_file + ": the secret must be at least 16 characters");
    }
    o.http.discovery.enrolment_secret = line;
  }
  if (!o.http.ui_dir.empty()) {
    if (std::string why = CheckUiDir(o.http.ui_dir); !why.empty()) {
      return Status::InvalidArgument(root->origin() + ": [http] ui_dir " + why);
    }
  }
  if (!o.http.listen.empty() && o.http.api_token.empty()) {
    return Status::InvalidArgument(root->origin() +
                                   ": [http] listen needs api_token_file (the API's bearer token)");
  }
  if (o.zabbix.enabled() && o.zabbix.api.token.empty() &&
      (o.zabbix.api.user.empty() || o.zabbix.api.password.empty())) {
    return Status::InvalidArgument(root->origin() +
                                   ": [zabbix] needs token_file, or user and password_file");
  }
  // Checked without I/O; libpq's reason never repeats the string (it may hold a password).
  if (auto p = pg::BuildConnParams(o.registry, "trapline", 1); !p.ok()) {
    return p.status().WithContext(root->origin() + ": [coordinator] registry");
  }
  return o;
}

Result<CoordinatorOptions> CoordinatorOptions::FromConfigFile(const std::string& path) {
  TRAPLINE_ASSIGN_OR_RETURN(ConfigTable root, ConfigTable::LoadFile(path));
  return FromConfig(&root);
}

// ---- pure parts -------------------------------------------------------------------------------

Result<std::vector<CollectorRow>> ParseCollectorRows(const pg::Rows& rows) {
  std::vector<CollectorRow> out;
  out.reserve(rows.rows.size());
  for (const auto& r : rows.rows) {
    if (r.size() < 5) return Status::Internal("collectors: a row has " + std::to_string(r.size()) + " columns");
    CollectorRow c;
    TRAPLINE_ASSIGN_OR_RETURN(c.id, ParseInt(r[0], "collectors.id"));
    c.name = r[1].value_or("");
    std::string where = "collector " + c.name + " (id " + std::to_string(c.id) + ")";
    TRAPLINE_ASSIGN_OR_RETURN(c.weight, ParseDouble(r[2], where + ": weight"));
    if (!(c.weight > 0)) return Status::InvalidArgument(where + ": weight must be > 0");
    c.state = r[3].value_or("");
    if (c.state != "active" && c.state != "draining" && c.state != "dead") {
      return Status::InvalidArgument(where + ": unknown state '" + c.state + "'");
    }
    if (r[4]) {
      auto lag = ParseDouble(r[4], where + ": load.lag_p99_ms");
      if (lag.ok()) c.lag_p99_ms = *lag;  // a nonsense load report only disables shedding
    }
    if (r.size() > 5) {
      TRAPLINE_ASSIGN_OR_RETURN(int64_t protocol, ParseInt(r[5], where + ": protocol"));
      c.protocol = static_cast<int>(std::clamp<int64_t>(protocol, INT32_MIN, INT32_MAX));
    }
    out.push_back(std::move(c));
  }
  return out;
}

Result<std::vector<TaskRow>> ParseTaskRows(const pg::Rows& rows) {
  std::vector<TaskRow> out;
  out.reserve(rows.rows.size());
  for (const auto& r : rows.rows) {
    if (r.size() < 4) return Status::Internal("tasks: a row has " + std::to_string(r.size()) + " columns");
    TaskRow t;
    TRAPLINE_ASSIGN_OR_RETURN(t.id, ParseInt(r[0], "tasks.id"));
    std::string where = "task " + std::to_string(t.id);
    TRAPLINE_ASSIGN_OR_RETURN(t.cost, ParseDouble(r[1], where + ": cost"));
    if (!(t.cost > 0)) return Status::InvalidArgument(where + ": cost must be > 0");
    if (r[2]) {
      TRAPLINE_ASSIGN_OR_RETURN(CollectorId c, ParseInt(r[2], where + ": collector_id"));
      t.collector = c;
    }
    TRAPLINE_ASSIGN_OR_RETURN(t.generation, ParseInt(r[3], where + ": generation"));
    out.push_back(t);
  }
  return out;
}

std::string ProtocolMismatch(const CollectorRow& c, int ours) {
  if (c.protocol == ours) return "";
  std::string head = "collector " + c.name + " speaks cluster protocol " + std::to_string(c.protocol) +
                     " and this coordinator speaks " + std::to_string(ours) + ": ";
  if (c.protocol < ours) return head + "it is older than the coordinators; upgrade trapline on it";
  return head + "it is newer than this coordinator; upgrade the coordinators";
}

std::string MoveSummary(size_t moves, const TickEvents& e) {
  std::vector<std::string> why;
  for (const auto& n : e.left) why.push_back("collector " + n + " left");
  for (const auto& n : e.joined) why.push_back("collector " + n + " joined");
  for (const auto& n : e.overloaded) why.push_back("collector " + n + " overloaded");
  if (e.new_tasks > 0) {
    why.push_back(std::to_string(e.new_tasks) + " new task" + (e.new_tasks == 1 ? "" : "s"));
  }
  if (e.orphaned > 0) {
    why.push_back(std::to_string(e.orphaned) + " orphaned task" + (e.orphaned == 1 ? "" : "s"));
  }
  if (why.empty()) why.push_back(e.takeover ? "takeover" : "rebalance");
  std::string out = std::to_string(moves) + (moves == 1 ? " move (" : " moves (");
  for (size_t i = 0; i < why.size(); ++i) out += (i ? "; " : "") + why[i];
  return out + ")";
}

// ---- the process --------------------------------------------------------------------------------

struct Coordinator::TickState {
  uint64_t leadership = 0;
  TickEvents events;
  std::vector<CollectorRow> collectors;
  std::vector<TaskRow> tasks;
  Status error;
};

namespace {
pg::Client::Options RegistryOptions(const CoordinatorOptions& o) {
  pg::Client::Options c;
  c.conninfo = o.registry;
  c.name = "registry";
  c.application_name = "trapline coordinator " + o.name;
  c.connect_timeout_s = 5;
  c.query_timeout_s = 30;  // a migration may take a while; ticks are far below
  c.reconnect_base_s = 0.5;
  c.reconnect_max_s = 5;
  return c;
}
}  // namespace

Coordinator::Coordinator(uv_loop_t* loop, CoordinatorOptions options)
    : loop_(loop),
      options_(std::move(options)),
      registry_(loop, RegistryOptions(options_)),
      tick_timer_(loop) {
  LeaderElector::Options eo;
  eo.conninfo = options_.registry;
  eo.name = options_.name;
  eo.lock_key = kLeaderLockKey;
  elector_ = std::make_unique<LeaderElector>(
      loop, eo, [this](Role role, int64_t epoch, const std::string& reason) {
        OnRole(role, epoch, reason);
      });
  registry_.SetStateCallback(
      [this](bool connected, const Status& why) { OnRegistryState(connected, why); });
  if (options_.zabbix.enabled()) {
    zabbix_sync_ = std::make_unique<ZabbixSyncWorker>(loop, &registry_, options_.name, options_.zabbix);
    // Collectors announce the entities they found; the leader syncs that task's host.
    (void)registry_.Listen("trapline_entities");
    registry_.SetNotifyCallback([this](const std::string& channel, const std::string& payload) {
      if (channel != "trapline_entities" || !leader_ || payload.empty()) return;
      char* end = nullptr;
      long long task = std::strtoll(payload.c_str(), &end, 10);
      if (end != nullptr && *end == '\0' && task > 0) zabbix_sync_->Request(task);
    });
  }
}

Coordinator::~Coordinator() {
  stopping_ = true;
  api_.reset();
  elector_.reset();
  registry_.Close();
}

void Coordinator::Start() {
  spdlog::info("[coordinator] {}: starting (heartbeat_timeout={}s overload_lag_ms={})",
               options_.name, options_.heartbeat_timeout_s, options_.overload_lag_ms);
  if (!options_.http.listen.empty()) {
    api_ = std::make_unique<HttpApi>(loop_, &registry_, options_.http, [this] { return Self(); });
    if (Status st = api_->Start(); !st.ok()) return Fatal(st);
  }
  registry_.Start();
}

CoordinatorSelf Coordinator::Self() const {
  CoordinatorSelf s;
  s.name = options_.name;
  s.leader = leader_;
  s.epoch = epoch_;
  s.schema_version = schema_version_;
  s.registry_connected = registry_.connected();
  s.zabbix_sync = zabbix_sync_ != nullptr;
  if (zabbix_sync_) {
    s.syncs_done = zabbix_sync_->syncs_done();
    s.syncs_failed = zabbix_sync_->syncs_failed();
    s.syncs_queued = zabbix_sync_->queued();
  }
  return s;
}

void Coordinator::Stop() {
  if (stopping_) return;
  stopping_ = true;
  tick_timer_.Stop();
  if (api_) api_->Stop();
  elector_->Stop("stopping");
  registry_.Close();
}

void Coordinator::Fatal(const Status& st) {
  spdlog::error("[coordinator] {}", st.message());
  Stop();
  if (on_fatal_) on_fatal_(st);
}

void Coordinator::OnRegistryState(bool connected, const Status& why) {
  if (stopping_) return;
  if (!connected) {
    spdlog::debug("[coordinator] registry: {}", why.message());
    return;
  }
  registry_reconnected_ = registry_up_since_ms_ != 0;
  registry_up_since_ms_ = uv_now(loop_);
  spdlog::info("[coordinator] registry: connected");
  if (!migrated_ && !migrating_) Migrate();
}

void Coordinator::Migrate() {
  migrating_ = true;
  MigrateRegistry(&registry_, [this](Result<MigrationReport> r) {
    migrating_ = false;
    if (stopping_) return;
    if (!r.ok()) {
      if (r.status().code() == StatusCode::kUnavailable) {
        spdlog::warn("[coordinator] registry schema: {} (retrying when the registry is back)",
                     r.status().message());
        return;
      }
      return Fatal(r.status());
    }
    migrated_ = true;
    schema_version_ = r->to_version;
    if (r->applied.empty()) {
      spdlog::info("[coordinator] registry schema: up to date at version {}", r->to_version);
    } else {
      spdlog::info("[coordinator] registry schema: migrated from version {} to {} ({})",
                   r->from_version, r->to_version, Join(r->applied));
    }
    spdlog::info("[coordinator] leader: standing by (trying the lock every second)");
    elector_->Start();
  });
}

void Coordinator::OnRole(Role role, int64_t epoch, const std::string& reason) {
  ++leadership_;
  tick_running_ = false;
  if (role == Role::kLeader) {
    leader_ = true;
    epoch_ = epoch;
    first_tick_ = true;
    last_shed_ms_.clear();
    weight_factor_.clear();
    spdlog::info("[coordinator] leader: acquired epoch={} name={}", epoch, options_.name);
    // What changed while another coordinator (or none) led: every synced host once more.
    if (zabbix_sync_) zabbix_sync_->RequestAll();
    uint64_t ms = static_cast<uint64_t>(options_.assign_interval_s * 1000);
    tick_timer_.Start(0, ms, [this] { Tick(); });
    return;
  }
  bool was = leader_;
  leader_ = false;
  tick_timer_.Stop();
  if (zabbix_sync_) zabbix_sync_->Cancel();
  if (!was) return;
  if (stopping_) {
    spdlog::info("[coordinator] leader: released epoch={} ({})", epoch_, reason);
  } else {
    spdlog::warn("[coordinator] leader: lost epoch={} ({})", epoch_, reason);
  }
}

void Coordinator::Tick() {
  if (!leader_ || tick_running_ || stopping_ || !registry_.connected() || !migrated_) return;
  tick_running_ = true;
  ReconcileTasks();
  RefineCosts();
  if (zabbix_sync_) {
    zabbix_sync_->PollMaintenance();
    zabbix_sync_->PollCollectorHosts();
  }
  auto tick = std::make_shared<TickState>();
  tick->leadership = leadership_;
  tick->events.takeover = first_tick_;
  // Collectors could not heartbeat while the registry was unreachable from here (probably
  // from them too): give them one timeout after the connection is back, plus the time their
  // own reconnect backoff may take (kCollectorReconnectGraceMs, after a lost connection),
  // before calling any of them dead. A collector called dead while it still samples would
  // have its tasks started elsewhere: sampled twice until it reconnects and reads its
  // assignments.
  uint64_t timeout_ms = static_cast<uint64_t>(options_.heartbeat_timeout_s * 1000);
  uint64_t grace_ms = timeout_ms + (registry_reconnected_ ? kCollectorReconnectGraceMs : 0);
  bool may_mark_dead = uv_now(loop_) >= registry_up_since_ms_ + grace_ms;
  registry_.Query("mark collectors", kLivenessSql,
                  {std::to_string(options_.heartbeat_timeout_s), may_mark_dead ? "true" : "false"},
                  [this, tick](Result<pg::Rows> r) {
                    if (tick->leadership != leadership_) return;
                    if (!r.ok()) {
                      if (tick->error.ok()) tick->error = r.status();
                      return;
                    }
                    for (const auto& row : r->rows) {
                      std::string name = row.size() > 0 ? row[0].value_or("?") : "?";
                      std::string state = row.size() > 1 ? row[1].value_or("?") : "?";
                      std::string age = row.size() > 2 ? row[2].value_or("?") : "?";
                      if (state == "dead") {
                        spdlog::warn("[coordinator] collector {} dead: no heartbeat for {} s",
                                     name, age);
                        tick->events.left.push_back(name);
                      } else {
                        spdlog::info("[coordinator] collector {} alive: heartbeat {} s ago",
                                     name, age);
                        tick->events.joined.push_back(name);
                      }
                    }
                  });
  registry_.Query("read collectors", kCollectorsSql, {}, [this, tick](Result<pg::Rows> r) {
    if (tick->leadership != leadership_) return;
    if (!r.ok()) {
      if (tick->error.ok()) tick->error = r.status();
      return;
    }
    auto rows = ParseCollectorRows(*r);
    if (!rows.ok()) {
      if (tick->error.ok()) tick->error = rows.status().WithContext("registry row");
      return;
    }
    tick->collectors = std::move(rows).value();
  });
  registry_.Query("read tasks", kTasksSql, {}, [this, tick](Result<pg::Rows> r) {
    if (tick->leadership != leadership_) return;
    if (!r.ok()) {
      if (tick->error.ok()) tick->error = r.status();
      return FinishTick(tick->error);
    }
    auto rows = ParseTaskRows(*r);
    if (!rows.ok()) {
      if (tick->error.ok()) tick->error = rows.status().WithContext("registry row");
      return FinishTick(tick->error);
    }
    tick->tasks = std::move(rows).value();
    if (!tick->error.ok()) return FinishTick(tick->error);
    Assign(tick);
  });
}

// A task's cost is in units of 10 µs of collector loop time per second. The plugin declares
// an estimate (ReconcileTasks); RefineCosts moves it towards what the collector running the
// task measures. Measured costs are bounded to [0.1, 10000] whatever a load report says.
void Coordinator::RefineCosts() {
  uint64_t now = uv_now(loop_);
  if (options_.cost_refresh_s <= 0 ||
      now - last_cost_refresh_ms_ < static_cast<uint64_t>(options_.cost_refresh_s * 1000)) {
    return;
  }
  last_cost_refresh_ms_ = now;
  // Half-way towards the measurement, and only when that changes the cost by more than 10%:
  // costs settle within about 20% of what is measured, and a task's cost is not rewritten
  // (nor the assignment reconsidered) for noise. Only the collector that runs the task
  // reports for it; the write is fenced by the leader epoch like the moves.
  registry_.Query(
      "refine task costs",
      "WITH fence AS (SELECT epoch FROM coordinator_leader WHERE id = 1 AND epoch = $1::bigint FOR SHARE), "
      "m AS (SELECT t.id, t.cost AS old, "
      "  greatest(0.1, least(10000, (e.value)::text::float8 / 10)) AS measured "
      "  FROM collectors c CROSS JOIN LATERAL jsonb_each(CASE WHEN jsonb_typeof(c.load -> 'task_us') = 'object' "
      "    THEN c.load -> 'task_us' ELSE '{}'::jsonb END) e "
      "  JOIN tasks t ON t.collector_id = c.id AND e.key ~ '^[0-9]{1,18}$' AND t.id = e.key::bigint "
      "  WHERE c.state = 'active' AND jsonb_typeof(e.value) = 'number'), "
      "n AS (SELECT id, old, round((0.5 * old + 0.5 * measured)::numeric, 2)::float8 AS new FROM m), "
      "u AS (UPDATE tasks t SET cost = n.new FROM n, fence "
      "  WHERE t.id = n.id AND abs(n.new - n.old) > 0.1 * n.old RETURNING t.id) "
      "SELECT (SELECT count(*) FROM u), (SELECT count(*) FROM m)",
      {std::to_string(epoch_)}, [](Result<pg::Rows> r) {
        if (!r.ok()) {
          spdlog::warn("[coordinator] refine task costs: {}", r.status().message());
          return;
        }
        if (r->rows.empty() || r->rows[0].size() < 2) return;
        std::string changed = r->rows[0][0].value_or("0");
        if (changed != "0") {
          spdlog::info("[coordinator] costs: {} of {} measured tasks refined", changed,
                       r->rows[0][1].value_or("?"));
        }
      });
}

void Coordinator::ReconcileTasks() {
  // The cost a plugin declares, in units of 10 µs/s of collector loop time (RefineCosts):
  // a Linux host over SSH costs the collector most (SFTP reads of ~15 files, ~250 µs/s), a
  // PostgreSQL instance one round trip of several statements (~90 µs/s), a Redis one INFO
  // (~35 µs/s), as measured by bench/ on this project's collectors.
  registry_.Query(
      "reconcile tasks",
      "WITH wanted AS (SELECT s.id, s.plugin FROM services s JOIN hosts h ON h.id = s.host_id "
      "  WHERE s.enabled AND h.enabled AND NOT s.gone AND s.plugin = ANY ($1::text[])), "
      "ins AS (INSERT INTO tasks (service_id, plugin, cost) "
      "  SELECT id, plugin, CASE plugin WHEN 'linux' THEN 25 WHEN 'postgresql' THEN 9 ELSE 3.5 END FROM wanted "
      "  ON CONFLICT (service_id) DO NOTHING RETURNING id), "
      "del AS (DELETE FROM tasks t WHERE NOT EXISTS (SELECT 1 FROM wanted w WHERE w.id = t.service_id) "
      "  RETURNING t.id, t.collector_id), "
      "told AS (SELECT pg_notify('" + std::string(kAssignChannel) + "', c.name) FROM collectors c "
      "  WHERE c.id IN (SELECT collector_id FROM del)) "
      "SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM del), (SELECT count(*) FROM told)",
      {TaskPluginsArray()}, [this](Result<pg::Rows> r) {
        if (!r.ok()) {
          spdlog::warn("[coordinator] {}", r.status().message());
          return;
        }
        if (r->rows.empty() || r->rows[0].size() < 2) return;
        std::string added = r->rows[0][0].value_or("0"), removed = r->rows[0][1].value_or("0");
        if (added != "0" || removed != "0") {
          spdlog::info("[coordinator] tasks: {} new (services enabled), {} removed (services disabled or gone)",
                       added, removed);
        }
      });
}

void Coordinator::Assign(std::shared_ptr<TickState> tick) {
  uint64_t now = uv_now(loop_);
  std::vector<CollectorInfo> collectors;
  collectors.reserve(tick->collectors.size());
  size_t active = 0;
  for (const auto& c : tick->collectors) {
    CollectorInfo ci;
    ci.id = c.id;
    ci.weight = c.weight;
    std::string mismatch = ProtocolMismatch(c, kClusterProtocol);
    if (!mismatch.empty()) {
      // It gets no tasks (those it holds move away, as from a draining one); the rest of the
      // cluster goes on. Said once per collector and protocol, in the log and the errors table.
      auto [it, fresh] = refused_protocol_.try_emplace(c.id, c.protocol);
      if (fresh || it->second != c.protocol) {
        it->second = c.protocol;
        spdlog::error("[coordinator] {}; it gets no tasks", mismatch);
        registry_.Query("record protocol mismatch",
                        "INSERT INTO errors (collector_id, message) VALUES ($1::bigint, $2)",
                        {std::to_string(c.id), mismatch + "; it gets no tasks"},
                        [](Result<pg::Rows>) {});
      }
      ci.state = CollectorState::kDraining;
      collectors.push_back(ci);
      continue;
    }
    if (refused_protocol_.erase(c.id) > 0) {
      spdlog::info("[coordinator] collector {} speaks cluster protocol {} now; it takes tasks again",
                   c.name, c.protocol);
    }
    if (c.state == "active") {
      ci.state = CollectorState::kActive;
      ++active;
      bool over = options_.overload_lag_ms > 0 && c.lag_p99_ms && *c.lag_p99_ms > options_.overload_lag_ms;
      // What a collector shed must not flow back on the next rebalance: its weight counts
      // reduced by what it shed, and recovers 1% per tick once its lag is below the threshold.
      auto factor = weight_factor_.find(c.id);
      if (factor != weight_factor_.end()) {
        if (!over) factor->second = std::min(1.0, factor->second + 0.01);
        ci.weight = c.weight * factor->second;
        if (factor->second >= 1.0) weight_factor_.erase(factor);
      }
      if (over) {
        auto it = last_shed_ms_.find(c.id);
        if (it == last_shed_ms_.end() || now - it->second >= kShedEveryMs) {
          ci.state = CollectorState::kOverloaded;
          ci.shed_fraction = kShedFraction;
          tick->events.overloaded.push_back(c.name);
        }
      }
    } else {
      ci.state = CollectorState::kDraining;
    }
    collectors.push_back(ci);
  }
  if (active == 0) {
    // Unassigning every task would make the collectors' return a full reshuffle; keep the
    // placements until a collector is alive again.
    if (last_unassigned_ != tick->tasks.size()) {
      spdlog::warn("[coordinator] assign: no active collector; {} tasks keep their placements",
                   tick->tasks.size());
      last_unassigned_ = tick->tasks.size();
    }
    first_tick_ = false;
    return FinishTick(Status::OK());
  }
  std::vector<TaskInfo> tasks;
  tasks.reserve(tick->tasks.size());
  for (const auto& t : tick->tasks) {
    tasks.push_back(TaskInfo{t.id, t.cost, t.collector});
    if (!t.collector) ++tick->events.new_tasks;
  }
  auto a = ComputeAssignment(collectors, tasks);
  if (!a.ok()) return FinishTick(a.status().WithContext("assign"));
  // A collector that shed counts from now on with the weight whose share is the load it kept
  // (w' = L * W_others / (T - L)), so the next rebalance does not hand its tasks back.
  double total_cost = 0, other_weight = 0;
  for (const auto& l : a->loads) total_cost += l.load;
  for (const auto& c : tick->collectors) {
    for (const auto& o : tick->events.overloaded) {
      if (o != c.name) continue;
      last_shed_ms_[c.id] = now;
      other_weight = 0;
      double kept = 0;
      for (const auto& l : a->loads) {
        if (l.id == c.id) {
          kept = l.load;
        } else if (l.state == CollectorState::kActive) {
          other_weight += l.weight;
        }
      }
      if (kept > 0 && total_cost > kept && other_weight > 0 && c.weight > 0) {
        weight_factor_[c.id] = std::min(1.0, kept * other_weight / (total_cost - kept) / c.weight);
      }
    }
  }
  tick->events.orphaned = a->orphaned.size();
  if (a->unassigned.size() != last_unassigned_) {
    if (!a->unassigned.empty()) {
      spdlog::warn("[coordinator] assign: {} tasks unassigned", a->unassigned.size());
    }
    last_unassigned_ = a->unassigned.size();
  }
  first_tick_ = false;
  if (a->moves.empty()) return FinishTick(Status::OK());
  WriteMoves(tick, *a);
}

void Coordinator::WriteMoves(std::shared_ptr<TickState> tick, const Assignment& a) {
  std::unordered_map<TaskId, int64_t> gen;
  for (const auto& t : tick->tasks) gen[t.id] = t.generation;
  std::unordered_map<CollectorId, std::string> names;
  for (const auto& c : tick->collectors) names[c.id] = c.name;
  std::vector<std::optional<int64_t>> ids, olds, news, gens;
  for (const auto& m : a.moves) {
    ids.emplace_back(m.task);
    olds.emplace_back(m.from);
    news.emplace_back(m.to);
    gens.emplace_back(gen[m.task]);
    auto name = [&](const std::optional<CollectorId>& c) {
      return c ? (names.count(*c) ? names[*c] : std::to_string(*c)) : std::string("-");
    };
    spdlog::debug("[coordinator] assign: task {} {} -> {}", m.task, name(m.from), name(m.to));
  }
  std::string summary = MoveSummary(a.moves.size(), tick->events);
  std::string loads;
  for (const auto& l : a.loads) {
    if (l.state == CollectorState::kDraining && l.tasks == 0) continue;
    loads += (loads.empty() ? "" : " ") + names[l.id] + "=" + std::to_string(l.tasks);
  }
  size_t planned = a.moves.size();
  registry_.Query(
      "write assignment", kWriteMovesSql,
      {std::to_string(epoch_), pg::Int64ArrayLiteral(ids), pg::Int64ArrayLiteral(olds),
       pg::Int64ArrayLiteral(news), pg::Int64ArrayLiteral(gens)},
      [this, tick, summary, loads, planned](Result<pg::Rows> r) {
        if (tick->leadership != leadership_) return;
        if (!r.ok()) return FinishTick(r.status());
        if (r->rows.empty() || r->rows[0].size() < 3) {
          return FinishTick(Status::ProtocolError("write assignment: no counts returned"));
        }
        const auto& row = r->rows[0];
        if (row[2].value_or("0") == "0") {
          tick_running_ = false;
          spdlog::warn("[coordinator] leader: epoch {} superseded by another coordinator; "
                       "nothing written, stepping down", epoch_);
          elector_->Restart("epoch superseded");
          return;
        }
        size_t moved = static_cast<size_t>(std::atoll(row[0].value_or("0").c_str()));
        if (moved == planned) {
          spdlog::info("[coordinator] assign: {}; tasks per collector: {}", summary, loads);
        } else {
          spdlog::warn("[coordinator] assign: {} of {} moves written (the other task rows changed "
                       "meanwhile; the next tick retries): {}",
                       moved, planned, summary);
        }
        FinishTick(Status::OK());
      });
}

void Coordinator::FinishTick(const Status& st) {
  tick_running_ = false;
  if (st.ok()) {
    if (tick_errors_.Recovered()) spdlog::info("[coordinator] assign: ticks succeed again");
    return;
  }
  int suppressed = 0;
  if (tick_errors_.ShouldLog(std::chrono::steady_clock::now(), &suppressed)) {
    spdlog::warn("[coordinator] assign: tick failed: {}{}", st.message(),
                 suppressed > 0 ? " (" + std::to_string(suppressed) + " more since)" : "");
  }
}

}  // namespace trapline::coordinator
