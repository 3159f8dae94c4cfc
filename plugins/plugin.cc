#include "plugins/plugin.h"

namespace trapline::plugins {

std::string ItemKey(std::string_view plugin, std::string_view metric, std::string_view entity) {
  std::string key;
  key.reserve(plugin.size() + metric.size() + entity.size() + 6);
  key.append(plugin);
  key.push_back('.');
  key.append(metric);
  if (entity.empty()) return key;
  key.push_back('[');
  // Zabbix key parameters: quote when the value has ',', ']', '"', '[' or leading spaces.
  bool quote = entity.find_first_of(",]\"[ ") != std::string_view::npos;
  if (!quote) {
    key.append(entity);
  } else {
    key.push_back('"');
    for (char c : entity) {
      if (c == '"') key.push_back('\\');
      key.push_back(c);
    }
    key.push_back('"');
  }
  key.push_back(']');
  return key;
}

}  // namespace trapline::plugins
