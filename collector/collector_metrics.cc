// The collector's /metrics (Prometheus text): its own health, for scraping by anything that
// speaks Prometheus. Served when [collector] metrics_listen is set.

#include "collector/collector.h"
#include "common/http_server.h"
#include "common/log.h"
#include "common/metrics_text.h"
#include "trapline/version.h"

namespace trapline {

Status Collector::StartMetricsServer() {
  if (options_.metrics_listen.empty()) return Status::OK();
  HttpServerOptions opts;
  opts.name = "metrics";
  opts.max_body_bytes = 4096;  // nothing is posted here
  metrics_server_ = std::make_unique<HttpServer>(loop_, opts);
  metrics_server_->Handle("GET", "/metrics", [this](const HttpRequest&) -> Result<HttpResponse> {
    return HttpResponse::Text(RenderMetrics(), 200, std::string(MetricsText::kContentType));
  });
  Status st = metrics_server_->Listen(options_.metrics_listen);
  if (!st.ok()) return st.WithContext("[collector] metrics_listen");
  return Status::OK();
}

int Collector::metrics_port() const { return metrics_server_ ? metrics_server_->port() : 0; }

std::string Collector::RenderMetrics() const {
  MetricsText m;
  m.Gauge("trapline_collector_info", "Always 1; the labels name this collector.", 1,
          {{"name", options_.name}, {"version", kVersion}});

  LoopLagMonitor::Figures lag = lag_.Recent();
  std::vector<double> window = lag_.RecentSeconds();
  m.Summary("trapline_collector_loop_lag_seconds",
            "Event-loop lag: how late a 100 ms timer fires. Quantiles over the last minute; sum "
            "and count since start.",
            std::move(window), {0.5, 0.99}, {}, lag_.total_ms() / 1000.0,
            static_cast<int64_t>(lag_.total_samples()));
  m.Gauge("trapline_collector_loop_lag_max_seconds", "Largest event-loop lag over the last minute.",
          lag.max_ms / 1000.0);
  m.Counter("process_cpu_seconds_total", "User and system CPU time of the collector process.",
            ProcessCpuSeconds());
  m.Gauge("process_resident_memory_bytes", "Resident memory of the collector process.",
          ResidentBytes());

  std::vector<TargetStatus> targets = Targets();
  size_t connected = 0;
  for (const auto& t : targets) connected += t.state.connected ? 1 : 0;
  m.Gauge("trapline_collector_targets", "Targets this collector runs.",
          static_cast<double>(targets.size()));
  m.Gauge("trapline_collector_targets_connected", "Targets whose connection is up.",
          static_cast<double>(connected));
  // host/plugin and the URI (without password) tell two instances on one host apart.
  auto labels = [](const TargetStatus& t) {
    return MetricsText::Labels{{"target", t.name}, {"uri", t.uri}};
  };
  m.Family("trapline_collector_target_connected", MetricsText::Type::kGauge,
           "1 while the target's connection is up, 0 while it reconnects.");
  for (const auto& t : targets) m.Sample(t.state.connected ? 1 : 0, labels(t));
  m.Family("trapline_collector_target_retries", MetricsText::Type::kGauge,
           "Consecutive failed connection attempts (0 when connected).");
  for (const auto& t : targets) m.Sample(static_cast<double>(t.state.retries), labels(t));
  m.Family("trapline_collector_target_connects_total", MetricsText::Type::kCounter,
           "Successful connects of the target.");
  for (const auto& t : targets) m.Sample(static_cast<double>(t.state.connects), labels(t));
  m.Family("trapline_collector_target_ticks_total", MetricsText::Type::kCounter,
           "Samples answered by the target.");
  for (const auto& t : targets) m.Sample(static_cast<double>(t.state.ticks), labels(t));
  m.Family("trapline_collector_target_ticks_skipped_total", MetricsText::Type::kCounter,
           "Samples skipped because the previous one was still running.");
  for (const auto& t : targets) m.Sample(static_cast<double>(t.state.ticks_skipped), labels(t));

  if (!dry_run_) {
    SenderCounters s = sender_counters();
    auto counter = [&](const char* name, const char* help, uint64_t v) {
      m.Counter(name, help, static_cast<double>(v));
    };
    auto gauge = [&](const char* name, const char* help, double v) { m.Gauge(name, help, v); };
    counter("trapline_sender_values_queued_total", "Values handed to the sender.", s.queued);
    counter("trapline_sender_values_sent_total", "Values Zabbix counted as processed.", s.sent);
    counter("trapline_sender_values_rejected_total",
            "Values Zabbix kept failing past the grace period.", s.rejected);
    counter("trapline_sender_values_retried_total", "Values sent again.", s.retried);
    counter("trapline_sender_values_spooled_total", "Values written to the spool.", s.spooled);
    counter("trapline_sender_values_dropped_total",
            "Values lost to the memory bound or the spool's cap.", s.dropped);
    counter("trapline_sender_requests_total", "Requests sent to Zabbix.", s.requests);
    counter("trapline_sender_request_errors_total",
            "Requests that failed (connection errors, timeouts, bad replies).", s.request_errors);
    gauge("trapline_sender_values_in_memory", "Values queued in memory now.",
          static_cast<double>(s.in_memory));
    gauge("trapline_sender_values_in_flight", "Values in requests not yet answered.",
          static_cast<double>(s.in_flight));
    gauge("trapline_sender_values_in_spool", "Values in the spool now.",
          static_cast<double>(s.in_spool));
    gauge("trapline_sender_values_held", "Values Zabbix counted failed, waiting for a retry.",
          static_cast<double>(s.held));
    m.Family("trapline_sender_delivery_latency_seconds", MetricsText::Type::kGauge,
             "From Enqueue to Zabbix's reply, over recent batches.");
    m.Sample(s.latency_p50_ms / 1000.0, {{"quantile", "0.5"}});
    m.Sample(s.latency_p99_ms / 1000.0, {{"quantile", "0.99"}});
    gauge("trapline_sender_zabbix_reachable", "1 when the last request reached Zabbix.",
          s.reachable ? 1 : 0);
  }
  return m.Take();
}

}  // namespace trapline
