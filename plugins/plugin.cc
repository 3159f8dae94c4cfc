#include "plugins/plugin.h"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <system_error>

namespace trapline::plugins {

MetricSpec GaugeSpec(std::string name, std::string title, std::string units,
                     std::string description, std::string entity_kind) {
  MetricSpec m;
  m.name = std::move(name);
  m.entity_kind = std::move(entity_kind);
  m.title = std::move(title);
  m.units = std::move(units);
  m.kind = MetricKind::kGauge;
  m.value_type = ValueType::kFloat;
  m.description = std::move(description);
  return m;
}

MetricSpec CounterSpec(std::string name, std::string title, std::string units,
                       std::string description, std::string entity_kind, double rate_scale) {
  MetricSpec m = GaugeSpec(std::move(name), std::move(title), std::move(units),
                           std::move(description), std::move(entity_kind));
  m.kind = MetricKind::kCounter;
  m.rate_scale = rate_scale;
  return m;
}

MetricSpec TextSpec(std::string name, std::string title, std::string description,
                    std::string entity_kind) {
  MetricSpec m = GaugeSpec(std::move(name), std::move(title), "", std::move(description),
                           std::move(entity_kind));
  m.value_type = ValueType::kText;
  return m;
}

bool ParseFiniteNumber(std::string_view s, double* out) {
  if (s.empty()) return false;
  if (s.size() <= 15) {
    std::int64_t n = 0;
    std::size_t i = 0;
    for (; i < s.size(); ++i) {
      const unsigned d = static_cast<unsigned char>(s[i]) - static_cast<unsigned>('0');
      if (d > 9) break;
      n = n * 10 + d;
    }
    if (i == s.size()) {
      *out = static_cast<double>(n);
      return true;
    }
  }
  double v = 0;
  const char* end = s.data() + s.size();
  auto [p, ec] = std::from_chars(s.data(), end, v);
  if (ec != std::errc() || p != end || !std::isfinite(v)) return false;
  *out = v;
  return true;
}

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
