#pragma once
// The trapline plugin: a collector's own health, sent to Zabbix like any target's values so
// that a Zabbix shop sees and alerts on its collectors where it sees everything else (a
// collector that stops sending, an overloaded event loop, targets not connected, values lost
// or refused). The collector samples itself every second when `[collector] self_host` names
// its Zabbix host; zabbix-sync builds that host from these declarations (`trapline sync
// --plugin trapline --host NAME`). No target, no I/O: Readings() is a pure function of one
// sample.

#include <cstdint>
#include <string_view>
#include <vector>

#include "plugins/plugin.h"
#include "plugins/template.h"

namespace trapline::plugins::self {

inline constexpr std::string_view kPluginName = "trapline";

// Every metric, in a fixed order; valid for the life of the program.
const std::vector<MetricSpec>& Metrics();

// Triggers, graphs and macros for zabbix-sync (template.cc; README.md "Zabbix template").
const ZabbixTemplate& Template();

// One second of a collector, as it measures itself. Counters are totals since start.
struct Sample {
  double loop_lag_max_s = 0;  // the worst event-loop lag of the second
  double cpu_pct = 0;         // CPU time per wall time over the second, % of one core
  double rss_bytes = 0;       // 0: unknown (no reading)
  uint64_t targets = 0;
  uint64_t connected = 0;
  uint64_t ticks = 0;          // answered
  uint64_t ticks_skipped = 0;  // not sent: the previous one still waited for its reply
  // The sender's (absent in --dry-run: no readings for them).
  bool has_sender = false;
  uint64_t sent = 0, rejected = 0, dropped = 0, in_spool = 0;
  bool zabbix_reachable = true;
};

// The readings of one sample (host-level, no entities).
ParseResult Readings(const Sample& s);

}  // namespace trapline::plugins::self
