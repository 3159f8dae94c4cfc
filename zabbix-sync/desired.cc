#include "zabbix-sync/desired.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <set>

namespace trapline::zabbix {

namespace {

// Distinct on light and dark themes; summary graphs cycle through them.
constexpr const char* kPalette[] = {"1A7C11", "F63100", "2774A4", "A54F10", "FC6EA3", "6C59DC",
                                    "AC8C14", "611F27", "F230E0", "5CCD18", "BB2A02", "5A2B57",
                                    "89ABF8", "7EC25C", "274482", "2B5429"};
constexpr size_t kPaletteSize = sizeof(kPalette) / sizeof(kPalette[0]);

// Inside a macro context ({$M:"..."}) a '"' of the entity name must be escaped.
std::string ExpandEntity(const std::string& text, const std::string& entity) {
  std::string out;
  out.reserve(text.size() + entity.size());
  const std::string_view tag = "{#ENTITY}";
  size_t pos = 0;
  while (true) {
    size_t at = text.find(tag, pos);
    if (at == std::string::npos) break;
    out.append(text, pos, at - pos);
    bool in_quotes = at > 0 && text[at - 1] == '"';
    for (char c : entity) {
      if (in_quotes && (c == '"' || c == '\\')) out.push_back('\\');
      out.push_back(c);
    }
    pos = at + tag.size();
  }
  out.append(text, pos, std::string::npos);
  return out;
}

// "cpu.user" -> "cpu": the item's component tag.
std::string Component(const std::string& metric) {
  size_t dot = metric.find('.');
  return dot == std::string::npos ? metric : metric.substr(0, dot);
}

// "disk" -> "Disks": the page title of an entity kind.
std::string PageTitle(const std::string& kind) {
  if (kind == "cpu") return "CPUs";
  std::string t = kind + "s";
  t[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(t[0])));
  return t;
}

const plugins::MetricSpec* FindMetric(const std::vector<plugins::MetricSpec>& metrics,
                                      const std::string& name) {
  for (const auto& m : metrics) {
    if (m.name == name) return &m;
  }
  return nullptr;
}

}  // namespace

std::string DashboardName(const std::string& host, const std::string& plugin) {
  return "trapline: " + host + " / " + plugin;
}

Result<std::string> ExpandExpression(const std::string& expression, const std::string& plugin,
                                     const std::string& host, const std::string& entity,
                                     const std::vector<plugins::MetricSpec>& metrics,
                                     const std::string& entity_kind) {
  std::string out;
  size_t pos = 0;
  while (true) {
    size_t open = expression.find("{{", pos);
    if (open == std::string::npos) break;
    size_t close = expression.find("}}", open + 2);
    if (close == std::string::npos) {
      return Status::InvalidArgument("expression '" + expression + "': '{{' without '}}'");
    }
    std::string name = expression.substr(open + 2, close - open - 2);
    const plugins::MetricSpec* m = FindMetric(metrics, name);
    if (m == nullptr) {
      return Status::InvalidArgument("expression '" + expression + "': plugin " + plugin +
                                     " has no metric '" + name + "'");
    }
    if (m->entity_kind != entity_kind && !m->entity_kind.empty()) {
      return Status::InvalidArgument("expression '" + expression + "': metric '" + name +
                                     "' belongs to entity kind '" + m->entity_kind + "', not '" +
                                     entity_kind + "'");
    }
    out.append(expression, pos, open - pos);
    out += "/" + host + "/" + plugins::ItemKey(plugin, name, m->entity_kind.empty() ? "" : entity);
    pos = close + 2;
  }
  out.append(expression, pos, std::string::npos);
  return ExpandEntity(out, entity);
}

Result<DesiredHost> BuildDesired(const plugins::PluginInfo& plugin, const std::string& host,
                                 const std::vector<plugins::Entity>& entities,
                                 const SyncOptions& options, int dashboard_columns) {
  if (host.empty()) return Status::InvalidArgument("the Zabbix host name is empty");
  if (dashboard_columns <= 0) return Status::InvalidArgument("dashboard columns must be > 0");
  const std::string plugin_name(plugin.name);
  const auto& metrics = plugin.metrics();
  const auto& tmpl = plugin.zabbix_template();

  // Entity names by kind, sorted and without duplicates; kinds without metrics dropped.
  std::set<std::string> kinds_with_metrics;
  for (const auto& m : metrics) kinds_with_metrics.insert(m.entity_kind);
  std::map<std::string, std::set<std::string>> by_kind;
  for (const auto& e : entities) {
    if (e.kind.empty() || e.name.empty() || !kinds_with_metrics.count(e.kind)) continue;
    by_kind[e.kind].insert(e.name);
  }
  auto entities_of = [&](const std::string& kind) -> std::vector<std::string> {
    if (kind.empty()) return {""};
    auto it = by_kind.find(kind);
    if (it == by_kind.end()) return {};
    return {it->second.begin(), it->second.end()};
  };

  DesiredHost d;
  d.host = host;
  d.visible_name = options.visible_name.empty() ? host : options.visible_name;
  d.plugin = plugin_name;
  d.groups = options.host_groups;
  d.host_tags = {{kManagedByTag, kManagedByValue}, {kPluginTag, plugin_name}};
  d.global_macros = tmpl.macros;

  // Items: one per metric and entity.
  for (const auto& m : metrics) {
    for (const auto& entity : entities_of(m.entity_kind)) {
      DesiredItem item;
      item.key = plugins::ItemKey(plugin_name, m.name, entity);
      item.name = ExpandEntity(m.title, entity);
      item.units = m.units;
      item.description = m.description;
      item.value_type = m.value_type == plugins::ValueType::kText ? 4 : 0;
      item.entity_kind = m.entity_kind;
      item.entity = entity;
      item.tags = {{"component", Component(m.name)}, {kPluginTag, plugin_name}};
      if (!entity.empty()) {
        item.tags.push_back({"entity", entity});
        item.tags.push_back({"entity-kind", m.entity_kind});
      }
      std::sort(item.tags.begin(), item.tags.end());
      d.items.push_back(std::move(item));
    }
  }

  // Graphs.
  for (const auto& g : tmpl.graphs) {
    for (const auto& name : g.metrics) {
      if (FindMetric(metrics, name) == nullptr) {
        return Status::InvalidArgument("graph '" + g.name + "' of plugin " + plugin_name +
                                       " draws undeclared metric '" + name + "'");
      }
    }
    if (g.metrics.empty()) continue;
    if (g.summary) {
      auto names = entities_of(g.entity_kind);
      if (names.empty()) continue;
      DesiredGraph dg;
      dg.name = ExpandEntity(g.name, "");
      dg.graphtype = g.stacked ? 1 : 0;
      dg.summary = true;
      for (size_t i = 0; i < names.size(); ++i) {
        dg.lines.push_back({plugins::ItemKey(plugin_name, g.metrics[0], names[i]), 2, 0,
                            kPalette[i % kPaletteSize], 0});
      }
      d.graphs.push_back(std::move(dg));
      continue;
    }
    for (const auto& entity : entities_of(g.entity_kind)) {
      DesiredGraph dg;
      dg.name = ExpandEntity(g.name, entity);
      dg.graphtype = g.stacked ? 1 : 0;
      dg.entity_kind = g.entity_kind;
      dg.entity = entity;
      for (size_t i = 0; i < g.metrics.size(); ++i) {
        // A stacked graph of min/avg/max would stack the three: draw the averages filled.
        dg.lines.push_back({plugins::ItemKey(plugin_name, g.metrics[i], entity),
                            g.stacked ? 2 : 7, g.stacked ? 1 : 0, kPalette[i % kPaletteSize], 0});
      }
      d.graphs.push_back(std::move(dg));
    }
  }

  // Triggers (dependencies are resolved within the same entity).
  for (const auto& t : tmpl.triggers) {
    for (const auto& entity : entities_of(t.entity_kind)) {
      DesiredTrigger dt;
      dt.name = ExpandEntity(t.name, entity);
      TRAPLINE_ASSIGN_OR_RETURN(dt.expression, ExpandExpression(t.expression, plugin_name, host,
                                                                entity, metrics, t.entity_kind));
      if (!t.recovery_expression.empty()) {
        TRAPLINE_ASSIGN_OR_RETURN(
            dt.recovery_expression,
            ExpandExpression(t.recovery_expression, plugin_name, host, entity, metrics,
                             t.entity_kind));
      }
      dt.priority = static_cast<int>(t.severity);
      dt.comments = t.description;
      dt.tags = {{kPluginTag, plugin_name}};
      if (!entity.empty()) dt.tags.push_back({"entity", entity});
      for (const auto& dep : t.depends_on) dt.depends_on.push_back(ExpandEntity(dep, entity));
      std::sort(dt.tags.begin(), dt.tags.end());
      d.triggers.push_back(std::move(dt));
    }
  }

  // Dashboard: an overview page (host-level and summary graphs), then pages per entity kind
  // with each entity's graphs side by side, split when a page would grow too tall.
  d.dashboard.name = DashboardName(host, plugin_name);
  const int per_row = 2;
  const int width = dashboard_columns / per_row;
  const int height = 5;
  const size_t max_per_page = 24;  // 12 rows of 5 units: within the 6.0 page height of 64
  auto add_pages = [&](const std::string& title, const std::vector<const DesiredGraph*>& graphs) {
    size_t pages = (graphs.size() + max_per_page - 1) / max_per_page;
    for (size_t p = 0; p < pages; ++p) {
      DashboardPage page;
      page.name = pages > 1 ? title + " " + std::to_string(p + 1) + "/" + std::to_string(pages)
                            : title;
      for (size_t i = p * max_per_page; i < std::min(graphs.size(), (p + 1) * max_per_page); ++i) {
        size_t slot = i - p * max_per_page;
        DashboardWidget w;
        w.name = graphs[i]->name;
        w.graph = graphs[i]->name;
        w.x = static_cast<int>(slot % per_row) * width;
        w.y = static_cast<int>(slot / per_row) * height;
        w.width = width;
        w.height = height;
        page.widgets.push_back(std::move(w));
      }
      d.dashboard.pages.push_back(std::move(page));
    }
  };
  std::vector<const DesiredGraph*> overview;
  std::map<std::string, std::vector<const DesiredGraph*>> per_kind;
  for (const auto& g : d.graphs) {
    if (g.entity_kind.empty()) {
      overview.push_back(&g);
    } else {
      per_kind[g.entity_kind].push_back(&g);
    }
  }
  if (!overview.empty()) add_pages("Overview", overview);
  for (auto& [kind, graphs] : per_kind) {
    std::stable_sort(graphs.begin(), graphs.end(),
                     [](const DesiredGraph* a, const DesiredGraph* b) { return a->entity < b->entity; });
    add_pages(PageTitle(kind), graphs);
  }
  return d;
}

}  // namespace trapline::zabbix
