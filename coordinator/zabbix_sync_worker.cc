#include "coordinator/zabbix_sync_worker.h"

#include <ctime>

#include <nlohmann/json.hpp>

#include "common/log.h"
#include "zabbix-sync/maintenance.h"
#include "plugins/builtin.h"
#include "plugins/trapline/trapline.h"

namespace trapline::coordinator {

using nlohmann::json;

struct ZabbixSyncWorker::Shared {
  ZabbixSyncOptions options;
  std::unique_ptr<zabbix::BlockingApi> api;
  std::unique_ptr<zabbix::Syncer> syncer;

  // On the pool: logs in once; kept until a sync fails for a passing reason.
  Status Connect() {
    if (api != nullptr) return Status::OK();
    auto fresh = std::make_unique<zabbix::BlockingApi>(options.api);
    TRAPLINE_RETURN_IF_ERROR(fresh->Connect());
    syncer = std::make_unique<zabbix::Syncer>(fresh.get(), options.sync);
    api = std::move(fresh);
    return Status::OK();
  }
};

struct ZabbixSyncWorker::Job {
  bool maintenance = false;  // else a host sync
  bool collector_host = false;  // a collector's own host (task_id 0, no entities)
  int64_t host_id = 0;
  bool maintenance_on = false;
  int64_t maintenance_until = 0;  // unix seconds, 0 = open-ended
  std::string applied;            // the maintenance_applied value this job makes true
  Status maintenance_status;
  ZabbixSyncWorker* self;
  std::shared_ptr<Shared> shared;
  std::shared_ptr<bool> alive;
  uint64_t generation;
  int64_t task_id = 0;
  std::string host;
  std::string plugin;
  std::vector<plugins::Entity> entities;
  zabbix::SyncReport report;
  uv_work_t work{};
};

ZabbixSyncWorker::ZabbixSyncWorker(uv_loop_t* loop, pg::Client* registry, std::string coordinator_name,
                                   ZabbixSyncOptions options)
    : loop_(loop),
      registry_(registry),
      name_(std::move(coordinator_name)),
      options_(std::move(options)),
      shared_(std::make_shared<Shared>()),
      retry_timer_(loop) {
  shared_->options = options_;
  retry_timer_.Start(30000, 30000, [this] {
    std::set<int64_t> again;
    again.swap(retry_);
    for (int64_t task : again) Request(task);
  });
  retry_timer_.Unref();
}

ZabbixSyncWorker::~ZabbixSyncWorker() { *alive_ = false; }

void ZabbixSyncWorker::Request(int64_t task_id) {
  if (!options_.enabled()) return;
  if (!queued_.insert(task_id).second) return;
  queue_.push_back(task_id);
  Next();
}

void ZabbixSyncWorker::RequestAll() {
  if (!options_.enabled()) return;
  registry_->Query("tasks with entities", "SELECT DISTINCT task_id FROM entities ORDER BY task_id", {},
                   [this, alive = alive_](Result<pg::Rows> r) {
                     if (!*alive) return;
                     if (!r.ok()) {
                       spdlog::warn("[zabbix-sync] {}", r.status().message());
                       return;
                     }
                     for (const auto& row : r->rows) {
                       if (row.size() == 1 && row[0]) Request(std::stoll(*row[0]));
                     }
                   });
}

void ZabbixSyncWorker::Cancel() {
  ++generation_;
  retry_.clear();
  self_queue_.clear();
  self_queued_.clear();
  self_synced_.clear();
  self_failed_ms_.clear();
  maintenance_queue_.clear();
  maintenance_queued_.clear();
  queue_.clear();
  queued_.clear();
}

void ZabbixSyncWorker::PollMaintenance() {
  if (!options_.enabled() || polling_) return;
  polling_ = true;
  registry_->Query(
      "poll maintenance",
      "WITH expired AS (UPDATE hosts SET maintenance = false, maintenance_until = NULL "
      "  WHERE maintenance AND maintenance_until < now() RETURNING id) "
      "SELECT id FROM hosts WHERE maintenance_applied IS DISTINCT FROM "
      "  CASE WHEN maintenance THEN 'on:' || coalesce(extract(epoch FROM maintenance_until)::bigint::text, '0') "
      "  ELSE 'off' END "
      "UNION SELECT id FROM expired ORDER BY 1 LIMIT 1000",
      {}, [this, alive = alive_](Result<pg::Rows> r) {
        if (!*alive) return;
        polling_ = false;
        if (!r.ok()) return;
        uint64_t now = uv_now(loop_);
        for (const auto& row : r->rows) {
          if (row.empty() || !row[0]) continue;
          int64_t host = std::stoll(*row[0]);
          auto failed = maintenance_failed_ms_.find(host);
          if (failed != maintenance_failed_ms_.end() && now - failed->second < 30000) continue;
          if (maintenance_queued_.insert(host).second) maintenance_queue_.push_back(host);
        }
        Next();
      });
}

void ZabbixSyncWorker::PollCollectorHosts() {
  if (!options_.enabled() || polling_self_) return;
  polling_self_ = true;
  registry_->Query(
      "poll collector hosts",
      "SELECT load->>'self_host', string_agg(name, ', ' ORDER BY name), count(*) FROM collectors "
      "WHERE state = 'active' AND coalesce(load->>'self_host', '') <> '' GROUP BY 1 ORDER BY 1",
      {}, [this, alive = alive_](Result<pg::Rows> r) {
        if (!*alive) return;
        polling_self_ = false;
        if (!r.ok()) return;
        uint64_t now = uv_now(loop_);
        for (const auto& row : r->rows) {
          if (row.size() < 3 || !row[0]) continue;
          const std::string& host = *row[0];
          if (row[2].value_or("1") != "1" && self_shared_warned_.insert(host).second) {
            spdlog::warn("[zabbix-sync] collectors {} all send their own health to Zabbix host {}: "
                         "their values mix; give each its own [collector] self_host",
                         row[1].value_or("?"), host);
          }
          if (self_synced_.count(host)) continue;
          auto failed = self_failed_ms_.find(host);
          if (failed != self_failed_ms_.end() && now - failed->second < 30000) continue;
          if (self_queued_.insert(host).second) self_queue_.push_back(host);
        }
        Next();
      });
}

void ZabbixSyncWorker::Next() {
  if (busy_) return;
  if (!self_queue_.empty()) {
    auto job = std::make_shared<Job>();
    job->collector_host = true;
    job->host = self_queue_.front();
    job->plugin = std::string(plugins::self::kPluginName);
    self_queue_.pop_front();
    self_queued_.erase(job->host);
    job->self = this;
    job->shared = shared_;
    job->alive = alive_;
    job->generation = generation_;
    busy_ = true;
    return Run(job);
  }
  if (!maintenance_queue_.empty()) {
    int64_t host = maintenance_queue_.front();
    maintenance_queue_.pop_front();
    maintenance_queued_.erase(host);
    busy_ = true;
    auto job = std::make_shared<Job>();
    job->maintenance = true;
    job->host_id = host;
    job->self = this;
    job->shared = shared_;
    job->alive = alive_;
    job->generation = generation_;
    registry_->Query(
        "read host maintenance",
        "SELECT name, maintenance, coalesce(extract(epoch FROM maintenance_until)::bigint, 0) FROM hosts "
        "WHERE id = $1::bigint",
        {std::to_string(host)}, [this, job](Result<pg::Rows> r) {
          if (!*job->alive) return;
          if (!r.ok() || r->rows.empty() || r->rows[0].size() < 3) {
            busy_ = false;
            return Next();
          }
          const auto& row = r->rows[0];
          job->host = row[0].value_or("");
          job->maintenance_on = row[1].value_or("f") == "t";
          job->maintenance_until = std::stoll(row[2].value_or("0"));
          job->applied = job->maintenance_on ? "on:" + std::to_string(job->maintenance_until) : "off";
          Run(job);
        });
    return;
  }
  if (queue_.empty()) return;
  int64_t task = queue_.front();
  queue_.pop_front();
  queued_.erase(task);
  busy_ = true;
  auto job = std::make_shared<Job>();
  job->self = this;
  job->shared = shared_;
  job->alive = alive_;
  job->generation = generation_;
  job->task_id = task;
  registry_->Query(
      "read task for zabbix-sync",
      "SELECT h.name, t.plugin, coalesce((SELECT json_agg(json_build_object('kind', e.kind, 'name', e.name) "
      "ORDER BY e.kind, e.name) FROM entities e WHERE e.task_id = t.id AND NOT e.gone), '[]'::json)::text "
      "FROM tasks t JOIN services s ON s.id = t.service_id JOIN hosts h ON h.id = s.host_id WHERE t.id = $1::bigint",
      {std::to_string(task)}, [this, job](Result<pg::Rows> r) {
        if (!*job->alive) return;
        if (!r.ok() || r->rows.empty()) {
          if (!r.ok()) spdlog::warn("[zabbix-sync] task {}: {}", job->task_id, r.status().message());
          busy_ = false;
          return Next();
        }
        const auto& row = r->rows[0];
        job->host = row[0].value_or("");
        job->plugin = row[1].value_or("");
        json entities = json::parse(row[2].value_or("[]"), nullptr, false);
        if (entities.is_array()) {
          for (const auto& e : entities) {
            if (e.is_object() && e.value("kind", json()).is_string() && e.value("name", json()).is_string()) {
              job->entities.push_back({e["kind"].get<std::string>(), e["name"].get<std::string>(), {}});
            }
          }
        }
        Run(job);
      });
}

void ZabbixSyncWorker::Run(std::shared_ptr<Job> job) {
  auto* holder = new std::shared_ptr<Job>(job);
  job->work.data = holder;
  int rc = uv_queue_work(
      loop_, &job->work,
      [](uv_work_t* w) {
        Job& j = **static_cast<std::shared_ptr<Job>*>(w->data);
        Shared& sh = *j.shared;
        if (Status st = sh.Connect(); !st.ok()) {
          (j.maintenance ? j.maintenance_status : j.report.status) = st;
          return;  // the next job connects again
        }
        if (j.maintenance) {
          int64_t now = static_cast<int64_t>(time(nullptr));
          j.maintenance_status = j.maintenance_on
                                     ? zabbix::MaintenanceOn(sh.api.get(), j.host, now, j.maintenance_until)
                                     : zabbix::MaintenanceOff(sh.api.get(), j.host);
          return;
        }
        j.report.host = j.host;
        j.report.plugin = j.plugin;
        const plugins::PluginInfo* plugin = plugins::FindPlugin(j.plugin);
        if (plugin == nullptr) {
          j.report.status = Status::InvalidArgument("no plugin '" + j.plugin + "'");
          return;
        }
        j.report = sh.syncer->SyncHost(*plugin, j.host, j.entities, /*dry_run=*/false);
        // A dropped session or a Zabbix restart: reconnect on the next job.
        if (!j.report.status.ok() && j.report.status.code() == StatusCode::kUnavailable) {
          sh.syncer.reset();
          sh.api.reset();
        }
      },
      [](uv_work_t* w, int) {
        auto* held = static_cast<std::shared_ptr<Job>*>(w->data);
        std::shared_ptr<Job> j = *held;
        delete held;
        if (*j->alive) j->self->Finish(j);
      });
  if (rc != 0) {
    delete holder;
    spdlog::error("[zabbix-sync] cannot queue the sync of task {}: {}", job->task_id, uv_strerror(rc));
    busy_ = false;
  }
}

void ZabbixSyncWorker::Finish(std::shared_ptr<Job> job) {
  busy_ = false;
  if (job->maintenance) {
    if (job->generation == generation_) FinishMaintenance(job);
    return Next();
  }
  const zabbix::SyncReport& r = job->report;
  if (job->generation == generation_) {
    std::string counts;
    for (const auto& [what, n] : r.Counts()) counts += (counts.empty() ? "" : ", ") + what + " " + std::to_string(n);
    if (job->collector_host && r.status.ok()) self_synced_.insert(job->host);
    if (job->collector_host && !r.status.ok()) self_failed_ms_[job->host] = uv_now(loop_);
    if (r.status.ok()) {
      ++done_;
      spdlog::info("[zabbix-sync] host {} plugin {}: {} entities, {} ({} API calls)", job->host, job->plugin,
                   job->entities.size(), counts.empty() ? "no changes" : counts, r.api_calls);
      if (!r.changes.empty()) {
        json after = {{"plugin", job->plugin}, {"entities", job->entities.size()}, {"changes", r.Counts()}};
        registry_->Query("audit zabbix-sync",
                         "INSERT INTO audit_log (actor, action, object_type, object_id, after) "
                         "VALUES ($1, 'zabbix.sync', 'host', $2, $3::jsonb)",
                         {"coordinator:" + name_, job->host, after.dump()}, [](Result<pg::Rows>) {});
      }
    } else {
      ++failed_;
      if (!job->collector_host &&
          (r.status.code() == StatusCode::kUnavailable || r.status.code() == StatusCode::kTimeout)) {
        retry_.insert(job->task_id);
      }
      spdlog::warn("[zabbix-sync] host {} plugin {}: {}{}{}", job->host, job->plugin, r.status.message(),
                   counts.empty() ? "" : " (made before the error: " + counts + ")",
                   job->collector_host ? " (again in 30 s)" : "");
      // A collector's own host has no task to file the error under: the log says it.
      if (job->collector_host) return Next();
      registry_->Query("record zabbix-sync error",
                       "INSERT INTO errors (task_id, message) VALUES ($1::bigint, $2)",
                       {std::to_string(job->task_id), "zabbix-sync: " + r.status.message()},
                       [](Result<pg::Rows>) {});
    }
  }
  Next();
}

void ZabbixSyncWorker::FinishMaintenance(std::shared_ptr<Job> job) {
  const std::string what = job->maintenance_on ? "maintenance.start" : "maintenance.stop";
  if (!job->maintenance_status.ok()) {
    maintenance_failed_ms_[job->host_id] = uv_now(loop_);
    spdlog::warn("[zabbix-sync] host {}: {}: {} (again in 30 s)", job->host, what,
                 job->maintenance_status.message());
    registry_->Query("record maintenance error",
                     "INSERT INTO errors (task_id, message) SELECT t.id, $2 FROM tasks t JOIN services s "
                     "ON s.id = t.service_id WHERE s.host_id = $1::bigint",
                     {std::to_string(job->host_id), what + ": " + job->maintenance_status.message()},
                     [](Result<pg::Rows>) {});
    return;
  }
  maintenance_failed_ms_.erase(job->host_id);
  spdlog::info("[zabbix-sync] host {}: {} ({})", job->host, what,
               job->maintenance_on ? (job->maintenance_until ? "until " + std::to_string(job->maintenance_until)
                                                             : std::string("until taken out"))
                                   : std::string("taken out"));
  json after = {{"maintenance", job->maintenance_on}, {"until", job->maintenance_until}};
  registry_->Query("apply maintenance",
                   "WITH a AS (UPDATE hosts SET maintenance_applied = $2 WHERE id = $1::bigint) "
                   "INSERT INTO audit_log (actor, action, object_type, object_id, after) "
                   "VALUES ($3, $4, 'host', $5, $6::jsonb)",
                   {std::to_string(job->host_id), job->applied, "coordinator:" + name_, what, job->host,
                    after.dump()},
                   [](Result<pg::Rows>) {});
}

}  // namespace trapline::coordinator
