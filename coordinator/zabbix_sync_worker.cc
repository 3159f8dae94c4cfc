#include "coordinator/zabbix_sync_worker.h"

#include <nlohmann/json.hpp>

#include "common/log.h"
#include "plugins/builtin.h"

namespace trapline::coordinator {

using nlohmann::json;

struct ZabbixSyncWorker::Shared {
  ZabbixSyncOptions options;
  std::unique_ptr<zabbix::BlockingApi> api;
  std::unique_ptr<zabbix::Syncer> syncer;
};

struct ZabbixSyncWorker::Job {
  ZabbixSyncWorker* self;
  std::shared_ptr<Shared> shared;
  std::shared_ptr<bool> alive;
  uint64_t generation;
  int64_t task_id;
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
  queue_.clear();
  queued_.clear();
}

void ZabbixSyncWorker::Next() {
  if (busy_ || queue_.empty()) return;
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
        j.report.host = j.host;
        j.report.plugin = j.plugin;
        const plugins::PluginInfo* plugin = plugins::FindPlugin(j.plugin);
        if (plugin == nullptr) {
          j.report.status = Status::InvalidArgument("no plugin '" + j.plugin + "'");
          return;
        }
        if (sh.api == nullptr) {
          auto api = std::make_unique<zabbix::BlockingApi>(sh.options.api);
          if (Status st = api->Connect(); !st.ok()) {
            j.report.status = st;
            return;  // the next job connects again
          }
          sh.syncer = std::make_unique<zabbix::Syncer>(api.get(), sh.options.sync);
          sh.api = std::move(api);
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
  const zabbix::SyncReport& r = job->report;
  if (job->generation == generation_) {
    std::string counts;
    for (const auto& [what, n] : r.Counts()) counts += (counts.empty() ? "" : ", ") + what + " " + std::to_string(n);
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
      if (r.status.code() == StatusCode::kUnavailable || r.status.code() == StatusCode::kTimeout) {
        retry_.insert(job->task_id);
      }
      spdlog::warn("[zabbix-sync] host {} plugin {}: {}{}", job->host, job->plugin, r.status.message(),
                   counts.empty() ? "" : " (made before the error: " + counts + ")");
      registry_->Query("record zabbix-sync error",
                       "INSERT INTO errors (task_id, message) VALUES ($1::bigint, $2)",
                       {std::to_string(job->task_id), "zabbix-sync: " + r.status.message()},
                       [](Result<pg::Rows>) {});
    }
  }
  Next();
}

}  // namespace trapline::coordinator
