#include "collector/cluster_member.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <set>

#include <nlohmann/json.hpp>

#include "common/log.h"
#include "trapline/version.h"

namespace trapline {

using nlohmann::json;

namespace {

constexpr const char* kAssignChannel = "trapline_assign";

std::string TaskTargetId(int64_t task) { return "task:" + std::to_string(task); }

// Writes `content` to dir/name with mode 0600 (the folder 0700), replacing what was there.
Result<std::string> WriteSecret(const std::string& dir, const std::string& name, const std::string& content) {
  if (dir.empty()) return Status::InvalidArgument("[cluster] secrets_dir is empty");
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return Status::IoError("cannot create secrets folder " + dir + ": " + std::strerror(errno));
  }
  std::string path = dir + "/" + name;
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Status::IoError("cannot write " + tmp + ": " + std::strerror(errno));
  size_t off = 0;
  while (off < content.size()) {
    ssize_t n = ::write(fd, content.data() + off, content.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      ::close(fd);
      return Status::IoError("cannot write " + tmp + ": " + std::strerror(e));
    }
    off += static_cast<size_t>(n);
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return Status::IoError("cannot rename " + tmp + ": " + std::strerror(errno));
  }
  return path;
}

std::string HostPort(const std::string& address, int port) {
  std::string host = address.find(':') != std::string::npos && address[0] != '[' ? "[" + address + "]" : address;
  return host + ":" + std::to_string(port);
}

std::string StringField(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

}  // namespace

Result<TargetConfig> TargetForTask(const AssignedTask& task, const std::string& secrets_dir) {
  const std::string where = "task " + std::to_string(task.id) + " (" + task.host + "/" + task.plugin + ")";
  json options = json::parse(task.options_json, nullptr, false);
  json secret = json::parse(task.secret_json, nullptr, false);
  if (options.is_discarded() || !options.is_object()) {
    return Status::InvalidArgument(where + ": the credential profile's options are not a JSON object");
  }
  if (secret.is_discarded() || !secret.is_object()) {
    return Status::InvalidArgument(where + ": the credential profile's secret is not a JSON object");
  }
  TargetConfig tc;
  tc.host = task.host;
  tc.plugin = task.plugin;
  tc.uri = task.uri;
  if (tc.uri.empty()) {
    if (task.address.empty()) return Status::InvalidArgument(where + ": neither a URI nor an address");
    std::string user = task.username.empty() ? "" : task.username + "@";
    if (task.plugin == "linux") {
      tc.uri = "ssh://" + user + HostPort(task.address, task.port > 0 ? task.port : 22);
    } else if (task.plugin == "postgresql") {
      tc.uri = "postgresql://" + user + HostPort(task.address, task.port > 0 ? task.port : 5432) + "/postgres";
    } else if (task.plugin == "redis") {
      tc.uri = "redis://" + user + HostPort(task.address, task.port > 0 ? task.port : 6379);
    } else {
      return Status::InvalidArgument(where + ": no URI and no default for plugin '" + task.plugin + "'");
    }
  }
  tc.identity = StringField(options, "identity");
  tc.known_hosts = StringField(options, "known_hosts");
  // A row edited by hand into nonsense is this task's error, never an exception on the loop.
  for (auto [key, field] : {std::pair{"trust_on_first_use", &tc.trust_on_first_use},
                            std::pair{"use_agent", &tc.use_agent}}) {
    auto it = options.find(key);
    if (it == options.end()) continue;
    if (!it->is_boolean()) {
      return Status::InvalidArgument(where + ": the credential profile's option '" + key +
                                     "' must be true or false");
    }
    *field = it->get<bool>();
  }
  if (auto it = options.find("interval"); it != options.end()) {
    if (!it->is_number_integer() || it->get<int64_t>() < 1 || it->get<int64_t>() > 86400) {
      return Status::InvalidArgument(where + ": the credential profile's option 'interval' must be "
                                     "a whole number of seconds from 1 to 86400");
    }
    tc.interval_s = static_cast<int>(it->get<int64_t>());
  }
  if (options.contains("plugin") && options["plugin"].is_object()) {
    for (const auto& [k, v] : options["plugin"].items()) tc.options[k] = v.is_string() ? v.get<std::string>() : v.dump();
  }
  const std::string id = std::to_string(task.id);
  if (std::string pw = StringField(secret, "password"); !pw.empty()) {
    TRAPLINE_ASSIGN_OR_RETURN(tc.password_file, WriteSecret(secrets_dir, "task-" + id + ".password", pw + "\n"));
  }
  if (std::string key = StringField(secret, "private_key"); !key.empty()) {
    TRAPLINE_ASSIGN_OR_RETURN(tc.identity, WriteSecret(secrets_dir, "task-" + id + ".key", key));
  }
  tc.identity_passphrase = StringField(secret, "passphrase");
  return tc;
}

ClusterMember::ClusterMember(uv_loop_t* loop, Collector* collector, std::string name, ClusterOptions options)
    : loop_(loop),
      collector_(collector),
      name_(std::move(name)),
      options_(std::move(options)),
      // Retries at least every 4 s: the leader waits that long (kCollectorReconnectGraceMs)
      // after a registry outage before it calls collectors that have not heartbeat dead.
      pg_(loop, pg::Client::Options{.conninfo = options_.registry,
                                    .name = "registry",
                                    .application_name = "trapline collector " + name_,
                                    .reconnect_max_s = 4}),
      heartbeat_timer_(loop),
      resync_timer_(loop),
      lag_(loop),
      handover_timer_(loop) {}

ClusterMember::~ClusterMember() = default;

void ClusterMember::Start() {
  pg_.SetStateCallback([this](bool connected, const Status& why) {
    if (connected) {
      spdlog::info("[cluster] {}: registry connected", name_);
      Register();
      return;
    }
    uint64_t now = uv_now(loop_);
    if (now - failures_logged_ms_ > 30000) {  // rate-limited: the targets go on meanwhile
      failures_logged_ms_ = now;
      spdlog::warn("[cluster] {}: registry unreachable ({}); sampling goes on with the {} tasks held",
                   name_, why.message(), running_.size());
    }
  });
  pg_.SetNotifyCallback([this](const std::string&, const std::string& payload) {
    if (payload.empty() || payload == name_) ReadAssignments();
  });
  collector_->set_on_entities([this](const std::string& id, const std::vector<plugins::Entity>& entities) {
    if (id.rfind("task:", 0) != 0) return;  // a target of the config file, not a task
    int64_t task = std::stoll(id.substr(5));
    entities_[task] = entities;
    ReportEntities(task, entities);
  });
  (void)pg_.Listen(kAssignChannel);
  pg_.Start();
  last_cpu_s_ = ProcessCpuSeconds();
  last_cpu_ms_ = uv_now(loop_);
  auto hb = static_cast<uint64_t>(options_.heartbeat_s * 1000);
  heartbeat_timer_.Start(hb, hb, [this] { Heartbeat(); });
  auto rs = static_cast<uint64_t>(options_.resync_s * 1000);
  resync_timer_.Start(rs, rs, [this] { ReadAssignments(); });
}

void ClusterMember::Register() {
  pg_.Query("register collector",
            "INSERT INTO collectors (name, weight, address, version, protocol, state, last_heartbeat, load) "
            "VALUES ($1, $2::float8, $3, $4, $6::integer, 'active', now(), $5::jsonb) "
            "ON CONFLICT (name) DO UPDATE SET address = EXCLUDED.address, version = EXCLUDED.version, "
            "protocol = EXCLUDED.protocol, state = 'active', last_heartbeat = now(), load = EXCLUDED.load "
            "RETURNING id, weight",
            {name_, std::to_string(options_.weight), options_.address, std::string(kVersion), LoadJson(),
             std::to_string(kClusterProtocol)},
            [this](Result<pg::Rows> r) {
              if (!r.ok()) {
                spdlog::warn("[cluster] {}: {}", name_, r.status().message());
                return;
              }
              if (r->rows.empty() || !r->rows[0][0]) return;
              bool first = collector_id_ == 0;
              collector_id_ = std::stoll(*r->rows[0][0]);
              if (first) {
                spdlog::info("[cluster] {}: registered as collector {} (weight {})", name_, collector_id_,
                             r->rows[0][1].value_or("?"));
              }
              ReadAssignments();
              // What changed while the registry was away.
              for (const auto& [task, entities] : entities_) ReportEntities(task, entities);
            });
}

std::string ClusterMember::LoadJson() {
  LoopLagMonitor::Figures lag = lag_.TakeFigures();
  double cpu = ProcessCpuSeconds();
  uint64_t now = uv_now(loop_);
  double wall = static_cast<double>(now - last_cpu_ms_) / 1000.0;
  double cpu_pct = wall > 0 ? 100.0 * (cpu - last_cpu_s_) / wall : 0;
  last_cpu_s_ = cpu;
  last_cpu_ms_ = now;
  size_t connected = 0, failing = 0;
  for (const auto& t : collector_->Targets()) {
    if (t.state.connected) {
      ++connected;
    } else if (!t.state.last_error.empty()) {
      ++failing;
    }
  }
  json running = json::array();
  json task_us = json::object();
  for (const auto& [id, gen] : running_) {
    running.push_back({id, gen});
    const TargetBase* t = collector_->FindTarget(TaskTargetId(id));
    if (t == nullptr) continue;
    BusyMark& m = busy_mark_[id];
    uint64_t busy = t->busy_ns();
    if (m.at_ms == 0 || busy < m.busy_ns) {
      m = {busy, now};  // a new target for the task starts counting from zero
    } else if (now - m.at_ms >= kCostWindowMs) {
      task_us_[id] = static_cast<double>(busy - m.busy_ns) / 1e3 /
                     (static_cast<double>(now - m.at_ms) / 1e3);
      m = {busy, now};
    }
    if (auto it = task_us_.find(id); it != task_us_.end()) {
      task_us[std::to_string(id)] = std::round(it->second * 10) / 10;
    }
  }
  std::erase_if(busy_mark_, [this](const auto& kv) { return !running_.count(kv.first); });
  std::erase_if(task_us_, [this](const auto& kv) { return !running_.count(kv.first); });
  SenderCounters s = collector_->sender_counters();
  json j = {{"lag_p50_ms", lag.p50_ms},
            {"lag_p99_ms", lag.p99_ms},
            {"lag_max_ms", lag.max_ms},
            {"cpu_pct", cpu_pct},
            {"tasks", running_.size()},
            {"targets", collector_->Targets().size()},
            {"running", running},
            {"task_us", task_us},
            {"connections", {{"connected", connected}, {"failing", failing}}},
            {"sender", {{"queued", s.queued}, {"sent", s.sent}, {"rejected", s.rejected},
                        {"spooled", s.spooled}, {"dropped", s.dropped}, {"in_spool", s.in_spool},
                        {"latency_p99_ms", s.latency_p99_ms}, {"reachable", s.reachable}}}};
  // The Zabbix host of its own health: the leader's zabbix-sync builds it (plugin trapline).
  if (!collector_->self_host().empty()) j["self_host"] = collector_->self_host();
  return j.dump();
}

void ClusterMember::Heartbeat() {
  if (!pg_.connected() || collector_id_ == 0) return;
  if (pg_.pending() > 4) return;  // a slow registry: do not pile heartbeats up
  pg_.Query("heartbeat",
            "UPDATE collectors SET last_heartbeat = now(), load = $2::jsonb, "
            "state = CASE WHEN state = 'dead' THEN 'active' ELSE state END WHERE id = $1::bigint",
            {std::to_string(collector_id_), LoadJson()}, [this](Result<pg::Rows> r) {
              if (!r.ok()) {
                spdlog::debug("[cluster] {}: {}", name_, r.status().message());
              } else if (r->affected == 0) {
                spdlog::warn("[cluster] {}: collector {} is no longer in the registry; registering again",
                             name_, collector_id_);
                collector_id_ = 0;
                Register();
              }
            });
  ReportErrors();
}

void ClusterMember::ReportErrors() {
  for (const auto& [task, gen] : running_) {
    const TargetBase* t = collector_->FindTarget(TaskTargetId(task));
    if (t == nullptr) continue;
    const ConnectionState& st = t->state();
    std::string tid = std::to_string(task);
    if (!st.connected && !st.last_error.empty() && reported_error_clock_[task] != st.last_error_clock) {
      reported_error_clock_[task] = st.last_error_clock;
      reported_ok_[task] = false;
      pg_.Query("record task error",
                "WITH e AS (INSERT INTO errors (task_id, collector_id, message, at) "
                "VALUES ($1::bigint, $2::bigint, $3, to_timestamp($4::float8)) RETURNING task_id) "
                "UPDATE services SET state = 'error' WHERE id = (SELECT service_id FROM tasks WHERE id = $1::bigint)",
                {tid, std::to_string(collector_id_), st.last_error, std::to_string(st.last_error_clock)},
                [this](Result<pg::Rows> r) {
                  if (!r.ok()) spdlog::debug("[cluster] {}: {}", name_, r.status().message());
                });
    } else if (st.connected && !reported_ok_[task]) {
      reported_ok_[task] = true;
      pg_.Query("record task ok",
                "UPDATE services SET state = 'ok' WHERE id = (SELECT service_id FROM tasks WHERE id = $1::bigint) "
                "AND state <> 'ok'",
                {tid}, [this](Result<pg::Rows> r) {
                  if (!r.ok()) spdlog::debug("[cluster] {}: {}", name_, r.status().message());
                });
    }
  }
}

// The registry's entities of a task follow what its target reports: present ones upserted,
// the others marked gone (never deleted); the coordinator hears of it on trapline_entities
// and syncs the host's Zabbix objects.
void ClusterMember::ReportEntities(int64_t task, const std::vector<plugins::Entity>& entities) {
  json present = json::array();
  for (const auto& e : entities) present.push_back({{"kind", e.kind}, {"name", e.name}});
  if (!pg_.connected() || collector_id_ == 0) return;  // reported again once registered
  std::string tid = std::to_string(task);
  pg_.Query("report entities",
            "WITH present AS (SELECT kind, name FROM jsonb_to_recordset($2::jsonb) AS p(kind text, name text)), "
            "up AS (INSERT INTO entities (task_id, kind, name, gone, last_seen) "
            "  SELECT $1::bigint, kind, name, false, now() FROM present "
            "  ON CONFLICT (task_id, kind, name) DO UPDATE SET gone = false, last_seen = now()), "
            "down AS (UPDATE entities e SET gone = true WHERE e.task_id = $1::bigint AND NOT e.gone "
            "  AND (e.kind, e.name) NOT IN (SELECT kind, name FROM present)) "
            "SELECT pg_notify('trapline_entities', $1::text)",
            {tid, present.dump()}, [this, task, n = entities.size()](Result<pg::Rows> r) {
              if (!r.ok()) {
                spdlog::warn("[cluster] {}: task {}: {}", name_, task, r.status().message());
              } else {
                spdlog::info("[cluster] {}: task {}: {} entities reported", name_, task, n);
              }
            });
}

void ClusterMember::ReadAssignments() {
  if (!pg_.connected() || collector_id_ == 0) return;
  if (reading_) {
    reread_ = true;  // a NOTIFY during a read: read once more after it
    return;
  }
  reading_ = true;
  pg_.Query("read assignments",
            "SELECT t.id, t.generation, t.plugin, s.uri, s.port, h.name, h.address, "
            "coalesce(cp.username, ''), coalesce(cp.secret::text, '{}'), coalesce(cp.options::text, '{}') "
            "FROM tasks t JOIN services s ON s.id = t.service_id JOIN hosts h ON h.id = s.host_id "
            "LEFT JOIN credential_profiles cp ON cp.id = s.credential_profile_id "
            "WHERE t.collector_id = $1::bigint ORDER BY t.id",
            {std::to_string(collector_id_)}, [this](Result<pg::Rows> r) {
              reading_ = false;
              if (!r.ok()) {
                spdlog::warn("[cluster] {}: {}; keeping the {} tasks held", name_, r.status().message(),
                             running_.size());
              } else {
                Apply(*r);
              }
              if (reread_) {
                reread_ = false;
                ReadAssignments();
              }
            });
}

void ClusterMember::Apply(const pg::Rows& rows) {
  std::map<int64_t, AssignedTask> wanted;
  for (const auto& row : rows.rows) {
    if (row.size() < 10 || !row[0] || !row[1]) continue;
    AssignedTask t;
    t.id = std::stoll(*row[0]);
    t.generation = std::stoll(*row[1]);
    t.plugin = row[2].value_or("");
    t.uri = row[3].value_or("");
    t.port = row[4] ? std::stoi(*row[4]) : 0;
    t.host = row[5].value_or("");
    t.address = row[6].value_or("");
    t.username = row[7].value_or("");
    t.secret_json = row[8].value_or("{}");
    t.options_json = row[9].value_or("{}");
    wanted[t.id] = std::move(t);
  }
  // Stop first (a task that moves must leave here before it may start elsewhere).
  int stopped = 0;
  for (auto it = running_.begin(); it != running_.end();) {
    auto w = wanted.find(it->first);
    if (w != wanted.end() && w->second.generation == it->second) {
      ++it;
      continue;
    }
    collector_->RemoveTarget(TaskTargetId(it->first));
    reported_error_clock_.erase(it->first);
    entities_.erase(it->first);
    reported_ok_.erase(it->first);
    it = running_.erase(it);
    ++stopped;
  }
  std::map<int64_t, AssignedTask> fresh;
  for (auto& [id, task] : wanted) {
    if (!running_.count(id)) fresh.emplace(id, std::move(task));
  }
  for (auto it = waiting_since_ms_.begin(); it != waiting_since_ms_.end();) {
    it = fresh.count(it->first) ? std::next(it) : waiting_since_ms_.erase(it);
  }
  if (stopped > 0) {
    spdlog::info("[cluster] {}: assignments: {} tasks ({} stopped)", name_, running_.size(), stopped);
    // Report at once: the collector taking a task over waits for this.
    Heartbeat();
  }
  if (!fresh.empty()) StartFresh(std::move(fresh));
}

void ClusterMember::StartFresh(std::map<int64_t, AssignedTask> fresh) {
  std::vector<std::optional<int64_t>> ids;
  for (const auto& [id, task] : fresh) ids.emplace_back(id);
  uint64_t seq = ++apply_seq_;
  pg_.Query(
      "tasks held elsewhere",
      "SELECT DISTINCT r ->> 0 FROM collectors o CROSS JOIN LATERAL jsonb_array_elements("
      "  CASE WHEN jsonb_typeof(o.load -> 'running') = 'array' THEN o.load -> 'running' ELSE '[]'::jsonb END) r "
      "WHERE o.id <> $1::bigint AND o.state = 'active' AND jsonb_typeof(r) = 'array' "
      "  AND r ->> 0 = ANY ($2::bigint[]::text[])",
      {std::to_string(collector_id_), pg::Int64ArrayLiteral(ids)},
      [this, seq, fresh = std::move(fresh)](Result<pg::Rows> r) {
        if (seq != apply_seq_) return;  // a newer read decides
        std::set<int64_t> held;
        if (r.ok()) {
          for (const auto& row : r->rows) {
            if (row.size() == 1 && row[0]) held.insert(std::atoll(row[0]->c_str()));
          }
        } else {
          // Nobody can be told to stop while the registry cannot be asked: start.
          spdlog::warn("[cluster] {}: cannot check hand-overs ({}); starting {} tasks", name_,
                       r.status().message(), fresh.size());
        }
        uint64_t now = uv_now(loop_);
        std::vector<const AssignedTask*> start;
        bool retry = false;
        for (const auto& [id, task] : fresh) {
          if (held.count(id)) {
            auto [it, first] = waiting_since_ms_.try_emplace(id, now);
            if (now - it->second < kHandOverWaitMs) {
              if (first) {
                spdlog::debug("[cluster] {}: task {} waits for its old collector to stop it", name_, id);
              }
              retry = true;
              continue;
            }
            spdlog::warn("[cluster] {}: task {}: another collector still reports it running after "
                         "{} ms; starting it anyway", name_, id, kHandOverWaitMs);
          }
          waiting_since_ms_.erase(id);
          start.push_back(&task);
        }
        StartTasks(start);
        if (retry) handover_timer_.Start(kHandOverPollMs, 0, [this] { ReadAssignments(); });
      });
}

void ClusterMember::StartTasks(const std::vector<const AssignedTask*>& tasks) {
  int started = 0, failed = 0;
  for (const AssignedTask* task : tasks) {
    int64_t id = task->id;
    if (running_.count(id)) continue;
    auto tc = TargetForTask(*task, options_.secrets_dir);
    Status st = tc.ok() ? collector_->AddTarget(TaskTargetId(id), std::move(tc).value()) : tc.status();
    if (!st.ok()) {
      ++failed;
      spdlog::warn("[cluster] {}: task {} not started: {}", name_, id, st.message());
      pg_.Query("record task error",
                "INSERT INTO errors (task_id, collector_id, message) VALUES ($1::bigint, $2::bigint, $3)",
                {std::to_string(id), std::to_string(collector_id_), st.message()},
                [](Result<pg::Rows>) {});
      continue;
    }
    running_[id] = task->generation;
    ++started;
  }
  if (started + failed > 0) {
    spdlog::info("[cluster] {}: assignments: {} tasks ({} started, {} failed)", name_,
                 running_.size(), started, failed);
    Heartbeat();
  }
}

void ClusterMember::Stop(std::function<void()> done) {
  heartbeat_timer_.Stop();
  resync_timer_.Stop();
  handover_timer_.Stop();
  if (!pg_.connected() || collector_id_ == 0) {
    pg_.Close();
    done();
    return;
  }
  pg_.Query("leave", "UPDATE collectors SET state = 'draining' WHERE id = $1::bigint",
            {std::to_string(collector_id_)}, [this, done = std::move(done)](Result<pg::Rows> r) {
              if (r.ok()) spdlog::info("[cluster] {}: left the cluster (draining)", name_);
              done();
            });
}

}  // namespace trapline
