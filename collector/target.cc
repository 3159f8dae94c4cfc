#include "collector/target.h"

#include <time.h>

#include <algorithm>
#include <fstream>
#include <random>
#include <string_view>

namespace trapline {

std::string RedactUri(const std::string& uri) {
  size_t scheme = uri.find("://");
  size_t start = scheme == std::string::npos ? 0 : scheme + 3;
  size_t at = uri.find('@', start);
  size_t end = uri.find_first_of("/?", start);
  if (at == std::string::npos || (end != std::string::npos && at > end)) return uri;
  size_t colon = uri.find(':', start);
  if (colon == std::string::npos || colon > at) return uri;
  return uri.substr(0, colon + 1) + "***" + uri.substr(at);
}

uint64_t TickSlot(std::string_view key, uint64_t slots) {
  // FNV-1a: the same on every collector, whatever its build (std::hash is not).
  uint64_t h = 14695981039346656037ull;
  for (unsigned char c : key) h = (h ^ c) * 1099511628211ull;
  return h % slots;
}

ZbxTime WallClockNow() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return ZbxTime{ts.tv_sec, static_cast<int32_t>(ts.tv_nsec)};
}

TargetBase::TargetBase(uv_loop_t* loop, TargetConfig config, DeliverFn deliver)
    : loop_(loop),
      config_(std::move(config)),
      deliver_(std::move(deliver)),
      tick_timer_(loop),
      reconnect_timer_(loop),
      period_ms_(std::max<uint64_t>(1, static_cast<uint64_t>(config_.period_s * 1000))) {}

thread_local TargetBase::TickCounts TargetBase::tick_counts_;

TargetBase::~TargetBase() { SetTickInProgress(false); }

void TargetBase::SetTickInProgress(bool on) {
  if (on == tick_in_progress_) return;
  tick_in_progress_ = on;
  if (on) {
    ++tick_counts_.in_flight;
  } else {
    --tick_counts_.in_flight;
    ++tick_counts_.ended;
  }
}

void TargetBase::Start() {
  // Connection starts are paced, kStartSpacingMs apart on this thread's loop: a collector
  // started with a thousand targets would otherwise begin a thousand TCP, TLS and SSH
  // handshakes in one loop iteration, stalling the loop and timing out handshakes that the
  // servers queue (a connect storm that never settles).
  static thread_local uint64_t next_start_ms = 0;
  uint64_t now = uv_now(loop_);
  uint64_t at = std::max(now, next_start_ms);
  next_start_ms = at + kStartSpacingMs;
  connecting_ = true;
  if (at == now) return Connect();
  reconnect_timer_.Start(at - now, 0, [this] { Connect(); });
}

void TargetBase::Connected() {
  connecting_ = false;
  state_.connected = true;
  state_.retries = 0;
  ++state_.connects;
  if (complainer_.Recovered()) {
    spdlog::info("[target] {} {}: connected again after failures", config_.Name(), RedactUri(config_.uri));
  } else {
    spdlog::info("[target] {} {}: connected", config_.Name(), RedactUri(config_.uri));
  }
  NotifyState();
  // Ticks on the period, at a phase of the wall-clock second that depends only on the target
  // (its slot is a hash of its name and URI). Targets spread over the period, so that many
  // connected together do not all tick in the same loop iteration (a lag spike), while those
  // in the same slot share one. And a task handed to another collector keeps its phase: the
  // new collector starts it only after the old one stopped, so its first sample comes at least
  // a period after the old one's last, never a fraction of a second after it.
  uint64_t slots = std::max<uint64_t>(1, period_ms_ / kTickSlotMs);
  uint64_t phase_ms = TickSlot(config_.Name() + " " + config_.uri, slots) * kTickSlotMs;
  ZbxTime wall = WallClockNow();
  uint64_t wall_ms = static_cast<uint64_t>(wall.clock) * 1000 + static_cast<uint64_t>(wall.ns) / 1000000;
  uint64_t until = (phase_ms + period_ms_ - wall_ms % period_ms_) % period_ms_;
  next_tick_ms_ = (uv_now(loop_) + until + kTickSlotMs / 2) / kTickSlotMs * kTickSlotMs;
  SetTickInProgress(false);
  ArmTimer();
}

void TargetBase::ArmTimer() {
  uint64_t due = next_tick_ms_;
  if (tick_in_progress_) due = std::min(due, tick_deadline_ms_);
  uint64_t now = uv_now(loop_);
  tick_timer_.Start(due > now ? due - now : 0, 0, [this] { OnTimer(); });
}

void TargetBase::OnTimer() {
  if (!state_.connected) return;
  BusyScope busy(busy_ns_);
  uint64_t now = uv_now(loop_);
  // A tick that never answers is a dead connection.
  if (tick_in_progress_ && now >= tick_deadline_ms_) {
    return Failed(Status::Timeout("no reply within " + std::to_string(timeout_ms()) + " ms"));
  }
  if (now < next_tick_ms_) return ArmTimer();  // the deadline of a tick that has ended
  // The next tick stays on the grid; after a stall of more than a period the missed ticks
  // are not made up in a burst.
  next_tick_ms_ += period_ms_;
  if (next_tick_ms_ <= now) {
    next_tick_ms_ += ((now - next_tick_ms_) / period_ms_ + 1) * period_ms_;
  }
  if (tick_in_progress_) {
    ++state_.ticks_skipped;
    return ArmTimer();
  }
  SetTickInProgress(true);
  tick_deadline_ms_ = now + timeout_ms();
  ArmTimer();
  // Tick() may end in Deliver() or Failed(), which may destroy the target: nothing after it.
  Tick();
}

void TargetBase::Deliver(plugins::ParseResult result) {
  // The timer may still be armed for this tick's deadline: it then finds no tick in progress
  // and arms itself for the next tick.
  SetTickInProgress(false);
  ++state_.ticks;
  if (deliver_) deliver_(WallClockNow(), std::move(result));
}

void TargetBase::Failed(const Status& st) {
  tick_timer_.Stop();
  SetTickInProgress(false);
  bool was_connected = state_.connected;
  state_.connected = false;
  state_.last_error = st.message();
  state_.last_error_clock = WallClockNow().clock;
  ++state_.retries;
  Disconnect();
  int suppressed = 0;
  if (complainer_.ShouldLog(std::chrono::steady_clock::now(), &suppressed)) {
    spdlog::warn("[target] {} {}: {}{} (attempt {}{})", config_.Name(), RedactUri(config_.uri),
                 was_connected ? "connection lost: " : "", st.message(), state_.retries,
                 suppressed > 0 ? ", " + std::to_string(suppressed) + " similar not logged" : "");
  }
  NotifyState();
  ScheduleReconnect();
}

void TargetBase::ScheduleReconnect() {
  double delay = config_.reconnect_base_s;
  for (uint64_t i = 1; i < state_.retries && delay < config_.reconnect_max_s; ++i) delay *= 2;
  delay = std::min(delay, config_.reconnect_max_s);
  // +-20% jitter so that many targets failing together do not reconnect in step.
  static thread_local std::minstd_rand rng{std::random_device{}()};
  delay *= std::uniform_real_distribution<double>(0.8, 1.2)(rng);
  reconnect_timer_.Start(static_cast<uint64_t>(delay * 1000), 0, [this] {
    connecting_ = true;
    Connect();
  });
}

void TargetBase::NotifyState() {
  if (on_state_) on_state_(*this);
}

Result<std::string> ReadSecretFile(const std::string& path, std::string_view setting) {
  std::string where = std::string(setting) + " " + path;
  std::ifstream in(path);
  if (!in) return Status::InvalidArgument(where + ": cannot open");
  std::string line;
  if (!std::getline(in, line)) return Status::InvalidArgument(where + ": empty");
  if (!line.empty() && line.back() == '\r') line.pop_back();
  if (line.empty()) return Status::InvalidArgument(where + ": first line empty");
  return line;
}

}  // namespace trapline
