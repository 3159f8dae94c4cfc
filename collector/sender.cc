#include "collector/sender.h"

#include <time.h>

#include <algorithm>
#include <chrono>
#include <set>

#include "common/config.h"
#include "common/log.h"

namespace trapline {

struct Sender::Batch {
  uint64_t seq = 0;
  std::vector<SenderValue> values;
  bool from_spool = false;       // its spool range is committed when it is resolved
  uint64_t first_failed_ms = 0;  // when Zabbix first counted these values failed
  uint64_t retry_at_ms = 0;
  std::unique_ptr<TcpExchange> exchange;
};

namespace {

std::string ItemId(const SenderValue& v) { return v.host + '\0' + v.key; }

}  // namespace

Result<SenderOptions> SenderOptions::FromConfig(ConfigTable* t) {
  SenderOptions o;
  TRAPLINE_ASSIGN_OR_RETURN(o.server, t->GetString("server", o.server));
  TRAPLINE_ASSIGN_OR_RETURN(int64_t port, t->GetInt("port", o.port, 1, 65535));
  o.port = static_cast<uint16_t>(port);
  TRAPLINE_ASSIGN_OR_RETURN(int64_t batch, t->GetInt("batch_values", 1000, 1, 1000000));
  o.batch_values = static_cast<size_t>(batch);
  TRAPLINE_ASSIGN_OR_RETURN(double flush_s, t->GetDouble("flush_interval", 1.0, 0.01, 3600));
  o.flush_interval_ms = static_cast<uint64_t>(flush_s * 1000);
  TRAPLINE_ASSIGN_OR_RETURN(int64_t conns, t->GetInt("connections", 4, 1, 64));
  o.connections = static_cast<int>(conns);
  TRAPLINE_ASSIGN_OR_RETURN(o.compress, t->GetBool("compress", false));
  TRAPLINE_ASSIGN_OR_RETURN(double timeout_s, t->GetDouble("timeout", 10, 0.1, 600));
  o.timeout_ms = static_cast<uint64_t>(timeout_s * 1000);
  TRAPLINE_ASSIGN_OR_RETURN(int64_t mem, t->GetInt("memory_values", 100000, 0, 100000000));
  o.memory_values = static_cast<size_t>(mem);
  TRAPLINE_ASSIGN_OR_RETURN(o.spool_dir, t->GetString("spool_dir", ""));
  TRAPLINE_ASSIGN_OR_RETURN(int64_t spool_mb, t->GetInt("spool_max_mb", 1024, 1, 1 << 24));
  o.spool_max_bytes = static_cast<uint64_t>(spool_mb) << 20;
  TRAPLINE_ASSIGN_OR_RETURN(double grace_s, t->GetDouble("grace", 180, 0, 86400));
  o.grace_ms = static_cast<uint64_t>(grace_s * 1000);
  TRAPLINE_ASSIGN_OR_RETURN(double retry_s, t->GetDouble("retry_interval", 5, 0.1, 3600));
  o.retry_interval_ms = static_cast<uint64_t>(retry_s * 1000);
  TRAPLINE_ASSIGN_OR_RETURN(double bmax_s, t->GetDouble("backoff_max", 30, 0.1, 3600));
  o.backoff_max_ms = static_cast<uint64_t>(bmax_s * 1000);
  return o;
}

Sender::Sender(uv_loop_t* loop, SenderOptions options)
    : loop_(loop), options_(std::move(options)), tick_(loop), backoff_timer_(loop) {
  latencies_.reserve(1024);
}

Sender::~Sender() {
  // In-flight exchanges are destroyed with their batches; their callbacks never run.
  in_flight_.clear();
}

std::string Sender::peer() const { return options_.server + ":" + std::to_string(options_.port); }

Status Sender::Start() {
  if (!options_.spool_dir.empty()) {
    SpoolOptions so;
    so.dir = options_.spool_dir;
    so.max_bytes = options_.spool_max_bytes;
    TRAPLINE_ASSIGN_OR_RETURN(spool_, Spool::Open(so));
  }
  tick_.Start(options_.flush_interval_ms, options_.flush_interval_ms, [this] { OnTick(); });
  if (spool_ && spool_->pending_values() > 0) {
    spdlog::info("[sender] replaying {} spooled values from {} to {}", spool_->pending_values(),
                 spool_->dir(), peer());
    Dispatch();
  }
  return Status::OK();
}

void Sender::StampTime(SenderValue* v) {
  if (v->clock != 0) return;
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  int64_t clock = ts.tv_sec;
  int32_t ns = static_cast<int32_t>(ts.tv_nsec);
  // Strictly increasing, so that two values of one item never share (clock, ns).
  if (clock < last_clock_ || (clock == last_clock_ && ns <= last_ns_)) {
    clock = last_clock_;
    ns = last_ns_ + 1;
    if (ns >= 1000000000) {
      ++clock;
      ns = 0;
    }
  }
  last_clock_ = clock;
  last_ns_ = ns;
  v->clock = clock;
  v->ns = ns;
}

void Sender::Enqueue(SenderValue v) {
  StampTime(&v);
  v.queued_ms = NowMs();
  memory_.push_back(std::move(v));
  ++counters_.queued;
  if (memory_.size() > options_.memory_values) Overflow();
  if (memory_.size() >= options_.batch_values) Dispatch();
}

void Sender::FlushNow() {
  flush_due_ = true;
  Dispatch();
}

void Sender::Overflow() {
  if (memory_.empty()) return;
  if (spool_) {
    std::vector<SenderValue> out(std::make_move_iterator(memory_.begin()),
                                 std::make_move_iterator(memory_.end()));
    Status st = spool_->Append(out);
    if (st.ok()) {
      counters_.spooled += out.size();
      memory_.clear();
      spdlog::info("[sender] {} values spooled to {} ({} in spool)", out.size(), spool_->dir(),
                   spool_->pending_values());
      return;
    }
    spdlog::error("[sender] cannot spool: {}; keeping values in memory", st.ToString());
    for (size_t i = 0; i < out.size(); ++i) memory_[i] = std::move(out[i]);
  }
  size_t bound = std::max<size_t>(options_.memory_values, options_.batch_values);
  if (memory_.size() <= bound) return;
  // Drop down to 90% of the bound, so that a sustained overflow drops in chunks (one log line
  // each, rate-limited) rather than one value per Enqueue.
  size_t drop = memory_.size() - bound + bound / 10;
  drop = std::min(drop, memory_.size());
  memory_.erase(memory_.begin(), memory_.begin() + static_cast<std::ptrdiff_t>(drop));
  counters_.dropped += drop;
  int suppressed = 0;
  if (overflow_complainer_.ShouldLog(std::chrono::steady_clock::now(), &suppressed)) {
    spdlog::warn("[sender] memory bound of {} values reached and no spool: dropped the oldest {} "
                 "({} dropped in all); set [sender] spool_dir to keep them",
                 bound, drop, counters_.dropped);
  }
}

void Sender::OnTick() {
  flush_due_ = true;
  uint64_t now = NowMs();
  for (auto it = held_.begin(); it != held_.end();) {
    if ((*it)->retry_at_ms <= now) {
      counters_.retried += (*it)->values.size();
      Requeue(std::move(*it));
      it = held_.erase(it);
    } else {
      ++it;
    }
  }
  Dispatch();
}

std::unique_ptr<Sender::Batch> Sender::NextBatch() {
  if (!returned_.empty()) {
    auto it = returned_.begin();
    auto b = std::move(it->second);
    returned_.erase(it);
    return b;
  }
  // While the spool holds undelivered values, memory waits: what is in memory is newer, and
  // memory batches in flight are then always older than the spool (Shutdown relies on it).
  if (spool_ && spool_->pending_values() > 0) {
    if (spool_->unread_values() == 0) return nullptr;
    auto b = std::make_unique<Batch>();
    SpoolPosition end;
    auto n = spool_->Read(options_.batch_values, &b->values, &end);
    if (!n.ok()) {
      spdlog::error("[sender] {}; retrying at the next tick", n.status().ToString());
      spool_->Rewind();
      return nullptr;
    }
    {
      b->seq = next_seq_++;
      b->from_spool = true;
      uint64_t now = NowMs();
      for (auto& v : b->values) v.queued_ms = now;
      spool_outstanding_[b->seq] = {end, false};
      if (b->values.empty()) {  // only corrupt records: nothing to send, but commit them
        Delivered(b.get());
        return NextBatch();
      }
      return b;
    }
  }
  bool partial_ok = flush_due_ || drain_done_ != nullptr;
  if (memory_.empty() || (memory_.size() < options_.batch_values && !partial_ok)) {
    if (memory_.empty()) flush_due_ = false;
    return nullptr;
  }
  auto b = std::make_unique<Batch>();
  b->seq = next_seq_++;
  size_t n = std::min(memory_.size(), options_.batch_values);
  b->values.assign(std::make_move_iterator(memory_.begin()),
                   std::make_move_iterator(memory_.begin() + static_cast<std::ptrdiff_t>(n)));
  memory_.erase(memory_.begin(), memory_.begin() + static_cast<std::ptrdiff_t>(n));
  return b;
}

void Sender::Dispatch() {
  while (!stopped_) {
    size_t limit = reachable_ ? static_cast<size_t>(options_.connections) : 1;
    if (in_flight_.size() >= limit) break;
    if (!reachable_ && backoff_timer_.active()) break;
    auto b = NextBatch();
    if (!b) break;
    Send(std::move(b));
  }
  CheckDrained();
}

void Sender::Send(std::unique_ptr<Batch> batch) {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  std::string request =
      BuildSenderRequest(batch->values, ts.tv_sec, static_cast<int32_t>(ts.tv_nsec));
  auto frame = EncodeFrame(request, options_.compress);
  if (!frame.ok()) {
    // Only a request over Zabbix's 1 GiB limit fails here. Halve it; a single value that
    // large can never be sent and is reported rejected.
    if (batch->values.size() == 1) {
      const SenderValue& v = batch->values.front();
      ++counters_.rejected;
      std::string why = frame.status().message();
      if (on_reject_) {
        on_reject_(v.host, v.key, 1, why);
      } else {
        spdlog::error("[sender] rejected host={} key={} values=1: {}", v.host, v.key, why);
      }
      return;
    }
    auto second = std::make_unique<Batch>();
    second->seq = batch->seq;
    size_t half = batch->values.size() / 2;
    second->values.assign(std::make_move_iterator(batch->values.begin() + static_cast<std::ptrdiff_t>(half)),
                          std::make_move_iterator(batch->values.end()));
    batch->values.resize(half);
    Requeue(std::move(batch));
    Requeue(std::move(second));
    return;
  }
  uint64_t id = next_exchange_id_++;
  Batch* b = batch.get();
  in_flight_[id] = std::move(batch);
  ++counters_.requests;
  b->exchange = std::make_unique<TcpExchange>(
      loop_, options_.server, options_.port, std::move(frame).value(), options_.timeout_ms,
      [](std::string_view received) { return FrameSize(received); },
      [this, id](Result<std::string> reply) {
        auto it = in_flight_.find(id);
        if (it == in_flight_.end()) return;
        std::unique_ptr<Batch> done = std::move(it->second);
        in_flight_.erase(it);
        // Frees the exchange that is calling us: TcpExchange allows it.
        done->exchange.reset();
        OnReply(std::move(done), std::move(reply));
      });
  b->exchange->Start();
}

void Sender::OnReply(std::unique_ptr<Batch> batch, Result<std::string> reply) {
  if (!reply.ok()) return OnTransportError(std::move(batch), reply.status());
  auto payload = DecodeFrame(reply.value());
  if (!payload.ok()) return OnTransportError(std::move(batch), payload.status());
  auto parsed = ParseSenderReply(payload.value());
  // A "failed" response refuses the whole request (not single values): like a broken
  // connection, the values are kept and the request retried with backoff, so nothing is lost
  // while an operator fixes the server side.
  if (!parsed.ok()) return OnTransportError(std::move(batch), parsed.status());
  const SenderReply& r = parsed.value();

  if (!reachable_) {
    if (unreachable_complainer_.Recovered()) {
      spdlog::info("[sender] zabbix {} reachable again; {} values to replay", peer(),
                   memory_.size() + (spool_ ? spool_->pending_values() : 0));
    }
  }
  reachable_ = true;
  backoff_ms_ = 0;
  if (on_reply_) on_reply_(peer(), r);
  if (r.total != static_cast<int64_t>(batch->values.size())) {
    spdlog::warn("[sender] zabbix {} counted {} values in a batch of {}: '{}'", peer(), r.total,
                 batch->values.size(), r.info);
  }
  if (r.failed == 0) {
    Delivered(batch.get());
  } else {
    OnFailedValues(std::move(batch), r);
  }
  Dispatch();
}

void Sender::OnTransportError(std::unique_ptr<Batch> batch, const Status& st) {
  ++counters_.request_errors;
  counters_.retried += batch->values.size();
  reachable_ = false;
  backoff_ms_ = backoff_ms_ == 0 ? options_.backoff_min_ms
                                 : std::min(backoff_ms_ * 2, options_.backoff_max_ms);
  int suppressed = 0;
  if (unreachable_complainer_.ShouldLog(std::chrono::steady_clock::now(), &suppressed)) {
    spdlog::warn("[sender] zabbix {}: {}; values kept and retried (next try in {} ms{})",
                 st.code() == StatusCode::kProtocolError ? "answered out of protocol"
                 : st.code() == StatusCode::kRejected    ? "refused the request"
                                                         : "unreachable",
                 st.message(), backoff_ms_,
                 suppressed > 0 ? ", " + std::to_string(suppressed) + " similar errors not logged"
                                : "");
  }
  Requeue(std::move(batch));
  backoff_timer_.Start(backoff_ms_, 0, [this] { Dispatch(); });
  if (memory_.size() > options_.memory_values) Overflow();
  if (give_up_when_unreachable_ && drain_done_) {
    auto done = std::move(drain_done_);
    drain_done_ = nullptr;
    done(Status::Unavailable(
        (st.code() == StatusCode::kProtocolError ? "not a Zabbix reply: "
         : st.code() == StatusCode::kRejected    ? "zabbix refused the request: "
                                                 : "zabbix unreachable: ") +
        st.message()));
  }
}

void Sender::OnFailedValues(std::unique_ptr<Batch> batch, const SenderReply& reply) {
  if (batch->from_spool) {
    // Its values now live in memory until resolved.
    spool_outstanding_[batch->seq].second = true;
    batch->from_spool = false;
    Delivered(nullptr);
  }
  std::vector<std::string> items;
  {
    std::set<std::string> seen;
    for (const auto& v : batch->values) {
      std::string id = ItemId(v);
      if (seen.insert(id).second) items.push_back(std::move(id));
    }
  }
  if (items.size() == 1 && (reply.processed == 0 || batch->values.size() == 1)) {
    return Hold(std::move(batch));
  }
  // Bisect: by items when there are several, else by values. Both halves keep the batch's
  // sequence number, so they go out before anything newer and in their original order.
  auto first = std::make_unique<Batch>();
  auto second = std::make_unique<Batch>();
  first->seq = second->seq = batch->seq;
  first->first_failed_ms = second->first_failed_ms = batch->first_failed_ms;
  if (items.size() > 1) {
    std::set<std::string> left(items.begin(), items.begin() + static_cast<std::ptrdiff_t>(items.size() / 2));
    for (auto& v : batch->values) {
      (left.count(ItemId(v)) ? first : second)->values.push_back(std::move(v));
    }
  } else {
    size_t half = batch->values.size() / 2;
    for (size_t i = 0; i < batch->values.size(); ++i) {
      (i < half ? first : second)->values.push_back(std::move(batch->values[i]));
    }
  }
  counters_.retried += first->values.size() + second->values.size();
  Requeue(std::move(first));
  Requeue(std::move(second));
}

void Sender::Hold(std::unique_ptr<Batch> batch) {
  uint64_t now = NowMs();
  if (batch->first_failed_ms == 0) batch->first_failed_ms = now;
  const SenderValue& v = batch->values.front();
  if (now - batch->first_failed_ms >= options_.grace_ms) {
    counters_.rejected += batch->values.size();
    std::string why =
        "zabbix " + peer() + " counts them failed: no such host or key, item or host disabled, "
        "or this sender's address not in the item's allowed hosts";
    if (options_.grace_ms > 0) {
      why += " (retried for " + std::to_string((now - batch->first_failed_ms) / 1000) + " s)";
    }
    // The owner reports rejections if it asked to; otherwise they are logged here.
    if (on_reject_) {
      on_reject_(v.host, v.key, batch->values.size(), why);
    } else {
      spdlog::warn("[sender] rejected host={} key={} values={}: {}", v.host, v.key,
                   batch->values.size(), why);
    }
    return;
  }
  if (batch->first_failed_ms == now) {
    spdlog::info("[sender] zabbix {} does not take host={} key={} yet; retrying for up to {} s "
                 "(new items are accepted after the server's next configuration cache update)",
                 peer(), v.host, v.key, options_.grace_ms / 1000);
  }
  batch->retry_at_ms = now + options_.retry_interval_ms;
  held_.push_back(std::move(batch));
}

void Sender::Delivered(Batch* batch) {
  if (batch != nullptr) {
    counters_.sent += batch->values.size();
    if (!batch->values.empty()) {
      double latency = static_cast<double>(NowMs() - batch->values.front().queued_ms);
      if (latencies_.size() < 1024) {
        latencies_.push_back(latency);
      } else {
        latencies_[latency_next_] = latency;
        latency_next_ = (latency_next_ + 1) % latencies_.size();
      }
    }
    if (batch->from_spool) spool_outstanding_[batch->seq].second = true;
  }
  // Commit the spool over the delivered prefix.
  if (!spool_) return;
  SpoolPosition commit;
  bool any = false;
  while (!spool_outstanding_.empty() && spool_outstanding_.begin()->second.second) {
    commit = spool_outstanding_.begin()->second.first;
    any = true;
    spool_outstanding_.erase(spool_outstanding_.begin());
  }
  if (any) {
    Status st = spool_->Commit(commit);
    if (!st.ok()) spdlog::error("[sender] spool commit: {}", st.ToString());
  }
}

void Sender::Requeue(std::unique_ptr<Batch> batch) {
  if (batch->values.empty()) return;
  uint64_t seq = batch->seq;
  returned_.emplace(seq, std::move(batch));
}

void Sender::Drain(bool give_up_when_unreachable, std::function<void(Status)> done) {
  give_up_when_unreachable_ = give_up_when_unreachable;
  drain_done_ = std::move(done);
  flush_due_ = true;
  Dispatch();
}

void Sender::CheckDrained() {
  if (!drain_done_ || stopped_) return;
  if (!memory_.empty() || !returned_.empty() || !in_flight_.empty() || !held_.empty()) return;
  if (spool_ && spool_->pending_values() > 0) return;
  auto done = std::move(drain_done_);
  drain_done_ = nullptr;
  done(Status::OK());
}

void Sender::Shutdown() {
  if (stopped_) return;
  stopped_ = true;
  drain_done_ = nullptr;  // its owner stops waiting now
  tick_.Stop();
  backoff_timer_.Stop();
  // Undelivered values that live in memory, oldest first. Spool batches that were in flight
  // stay in the spool: it was never committed past them.
  std::multimap<uint64_t, std::unique_ptr<Batch>> pending = std::move(returned_);
  for (auto& [id, b] : in_flight_) {
    b->exchange.reset();
    if (!b->from_spool) pending.emplace(b->seq, std::move(b));
  }
  in_flight_.clear();
  for (auto& b : held_) pending.emplace(b->seq, std::move(b));
  held_.clear();
  std::vector<SenderValue> older;
  for (auto& [seq, b] : pending) {
    if (b->from_spool) continue;
    for (auto& v : b->values) older.push_back(std::move(v));
  }
  std::vector<SenderValue> newer(std::make_move_iterator(memory_.begin()),
                                 std::make_move_iterator(memory_.end()));
  memory_.clear();
  size_t n = older.size() + newer.size();
  if (n == 0) return;
  if (spool_) {
    Status st = spool_->Prepend(older);
    if (st.ok()) st = spool_->Append(newer);
    if (st.ok()) {
      counters_.spooled += n;
      spdlog::info("[sender] shutdown: {} undelivered values spooled to {}", n, spool_->dir());
      return;
    }
    spdlog::error("[sender] shutdown: cannot spool {} values: {}", n, st.ToString());
  }
  counters_.dropped += n;
  spdlog::warn("[sender] shutdown: {} values not delivered to {} (no spool configured)", n, peer());
}

SenderCounters Sender::counters() const {
  SenderCounters c = counters_;
  c.in_memory = memory_.size();
  for (const auto& [seq, b] : returned_) c.in_memory += b->values.size();
  for (const auto& [id, b] : in_flight_) c.in_flight += b->values.size();
  for (const auto& b : held_) c.held += b->values.size();
  c.in_spool = spool_ ? spool_->pending_values() : 0;
  if (spool_) c.dropped += spool_->dropped_values();
  c.reachable = reachable_;
  if (!latencies_.empty()) {
    std::vector<double> sorted = latencies_;
    std::sort(sorted.begin(), sorted.end());
    c.latency_p50_ms = sorted[sorted.size() / 2];
    c.latency_p99_ms = sorted[std::min(sorted.size() - 1, sorted.size() * 99 / 100)];
  }
  return c;
}

}  // namespace trapline
