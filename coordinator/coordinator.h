#pragma once
// `trapline coordinator`: the control plane's process (issue 5). This slice:
//
//   start:  connect to the registry --> migrate the schema (registry_schema.h) --> run the
//           leader election (leader.h) on a second connection
//   leader: every assign_interval (1 s), on the registry connection:
//             1. collectors whose last_heartbeat is older than heartbeat_timeout become
//                'dead', dead ones with a fresh heartbeat 'active' again (one UPDATE; the
//                database's clock decides, so no clocks of different machines are compared)
//             2. read collectors and tasks (with their current collector)
//             3. ComputeAssignment (assignment.h; sticky: given the current placements, a
//                restart or a takeover moves nothing)
//             4. write the changed task rows (collector, generation + 1) and NOTIFY
//                trapline_assign '<collector name>' for the old and the new collector of each,
//                in one statement (one transaction), fenced by the leader epoch: a leader that
//                was superseded writes nothing
//   standby: waits (the elector tries the lock every second)
//
// Logs, one line per event: "[coordinator] leader: acquired epoch=3", "[coordinator] leader:
// lost (lock connection lost: ...)", "[coordinator] collector c2 dead: no heartbeat for
// 3.4 s", "[coordinator] assign: 20 moves (collector c2 left)".
//
// Thread: the loop's. Not copyable.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/log.h"
#include "common/pg_client.h"
#include "common/status.h"
#include "common/uv.h"
#include "coordinator/assignment.h"
#include "coordinator/http_api.h"
#include "coordinator/leader.h"
#include "coordinator/zabbix_sync_worker.h"

namespace trapline {

class ConfigTable;

namespace coordinator {

// The NOTIFY channel a collector LISTENs on; the payload is the collector's name.
inline constexpr const char* kAssignChannel = "trapline_assign";

struct CoordinatorOptions {
  std::string name;               // default: the host name
  std::string registry;           // PostgreSQL URI or key=value string; required
  double heartbeat_timeout_s = 3;
  double overload_lag_ms = 500;   // event-loop lag p99 above which a collector sheds; 0: never
  // How often the leader refines tasks' costs from what collectors measure ("task_us" in
  // their load); 0: never (costs stay as declared).
  double cost_refresh_s = 30;
  std::string log_level = "info";
  double assign_interval_s = 1;   // not in the config file: the leader's tick
  ZabbixSyncOptions zabbix;       // [zabbix]: the API zabbix-sync uses; absent: no sync
  HttpApiOptions http;            // [http]: the HTTP API and /metrics; listen empty: off

  // [coordinator] table; every other key or table is an error naming file and line.
  static Result<CoordinatorOptions> FromConfig(ConfigTable* root);
  static Result<CoordinatorOptions> FromConfigFile(const std::string& path);
};

// ---- pure parts (unit-tested) -------------------------------------------------------------

struct CollectorRow {
  CollectorId id = 0;
  std::string name;
  double weight = 1;
  std::string state;                 // active, draining, dead
  std::optional<double> lag_p99_ms;  // from the load report, when it has a number there
  int protocol = 0;                  // the cluster protocol it registered with
};

struct TaskRow {
  TaskId id = 0;
  double cost = 1;
  std::optional<CollectorId> collector;
  int64_t generation = 0;
};

// Rows of "SELECT id, name, weight, state, lag_p99_ms" / "SELECT id, cost, collector_id,
// generation". A value that does not parse is InvalidArgument naming the row and column.
Result<std::vector<CollectorRow>> ParseCollectorRows(const pg::Rows& rows);

// Why `c` cannot be given tasks by a coordinator speaking cluster protocol `ours`, or "" when
// it can. The message says what to do (upgrade which side).
std::string ProtocolMismatch(const CollectorRow& c, int ours);
Result<std::vector<TaskRow>> ParseTaskRows(const pg::Rows& rows);

// What happened since the last tick, for the reason in the "assign:" line.
struct TickEvents {
  std::vector<std::string> left;        // collectors that became dead
  std::vector<std::string> joined;      // collectors that became active
  std::vector<std::string> overloaded;  // collectors shedding now
  size_t new_tasks = 0;
  size_t orphaned = 0;
  bool takeover = false;                // the first tick of this leadership
};

// "12 moves (collector c2 left)", "3 moves (collector c4 joined; 2 new tasks)",
// "1 move (rebalance)".
std::string MoveSummary(size_t moves, const TickEvents& events);

// ---- the process ----------------------------------------------------------------------------

class Coordinator {
 public:
  Coordinator(uv_loop_t* loop, CoordinatorOptions options);
  ~Coordinator();
  Coordinator(const Coordinator&) = delete;
  Coordinator& operator=(const Coordinator&) = delete;

  // Called once when the coordinator cannot go on (the registry's schema is newer than this
  // build, a migration failed): the caller logs and exits non-zero.
  void SetFatalCallback(std::function<void(const Status&)> cb) { on_fatal_ = std::move(cb); }

  // Connects, migrates, elects. Errors are reported through the logs and the fatal callback.
  void Start();
  // Steps down (the lock connection closes, so a standby takes over within its next try),
  // closes both connections. The loop then runs out.
  void Stop();

  bool leader() const { return leader_; }
  // The HTTP API's port (0 when [http] listen is not set or not yet listening).
  int http_port() const { return api_ ? api_->port() : 0; }

 private:
  struct TickState;
  void OnRegistryState(bool connected, const Status& why);
  void Migrate();
  void OnRole(Role role, int64_t epoch, const std::string& reason);
  void Tick();
  void Assign(std::shared_ptr<TickState> tick);
  void WriteMoves(std::shared_ptr<TickState> tick, const Assignment& a);
  void FinishTick(const Status& st);
  // Services enabled (host enabled, not gone, of a plugin that exists: TaskPlugins(), so never
  // a discovered "generic:nginx") get a task; the others lose theirs (their collectors are
  // told at once).
  void ReconcileTasks();
  void RefineCosts();
  void Fatal(const Status& st);
  CoordinatorSelf Self() const;

  uv_loop_t* loop_;
  CoordinatorOptions options_;
  std::function<void(const Status&)> on_fatal_;
  pg::Client registry_;
  std::unique_ptr<LeaderElector> elector_;
  Timer tick_timer_;
  std::unique_ptr<ZabbixSyncWorker> zabbix_sync_;
  std::unique_ptr<HttpApi> api_;  // before registry_ is closed, it is stopped
  int schema_version_ = 0;

  bool stopping_ = false;
  bool migrating_ = false;
  bool migrated_ = false;
  bool leader_ = false;
  int64_t epoch_ = 0;
  uint64_t leadership_ = 0;  // bumped on every role change: answers of older ticks are dropped
  bool tick_running_ = false;
  bool first_tick_ = false;  // of this leadership
  Complainer tick_errors_{std::chrono::seconds(30)};
  // Collector id -> loop time (ms) of its last shedding: an overloaded collector sheds at most
  // once per kShedEveryMs, so that the load it gave away can show in its lag first.
  std::map<CollectorId, uint64_t> last_shed_ms_;
  // Collector id -> share of its weight it counts with after shedding (< 1; recovers 1% per
  // tick once its lag is back under the threshold), so that shed tasks do not flow back.
  std::map<CollectorId, double> weight_factor_;
  // Collectors refused for their cluster protocol, with the protocol they were refused for
  // (logged and recorded in the errors table once per collector and protocol).
  std::map<CollectorId, int> refused_protocol_;
  uint64_t last_cost_refresh_ms_ = 0;
  size_t last_unassigned_ = 0;
  uint64_t registry_up_since_ms_ = 0;  // loop time of the last registry (re)connection
  bool registry_reconnected_ = false;   // the registry connection was lost at least once
};

}  // namespace coordinator
}  // namespace trapline
