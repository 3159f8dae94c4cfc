#pragma once
// What a host should look like in Zabbix for one plugin: a pure function of the plugin's
// declarations (metrics, plugins/template.h), the entities found on the target and the sync
// options. No I/O; sync.h compares it with what exists and makes the difference.
//
// Ownership (trapline never touches what it does not own):
//  - the host carries the tag managed-by=trapline and one tag trapline-plugin=<plugin> per
//    plugin synced onto it;
//  - items and triggers carry the tag trapline-plugin=<plugin>;
//  - a graph is trapline's when every item it draws is;
//  - dashboards are named "trapline: <host> / <plugin>".
// Several plugins can share one host (a server's Linux, PostgreSQL and Redis): each plugin's
// sync sees only its own objects.

#include <string>
#include <vector>

#include "common/status.h"
#include "plugins/builtin.h"
#include "plugins/plugin.h"
#include "plugins/template.h"

namespace trapline::zabbix {

inline constexpr const char* kManagedByTag = "managed-by";
inline constexpr const char* kManagedByValue = "trapline";
inline constexpr const char* kPluginTag = "trapline-plugin";

struct Tag {
  std::string tag;
  std::string value;
  friend bool operator==(const Tag&, const Tag&) = default;
  friend auto operator<=>(const Tag&, const Tag&) = default;
};

struct SyncOptions {
  std::vector<std::string> host_groups = {"trapline"};
  std::string visible_name;       // default: the host name
  std::string history = "14d";    // item history retention
  std::string trends = "365d";    // item trends retention (numeric items)
  std::string trapper_hosts;      // allowed sender addresses ("" = any), e.g. the collectors'
  bool delete_vanished = false;   // items of vanished entities: disabled (false) or deleted
  int dashboard_columns = 0;      // 0: by version (24 before 7.0, 72 from 7.0)
};

struct DesiredItem {
  std::string key;
  std::string name;
  std::string units;
  std::string description;
  int value_type = 0;  // 0 float, 4 text
  std::string entity_kind;
  std::string entity;
  std::vector<Tag> tags;
};

struct GraphLine {
  std::string key;     // item key
  int calc_fnc = 7;    // 1 min, 2 avg, 4 max, 7 all
  int drawtype = 0;    // 0 line, 1 filled region, 2 bold line
  std::string color;   // "RRGGBB"
  int yaxisside = 0;
};

struct DesiredGraph {
  std::string name;
  int graphtype = 0;   // 0 normal, 1 stacked
  std::string entity_kind;  // "" for host-level and summary graphs
  std::string entity;
  bool summary = false;
  std::vector<GraphLine> lines;
};

struct DesiredTrigger {
  std::string name;           // Zabbix "description"
  std::string expression;     // expanded: /host/key
  std::string recovery_expression;
  int priority = 2;
  std::string comments;
  std::vector<Tag> tags;
  std::vector<std::string> depends_on;  // expanded names of this host's triggers
};

struct DashboardWidget {
  std::string name;
  std::string graph;  // DesiredGraph::name
  int x = 0, y = 0, width = 12, height = 5;
};

struct DashboardPage {
  std::string name;
  std::vector<DashboardWidget> widgets;
};

struct DesiredDashboard {
  std::string name;
  std::vector<DashboardPage> pages;
};

struct DesiredHost {
  std::string host;
  std::string visible_name;
  std::string plugin;
  std::vector<std::string> groups;
  std::vector<Tag> host_tags;  // managed-by and this plugin's tag
  std::vector<plugins::MacroSpec> global_macros;
  std::vector<DesiredItem> items;
  std::vector<DesiredGraph> graphs;
  std::vector<DesiredTrigger> triggers;
  DesiredDashboard dashboard;
};

// The dashboard name of a host's plugin.
std::string DashboardName(const std::string& host, const std::string& plugin);

// Builds the desired state. Entities of kinds the plugin has no metrics for are ignored;
// duplicates are merged. `dashboard_columns` must be resolved (> 0) by the caller.
// Returns InvalidArgument when the host name is empty or the template refers to a metric the
// plugin does not declare (a plugin bug, caught by tests/unit/template_test.cc too).
Result<DesiredHost> BuildDesired(const plugins::PluginInfo& plugin, const std::string& host,
                                 const std::vector<plugins::Entity>& entities,
                                 const SyncOptions& options, int dashboard_columns);

// "min({{fs.used_pct}},5m)>{$X:\"{#ENTITY}\"}" with host "web1", entity "/var" ->
// "min(/web1/linux.fs.used_pct[/var],5m)>{$X:\"/var\"}". Unknown {{names}} are an error.
Result<std::string> ExpandExpression(const std::string& expression, const std::string& plugin,
                                     const std::string& host, const std::string& entity,
                                     const std::vector<plugins::MetricSpec>& metrics,
                                     const std::string& entity_kind);

}  // namespace trapline::zabbix
