#pragma once
// A collector's membership in the cluster: it registers in the coordinator's registry
// (PostgreSQL), reports its load every heartbeat (event-loop lag p50/p99, CPU, tasks,
// connection states, sender counters, the tasks it runs with their generations), records its
// targets' errors, and runs the tasks assigned to it: on a NOTIFY on channel
// "trapline_assign", on every reconnect to the registry and every `resync` seconds, it reads
// its tasks and starts, stops or restarts targets to match. The entities each task's target
// reports go to the registry's entities table (NOTIFY trapline_entities), for zabbix-sync.
//
// The registry is not on the sample path: when it is unreachable the collector keeps
// sampling and sending with the tasks it holds, and reconciles when the registry is back.
//
// Hand-over without duplicates, in two phases: a task that leaves is stopped (its open
// intervals flushed) as soon as the collector sees it gone, and a heartbeat goes out at once
// listing the (task, generation) pairs still running. A collector given a task starts it only
// once no other active collector's last heartbeat lists it (re-reading every
// kHandOverPollMs), so the two never sample it at the same time; a collector declared dead
// does not count, and after kHandOverWaitMs the task starts anyway (logged: the old
// collector is stuck but still heartbeating).
//
// Thread: the loop's.

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "collector/collector.h"
#include "common/pg_client.h"
#include "common/uv.h"

namespace trapline {

// One row of the registry's assignment query, turned into what a target needs. Pure, for
// tests: secrets are written under `secrets_dir` by the caller (see WriteSecretFiles).
struct AssignedTask {
  int64_t id = 0;
  int64_t generation = 0;
  std::string host;      // Zabbix host name
  std::string plugin;
  std::string uri;       // the service's URI, or built from address, port and user
  std::string username;
  std::string secret_json = "{}";   // {"password":..} / {"private_key":.., "passphrase":..}
  std::string options_json = "{}";  // {"known_hosts":.., "identity":.., "trust_on_first_use":..}
  std::string address;
  int port = 0;
};

// The target for a task. Secret files (password, private key) are written by this call into
// `secrets_dir` (created 0700, files 0600) and named by task id.
Result<TargetConfig> TargetForTask(const AssignedTask& task, const std::string& secrets_dir);

class ClusterMember {
 public:
  // REQUIRES: `collector` outlives this and has started.
  ClusterMember(uv_loop_t* loop, Collector* collector, std::string name, ClusterOptions options);
  ~ClusterMember();

  void Start();
  // Marks the collector draining (its tasks move at once) and stops; the targets stay with
  // the collector, which the caller stops.
  void Stop(std::function<void()> done);

  bool registered() const { return collector_id_ > 0; }
  size_t tasks() const { return running_.size(); }

 private:
  void Register();
  void Heartbeat();
  void ReadAssignments();
  void Apply(const pg::Rows& rows);
  // Starts the tasks in `fresh` that no other active collector reports running (see the
  // hand-over above); the others are retried.
  void StartFresh(std::map<int64_t, AssignedTask> fresh);
  void StartTasks(const std::vector<const AssignedTask*>& tasks);
  std::string LoadJson();
  void ReportErrors();
  void ReportEntities(int64_t task, const std::vector<plugins::Entity>& entities);

  uv_loop_t* loop_;
  Collector* collector_;
  std::string name_;
  ClusterOptions options_;
  pg::Client pg_;
  Timer heartbeat_timer_;
  Timer resync_timer_;
  LoopLagMonitor lag_;
  int64_t collector_id_ = 0;
  bool reading_ = false;
  bool reread_ = false;
  std::map<int64_t, int64_t> running_;               // task id -> generation
  static constexpr uint64_t kHandOverPollMs = 200;
  static constexpr uint64_t kHandOverWaitMs = 3000;
  std::map<int64_t, uint64_t> waiting_since_ms_;     // task id -> when it was first held elsewhere
  Timer handover_timer_;
  uint64_t apply_seq_ = 0;  // bumped by each Apply: older hand-over checks are dropped
  std::map<int64_t, int64_t> reported_error_clock_;  // task id -> last error clock recorded
  std::map<int64_t, bool> reported_ok_;
  // Each task's measured cost: its target's busy time (TargetBase::busy_ns) per second of
  // loop time over windows of kCostWindowMs, reported in the load as "task_us".
  static constexpr uint64_t kCostWindowMs = 10000;
  struct BusyMark {
    uint64_t busy_ns = 0;
    uint64_t at_ms = 0;
  };
  std::map<int64_t, BusyMark> busy_mark_;  // task id -> where its current window started
  std::map<int64_t, double> task_us_;      // task id -> µs per second in the last window
  std::map<int64_t, std::vector<plugins::Entity>> entities_;  // task -> last set its target gave
  double last_cpu_s_ = 0;
  uint64_t last_cpu_ms_ = 0;
  uint64_t failures_logged_ms_ = 0;
};

}  // namespace trapline
