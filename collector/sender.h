#pragma once
// The collector's one asynchronous sender: batches values and pushes them to a Zabbix server
// or proxy through the trapper protocol, on the collector's libuv loop.
//
//  - Batches leave when `batch_values` are queued or every `flush_interval_ms`, over at most
//    `connections` concurrent connections (Zabbix answers one request per connection).
//  - Unreachable Zabbix: values stay queued in memory up to `memory_values`, beyond that in
//    the spool (if configured; else the oldest are dropped and counted). One probe connection
//    at a time retries with exponential backoff; replay is in order.
//  - Values Zabbix counts as "failed" (unknown host or key, disabled item, sender address not
//    allowed, item not in the configuration cache yet) are isolated by bisecting the batch
//    and held for `grace_ms` with retries, so a value for a just-created item is not lost
//    while the server's cache catches up. After the grace they are reported by host and key
//    and counted as rejected. Bisecting re-sends values of a batch Zabbix partly took; they
//    keep their clock/ns, so history's primary key (itemid, clock, ns) stores each once.
//  - Every value gets a clock/ns when queued if it has none, so a re-send is never a second
//    value.
//
// Thread: the loop's. Lifetime: destroy only after Shutdown() (or with nothing queued).

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "collector/spool.h"
#include "collector/zbx_protocol.h"
#include "common/log.h"
#include "common/status.h"
#include "common/tcp_exchange.h"
#include "common/uv.h"

namespace trapline {

class ConfigTable;

struct SenderOptions {
  std::string server = "127.0.0.1";
  uint16_t port = 10051;
  size_t batch_values = 1000;
  uint64_t flush_interval_ms = 1000;
  int connections = 4;
  bool compress = false;
  uint64_t timeout_ms = 10000;
  size_t memory_values = 100000;  // queued in memory before the spool takes over
  std::string spool_dir;          // empty: no spool
  uint64_t spool_max_bytes = 1ull << 30;
  uint64_t grace_ms = 180000;     // retry "failed" values this long (CacheUpdateFrequency is 60 s)
  uint64_t retry_interval_ms = 5000;  // between retries of "failed" values
  uint64_t backoff_min_ms = 500;      // reconnect backoff while Zabbix is unreachable
  uint64_t backoff_max_ms = 30000;

  // Reads the [sender] table of a config file; unknown keys are reported by CheckKnown().
  static Result<SenderOptions> FromConfig(ConfigTable* table);
};

struct SenderCounters {
  uint64_t queued = 0;      // values accepted by Enqueue
  uint64_t sent = 0;        // values Zabbix counted as processed
  uint64_t rejected = 0;    // values Zabbix kept failing past the grace period
  uint64_t retried = 0;     // values re-sent (after a failure or to isolate a rejected one)
  uint64_t spooled = 0;     // values written to the spool
  uint64_t dropped = 0;     // values lost to the memory bound (no spool) or the spool's cap
  uint64_t requests = 0;
  uint64_t request_errors = 0;  // connection errors, timeouts, bad replies
  uint64_t in_memory = 0;   // now queued in memory (not in flight)
  uint64_t in_flight = 0;
  uint64_t in_spool = 0;
  uint64_t held = 0;        // "failed" values waiting for a retry
  double latency_p50_ms = 0;  // from Enqueue to Zabbix's reply, over recent batches
  double latency_p99_ms = 0;
  bool reachable = true;
};

class Sender {
 public:
  using ReplyFn = std::function<void(const std::string& peer, const SenderReply& reply)>;
  using RejectFn = std::function<void(const std::string& host, const std::string& key,
                                      uint64_t values, const std::string& why)>;

  Sender(uv_loop_t* loop, SenderOptions options);
  ~Sender();
  Sender(const Sender&) = delete;
  Sender& operator=(const Sender&) = delete;

  // Opens the spool (its leftovers are sent first) and starts the flush timer.
  Status Start();

  // Every reply (for zabbix_sender-like output).
  void set_on_reply(ReplyFn fn) { on_reply_ = std::move(fn); }
  // Values given up after the grace period, by host and key.
  void set_on_reject(RejectFn fn) { on_reject_ = std::move(fn); }

  void Enqueue(SenderValue v);
  // Sends what is queued now instead of at the next tick.
  void FlushNow();

  // Calls `done` once everything queued so far is delivered or given up (OK), or, when
  // `give_up_when_unreachable`, as soon as Zabbix cannot be reached (Unavailable; the values
  // stay queued). Replaces an earlier Drain's callback.
  void Drain(bool give_up_when_unreachable, std::function<void(Status)> done);

  // Stops sending. Undelivered values go to the spool (if configured) ahead of its content,
  // so a restart replays them in order; without a spool they are counted as dropped. A
  // pending Drain callback is dropped, not called.
  void Shutdown();

  SenderCounters counters() const;
  std::string peer() const;

 private:
  struct Batch;
  void OnTick();
  void Dispatch();
  std::unique_ptr<Batch> NextBatch();
  void Send(std::unique_ptr<Batch> batch);
  void OnReply(std::unique_ptr<Batch> batch, Result<std::string> reply);
  void OnTransportError(std::unique_ptr<Batch> batch, const Status& st);
  void OnFailedValues(std::unique_ptr<Batch> batch, const SenderReply& reply);
  void Delivered(Batch* batch);
  void Requeue(std::unique_ptr<Batch> batch);
  void Hold(std::unique_ptr<Batch> batch);
  void Overflow();
  void CheckDrained();
  uint64_t NowMs() const { return uv_now(loop_); }
  void StampTime(SenderValue* v);

  uv_loop_t* loop_;
  SenderOptions options_;
  std::unique_ptr<Spool> spool_;
  Timer tick_;
  Timer backoff_timer_;
  ReplyFn on_reply_;
  RejectFn on_reject_;

  std::deque<SenderValue> memory_;
  // Batches to send before anything else (failed sends, bisected halves, due retries), by
  // sequence number so that replay keeps the original order.
  std::multimap<uint64_t, std::unique_ptr<Batch>> returned_;
  std::vector<std::unique_ptr<Batch>> held_;  // "failed" values waiting for their retry
  std::map<uint64_t, std::unique_ptr<Batch>> in_flight_;
  // Spool batches by sequence, to commit the spool only over a delivered prefix.
  std::map<uint64_t, std::pair<SpoolPosition, bool>> spool_outstanding_;

  uint64_t next_seq_ = 1;
  uint64_t next_exchange_id_ = 1;
  bool reachable_ = true;
  bool stopped_ = false;
  bool flush_due_ = false;
  uint64_t backoff_ms_ = 0;
  int64_t last_clock_ = 0;
  int32_t last_ns_ = 0;

  bool give_up_when_unreachable_ = false;
  std::function<void(Status)> drain_done_;

  SenderCounters counters_;
  Complainer unreachable_complainer_{std::chrono::seconds(30)};
  Complainer overflow_complainer_{std::chrono::seconds(10)};
  std::vector<double> latencies_;  // ring of recent batch latencies
  size_t latency_next_ = 0;
};

}  // namespace trapline
