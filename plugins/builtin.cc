#include "plugins/builtin.h"

#include "plugins/linux/linux.h"
#include "plugins/postgresql/postgresql.h"
#include "plugins/redis/redis.h"
#include "plugins/trapline/trapline.h"

namespace trapline::plugins {

const std::vector<PluginInfo>& BuiltinPlugins() {
  static const std::vector<PluginInfo> kPlugins = {
      {linuxhost::kPluginName, {"ssh"}, &linuxhost::Metrics, &linuxhost::Template},
      {postgresql::kPluginName, {"postgresql", "postgres"}, &postgresql::Metrics, &postgresql::Template},
      {redis::kPluginName, {"redis"}, &redis::Metrics, &redis::Template},
      // A collector's own health: no target to connect to (no scheme), fed by the collector.
      {self::kPluginName, {}, &self::Metrics, &self::Template},
  };
  return kPlugins;
}

const PluginInfo* FindPlugin(std::string_view name) {
  for (const auto& p : BuiltinPlugins()) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

const PluginInfo* PluginForUri(std::string_view uri) {
  size_t colon = uri.find("://");
  if (colon == std::string_view::npos) return nullptr;
  std::string_view scheme = uri.substr(0, colon);
  for (const auto& p : BuiltinPlugins()) {
    for (auto s : p.schemes) {
      if (s == scheme) return &p;
    }
  }
  return nullptr;
}

}  // namespace trapline::plugins
