#include "collector/collector.h"

#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "collector/postgres_target.h"
#include "collector/redis_target.h"
#include "collector/ssh_target.h"
#include "collector/send_input.h"
#include "common/config.h"
#include "common/http_server.h"
#include "common/log.h"
#include "plugins/builtin.h"
#include "plugins/trapline/trapline.h"

namespace trapline {

double ResidentBytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  unsigned long long size = 0, resident = 0;
  int n = std::fscanf(f, "%llu %llu", &size, &resident);
  std::fclose(f);
  if (n != 2) return 0;
  return static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE));
}

double ProcessCpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

namespace {

double Percentile(std::vector<double>* v, double p) {
  if (v->empty()) return 0;
  size_t i = std::min(v->size() - 1, static_cast<size_t>(p * static_cast<double>(v->size())));
  std::nth_element(v->begin(), v->begin() + static_cast<std::ptrdiff_t>(i), v->end());
  return (*v)[i];
}

}  // namespace

Result<TargetConfig> TargetConfigFromTable(ConfigTable* t) {
  TargetConfig c;
  TRAPLINE_ASSIGN_OR_RETURN(c.host, t->GetString("host", ""));
  TRAPLINE_ASSIGN_OR_RETURN(c.uri, t->GetString("uri", ""));
  TRAPLINE_ASSIGN_OR_RETURN(c.plugin, t->GetString("plugin", ""));
  if (c.uri.empty()) return Status::InvalidArgument(t->origin() + ": a [[target]] has no 'uri'");
  if (c.plugin.empty()) {
    const plugins::PluginInfo* p = plugins::PluginForUri(c.uri);
    if (p == nullptr) {
      return Status::InvalidArgument(t->origin() + ": target '" + c.uri +
                                     "': no plugin serves this URI scheme; set 'plugin'");
    }
    c.plugin = std::string(p->name);
  }
  const plugins::PluginInfo* plugin = plugins::FindPlugin(c.plugin);
  if (plugin == nullptr || plugin->schemes.empty()) {
    std::string names;
    for (const auto& p : plugins::BuiltinPlugins()) {
      if (!p.schemes.empty()) names += (names.empty() ? "" : ", ") + std::string(p.name);
    }
    return Status::InvalidArgument(
        t->origin() + ": target '" + c.uri + "': " +
        (plugin == nullptr ? "unknown plugin '" + c.plugin + "'"
                           : "plugin '" + c.plugin + "' has no target (the collector's own health: "
                             "set [collector] self_host)") +
        " (target plugins: " + names + ")");
  }
  if (c.host.empty()) {
    return Status::InvalidArgument(t->origin() + ": target '" + c.uri +
                                   "' has no 'host' (the Zabbix host name its values go to)");
  }
  TRAPLINE_ASSIGN_OR_RETURN(c.identity, t->GetString("identity", ""));
  TRAPLINE_ASSIGN_OR_RETURN(c.identity_passphrase, t->GetString("identity_passphrase", ""));
  TRAPLINE_ASSIGN_OR_RETURN(c.identity_passphrase_file,
                            t->GetString("identity_passphrase_file", ""));
  TRAPLINE_ASSIGN_OR_RETURN(c.use_agent, t->GetBool("use_agent", false));
  TRAPLINE_ASSIGN_OR_RETURN(c.known_hosts, t->GetString("known_hosts", ""));
  TRAPLINE_ASSIGN_OR_RETURN(c.trust_on_first_use, t->GetBool("trust_on_first_use", false));
  TRAPLINE_ASSIGN_OR_RETURN(c.keepalive_s, t->GetDouble("keepalive", 15, 1, 3600));
  TRAPLINE_ASSIGN_OR_RETURN(c.password, t->GetString("password", ""));
  TRAPLINE_ASSIGN_OR_RETURN(c.password_file, t->GetString("password_file", ""));
  TRAPLINE_ASSIGN_OR_RETURN(c.period_s, t->GetDouble("period", 1.0, 0.1, 3600));
  TRAPLINE_ASSIGN_OR_RETURN(int64_t interval, t->GetInt("interval", 0, 0, 86400));
  c.interval_s = static_cast<int>(interval);
  TRAPLINE_ASSIGN_OR_RETURN(c.timeout_s, t->GetDouble("timeout", 10, 0.1, 600));
  TRAPLINE_ASSIGN_OR_RETURN(c.reconnect_base_s, t->GetDouble("reconnect_base", 1, 0.1, 3600));
  TRAPLINE_ASSIGN_OR_RETURN(c.reconnect_max_s, t->GetDouble("reconnect_max", 60, 0.1, 86400));
  TRAPLINE_ASSIGN_OR_RETURN(ConfigTable * opts, t->GetTable(c.plugin));
  TRAPLINE_ASSIGN_OR_RETURN(auto pairs, opts->GetAllAsText());
  for (auto& [k, v] : pairs) c.options[k] = v;
  return c;
}

Result<CollectorOptions> CollectorOptions::FromConfig(ConfigTable* root) {
  CollectorOptions o;
  TRAPLINE_ASSIGN_OR_RETURN(ConfigTable * col, root->GetTable("collector"));
  TRAPLINE_ASSIGN_OR_RETURN(o.name, col->GetString("name", o.name));
  TRAPLINE_ASSIGN_OR_RETURN(o.log_level, col->GetString("log_level", o.log_level));
  TRAPLINE_ASSIGN_OR_RETURN(o.stats_interval_s, col->GetDouble("stats_interval", 60, 1, 86400));
  TRAPLINE_ASSIGN_OR_RETURN(o.metrics_listen, col->GetString("metrics_listen", ""));
  TRAPLINE_ASSIGN_OR_RETURN(o.reply_batch_ms, col->GetDouble("reply_batch_ms", 2, 0, 50));
  TRAPLINE_ASSIGN_OR_RETURN(o.self_host, col->GetString("self_host", ""));
  TRAPLINE_ASSIGN_OR_RETURN(int64_t self_interval, col->GetInt("self_interval", 0, 0, 86400));
  o.self_interval_s = static_cast<int>(self_interval);
  TRAPLINE_ASSIGN_OR_RETURN(ConfigTable * sender, root->GetTable("sender"));
  TRAPLINE_ASSIGN_OR_RETURN(o.sender, SenderOptions::FromConfig(sender));
  TRAPLINE_ASSIGN_OR_RETURN(ConfigTable * cl, root->GetTable("cluster"));
  TRAPLINE_ASSIGN_OR_RETURN(o.cluster.registry, cl->GetString("registry", ""));
  TRAPLINE_ASSIGN_OR_RETURN(o.cluster.weight, cl->GetDouble("weight", 1, 0.001, 1e6));
  TRAPLINE_ASSIGN_OR_RETURN(o.cluster.address, cl->GetString("address", ""));
  TRAPLINE_ASSIGN_OR_RETURN(o.cluster.heartbeat_s, cl->GetDouble("heartbeat", 1, 0.1, 60));
  TRAPLINE_ASSIGN_OR_RETURN(o.cluster.resync_s, cl->GetDouble("resync", 10, 1, 3600));
  TRAPLINE_ASSIGN_OR_RETURN(o.cluster.secrets_dir, cl->GetString("secrets_dir", "/run/trapline/" + o.name));
  TRAPLINE_ASSIGN_OR_RETURN(auto targets, root->GetTableArray("target"));
  for (ConfigTable* t : targets) {
    TRAPLINE_ASSIGN_OR_RETURN(TargetConfig tc, TargetConfigFromTable(t));
    o.targets.push_back(std::move(tc));
  }
  TRAPLINE_RETURN_IF_ERROR(root->CheckKnown());
  return o;
}

Result<CollectorOptions> CollectorOptions::FromConfigFile(const std::string& path) {
  TRAPLINE_ASSIGN_OR_RETURN(ConfigTable root, ConfigTable::LoadFile(path));
  return FromConfig(&root);
}

ReplyBatcher::ReplyBatcher(uv_loop_t* loop, double window_ms)
    : loop_(loop),
      window_ns_(static_cast<uint64_t>(window_ms * 1e6)),
      prepare_(loop, [this] { BeforePoll(); }) {
  prepare_.Unref();
}

void ReplyBatcher::BeforePoll() {
  const TargetBase::TickCounts& ticks = TargetBase::ThreadTickCounts();
  bool progress = ticks.ended != ended_seen_;
  ended_seen_ = ticks.ended;
  if (window_ns_ == 0 || !progress || ticks.in_flight == 0) return;
  int timeout_ms = uv_backend_timeout(loop_);  // -1: no timer; 0: the poll will not block
  if (timeout_ms == 0) return;
  uint64_t ns = window_ns_;
  if (timeout_ms > 0) ns = std::min<uint64_t>(ns, static_cast<uint64_t>(timeout_ms) * 1000000);
  timespec pause{static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
  nanosleep(&pause, nullptr);
  ++pauses_;
}

LoopLagMonitor::LoopLagMonitor(uv_loop_t* loop, uint64_t period_ms)
    : loop_(loop), period_ms_(period_ms), timer_(loop) {
  lags_ms_.reserve(1024);
  Arm();
  timer_.Unref();  // the monitor alone does not keep the loop running
}

void LoopLagMonitor::Arm() {
  // Due on the loop-time grid of the period, by default the grid of the targets' tick slots
  // (TargetBase::kTickSlotMs): it fires in the loop iteration of a slot's ticks and costs no
  // wake-up of its own (a repeating timer would drift off the grid).
  uint64_t now = uv_now(loop_);
  uint64_t delay = (now / period_ms_ + 1) * period_ms_ - now;
  expected_ns_ = uv_hrtime() + delay * 1000000;
  timer_.Start(delay, 0, [this] {
    uint64_t now_ns = uv_hrtime();
    double lag = now_ns > expected_ns_ ? static_cast<double>(now_ns - expected_ns_) / 1e6 : 0;
    if (lags_ms_.size() < 100000) lags_ms_.push_back(lag);
    if (recent_ms_.size() < kRecent) {
      recent_ms_.push_back(lag);
    } else {
      recent_ms_[recent_next_] = lag;
    }
    recent_next_ = (recent_next_ + 1) % kRecent;
    total_ms_ += lag;
    ++total_samples_;
    worst_ms_ = std::max(worst_ms_, lag);
    Arm();
  });
}

LoopLagMonitor::Figures LoopLagMonitor::TakeFigures() {
  Figures f;
  f.samples = lags_ms_.size();
  if (!lags_ms_.empty()) {
    f.max_ms = *std::max_element(lags_ms_.begin(), lags_ms_.end());
    f.p50_ms = Percentile(&lags_ms_, 0.5);
    f.p99_ms = Percentile(&lags_ms_, 0.99);
  }
  lags_ms_.clear();
  return f;
}

double LoopLagMonitor::TakeWorstMs() {
  double worst = worst_ms_;
  worst_ms_ = 0;
  return worst;
}

LoopLagMonitor::Figures LoopLagMonitor::Recent() const {
  Figures f;
  std::vector<double> v = recent_ms_;
  f.samples = v.size();
  if (!v.empty()) {
    f.max_ms = *std::max_element(v.begin(), v.end());
    f.p50_ms = Percentile(&v, 0.5);
    f.p99_ms = Percentile(&v, 0.99);
  }
  return f;
}

std::vector<double> LoopLagMonitor::RecentSeconds() const {
  std::vector<double> out;
  out.reserve(recent_ms_.size());
  for (double ms : recent_ms_) out.push_back(ms / 1000.0);
  return out;
}

Result<std::unique_ptr<TargetBase>> MakeTarget(uv_loop_t* loop, TargetConfig config,
                                               TargetBase::DeliverFn deliver) {
  // The connection kind each built-in plugin needs.
  if (config.plugin == "linux") {
    // A bad URI, a missing key or known_hosts file, or unknown plugin options are config
    // errors: report them at start-up rather than retrying them forever.
    TRAPLINE_RETURN_IF_ERROR(SshTarget::Validate(config));
    return std::unique_ptr<TargetBase>(new SshTarget(loop, std::move(config), std::move(deliver)));
  }
  if (config.plugin == "postgresql") {
    TRAPLINE_RETURN_IF_ERROR(PostgresTarget::Validate(config));
    return std::unique_ptr<TargetBase>(
        new PostgresTarget(loop, std::move(config), std::move(deliver)));
  }
  if (config.plugin == "redis") {
    return std::unique_ptr<TargetBase>(new RedisTarget(loop, std::move(config), std::move(deliver)));
  }
  const plugins::PluginInfo* p = plugins::FindPlugin(config.plugin);
  if (p != nullptr && p->schemes.empty()) {
    return Status::InvalidArgument("plugin '" + config.plugin +
                                   "' has no target: it is a collector's own health "
                                   "([collector] self_host)");
  }
  return Status::InvalidArgument("plugin '" + config.plugin + "' has no connection kind");
}

struct Collector::Running {
  std::string id;
  std::vector<plugins::Entity> tick_entities;  // as the last tick gave them
  std::vector<plugins::Entity> entities;       // sorted, unique: what was last reported
  bool entities_reported = false;
  std::unique_ptr<TargetBase> target;
  std::unique_ptr<MetricPipeline> pipeline;
  uint64_t connects_seen = 0;
};

Collector::Collector(uv_loop_t* loop, CollectorOptions options, bool dry_run, std::FILE* out)
    : loop_(loop),
      options_(std::move(options)),
      dry_run_(dry_run),
      out_(out),
      lag_(loop),
      batcher_(loop, options_.reply_batch_ms),
      stats_timer_(loop),
      self_timer_(loop) {}

Collector::~Collector() = default;

Status Collector::Start() {
  if (!dry_run_) {
    sender_ = std::make_unique<Sender>(loop_, options_.sender);
    TRAPLINE_RETURN_IF_ERROR(sender_->Start());
  }
  TRAPLINE_RETURN_IF_ERROR(StartMetricsServer());
  for (size_t i = 0; i < options_.targets.size(); ++i) {
    TRAPLINE_RETURN_IF_ERROR(AddTarget("config:" + std::to_string(i), options_.targets[i]));
  }
  for (auto& r : targets_) r->target->Start();
  started_ = true;
  last_cpu_s_ = ProcessCpuSeconds();
  last_stats_ms_ = uv_now(loop_);
  auto interval = static_cast<uint64_t>(options_.stats_interval_s * 1000);
  stats_timer_.Start(interval, interval, [this] { LogStats(); });
  if (!options_.self_host.empty()) {
    self_pipeline_ = std::make_unique<MetricPipeline>(
        options_.self_host, std::string(plugins::self::kPluginName), &plugins::self::Metrics(),
        options_.self_interval_s);
    self_last_cpu_s_ = last_cpu_s_;
    self_last_ms_ = last_stats_ms_;
    self_timer_.Start(1000, 1000, [this] { SampleSelf(); });
  }
  spdlog::info("[collector] {}: {} targets, sending to {}{}", options_.name, targets_.size(),
               dry_run_ ? "stdout (dry run)" : sender_->peer(),
               options_.self_host.empty() ? ""
                                          : "; its own health to Zabbix host " + options_.self_host);
  return Status::OK();
}

Status Collector::AddTarget(const std::string& id, TargetConfig tc) {
  if (FindTarget(id) != nullptr) return Status::InvalidArgument("target id " + id + " is already running");
  const plugins::PluginInfo* plugin = plugins::FindPlugin(tc.plugin);
  if (plugin == nullptr) return Status::InvalidArgument("target " + tc.Name() + ": unknown plugin '" + tc.plugin + "'");
  auto running = std::make_unique<Running>();
  Running* r = running.get();
  r->id = id;
  r->pipeline = std::make_unique<MetricPipeline>(tc.host, tc.plugin, &plugin->metrics(), tc.interval_s);
  std::string name = tc.Name();
  auto target = MakeTarget(loop_, std::move(tc), [this, r](ZbxTime t, plugins::ParseResult result) {
    // A new connection: counters restart, so no rate spans the gap.
    if (r->target->state().connects != r->connects_seen) {
      r->connects_seen = r->target->state().connects;
      r->pipeline->ResetCounters();
    }
    scratch_.clear();
    r->pipeline->AddTick(t, result.readings, &scratch_);
    r->pipeline->FlushIfDue(t, &scratch_);
    OnValues(&scratch_);
    // An empty list counts once (a Redis without keys has no entities, but its host-level
    // items still need a sync); after that, ticks without entities say nothing.
    if (on_entities_ && (!result.entities.empty() || !r->entities_reported)) {
      NoteEntities(r, &result.entities);
    }
  });
  if (!target.ok()) return target.status().WithContext("target " + name);
  r->target = std::move(target).value();
  targets_.push_back(std::move(running));
  if (started_) {
    r->target->Start();
    spdlog::info("[collector] {}: target {} ({}) started", options_.name, name, id);
  }
  return Status::OK();
}

// Entities come with every tick; the callback hears only of a set that changed. The usual
// tick (same entities, same order) costs one comparison and no allocation.
void Collector::NoteEntities(Running* r, std::vector<plugins::Entity>* found) {
  auto same = [](const plugins::Entity& a, const plugins::Entity& b) {
    return a.kind == b.kind && a.name == b.name;
  };
  if (r->entities_reported &&
      std::equal(found->begin(), found->end(), r->tick_entities.begin(), r->tick_entities.end(), same)) {
    return;
  }
  r->tick_entities = *found;
  auto less = [](const plugins::Entity& a, const plugins::Entity& b) {
    return a.kind != b.kind ? a.kind < b.kind : a.name < b.name;
  };
  std::sort(found->begin(), found->end(), less);
  found->erase(std::unique(found->begin(), found->end(), same), found->end());
  if (r->entities_reported && std::equal(found->begin(), found->end(), r->entities.begin(), r->entities.end(), same)) {
    return;
  }
  r->entities_reported = true;
  r->entities = std::move(*found);
  on_entities_(r->id, r->entities);
}

void Collector::RemoveTarget(const std::string& id) {
  for (auto it = targets_.begin(); it != targets_.end(); ++it) {
    if ((*it)->id != id) continue;
    scratch_.clear();
    (*it)->pipeline->Flush(&scratch_);
    OnValues(&scratch_);
    spdlog::info("[collector] {}: target {} ({}) stopped", options_.name, (*it)->target->config().Name(), id);
    targets_.erase(it);
    return;
  }
}

const TargetBase* Collector::FindTarget(const std::string& id) const {
  for (const auto& r : targets_) {
    if (r->id == id) return r->target.get();
  }
  return nullptr;
}

std::vector<std::string> Collector::TargetIds() const {
  std::vector<std::string> ids;
  for (const auto& r : targets_) ids.push_back(r->id);
  return ids;
}

void Collector::OnValues(std::vector<SenderValue>* values) {
  if (values->empty()) return;
  if (dry_run_) {
    for (const auto& v : *values) {
      std::fprintf(out_, "%s %s %lld %d %s\n", QuoteSendField(v.host).c_str(),
                   QuoteSendField(v.key).c_str(), static_cast<long long>(v.clock), v.ns,
                   QuoteSendField(v.value).c_str());
    }
    std::fflush(out_);
    return;
  }
  for (auto& v : *values) sender_->Enqueue(std::move(v));
}

void Collector::Stop() {
  stats_timer_.Stop();
  self_timer_.Stop();
  if (metrics_server_) metrics_server_->Stop();
  if (self_pipeline_) {
    scratch_.clear();
    self_pipeline_->Flush(&scratch_);
    OnValues(&scratch_);
  }
  for (auto& r : targets_) {
    scratch_.clear();
    r->pipeline->Flush(&scratch_);
    OnValues(&scratch_);
  }
  targets_.clear();
  if (sender_) sender_->Shutdown();
}

std::vector<Collector::TargetStatus> Collector::Targets() const {
  std::vector<TargetStatus> out;
  for (const auto& r : targets_) {
    out.push_back({r->id, r->target->config().Name(), RedactUri(r->target->config().uri), r->target->state()});
  }
  return out;
}

SenderCounters Collector::sender_counters() const {
  return sender_ ? sender_->counters() : SenderCounters{};
}

void Collector::SampleSelf() {
  plugins::self::Sample s;
  s.loop_lag_max_s = lag_.TakeWorstMs() / 1000.0;
  double cpu = ProcessCpuSeconds();
  uint64_t now = uv_now(loop_);
  double wall = static_cast<double>(now - self_last_ms_) / 1000.0;
  s.cpu_pct = wall > 0 ? 100.0 * (cpu - self_last_cpu_s_) / wall : 0;
  self_last_cpu_s_ = cpu;
  self_last_ms_ = now;
  s.rss_bytes = ResidentBytes();
  s.targets = targets_.size();
  for (const auto& r : targets_) {
    const ConnectionState& st = r->target->state();
    s.connected += st.connected ? 1 : 0;
    s.ticks += st.ticks;
    s.ticks_skipped += st.ticks_skipped;
  }
  if (sender_) {
    SenderCounters c = sender_->counters();
    s.has_sender = true;
    s.sent = c.sent;
    s.rejected = c.rejected;
    s.dropped = c.dropped;
    s.in_spool = c.in_spool;
    s.zabbix_reachable = c.reachable;
  }
  plugins::ParseResult readings = plugins::self::Readings(s);
  ZbxTime t = WallClockNow();
  scratch_.clear();
  self_pipeline_->AddTick(t, readings.readings, &scratch_);
  self_pipeline_->FlushIfDue(t, &scratch_);
  OnValues(&scratch_);
}

void Collector::LogStats() {
  LoopLagMonitor::Figures lag = lag_.TakeFigures();
  double cpu = ProcessCpuSeconds();
  uint64_t now = uv_now(loop_);
  double wall = static_cast<double>(now - last_stats_ms_) / 1000.0;
  double cpu_pct = wall > 0 ? 100.0 * (cpu - last_cpu_s_) / wall : 0;
  last_cpu_s_ = cpu;
  last_stats_ms_ = now;
  size_t connected = 0;
  uint64_t ticks = 0, skipped = 0;
  for (const auto& r : targets_) {
    const ConnectionState& st = r->target->state();
    connected += st.connected ? 1 : 0;
    ticks += st.ticks;
    skipped += st.ticks_skipped;
  }
  // A target removed since the last line takes its counts with it: never a negative count.
  uint64_t interval_ticks = ticks > last_ticks_ ? ticks - last_ticks_ : 0;
  uint64_t interval_skipped = skipped > last_ticks_skipped_ ? skipped - last_ticks_skipped_ : 0;
  last_ticks_ = ticks;
  last_ticks_skipped_ = skipped;
  SenderCounters s = sender_counters();
  spdlog::info("[collector] {}: targets={} connected={} ticks={} ticks_skipped={} "
               "loop_lag_p50_ms={:.2f} loop_lag_p99_ms={:.2f} loop_lag_max_ms={:.2f} "
               "cpu_pct={:.1f} sent={} queued={} spooled={} dropped={} rejected={} in_spool={} "
               "zabbix_reachable={}",
               options_.name, targets_.size(), connected, interval_ticks, interval_skipped,
               lag.p50_ms, lag.p99_ms, lag.max_ms, cpu_pct, s.sent, s.queued, s.spooled,
               s.dropped, s.rejected, s.in_spool, s.reachable ? "yes" : "no");
}

}  // namespace trapline
