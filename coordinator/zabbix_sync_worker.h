#pragma once
// zabbix-sync driven by the registry (issue 5, "the control path"): when a task's entities
// change (NOTIFY trapline_entities from the collector that runs it) or a coordinator becomes
// leader, the leader makes the task's Zabbix host match: it reads the host name, the plugin
// and the entities that are not gone from the registry, and runs zabbix::Syncer on a worker
// thread (the Zabbix API client there is blocking, with a loop of its own), one sync at a
// time, requests for the same task merged. The outcome is logged, written to the audit log
// when something changed ("zabbix.sync", actor "coordinator:<name>"), and to the errors table
// when it failed (the admin panel shows it).
//
// A collector's own host (its `self_host`, plugin trapline: the collector's health) is built
// once per leadership, when a heartbeat first names it, and again after a failure (30 s).
//
// Maintenance goes the same way: hosts.maintenance / maintenance_until (set by the API or by
// hand) differing from hosts.maintenance_applied are put into or taken out of trapline's
// Zabbix maintenance (with data collection), then marked applied and audited
// ("maintenance.start" / "maintenance.stop"). An expired maintenance is cleared.
//
// Thread: Request() and the callbacks on the coordinator's loop; the sync on libuv's pool.

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "common/pg_client.h"
#include "common/uv.h"
#include "zabbix-sync/api_client.h"
#include "zabbix-sync/sync.h"

namespace trapline::coordinator {

struct ZabbixSyncOptions {
  zabbix::ApiConfig api;       // api.url empty: zabbix-sync off
  zabbix::SyncOptions sync;
  bool enabled() const { return !api.url.empty(); }
};

class ZabbixSyncWorker {
 public:
  // REQUIRES: `registry` outlives the worker.
  ZabbixSyncWorker(uv_loop_t* loop, pg::Client* registry, std::string coordinator_name,
                   ZabbixSyncOptions options);
  ~ZabbixSyncWorker();

  // Schedules a sync of the task's host (merged with a pending one for the same task).
  void Request(int64_t task_id);
  // Every task that has entities (after a takeover: what changed meanwhile is caught up).
  void RequestAll();
  // Looks for hosts whose maintenance changed and queues them (the leader calls it every tick).
  void PollMaintenance();
  // Looks for collectors' own hosts (their heartbeats' "self_host") not yet built by this
  // leader and queues their sync with the trapline plugin (the leader calls it every tick).
  void PollCollectorHosts();
  // Drops what is queued; a sync in progress finishes and its result is dropped.
  void Cancel();

  size_t queued() const { return queue_.size(); }
  uint64_t syncs_done() const { return done_; }
  uint64_t syncs_failed() const { return failed_; }

 private:
  struct Job;
  void Next();
  void Run(std::shared_ptr<Job> job);
  void Finish(std::shared_ptr<Job> job);
  void FinishMaintenance(std::shared_ptr<Job> job);

  uv_loop_t* loop_;
  pg::Client* registry_;
  std::string name_;
  ZabbixSyncOptions options_;
  std::deque<int64_t> queue_;
  std::set<int64_t> queued_;
  std::deque<std::string> self_queue_;   // collectors' own hosts to sync
  std::set<std::string> self_queued_;
  std::set<std::string> self_synced_;    // built since this coordinator became leader
  std::map<std::string, uint64_t> self_failed_ms_;  // loop time of the last failure
  std::set<std::string> self_shared_warned_;  // hosts named by several collectors, logged once
  bool polling_self_ = false;
  std::deque<int64_t> maintenance_queue_;  // host ids
  std::set<int64_t> maintenance_queued_;
  std::map<int64_t, uint64_t> maintenance_failed_ms_;  // host id -> loop time of its last failure
  bool polling_ = false;
  bool busy_ = false;
  uint64_t generation_ = 0;  // bumped by Cancel(): results of older jobs are dropped
  uint64_t done_ = 0, failed_ = 0;
  // Used only by the job on the pool (one at a time): the connection and the macro cache
  // live across syncs. Jobs hold it, so a worker destroyed while a sync runs (the loop was
  // stopped) does not pull it from under the job.
  struct Shared;
  std::shared_ptr<Shared> shared_;
  std::set<int64_t> retry_;  // failed for a passing reason (Zabbix unreachable): again later
  Timer retry_timer_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace trapline::coordinator
