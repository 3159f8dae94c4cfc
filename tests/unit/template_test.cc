// Checks of every built-in plugin's Zabbix template (plugins/template.h) against its metric
// table: what zabbix-sync would otherwise only find out from the Zabbix API (or never, for a
// trigger that cannot fire). The checker is exercised on broken templates too, so that each
// check is known to be able to fail.

#include <cctype>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <doctest/doctest.h>

#include "plugins/builtin.h"
#include "plugins/plugin.h"
#include "plugins/template.h"

namespace trapline::plugins {
namespace {

constexpr std::string_view kEntity = "{#ENTITY}";

// Zabbix 6.0 functions the templates may call. History functions take a {{metric}} first.
const std::set<std::string, std::less<>> kHistoryFunctions = {
    "avg", "change", "count", "delta", "find", "first", "forecast", "last", "max", "min",
    "nodata", "percentile", "sum", "timeleft"};
const std::set<std::string, std::less<>> kOtherFunctions = {"abs", "length"};
// History functions whose second argument is a time window that must span several intervals.
const std::set<std::string, std::less<>> kWindowFunctions = {
    "avg", "count", "delta", "forecast", "max", "min", "nodata", "percentile", "sum", "timeleft"};
// History functions that make sense on text items.
const std::set<std::string, std::less<>> kTextFunctions = {"change", "count", "find", "last",
                                                           "nodata"};

std::string Upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

std::string Replace(std::string s, std::string_view from, std::string_view to) {
  for (size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size())) {
    s.replace(p, from.size(), to);
  }
  return s;
}

// Seconds in a Zabbix time value ("90", "5m", "1h"), or nullopt.
std::optional<double> Seconds(std::string_view v) {
  if (v.empty()) return std::nullopt;
  double mult = 1;
  switch (v.back()) {
    case 's': mult = 1; v.remove_suffix(1); break;
    case 'm': mult = 60; v.remove_suffix(1); break;
    case 'h': mult = 3600; v.remove_suffix(1); break;
    case 'd': mult = 86400; v.remove_suffix(1); break;
    case 'w': mult = 604800; v.remove_suffix(1); break;
    default: break;
  }
  if (v.empty()) return std::nullopt;
  for (char c : v) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return std::nullopt;
  }
  return std::stod(std::string(v)) * mult;
}

class Checker {
 public:
  Checker(std::string_view plugin, const std::vector<MetricSpec>& metrics,
          const ZabbixTemplate& t)
      : plugin_(plugin), t_(t) {
    for (const auto& m : metrics) {
      metrics_[m.name] = &m;
      if (!m.entity_kind.empty()) kinds_.insert(m.entity_kind);
    }
    for (const auto& m : t.macros) macros_[m.name] = &m;
  }

  std::vector<std::string> Run() {
    CheckMacros();
    CheckTriggers();
    CheckGraphs();
    for (const auto& m : t_.macros) {
      if (!used_macros_.count(m.name)) Error("macro " + m.name + " is declared but never used");
    }
    return errors_;
  }

 private:
  void Error(std::string e) { errors_.push_back(std::move(e)); }

  void CheckMacros() {
    const std::string prefix = "{$TRAPLINE." + Upper(plugin_) + ".";
    std::set<std::string> seen;
    for (const auto& m : t_.macros) {
      if (!seen.insert(m.name).second) Error("macro " + m.name + " declared twice");
      bool ok = m.name.size() > prefix.size() + 1 && m.name.starts_with(prefix) &&
                m.name.back() == '}';
      for (size_t i = 2; ok && i + 1 < m.name.size(); ++i) {
        char c = m.name[i];
        ok = (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.';
      }
      if (!ok) Error("macro name " + m.name + " is not " + prefix + "<A-Z0-9_.>}");
      if (m.value.empty()) Error("macro " + m.name + " has no default value");
      if (m.description.empty()) Error("macro " + m.name + " has no description");
    }
  }

  // Resolves a {$MACRO} (with or without context) to its default, else returns v unchanged.
  std::string Resolve(const std::string& v) {
    if (!v.starts_with("{$")) return v;
    std::string name = v;
    if (size_t colon = name.find(':'); colon != std::string::npos) {
      name = name.substr(0, colon) + "}";
    }
    auto it = macros_.find(name);
    return it == macros_.end() ? v : it->second->value;
  }

  // Parses a {$NAME} or {$NAME:"context"} at s[i]; returns its end or npos (error reported).
  size_t ParseMacro(std::string_view s, size_t i, bool entity, const std::string& where) {
    size_t j = i + 2;
    while (j < s.size() && (std::isupper(static_cast<unsigned char>(s[j])) ||
                            std::isdigit(static_cast<unsigned char>(s[j])) || s[j] == '_' ||
                            s[j] == '.')) {
      ++j;
    }
    std::string name = "{$" + std::string(s.substr(i + 2, j - i - 2)) + "}";
    if (j < s.size() && s[j] == ':') {
      if (j + 1 >= s.size() || s[j + 1] != '"') {
        Error(where + ": macro context of " + name + " is not quoted");
        return std::string_view::npos;
      }
      size_t close = s.find('"', j + 2);
      if (close == std::string_view::npos) {
        Error(where + ": unterminated macro context of " + name);
        return std::string_view::npos;
      }
      std::string_view context = s.substr(j + 2, close - j - 2);
      if (context.find('{') != std::string_view::npos && context != kEntity) {
        Error(where + ": unknown placeholder in the context of " + name);
      }
      if (context == kEntity && !entity) {
        Error(where + ": {#ENTITY} as macro context in a host-level object");
      }
      j = close + 1;
    }
    if (j >= s.size() || s[j] != '}') {
      Error(where + ": malformed macro at \"" + std::string(s.substr(i)) + "\"");
      return std::string_view::npos;
    }
    if (!macros_.count(name)) Error(where + ": macro " + name + " is not declared");
    used_macros_.insert(name);
    return j + 1;
  }

  // Names and descriptions: only {$MACRO} and, in entity objects, {#ENTITY} placeholders.
  void CheckText(std::string_view s, bool entity, const std::string& where) {
    for (size_t i = 0; i < s.size();) {
      if (s.substr(i).starts_with("{$")) {
        size_t end = ParseMacro(s, i, entity, where);
        if (end == std::string_view::npos) return;
        i = end;
      } else if (s.substr(i).starts_with(kEntity)) {
        if (!entity) Error(where + ": {#ENTITY} in a host-level object");
        i += kEntity.size();
      } else if (s[i] == '{' || s[i] == '}') {
        Error(where + ": unknown placeholder at \"" + std::string(s.substr(i)) + "\"");
        return;
      } else {
        ++i;
      }
    }
  }

  // A trigger expression; returns the names of the functions called on each metric.
  void CheckExpression(std::string_view s, const std::string& kind, const std::string& where,
                       std::vector<std::string>* functions) {
    const bool entity = !kind.empty();
    int depth = 0;
    int placeholders = 0;
    std::string last_function;
    for (size_t i = 0; i < s.size();) {
      char c = s[i];
      if (s.substr(i).starts_with("{{")) {
        size_t close = s.find("}}", i + 2);
        if (close == std::string_view::npos) {
          Error(where + ": unterminated {{metric}}");
          return;
        }
        std::string name(s.substr(i + 2, close - i - 2));
        ++placeholders;
        auto it = metrics_.find(name);
        if (it == metrics_.end()) {
          Error(where + ": metric " + name + " is not declared");
        } else if (it->second->entity_kind != kind) {
          Error(where + ": metric " + name + " is of entity kind \"" +
                it->second->entity_kind + "\", the trigger of \"" + kind + "\"");
        } else if (it->second->value_type == ValueType::kText &&
                   !kTextFunctions.count(last_function)) {
          Error(where + ": text metric " + name + " in " + last_function + "()");
        }
        // The time window of the function, when it has one.
        size_t after = close + 2;
        if (kWindowFunctions.count(last_function) && it != metrics_.end()) {
          if (after >= s.size() || s[after] != ',') {
            Error(where + ": " + last_function + "(" + name + ") has no time window");
          } else {
            size_t end = s.find_first_of(",)", after + 1);
            std::string arg(s.substr(after + 1, end - after - 1));
            // A macro with context ends in '"}' and contains no ',' or ')'.
            std::optional<double> sec = Seconds(Resolve(arg));
            if (!sec) {
              Error(where + ": " + last_function + "(" + name + ") window \"" + arg +
                    "\" is not a time");
            } else if (*sec < 2.0 * it->second->interval_s) {
              Error(where + ": " + last_function + "(" + name + ") window " + arg +
                    " is shorter than two intervals of the metric (" +
                    std::to_string(it->second->interval_s) + " s): it may see one value set");
            }
          }
        }
        if (functions) functions->push_back(last_function);
        last_function.clear();
        i = after;
      } else if (s.substr(i).starts_with("{$")) {
        size_t end = ParseMacro(s, i, entity, where);
        if (end == std::string_view::npos) return;
        i = end;
      } else if (s.substr(i).starts_with(kEntity)) {
        if (!entity) Error(where + ": {#ENTITY} in a host-level trigger");
        i += kEntity.size();
      } else if (c == '{' || c == '}') {
        Error(where + ": unknown placeholder at \"" + std::string(s.substr(i)) + "\"");
        return;
      } else if (c == '"') {
        size_t close = s.find('"', i + 1);
        if (close == std::string_view::npos) {
          Error(where + ": unterminated string");
          return;
        }
        i = close + 1;
      } else if (std::isalpha(static_cast<unsigned char>(c))) {
        size_t j = i;
        while (j < s.size() && (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '_')) {
          ++j;
        }
        std::string word(s.substr(i, j - i));
        bool numeric_suffix = i > 0 && std::isdigit(static_cast<unsigned char>(s[i - 1]));
        if (j < s.size() && s[j] == '(') {
          if (kHistoryFunctions.count(word)) {
            if (!s.substr(j + 1).starts_with("{{")) {
              Error(where + ": the first argument of " + word + "() is not a {{metric}}");
            }
            last_function = word;
          } else if (!kOtherFunctions.count(word)) {
            Error(where + ": unknown function " + word + "()");
          }
        } else if (!numeric_suffix && word != "and" && word != "or" && word != "not") {
          Error(where + ": unexpected word \"" + word + "\"");
        }
        i = j;
      } else {
        if (c == '(') ++depth;
        if (c == ')' && --depth < 0) {
          Error(where + ": unbalanced ')'");
          return;
        }
        ++i;
      }
    }
    if (depth != 0) Error(where + ": unbalanced '('");
    if (placeholders == 0) Error(where + ": no {{metric}} in the expression");
  }

  void CheckTriggers() {
    std::set<std::string> expanded;
    int nodata_triggers = 0;
    for (const auto& t : t_.triggers) {
      const bool entity = !t.entity_kind.empty();
      const std::string where = "trigger \"" + t.name + "\"";
      if (t.name.empty()) Error("a trigger has no name");
      if (t.description.empty()) Error(where + " has no description");
      if (entity && !kinds_.count(t.entity_kind)) {
        Error(where + ": no metric has entity kind \"" + t.entity_kind + "\"");
      }
      if (entity && t.name.find(kEntity) == std::string::npos) {
        Error(where + ": a per-entity trigger name without {#ENTITY}");
      }
      if (t.severity < Severity::kInformation || t.severity > Severity::kDisaster) {
        Error(where + ": severity out of range");
      }
      CheckText(t.name, entity, where + " name");
      CheckText(t.description, entity, where + " description");
      for (std::string_view e : {std::string_view("e1"), std::string_view("e2")}) {
        std::string name = Replace(t.name, kEntity, e);
        if (!expanded.insert(name).second) Error("trigger name \"" + name + "\" is not unique");
        if (!entity) break;
      }
      if (t.expression.empty()) Error(where + " has no expression");
      std::vector<std::string> functions;
      CheckExpression(t.expression, t.entity_kind, where, &functions);
      if (!t.recovery_expression.empty()) {
        CheckExpression(t.recovery_expression, t.entity_kind, where + " recovery", nullptr);
      }
      for (const auto& f : functions) {
        if (f != "nodata") continue;
        if (entity) {
          Error(where + ": nodata() on a per-entity item (entities may legitimately vanish)");
        }
        ++nodata_triggers;
      }
      for (const auto& d : t.depends_on) {
        const TriggerSpec* target = FindTrigger(d);
        if (!target) {
          Error(where + ": depends on \"" + d + "\", which is not a trigger of the plugin");
        } else if (target == &t) {
          Error(where + ": depends on itself");
        } else if (target->entity_kind != t.entity_kind) {
          Error(where + ": depends on \"" + d + "\" of another entity kind");
        }
      }
    }
    if (nodata_triggers != 1) {
      Error("expected exactly one nodata() trigger (\"no data from trapline\"), found " +
            std::to_string(nodata_triggers));
    }
    // No dependency cycles.
    for (const auto& t : t_.triggers) {
      std::set<const TriggerSpec*> seen;
      std::vector<const TriggerSpec*> todo = {&t};
      while (!todo.empty()) {
        const TriggerSpec* cur = todo.back();
        todo.pop_back();
        for (const auto& d : cur->depends_on) {
          const TriggerSpec* next = FindTrigger(d);
          if (next == &t) {
            Error("trigger \"" + t.name + "\" depends on itself through a cycle");
            todo.clear();
            break;
          }
          if (next && seen.insert(next).second) todo.push_back(next);
        }
      }
    }
  }

  const TriggerSpec* FindTrigger(const std::string& name) const {
    for (const auto& t : t_.triggers) {
      if (t.name == name) return &t;
    }
    return nullptr;
  }

  void CheckGraphs() {
    std::set<std::string> expanded;
    for (const auto& g : t_.graphs) {
      const std::string where = "graph \"" + g.name + "\"";
      const bool per_entity = !g.entity_kind.empty() && !g.summary;
      if (g.name.empty()) Error("a graph has no name");
      if (per_entity && g.name.find(kEntity) == std::string::npos) {
        Error(where + ": a per-entity graph name without {#ENTITY}");
      }
      CheckText(g.name, per_entity, where);
      if (g.summary && g.entity_kind.empty()) Error(where + ": a summary of host-level metrics");
      if (g.summary && g.metrics.size() != 1) {
        Error(where + ": a summary graph draws metrics[0] only; give exactly one metric");
      }
      if (!g.entity_kind.empty() && !kinds_.count(g.entity_kind)) {
        Error(where + ": no metric has entity kind \"" + g.entity_kind + "\"");
      }
      for (std::string_view e : {std::string_view("e1"), std::string_view("e2")}) {
        std::string name = Replace(g.name, kEntity, e);
        if (!expanded.insert(name).second) Error("graph name \"" + name + "\" is not unique");
        if (!per_entity) break;
      }
      if (g.metrics.empty()) Error(where + " draws nothing");
      std::set<std::string> seen;
      std::set<std::string> units;
      for (const auto& name : g.metrics) {
        if (!seen.insert(name).second) Error(where + ": metric " + name + " twice");
        auto it = metrics_.find(name);
        if (it == metrics_.end()) {
          Error(where + ": metric " + name + " is not declared");
          continue;
        }
        const MetricSpec& m = *it->second;
        if (m.entity_kind != g.entity_kind) {
          Error(where + ": metric " + name + " is of entity kind \"" + m.entity_kind +
                "\", the graph of \"" + g.entity_kind + "\"");
        }
        if (m.value_type == ValueType::kText) Error(where + ": text metric " + name);
        units.insert(m.units);
      }
      if (units.size() > 1) Error(where + ": metrics with different units on one axis");
    }
  }

  std::string plugin_;
  const ZabbixTemplate& t_;
  std::map<std::string, const MetricSpec*, std::less<>> metrics_;
  std::set<std::string, std::less<>> kinds_;
  std::map<std::string, const MacroSpec*, std::less<>> macros_;
  std::set<std::string> used_macros_;
  std::vector<std::string> errors_;
};

std::vector<std::string> Check(std::string_view plugin, const std::vector<MetricSpec>& metrics,
                               const ZabbixTemplate& t) {
  return Checker(plugin, metrics, t).Run();
}

std::string Join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += s + "\n";
  return out;
}

TEST_CASE("every built-in plugin's Zabbix template matches its metric table") {
  REQUIRE(!BuiltinPlugins().empty());
  for (const auto& p : BuiltinPlugins()) {
    CAPTURE(p.name);
    REQUIRE((p.zabbix_template != nullptr));
    const ZabbixTemplate& t = p.zabbix_template();
    CHECK(!t.triggers.empty());
    CHECK(!t.graphs.empty());
    CHECK(!t.macros.empty());
    std::vector<std::string> errors = Check(p.name, p.metrics(), t);
    CHECK_MESSAGE(errors.empty(), Join(errors));
    // Every entity kind gets at least one graph, and a summary graph.
    std::set<std::string> kinds, graphed, summarised;
    for (const auto& m : p.metrics()) {
      if (!m.entity_kind.empty()) kinds.insert(m.entity_kind);
    }
    for (const auto& g : t.graphs) (g.summary ? summarised : graphed).insert(g.entity_kind);
    for (const auto& k : kinds) {
      CAPTURE(k);
      CHECK(graphed.count(k) + summarised.count(k) > 0);
    }
  }
}

TEST_CASE("each plugin's README documents its triggers and macros") {
  for (const auto& p : BuiltinPlugins()) {
    CAPTURE(p.name);
    std::ifstream in(std::string(TRAPLINE_FIXTURES) + "/../../plugins/" + std::string(p.name) +
                     "/README.md");
    REQUIRE(in.good());
    std::stringstream ss;
    ss << in.rdbuf();
    std::string readme = ss.str();
    size_t section = readme.find("## Zabbix template");
    REQUIRE(section != std::string::npos);
    std::string text = readme.substr(section);
    for (const auto& m : p.zabbix_template().macros) {
      CAPTURE(m.name);
      CHECK(text.find("`" + m.name + "`") != std::string::npos);
    }
    for (const auto& t : p.zabbix_template().triggers) {
      CAPTURE(t.name);
      CHECK(text.find(t.name) != std::string::npos);
    }
  }
}

// A small valid plugin, then one mistake at a time: each check must be able to fail.
TEST_CASE("the template checks catch broken templates") {
  std::vector<MetricSpec> metrics = {
      GaugeSpec("uptime", "Uptime", "uptime", "d"),
      GaugeSpec("load", "Load", "", "d"),
      GaugeSpec("count", "CPUs", "", "d"),
      TextSpec("version", "Version", "d"),
      GaugeSpec("fs.pused", "FS {#ENTITY} used", "%", "d", "filesystem"),
      GaugeSpec("fs.size", "FS {#ENTITY} size", "B", "d", "filesystem"),
  };
  ZabbixTemplate good;
  good.macros = {{"{$TRAPLINE.TOY.NODATA}", "5m", "d"},
                 {"{$TRAPLINE.TOY.FS.WARN}", "80", "d"},
                 {"{$TRAPLINE.TOY.FS.HIGH}", "90", "d"}};
  auto trig = [](std::string kind, std::string name, std::string expr,
                 std::vector<std::string> deps = {}) {
    TriggerSpec t;
    t.entity_kind = std::move(kind);
    t.name = std::move(name);
    t.expression = std::move(expr);
    t.description = "d";
    t.depends_on = std::move(deps);
    return t;
  };
  good.triggers = {
      trig("", "No data", "nodata({{uptime}},{$TRAPLINE.TOY.NODATA})=1"),
      trig("", "Load", "min({{load}},5m)>1.5*last({{count}}) and last({{version}},#1)<>\"x\""),
      trig("filesystem", "FS {#ENTITY} high",
           R"(last({{fs.pused}})>{$TRAPLINE.TOY.FS.HIGH:"{#ENTITY}"})"),
      trig("filesystem", "FS {#ENTITY} warn ({$TRAPLINE.TOY.FS.WARN:\"{#ENTITY}\"}%)",
           R"(max({{fs.pused}},5m)>{$TRAPLINE.TOY.FS.WARN})", {"FS {#ENTITY} high"}),
  };
  auto graph = [](std::string kind, std::string name, std::vector<std::string> m,
                  bool summary = false) {
    GraphSpec g;
    g.entity_kind = std::move(kind);
    g.name = std::move(name);
    g.metrics = std::move(m);
    g.summary = summary;
    return g;
  };
  good.graphs = {graph("", "Load", {"load", "count"}),
                 graph("filesystem", "FS {#ENTITY}", {"fs.pused"}),
                 graph("filesystem", "FS all", {"fs.pused"}, true)};
  REQUIRE_MESSAGE(Check("toy", metrics, good).empty(), Join(Check("toy", metrics, good)));

  struct Case {
    const char* what;
    std::function<void(ZabbixTemplate&)> mutate;
    const char* expected;  // part of one error message
  };
  const Case cases[] = {
      {"undeclared metric", [](auto& t) { t.triggers[1].expression = "last({{nope}})>1"; },
       "metric nope is not declared"},
      {"entity metric in a host trigger",
       [](auto& t) { t.triggers[1].expression = "last({{fs.pused}})>1"; }, "of entity kind"},
      {"host metric in an entity trigger",
       [](auto& t) { t.triggers[2].expression = "last({{load}})>1"; }, "of entity kind"},
      {"undeclared macro", [](auto& t) { t.triggers[1].expression = "last({{load}})>{$TRAPLINE.TOY.X}"; },
       "is not declared"},
      {"macro without default", [](auto& t) { t.macros[1].value = ""; }, "no default value"},
      {"macro without the plugin prefix", [](auto& t) { t.macros[1].name = "{$FS.WARN}"; },
       "is not {$TRAPLINE.TOY."},
      {"unused macro", [](auto& t) { t.macros.push_back({"{$TRAPLINE.TOY.UNUSED}", "1", "d"}); },
       "never used"},
      {"unbalanced (", [](auto& t) { t.triggers[1].expression = "(last({{load}})>1"; },
       "unbalanced '('"},
      {"unbalanced )", [](auto& t) { t.triggers[1].expression = "last({{load}}))>1"; },
       "unbalanced ')'"},
      {"unknown placeholder", [](auto& t) { t.triggers[1].expression = "last({{load}})>{HOST.HOST}"; },
       "unknown placeholder"},
      {"{#ENTITY} in a host trigger",
       [](auto& t) { t.triggers[1].expression = "last({{load}})>{$TRAPLINE.TOY.FS.WARN:\"{#ENTITY}\"}"; },
       "host-level"},
      {"unknown function", [](auto& t) { t.triggers[1].expression = "lastt({{load}})>1"; },
       "unknown function"},
      {"history function without a metric",
       [](auto& t) { t.triggers[1].expression = "last(/h/load)>1 and last({{load}})>1"; },
       "is not a {{metric}}"},
      {"no metric at all", [](auto& t) { t.triggers[1].expression = "1>0"; }, "no {{metric}}"},
      {"window shorter than two intervals",
       [](auto& t) { t.triggers[1].expression = "min({{load}},1m)>1"; }, "shorter than two"},
      {"window that is not a time",
       [](auto& t) { t.triggers[1].expression = "min({{load}},#3)>1"; }, "is not a time"},
      {"window missing", [](auto& t) { t.triggers[1].expression = "min({{load}})>1"; },
       "no time window"},
      {"text metric in avg()", [](auto& t) { t.triggers[1].expression = "avg({{version}},5m)>1"; },
       "text metric"},
      {"nodata on an entity item",
       [](auto& t) { t.triggers[2].expression = "nodata({{fs.pused}},5m)=1"; }, "nodata() on a per-entity"},
      {"no nodata trigger", [](auto& t) { t.triggers.erase(t.triggers.begin()); t.macros.erase(t.macros.begin()); },
       "exactly one nodata()"},
      {"two nodata triggers",
       [](auto& t) { t.triggers[1].expression = "nodata({{load}},5m)=1"; }, "exactly one nodata()"},
      {"duplicate trigger name", [](auto& t) { t.triggers[1].name = "No data"; }, "is not unique"},
      {"entity trigger name without {#ENTITY}",
       [](auto& t) { t.triggers[2].name = "FS high"; }, "without {#ENTITY}"},
      {"undeclared macro in a name", [](auto& t) { t.triggers[1].name = "Load {$TRAPLINE.TOY.Y}"; },
       "is not declared"},
      {"unknown dependency", [](auto& t) { t.triggers[3].depends_on = {"FS {#ENTITY} higher"}; },
       "not a trigger of the plugin"},
      {"dependency on another entity kind", [](auto& t) { t.triggers[3].depends_on = {"Load"}; },
       "another entity kind"},
      {"dependency cycle", [](auto& t) { t.triggers[2].depends_on = {t.triggers[3].name}; },
       "through a cycle"},
      {"unknown entity kind", [](auto& t) { t.triggers[2].entity_kind = "fs"; },
       "no metric has entity kind"},
      {"graph of an undeclared metric", [](auto& t) { t.graphs[0].metrics.push_back("nope"); },
       "metric nope is not declared"},
      {"graph of another entity kind", [](auto& t) { t.graphs[0].metrics.push_back("fs.size"); },
       "of entity kind"},
      {"graph mixing units", [](auto& t) { t.graphs[1].metrics.push_back("fs.size"); },
       "different units"},
      {"graph of a text metric", [](auto& t) { t.graphs[0].metrics = {"version"}; }, "text metric"},
      {"duplicate graph name", [](auto& t) { t.graphs[2].name = "Load"; }, "is not unique"},
      {"per-entity graph name without {#ENTITY}",
       [](auto& t) { t.graphs[1].name = "FS"; }, "without {#ENTITY}"},
      {"summary of host metrics", [](auto& t) { t.graphs[0].summary = true; },
       "summary of host-level"},
      {"{#ENTITY} in a summary graph name", [](auto& t) { t.graphs[2].name = "FS {#ENTITY} all"; },
       "host-level object"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.what);
    ZabbixTemplate t = good;
    c.mutate(t);
    std::vector<std::string> errors = Check("toy", metrics, t);
    bool found = false;
    for (const auto& e : errors) found = found || e.find(c.expected) != std::string::npos;
    CHECK_MESSAGE(found, "expected \"" << c.expected << "\" among:\n" << Join(errors));
  }
}

}  // namespace
}  // namespace trapline::plugins
