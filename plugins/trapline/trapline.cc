#include "plugins/trapline/trapline.h"

namespace trapline::plugins::self {

const std::vector<MetricSpec>& Metrics() {
  static const std::vector<MetricSpec> kMetrics = {
      GaugeSpec("loop_lag", "Event-loop lag (worst of each second)", "s",
                "How late the collector's event loop ran its timers, the worst of each second. "
                "Every target of the collector waits that long: lag means an overloaded "
                "collector (too many targets for its CPU) or a blocking call."),
      GaugeSpec("cpu.util", "CPU utilisation", "%",
                "CPU time of the collector process per second, % of one core (one event loop "
                "uses at most one core)."),
      GaugeSpec("memory.rss", "Resident memory", "B", "Resident set size of the process."),
      GaugeSpec("targets", "Targets", "", "Targets (monitored services) the collector runs."),
      GaugeSpec("targets.connected", "Targets connected", "",
                "Targets whose connection is up and ready."),
      GaugeSpec("targets.disconnected", "Targets not connected", "",
                "Targets connecting, or waiting to reconnect after an error: the admin panel "
                "and the collector's log say why."),
      CounterSpec("ticks", "Ticks answered", "/s", "Samples taken per second, all targets."),
      CounterSpec("ticks.skipped", "Ticks skipped", "/s",
                  "Samples not asked per second because the target's previous one was still "
                  "unanswered: a slow server, or an overloaded collector."),
      CounterSpec("sender.sent", "Values accepted by Zabbix", "/s",
                  "Values per second that Zabbix counted as processed."),
      CounterSpec("sender.rejected", "Values rejected by Zabbix", "/s",
                  "Values per second that Zabbix kept refusing past the grace for new items "
                  "(an item missing or disabled, a wrong value type)."),
      CounterSpec("sender.dropped", "Values dropped", "/s",
                  "Values per second lost to the in-memory bound (no spool) or the spool's "
                  "size cap while Zabbix was unreachable."),
      GaugeSpec("sender.in_spool", "Values in the spool", "",
                "Values waiting on disk for Zabbix to take them."),
      GaugeSpec("sender.zabbix_reachable", "Zabbix reachable", "",
                "1 when the collector's last request reached a Zabbix server, else 0."),
  };
  return kMetrics;
}

ParseResult Readings(const Sample& s) {
  ParseResult r;
  auto add = [&r](std::string_view metric, double value) {
    r.readings.push_back(Reading{metric, {}, value, {}});
  };
  add("loop_lag", s.loop_lag_max_s);
  add("cpu.util", s.cpu_pct);
  if (s.rss_bytes > 0) add("memory.rss", s.rss_bytes);
  add("targets", static_cast<double>(s.targets));
  add("targets.connected", static_cast<double>(s.connected));
  add("targets.disconnected",
      static_cast<double>(s.targets > s.connected ? s.targets - s.connected : 0));
  add("ticks", static_cast<double>(s.ticks));
  add("ticks.skipped", static_cast<double>(s.ticks_skipped));
  if (s.has_sender) {
    add("sender.sent", static_cast<double>(s.sent));
    add("sender.rejected", static_cast<double>(s.rejected));
    add("sender.dropped", static_cast<double>(s.dropped));
    add("sender.in_spool", static_cast<double>(s.in_spool));
    add("sender.zabbix_reachable", s.zabbix_reachable ? 1 : 0);
  }
  return r;
}

}  // namespace trapline::plugins::self
