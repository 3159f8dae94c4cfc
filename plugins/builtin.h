#pragma once
// The built-in plugins, listed explicitly (no static registration): name, URI schemes it
// serves, and its metric declarations.

#include <string>
#include <string_view>
#include <vector>

#include "plugins/plugin.h"
#include "plugins/template.h"

namespace trapline::plugins {

struct PluginInfo {
  std::string_view name;                     // "linux", "postgresql", "redis"
  std::vector<std::string_view> schemes;     // URI schemes: "ssh", "postgresql", ...
  const std::vector<MetricSpec>& (*metrics)();
  // Triggers, graphs and macros for zabbix-sync (plugins/template.h).
  const ZabbixTemplate& (*zabbix_template)();
};

// Every built-in plugin.
const std::vector<PluginInfo>& BuiltinPlugins();
// The plugin called `name`, or null.
const PluginInfo* FindPlugin(std::string_view name);
// The plugin serving a URI's scheme ("ssh://..." -> linux), or null.
const PluginInfo* PluginForUri(std::string_view uri);

}  // namespace trapline::plugins
