#pragma once
// A target is one monitored service (a Linux host over SSH, a PostgreSQL instance, a Redis
// instance) with one long-lived connection on the collector's loop. TargetBase holds what
// every kind shares: the tick timer, reconnecting with backoff, the connection state kept for
// the coordinator and the admin panel, and rate-limited complaints. A kind implements
// Connect(), Tick() and Disconnect() and reports through Connected(), Failed() and
// Deliver().
//
// Thread: the loop's. Lifetime: a target may be destroyed at any time; its handles close
// through the RAII wrappers and no callback reaches it afterwards.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "collector/value_set.h"
#include "common/log.h"
#include "common/status.h"
#include "common/uv.h"
#include "plugins/plugin.h"

namespace trapline {

struct TargetConfig {
  std::string host;    // the Zabbix host name the values go to
  std::string plugin;  // "linux", "postgresql", "redis"
  std::string uri;     // ssh://user@host:port, postgresql://..., redis://user@host:port/db
  // SSH
  std::string identity;             // private key file (ed25519 or RSA)
  std::string identity_passphrase;  // optional, inline (prefer identity_passphrase_file)
  std::string identity_passphrase_file;  // first line is the key's passphrase; read at connect
  bool use_agent = false;           // try ssh-agent ($SSH_AUTH_SOCK) before the key file
  std::string known_hosts;          // required for SSH unless trust_on_first_use
  bool trust_on_first_use = false;  // accept and record an unknown host key
  double keepalive_s = 15;
  // PostgreSQL and Redis
  std::string password;       // inline (prefer password_file)
  std::string password_file;  // first line is the password
  // Sampling and reconnecting
  double period_s = 1.0;
  int interval_s = 0;               // value-set interval for every metric; 0: each metric's own
  double timeout_s = 10.0;          // connect and per-tick request timeout
  double reconnect_base_s = 1.0;    // first retry after this, doubling up to reconnect_max_s
  double reconnect_max_s = 60.0;
  // Plugin options ([target.<plugin>] table), as text.
  std::map<std::string, std::string> options;

  // "host/plugin", for logs.
  std::string Name() const { return host + "/" + plugin; }
};

// The first line of a secret file (`setting` names it in errors: "password_file",
// "identity_passphrase_file"), without its line ending. Read at each connect, so that a
// rotated secret is picked up by the next reconnect. A missing, unreadable or empty file (or
// an empty first line) is InvalidArgument naming the setting and the path, never the content.
Result<std::string> ReadSecretFile(const std::string& path, std::string_view setting);

struct ConnectionState {
  bool connected = false;
  std::string last_error;        // empty if none yet
  int64_t last_error_clock = 0;  // unix seconds
  uint64_t retries = 0;          // consecutive failed attempts (0 when connected)
  uint64_t connects = 0;         // successful connects so far
  uint64_t ticks = 0;            // ticks answered
  uint64_t ticks_skipped = 0;    // ticks skipped because the previous one was still running
};

// The URI with any password replaced by "***", for logs and status.
std::string RedactUri(const std::string& uri);

// The tick slot of a target among `slots` (a stable hash of `key`, the same on every
// collector), so that its ticks keep their phase of the second wherever it runs.
uint64_t TickSlot(std::string_view key, uint64_t slots);

// Current wall-clock time as Zabbix stores it.
ZbxTime WallClockNow();

class TargetBase {
 public:
  // Receives each tick's parse result, stamped with the time the reply arrived.
  using DeliverFn = std::function<void(ZbxTime t, plugins::ParseResult result)>;

  TargetBase(uv_loop_t* loop, TargetConfig config, DeliverFn deliver);
  virtual ~TargetBase();
  TargetBase(const TargetBase&) = delete;
  TargetBase& operator=(const TargetBase&) = delete;

  // Connects (at once, or after the connections started just before on this thread's loop:
  // starts are paced) and starts sampling; reconnects by itself from then on.
  void Start();
  const ConnectionState& state() const { return state_; }
  const TargetConfig& config() const { return config_; }
  // Called after every change of state(): connected, failed, reconnecting.
  void set_on_state(std::function<void(const TargetBase&)> fn) { on_state_ = std::move(fn); }
  // Loop time spent in this target's callbacks since it was made (ticks and socket events:
  // requests, replies, parsing, value sets), in nanoseconds: what the task costs its
  // collector. The cluster reports it per task so that the coordinator can weigh tasks by it.
  uint64_t busy_ns() const { return *busy_ns_; }

  // Ticks are due on a grid of this many milliseconds of loop time: targets whose ticks share
  // a slot tick in the same loop iteration and share its wake-ups. A wake-up from idle costs
  // 17-45 us of CPU on a virtual machine (bench/collector_load.py prints them), more than a
  // Redis tick's own work: ten slots a second, not a hundred.
  static constexpr uint64_t kTickSlotMs = 100;

  // Ticks of this thread's targets waiting for their replies, and ticks ended (answered or
  // failed) so far: what ReplyBatcher watches to read replies in batches.
  struct TickCounts {
    uint64_t in_flight = 0;
    uint64_t ended = 0;
  };
  static const TickCounts& ThreadTickCounts() { return tick_counts_; }

 protected:
  // Starts connecting; calls Connected() or Failed() later (or at once).
  virtual void Connect() = 0;
  // Sends one tick's requests; calls Deliver() (and TickDone()) or Failed() later.
  // REQUIRES: connected, and no tick in progress.
  virtual void Tick() = 0;
  // Drops the connection and every pending request; no callback of the old connection may
  // reach the target afterwards. Must be safe to call when not connected, and from inside a
  // callback of the connection itself (Failed() calls it): never free a connection inside
  // its own callback, mark it closed and free it later (e.g. in a close callback).
  virtual void Disconnect() = 0;

  void Connected();
  // The connection or a request failed: disconnects and schedules a reconnect.
  void Failed(const Status& st);
  // One tick's result. Ends the tick.
  void Deliver(plugins::ParseResult result);
  // Ends a tick that delivered nothing.
  void TickDone() { SetTickInProgress(false); }

  uv_loop_t* loop() const { return loop_; }

  // Adds the time until it goes out of scope to the target's busy_ns(). It holds the counter,
  // not the target: safe when the target is destroyed inside the scope. Two clock reads
  // (uv_hrtime, vDSO) per callback.
  class BusyScope {
   public:
    explicit BusyScope(std::shared_ptr<uint64_t> counter)
        : counter_(std::move(counter)), start_(uv_hrtime()) {}
    ~BusyScope() { *counter_ += uv_hrtime() - start_; }
    BusyScope(const BusyScope&) = delete;
    BusyScope& operator=(const BusyScope&) = delete;

   private:
    std::shared_ptr<uint64_t> counter_;
    uint64_t start_;
  };
  const std::shared_ptr<uint64_t>& busy_counter() const { return busy_ns_; }
  // Start() begins at most one connection per this many milliseconds (see Start()).
  static constexpr uint64_t kStartSpacingMs = 2;
  uint64_t timeout_ms() const { return static_cast<uint64_t>(config_.timeout_s * 1000); }

 private:
  // One timer per target serves both the ticks and the deadline of the tick in progress: it
  // is armed for whichever comes first, so that a tick costs one timer insertion, not three
  // (repeat, deadline start, deadline stop).
  void OnTimer();
  void ArmTimer();
  void ScheduleReconnect();
  void NotifyState();
  void SetTickInProgress(bool on);

  static thread_local TickCounts tick_counts_;

  uv_loop_t* loop_;
  TargetConfig config_;
  DeliverFn deliver_;
  std::function<void(const TargetBase&)> on_state_;
  ConnectionState state_;
  Timer tick_timer_;
  Timer reconnect_timer_;
  uint64_t period_ms_;
  uint64_t next_tick_ms_ = 0;      // loop time the next tick is due
  uint64_t tick_deadline_ms_ = 0;  // loop time the tick in progress fails, if it has not ended
  bool tick_in_progress_ = false;
  bool connecting_ = false;
  Complainer complainer_{std::chrono::seconds(60)};
  std::shared_ptr<uint64_t> busy_ns_ = std::make_shared<uint64_t>(0);
};

}  // namespace trapline
