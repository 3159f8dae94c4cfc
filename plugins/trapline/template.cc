// The Zabbix template of the trapline plugin (a collector's own health): macros, triggers and
// graphs (plugins/template.h). Documented in README.md ("Zabbix template"); keep both in step.
//
// Values arrive as value sets every 60 s, from the collector's per-second samples of itself:
// min(x,5m) is "all the time for five minutes", max(x,5m) "at least once".

#include "plugins/trapline/trapline.h"

namespace trapline::plugins::self {
namespace {

constexpr const char* kNoData = "trapline collector sends nothing for {$TRAPLINE.TRAPLINE.NODATA.PERIOD}";

ZabbixTemplate Build() {
  ZabbixTemplate t;
  t.macros = {
      Macro("{$TRAPLINE.TRAPLINE.NODATA.PERIOD}", "3m",
            "No value from the collector for this long raises \"trapline collector sends "
            "nothing\"."),
      Macro("{$TRAPLINE.TRAPLINE.LAG.WARN}", "0.2",
            "Event-loop lag, mean over 5m of each second's worst, in seconds, above which the "
            "collector counts as overloaded."),
      Macro("{$TRAPLINE.TRAPLINE.CPU.WARN}", "90",
            "CPU, % of one core, all the time for 10m, above which to warn."),
      Macro("{$TRAPLINE.TRAPLINE.DISCONNECTED.MAX}", "0",
            "Targets not connected, all the time for 5m, tolerated."),
  };
  const std::string kHost;
  t.triggers = {
      Trigger(kHost, Severity::kHigh, kNoData,
              "nodata({{targets}},{$TRAPLINE.TRAPLINE.NODATA.PERIOD})=1",
              "The collector is down, hung, or cannot reach this Zabbix server (its values wait "
              "in its spool). Its targets' hosts raise \"No data from trapline\" too; in a "
              "cluster the coordinator moves its tasks to the other collectors."),
      Trigger(kHost, Severity::kWarning,
              "trapline collector is overloaded (event-loop lag over "
              "{$TRAPLINE.TRAPLINE.LAG.WARN} s for 5m)",
              "avg({{loop_lag}},5m)>{$TRAPLINE.TRAPLINE.LAG.WARN}",
              "Every second's samples of every target wait this long: the collector has more "
              "targets than its core can sample (see its CPU), or something blocks its loop. "
              "Add a collector, or lower this one's weight.",
              "avg({{loop_lag}},5m)<{$TRAPLINE.TRAPLINE.LAG.WARN}/2", {kNoData}),
      Trigger(kHost, Severity::kWarning,
              "trapline collector CPU over {$TRAPLINE.TRAPLINE.CPU.WARN}% of a core for 10m",
              "min({{cpu.util}},10m)>{$TRAPLINE.TRAPLINE.CPU.WARN}",
              "One event loop uses at most one core: near 100% the loop starts to lag.", "",
              {kNoData}),
      Trigger(kHost, Severity::kWarning,
              "trapline collector: targets not connected for 5m",
              "min({{targets.disconnected}},5m)>{$TRAPLINE.TRAPLINE.DISCONNECTED.MAX}",
              "Targets that cannot connect (refused, unreachable, wrong credentials, unknown "
              "host key): the admin panel's Errors page and the collector's log say which and "
              "why.",
              "", {kNoData}),
      Trigger(kHost, Severity::kHigh, "trapline collector lost values in the last 10m",
              "max({{sender.dropped}},10m)>0",
              "Values were dropped: Zabbix was unreachable longer than the spool could hold "
              "(spool_max_bytes), or the collector runs without a spool. The graphs of its "
              "targets have gaps."),
      Trigger(kHost, Severity::kWarning, "Zabbix rejects values of trapline collector (10m)",
              "max({{sender.rejected}},10m)>0",
              "Zabbix refused values past the grace for new items: an item is missing or "
              "disabled (run zabbix-sync for the host), or the collector is not in the item's "
              "allowed hosts. The collector's log names host and key."),
  };
  t.graphs = {
      Graph(kHost, "Event-loop lag", {"loop_lag"}),
      Graph(kHost, "CPU", {"cpu.util"}),
      Graph(kHost, "Targets", {"targets", "targets.connected"}),
      Graph(kHost, "Ticks", {"ticks", "ticks.skipped"}),
      Graph(kHost, "Values sent", {"sender.sent", "sender.rejected", "sender.dropped"}),
      Graph(kHost, "Spool", {"sender.in_spool"}),
      Graph(kHost, "Memory", {"memory.rss"}),
  };
  return t;
}

}  // namespace

const ZabbixTemplate& Template() {
  static const ZabbixTemplate kTemplate = Build();
  return kTemplate;
}

}  // namespace trapline::plugins::self
