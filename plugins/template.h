#pragma once
// The Zabbix side of a plugin, as zabbix-sync builds it on each host: user macros with their
// defaults, triggers and graphs. Items come from the plugin's MetricSpecs (one trapper item
// per metric and entity); dashboards are laid out from the graphs (an overview page with the
// host-level and summary graphs, then a page per entity kind with each entity's graphs).
//
// Placeholders, replaced by zabbix-sync for each host and entity:
//   {#ENTITY}    the entity's name (in names, descriptions and expressions)
//   {{metric}}   in expressions: "/<host>/<item key of that metric for this entity>", so
//                "min({{fs.used_pct}},5m)" becomes "min(/web1/linux.fs.used_pct[/var],5m)"
// Thresholds are user macros ({$LINUX.CPU.UTIL.WARN}); zabbix-sync creates each as a global
// macro with the default value when it is missing and never overwrites it, so users override
// it globally, per host (host macro) or per entity (macro context, {$MACRO:"{#ENTITY}"}).

#include <string>
#include <vector>

namespace trapline::plugins {

// Zabbix trigger priorities.
enum class Severity {
  kNotClassified = 0,
  kInformation = 1,
  kWarning = 2,
  kAverage = 3,
  kHigh = 4,
  kDisaster = 5,
};

struct MacroSpec {
  std::string name;   // "{$LINUX.CPU.UTIL.WARN}"
  std::string value;  // default, e.g. "90"
  std::string description;
};

struct TriggerSpec {
  std::string name;         // "High CPU utilisation (over {$LINUX.CPU.UTIL.WARN}% for 5m)"
  std::string entity_kind;  // "": one trigger per host; else one per entity of that kind
  std::string expression;   // 6.0 syntax with the placeholders above
  std::string recovery_expression;  // optional (recovery mode "recovery expression")
  Severity severity = Severity::kWarning;
  std::string description;  // what it means and what to look at
  // Names (unexpanded) of triggers of the same plugin and entity kind that, when firing,
  // make this one redundant (e.g. "disk 90% full" depends on "disk 95% full").
  std::vector<std::string> depends_on;
};

struct GraphSpec {
  std::string name;         // "CPU utilisation {#ENTITY}"; unique per plugin once expanded
  std::string entity_kind;  // "": a host-level graph; else per entity (or summary, below)
  std::vector<std::string> metrics;  // MetricSpec names, all of `entity_kind`
  // false: one graph per entity (or one for the host) drawing each metric with min, avg and
  //        max of the value sets (calc_fnc "all");
  // true:  one graph per host drawing metrics[0] of every entity of `entity_kind` (avg), e.g.
  //        the CPU of every core or the size of every database.
  bool summary = false;
  bool stacked = false;     // drawn stacked (graphtype 1), e.g. CPU time by mode
};

struct ZabbixTemplate {
  std::vector<MacroSpec> macros;
  std::vector<TriggerSpec> triggers;
  std::vector<GraphSpec> graphs;
};

// Declaration helpers shared by the plugins' templates.
MacroSpec Macro(std::string name, std::string value, std::string description);
TriggerSpec Trigger(std::string entity_kind, Severity severity, std::string name,
                    std::string expression, std::string description,
                    std::string recovery_expression = "", std::vector<std::string> depends_on = {});
// A graph drawing `metrics` of one entity (or of the host) with min, avg and max.
GraphSpec Graph(std::string entity_kind, std::string name, std::vector<std::string> metrics,
                bool stacked = false);
// A graph drawing `metric` of every entity of `entity_kind` (avg).
GraphSpec Summary(std::string entity_kind, std::string name, std::string metric);

}  // namespace trapline::plugins
