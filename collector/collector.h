#pragma once
// The collector daemon: one libuv loop holding every target's connection, a metric pipeline
// per target (rates, value sets), one sender to Zabbix (or a dry-run printer), and a
// self-watch: event-loop lag and CPU, logged every minute with the sender's counters.
//
// Standalone mode: targets come from the config file ([[target]] tables). Thread: the
// loop's.

#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "collector/pipeline.h"
#include "collector/sender.h"
#include "collector/target.h"
#include "common/status.h"
#include "common/uv.h"

namespace trapline {

class ConfigTable;
class HttpServer;

// Cluster mode ([cluster] in the config): the collector registers in the coordinator's
// registry, reports its load every heartbeat and runs the tasks assigned to it there
// (collector/cluster_member.h). Without a registry it is a standalone collector.
struct ClusterOptions {
  std::string registry;       // PostgreSQL URI of the registry; "" = standalone
  double weight = 1;          // share of the tasks, relative to the other collectors
  std::string address;        // how operators reach it (shown by the coordinator)
  double heartbeat_s = 1;     // load report period; the coordinator declares it dead after 3 s
  double resync_s = 10;       // re-read assignments even without a NOTIFY
  std::string secrets_dir;    // where task secrets (passwords, keys) are written, mode 0700
};

struct CollectorOptions {
  std::string name = "collector";
  std::string log_level = "info";
  double stats_interval_s = 60;  // how often the self-watch line is logged
  std::string metrics_listen;    // "127.0.0.1:9464": serve Prometheus /metrics there; "" = off
  double reply_batch_ms = 2;     // ReplyBatcher's window; 0 = read each reply as it comes
  // The Zabbix host of the collector's own health (plugins/trapline), sampled every second
  // and sent like a target's values; "" = off.
  std::string self_host;
  int self_interval_s = 0;  // its value-set interval; 0: the metrics' own (60 s)
  SenderOptions sender;
  ClusterOptions cluster;
  std::vector<TargetConfig> targets;

  // Reads [collector], [sender] and [[target]]; every key is checked (a misspelt key is an
  // error naming the file, line and key).
  static Result<CollectorOptions> FromConfig(ConfigTable* root);
  static Result<CollectorOptions> FromConfigFile(const std::string& path);
};

// Reads one [[target]] table.
Result<TargetConfig> TargetConfigFromTable(ConfigTable* t);

// CPU seconds (user + system) this process has used.
double ProcessCpuSeconds();
// Resident set size in bytes (/proc/self/statm), 0 when unknown.
double ResidentBytes();

// Event-loop lag: a timer asks to fire every `period`; how late it fires is the lag.
class LoopLagMonitor {
 public:
  explicit LoopLagMonitor(uv_loop_t* loop, uint64_t period_ms = TargetBase::kTickSlotMs);
  struct Figures {
    double p50_ms = 0;
    double p99_ms = 0;
    double max_ms = 0;
    size_t samples = 0;
  };
  // Over the samples since the last call (then starts afresh).
  Figures TakeFigures();
  // Over the last minute or so (the latest kRecent samples); does not start afresh.
  Figures Recent() const;
  std::vector<double> RecentSeconds() const;
  // The worst lag since the last call (0 when none was measured): the collector's own
  // per-second sample (plugins/trapline).
  double TakeWorstMs();
  // Since start: lag summed over every sample, and the number of samples.
  double total_ms() const { return total_ms_; }
  uint64_t total_samples() const { return total_samples_; }
  static constexpr size_t kRecent = 600;

 private:
  void Arm();

  uv_loop_t* loop_;
  uint64_t period_ms_;
  Timer timer_;
  uint64_t expected_ns_ = 0;
  std::vector<double> lags_ms_;
  std::vector<double> recent_ms_;  // ring of the latest kRecent lags
  size_t recent_next_ = 0;
  double total_ms_ = 0;
  uint64_t total_samples_ = 0;
  double worst_ms_ = 0;  // since TakeWorstMs()
};

// Reads replies in batches. The ticks of a slot send their requests together; the replies come
// back one by one as the servers answer them, and a loop that polls as soon as one is ready
// wakes once per reply. A wake-up from idle costs 17-45 us of CPU on a virtual machine, more
// than a Redis tick's own work. So before the loop polls, if the last iteration ended ticks
// while others still wait for their replies, the thread pauses for `window_ms` (never past the
// next timer) and the poll then reads all that arrived meanwhile: a few wake-ups per slot
// instead of one per reply, for at most `window_ms` of latency. An iteration that ended no
// tick polls at once, so a server that never answers does not make the loop spin.
class ReplyBatcher {
 public:
  // window_ms == 0: off.
  ReplyBatcher(uv_loop_t* loop, double window_ms);
  uint64_t pauses() const { return pauses_; }

 private:
  void BeforePoll();

  uv_loop_t* loop_;
  uint64_t window_ns_;
  uint64_t ended_seen_ = 0;
  uint64_t pauses_ = 0;
  Prepare prepare_;
};

// The kind of target that serves a plugin ("linux" -> SSH, ...), or an error naming the
// plugins there are.
Result<std::unique_ptr<TargetBase>> MakeTarget(uv_loop_t* loop, TargetConfig config,
                                               TargetBase::DeliverFn deliver);

class Collector {
 public:
  // With `dry_run`, values are printed to `out` in zabbix_sender input format instead of
  // being sent.
  Collector(uv_loop_t* loop, CollectorOptions options, bool dry_run, std::FILE* out);
  ~Collector();

  Status Start();
  // Adds a target under `id` (unique; the config's targets are "config:<n>") and starts it
  // when the collector has started. InvalidArgument on a bad config or a duplicate id.
  Status AddTarget(const std::string& id, TargetConfig config);
  // Stops a target: its open intervals are closed and handed to the sender first, so a task
  // handed over to another collector loses nothing and is never sampled twice. Unknown ids
  // are ignored.
  void RemoveTarget(const std::string& id);
  // The target running under `id`, or null.
  const TargetBase* FindTarget(const std::string& id) const;
  // Ids of the running targets.
  std::vector<std::string> TargetIds() const;
  // Called on a target's first tick and whenever the set of entities it reports changes
  // (sorted by kind, name; possibly empty).
  using EntitiesFn = std::function<void(const std::string& id, const std::vector<plugins::Entity>&)>;
  void set_on_entities(EntitiesFn fn) { on_entities_ = std::move(fn); }
  // Closes every open interval, hands the values to the sender and shuts it down (undelivered
  // values go to the spool). The loop may then be stopped.
  void Stop();

  struct TargetStatus {
    std::string id;
    std::string name;
    std::string uri;
    ConnectionState state;
  };
  std::vector<TargetStatus> Targets() const;
  SenderCounters sender_counters() const;
  // The Zabbix host of its own health ([collector] self_host; "" = off).
  const std::string& self_host() const { return options_.self_host; }
  // The Prometheus text served at /metrics (collector/collector_metrics.cc).
  std::string RenderMetrics() const;
  // The port /metrics is served on (0 when metrics_listen is off).
  int metrics_port() const;

 private:
  struct Running;
  void OnValues(std::vector<SenderValue>* values);
  void NoteEntities(Running* r, std::vector<plugins::Entity>* found);
  void LogStats();
  // One second of the collector's own health into the self pipeline (plugins/trapline).
  void SampleSelf();
  Status StartMetricsServer();

  uv_loop_t* loop_;
  CollectorOptions options_;
  bool dry_run_;
  std::FILE* out_;
  std::unique_ptr<Sender> sender_;
  std::vector<std::unique_ptr<Running>> targets_;
  bool started_ = false;
  EntitiesFn on_entities_;
  LoopLagMonitor lag_;
  ReplyBatcher batcher_;
  Timer stats_timer_;
  double last_cpu_s_ = 0;
  uint64_t last_stats_ms_ = 0;
  // The targets' ticks answered and skipped (the previous one still running), summed at the
  // last stats line: each line says how many of the interval's ticks were done.
  uint64_t last_ticks_ = 0;
  uint64_t last_ticks_skipped_ = 0;
  std::vector<SenderValue> scratch_;
  // The collector's own health (options_.self_host set): sampled every second.
  std::unique_ptr<MetricPipeline> self_pipeline_;
  Timer self_timer_;
  double self_last_cpu_s_ = 0;
  uint64_t self_last_ms_ = 0;
  std::unique_ptr<HttpServer> metrics_server_;  // last: destroyed first
};

}  // namespace trapline
