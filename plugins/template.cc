#include "plugins/template.h"

#include <utility>

namespace trapline::plugins {

MacroSpec Macro(std::string name, std::string value, std::string description) {
  MacroSpec m;
  m.name = std::move(name);
  m.value = std::move(value);
  m.description = std::move(description);
  return m;
}

TriggerSpec Trigger(std::string entity_kind, Severity severity, std::string name,
                    std::string expression, std::string description,
                    std::string recovery_expression,
                    std::vector<std::string> depends_on) {
  TriggerSpec t;
  t.name = std::move(name);
  t.entity_kind = std::move(entity_kind);
  t.expression = std::move(expression);
  t.recovery_expression = std::move(recovery_expression);
  t.severity = severity;
  t.description = std::move(description);
  t.depends_on = std::move(depends_on);
  return t;
}

GraphSpec Graph(std::string entity_kind, std::string name, std::vector<std::string> metrics,
                bool stacked) {
  GraphSpec g;
  g.name = std::move(name);
  g.entity_kind = std::move(entity_kind);
  g.metrics = std::move(metrics);
  g.stacked = stacked;
  return g;
}

GraphSpec Summary(std::string entity_kind, std::string name, std::string metric) {
  GraphSpec g = Graph(std::move(entity_kind), std::move(name), {std::move(metric)});
  g.summary = true;
  return g;
}

}  // namespace trapline::plugins
