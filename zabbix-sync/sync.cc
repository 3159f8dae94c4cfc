#include "zabbix-sync/sync.h"

#include <algorithm>
#include <map>

#include <fmt/format.h>

namespace trapline::zabbix {

using nlohmann::json;

namespace {

// Zabbix returns every scalar as a string; desired values may be numbers.
std::string Str(const json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_null()) return "";
  return j.dump();
}

std::vector<Tag> TagsOf(const json& obj) {
  std::vector<Tag> tags;
  if (obj.contains("tags") && obj["tags"].is_array()) {
    for (const auto& t : obj["tags"]) tags.push_back({Str(t.value("tag", json())), Str(t.value("value", json()))});
  }
  std::sort(tags.begin(), tags.end());
  return tags;
}

json TagsJson(const std::vector<Tag>& tags) {
  json a = json::array();
  for (const auto& t : tags) a.push_back({{"tag", t.tag}, {"value", t.value}});
  return a;
}

bool HasTag(const std::vector<Tag>& tags, const std::string& tag, const std::string& value) {
  return std::find(tags.begin(), tags.end(), Tag{tag, value}) != tags.end();
}

// Expressions compare without whitespace: Zabbix keeps what it was given, but a user-side
// reformatting must not cause an endless update.
std::string Squash(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') out.push_back(c);
  }
  return out;
}

// Item keys referenced by an expanded expression: "/host/key" inside function calls.
std::vector<std::string> KeysOf(const std::string& expression, const std::string& host) {
  std::vector<std::string> keys;
  const std::string prefix = "/" + host + "/";
  for (size_t pos = expression.find(prefix); pos != std::string::npos;
       pos = expression.find(prefix, pos + 1)) {
    size_t start = pos + prefix.size();
    // A key ends at ',' or ')' outside brackets and quotes.
    int depth = 0;
    bool quoted = false;
    size_t end = start;
    for (; end < expression.size(); ++end) {
      char c = expression[end];
      if (quoted) {
        if (c == '\\') ++end;
        else if (c == '"') quoted = false;
        continue;
      }
      if (c == '"') quoted = true;
      else if (c == '[') ++depth;
      else if (c == ']') --depth;
      else if (depth == 0 && (c == ',' || c == ')')) break;
    }
    keys.push_back(expression.substr(start, end - start));
  }
  return keys;
}

void Diff(std::vector<std::string>* fields, const char* name, const std::string& have,
          const std::string& want) {
  if (have != want) fields->push_back(name);
}

std::string Join(const std::vector<std::string>& v, const char* sep = ", ") {
  std::string out;
  for (const auto& s : v) {
    if (!out.empty()) out += sep;
    out += s;
  }
  return out;
}

}  // namespace

std::string SyncReport::ToText() const {
  std::string out;
  for (const auto& c : changes) {
    out += fmt::format("{}{} {} {}{}\n", dry_run ? "would " : "", c.action, c.object, c.name,
                       c.detail.empty() ? "" : " (" + c.detail + ")");
  }
  for (const auto& w : warnings) out += "warning: " + w + "\n";
  std::string counts;
  for (const auto& [what, n] : Counts()) counts += fmt::format("{}{} {}", counts.empty() ? "" : ", ", what, n);
  out += fmt::format("{} {} host {} plugin {}: {} ({} API calls, {} writes){}\n",
                     status.ok() ? "ok:" : "FAILED:", dry_run ? "planned for" : "synced", host,
                     plugin, counts.empty() ? "no changes" : counts, api_calls, write_calls,
                     status.ok() ? "" : ": " + status.message());
  return out;
}

std::map<std::string, int> SyncReport::Counts() const {
  std::map<std::string, int> counts;
  for (const auto& c : changes) ++counts[c.action + " " + c.object];
  return counts;
}

// One sync of one host: the steps share the ids found or made so far.
class Syncer::Run {
 public:
  Run(Syncer* syncer, const DesiredHost& desired, bool dry_run, SyncReport* report)
      : s_(*syncer), d_(desired), dry_(dry_run), r_(*report) {}

  Status Go() {
    TRAPLINE_RETURN_IF_ERROR(Macros());
    TRAPLINE_RETURN_IF_ERROR(Host());
    TRAPLINE_RETURN_IF_ERROR(Items());
    TRAPLINE_RETURN_IF_ERROR(Graphs());
    TRAPLINE_RETURN_IF_ERROR(Triggers());
    return Dashboard();
  }

 private:
  const ApiVersion& version() const { return s_.api_->version(); }

  Result<json> Call(const std::string& method, json params) {
    bool read = method.size() > 4 && method.compare(method.size() - 4, 4, ".get") == 0;
    ++r_.api_calls;
    if (!read) ++r_.write_calls;
    auto res = s_.api_->Call(method, std::move(params));
    if (!res.ok()) return res.status().WithContext(method + " for host " + d_.host);
    return res;
  }

  // Ids returned by a create call ("itemids": [...]), in the order of the objects sent.
  Result<std::vector<std::string>> Create(const std::string& object, const json& objects) {
    TRAPLINE_ASSIGN_OR_RETURN(json res, Call(object + ".create", objects));
    std::vector<std::string> ids;
    const std::string field = object == "hostgroup" ? "groupids" : object + "ids";
    const auto& arr = res.value(field, json::array());
    for (const auto& id : arr) ids.push_back(Str(id));
    if (ids.size() != objects.size()) {
      return Status::ProtocolError(fmt::format("{}.create for host {}: sent {} objects, got {} ids",
                                               object, d_.host, objects.size(), ids.size()));
    }
    return ids;
  }

  void Record(std::string action, std::string object, std::string name, std::string detail = "") {
    r_.changes.push_back({std::move(action), std::move(object), std::move(name), std::move(detail)});
  }

  void AppendDetail(const std::string& object, const std::string& name, const std::string& what) {
    for (auto& c : r_.changes) {
      if (c.object == object && c.name == name && c.action == "update") {
        c.detail += (c.detail.empty() ? "" : ", ") + what;
      }
    }
  }

  // Global macros with the trigger thresholds: created when missing, never overwritten.
  Status Macros() {
    if (d_.global_macros.empty()) return Status::OK();
    std::vector<const plugins::MacroSpec*> missing;
    if (!s_.macros_read_) {
      json names = json::array();
      for (const auto& m : d_.global_macros) names.push_back(m.name);
      TRAPLINE_ASSIGN_OR_RETURN(
          json have, Call("usermacro.get", {{"globalmacro", true}, {"output", {"macro"}}}));
      for (const auto& m : have) s_.macros_present_.insert(Str(m.value("macro", json())));
      s_.macros_read_ = true;
    }
    json create = json::array();
    for (const auto& m : d_.global_macros) {
      if (s_.macros_present_.count(m.name)) continue;
      create.push_back({{"macro", m.name}, {"value", m.value}, {"description", m.description}});
      Record("create", "macro", m.name, "default " + m.value);
    }
    if (create.empty() || dry_) return Status::OK();
    TRAPLINE_RETURN_IF_ERROR(Call("usermacro.createglobal", create).status());
    for (const auto& m : create) s_.macros_present_.insert(m["macro"].get<std::string>());
    return Status::OK();
  }

  Result<std::map<std::string, std::string>> GroupIds(const std::vector<std::string>& names) {
    std::map<std::string, std::string> ids;
    TRAPLINE_ASSIGN_OR_RETURN(json have, Call("hostgroup.get", {{"output", {"groupid", "name"}},
                                                                {"filter", {{"name", names}}}}));
    for (const auto& g : have) ids[Str(g["name"])] = Str(g["groupid"]);
    json create = json::array();
    std::vector<std::string> created;
    for (const auto& n : names) {
      if (ids.count(n)) continue;
      create.push_back({{"name", n}});
      created.push_back(n);
      Record("create", "hostgroup", n);
    }
    if (create.empty()) return ids;
    if (dry_) {
      for (const auto& n : created) ids[n] = "new";
      return ids;
    }
    TRAPLINE_ASSIGN_OR_RETURN(auto new_ids, Create("hostgroup", create));
    for (size_t i = 0; i < created.size(); ++i) ids[created[i]] = new_ids[i];
    return ids;
  }

  Status Host() {
    const bool host_groups_api = version().AtLeast(6, 2);
    json params = {{"output", {"hostid", "host", "name"}},
                   {"filter", {{"host", {d_.host}}}},
                   {"selectTags", "extend"}};
    params[host_groups_api ? "selectHostGroups" : "selectGroups"] = {"groupid", "name"};
    TRAPLINE_ASSIGN_OR_RETURN(json hosts, Call("host.get", params));
    if (hosts.empty()) {
      host_new_ = true;
      TRAPLINE_ASSIGN_OR_RETURN(auto gids, GroupIds(d_.groups));
      Record("create", "host", d_.host, "groups " + Join(d_.groups));
      if (dry_) return Status::OK();
      json groups = json::array();
      for (const auto& [name, id] : gids) groups.push_back({{"groupid", id}});
      TRAPLINE_ASSIGN_OR_RETURN(auto ids, Create("host", json::array({{{"host", d_.host},
                                                                       {"name", d_.visible_name},
                                                                       {"groups", groups},
                                                                       {"tags", TagsJson(d_.host_tags)}}})));
      hostid_ = ids[0];
      return Status::OK();
    }
    const json& h = hosts[0];
    hostid_ = Str(h["hostid"]);
    std::vector<Tag> tags = TagsOf(h);
    if (!HasTag(tags, kManagedByTag, kManagedByValue)) {
      return Status::Rejected(fmt::format(
          "host {} exists in Zabbix but is not managed by trapline (it has no tag {}={}); add "
          "that tag to the host to let trapline manage it, or sync under another host name",
          d_.host, kManagedByTag, kManagedByValue));
    }
    json update = {{"hostid", hostid_}};
    std::vector<std::string> fields;
    // Tags: ours added, the user's kept.
    std::vector<Tag> merged = tags;
    for (const auto& t : d_.host_tags) {
      if (!HasTag(merged, t.tag, t.value)) merged.push_back(t);
    }
    if (merged.size() != tags.size()) {
      std::sort(merged.begin(), merged.end());
      update["tags"] = TagsJson(merged);
      fields.push_back("tags");
    }
    // Groups: ours added, the user's kept.
    const json& have_groups = h.value(host_groups_api ? "hostgroups" : "groups", json::array());
    std::map<std::string, std::string> group_ids;
    for (const auto& g : have_groups) group_ids[Str(g["name"])] = Str(g["groupid"]);
    std::vector<std::string> missing;
    for (const auto& g : d_.groups) {
      if (!group_ids.count(g)) missing.push_back(g);
    }
    if (!missing.empty()) {
      TRAPLINE_ASSIGN_OR_RETURN(auto gids, GroupIds(missing));
      for (const auto& [name, id] : gids) group_ids[name] = id;
      json groups = json::array();
      for (const auto& [name, id] : group_ids) groups.push_back({{"groupid", id}});
      update["groups"] = groups;
      fields.push_back("groups");
    }
    if (!s_.options_.visible_name.empty() && Str(h.value("name", json())) != d_.visible_name) {
      update["name"] = d_.visible_name;
      fields.push_back("name");
    }
    if (fields.empty()) return Status::OK();
    Record("update", "host", d_.host, Join(fields));
    if (dry_) return Status::OK();
    return Call("host.update", update).status();
  }

  json ItemFields(const DesiredItem& i) const {
    json j = {{"name", i.name},           {"key_", i.key},
              {"type", 2},                {"value_type", i.value_type},
              {"units", i.units},         {"description", i.description},
              {"history", s_.options_.history},
              {"trapper_hosts", s_.options_.trapper_hosts},
              {"status", 0},              {"tags", TagsJson(i.tags)}};
    if (i.value_type != 4) j["trends"] = s_.options_.trends;
    return j;
  }

  Status Items() {
    json have = json::array();
    if (!host_new_) {
      TRAPLINE_ASSIGN_OR_RETURN(
          have, Call("item.get", {{"hostids", {hostid_}},
                                  {"output", {"itemid", "key_", "name", "type", "value_type",
                                              "units", "description", "history", "trends",
                                              "trapper_hosts", "status"}},
                                  {"selectTags", "extend"},
                                  {"search", {{"key_", d_.plugin + "."}}},
                                  {"startSearch", true}}));
    }
    std::map<std::string, const json*> by_key;
    for (const auto& it : have) {
      std::string key = Str(it["key_"]);
      by_key[key] = &it;
      if (HasTag(TagsOf(it), kPluginTag, d_.plugin)) {
        owned_items_[key] = Str(it["itemid"]);
        item_enabled_[key] = Str(it["status"]) == "0";
      }
    }
    json create = json::array(), update = json::array();
    std::vector<std::string> create_keys;
    std::set<std::string> wanted;
    for (const auto& i : d_.items) {
      wanted.insert(i.key);
      auto it = by_key.find(i.key);
      if (it == by_key.end()) {
        create.push_back(ItemFields(i));
        create[create.size() - 1]["hostid"] = hostid_;
        create_keys.push_back(i.key);
        Record("create", "item", i.key);
        continue;
      }
      if (!owned_items_.count(i.key)) {
        r_.warnings.push_back(fmt::format("item {} exists on host {} but is not trapline's (no tag {}={}): left as is",
                                          i.key, d_.host, kPluginTag, d_.plugin));
        continue;
      }
      const json& e = *it->second;
      std::vector<std::string> fields;
      Diff(&fields, "name", Str(e["name"]), i.name);
      Diff(&fields, "type", Str(e["type"]), "2");
      Diff(&fields, "value_type", Str(e["value_type"]), std::to_string(i.value_type));
      Diff(&fields, "units", Str(e["units"]), i.units);
      Diff(&fields, "description", Str(e["description"]), i.description);
      Diff(&fields, "history", Str(e["history"]), s_.options_.history);
      if (i.value_type != 4) Diff(&fields, "trends", Str(e["trends"]), s_.options_.trends);
      Diff(&fields, "trapper_hosts", Str(e["trapper_hosts"]), s_.options_.trapper_hosts);
      Diff(&fields, "status", Str(e["status"]), "0");
      if (TagsOf(e) != i.tags) fields.push_back("tags");
      if (fields.empty()) continue;
      json u = ItemFields(i);
      u.erase("key_");
      u["itemid"] = owned_items_[i.key];
      update.push_back(u);
      item_enabled_[i.key] = true;
      Record("update", "item", i.key, Join(fields));
    }
    // Owned items no longer wanted: an entity vanished (or the plugin dropped a metric).
    json disable = json::array(), remove = json::array();
    for (const auto& [key, id] : owned_items_) {
      if (wanted.count(key)) continue;
      if (s_.options_.delete_vanished) {
        remove.push_back(id);
        Record("delete", "item", key);
      } else if (item_enabled_[key]) {
        disable.push_back({{"itemid", id}, {"status", 1}});
        item_enabled_[key] = false;
        Record("disable", "item", key);
      }
    }
    if (dry_) {
      for (const auto& k : create_keys) owned_items_[k] = "new:" + k;
      return Status::OK();
    }
    for (size_t start = 0; start < create.size(); start += kChunk) {
      json chunk = json::array();
      for (size_t i = start; i < std::min(create.size(), start + kChunk); ++i) chunk.push_back(create[i]);
      TRAPLINE_ASSIGN_OR_RETURN(auto ids, Create("item", chunk));
      for (size_t i = 0; i < ids.size(); ++i) {
        owned_items_[create_keys[start + i]] = ids[i];
        item_enabled_[create_keys[start + i]] = true;
      }
    }
    for (auto* batch : {&update, &disable}) {
      if (!batch->empty()) TRAPLINE_RETURN_IF_ERROR(Call("item.update", *batch).status());
    }
    if (!remove.empty()) {
      TRAPLINE_RETURN_IF_ERROR(Call("item.delete", remove).status());
      for (const auto& id : remove) {
        for (auto it = owned_items_.begin(); it != owned_items_.end(); ++it) {
          if (it->second == id.get<std::string>()) {
            owned_items_.erase(it);
            break;
          }
        }
      }
    }
    return Status::OK();
  }

  Status Graphs() {
    json have = json::array();
    if (!host_new_) {
      TRAPLINE_ASSIGN_OR_RETURN(
          have, Call("graph.get", {{"hostids", {hostid_}},
                                   {"output", {"graphid", "name", "graphtype", "width", "height"}},
                                   {"selectGraphItems", "extend"}}));
    }
    std::map<std::string, std::string> key_of_id;
    for (const auto& [key, id] : owned_items_) key_of_id[id] = key;
    std::map<std::string, const json*> by_name;
    for (const auto& g : have) by_name[Str(g["name"])] = &g;

    json create = json::array(), update = json::array();
    std::vector<std::string> create_names;
    for (const auto& g : d_.graphs) {
      json gitems = json::array();
      int order = 0;
      for (const auto& line : g.lines) {
        auto id = owned_items_.find(line.key);
        if (id == owned_items_.end()) continue;  // collides with an item not ours
        gitems.push_back({{"itemid", id->second}, {"calc_fnc", line.calc_fnc},
                          {"drawtype", line.drawtype}, {"color", line.color},
                          {"yaxisside", line.yaxisside}, {"sortorder", order++}});
      }
      if (gitems.empty()) continue;
      auto it = by_name.find(g.name);
      if (it == by_name.end()) {
        create.push_back({{"name", g.name}, {"width", 900}, {"height", 200},
                          {"graphtype", g.graphtype}, {"gitems", gitems}});
        create_names.push_back(g.name);
        Record("create", "graph", g.name);
        continue;
      }
      const json& e = *it->second;
      bool ours = !e["gitems"].empty();
      for (const auto& gi : e["gitems"]) ours = ours && key_of_id.count(Str(gi["itemid"]));
      if (!ours) {
        r_.warnings.push_back(fmt::format("graph '{}' exists on host {} with items that are not trapline's: left as is",
                                          g.name, d_.host));
        continue;
      }
      graph_ids_[g.name] = Str(e["graphid"]);
      std::vector<std::string> fields;
      Diff(&fields, "graphtype", Str(e["graphtype"]), std::to_string(g.graphtype));
      // Lines compare in sort order, on the fields trapline sets.
      std::vector<json> have_items(e["gitems"].begin(), e["gitems"].end());
      std::sort(have_items.begin(), have_items.end(), [](const json& a, const json& b) {
        return std::stoi(Str(a["sortorder"])) < std::stoi(Str(b["sortorder"]));
      });
      bool same = have_items.size() == gitems.size();
      for (size_t i = 0; same && i < gitems.size(); ++i) {
        for (const char* f : {"itemid", "calc_fnc", "drawtype", "color", "yaxisside"}) {
          if (Str(have_items[i][f]) != Str(gitems[i][f])) same = false;
        }
      }
      if (!same) fields.push_back("items");
      if (fields.empty()) continue;
      update.push_back({{"graphid", graph_ids_[g.name]}, {"graphtype", g.graphtype}, {"gitems", gitems}});
      Record("update", "graph", g.name, Join(fields));
    }
    if (dry_) {
      for (const auto& n : create_names) graph_ids_[n] = "new:" + n;
      return Status::OK();
    }
    if (!create.empty()) {
      TRAPLINE_ASSIGN_OR_RETURN(auto ids, Create("graph", create));
      for (size_t i = 0; i < ids.size(); ++i) graph_ids_[create_names[i]] = ids[i];
    }
    if (!update.empty()) TRAPLINE_RETURN_IF_ERROR(Call("graph.update", update).status());
    return Status::OK();
  }

  // "{123}>{$M}" with function 123 = avg(item 45, "$,5m") -> "avg(/host/key45,5m)>{$M}".
  // A function of an item that is not trapline's stays "{123}": the comparison then differs.
  std::string Unexpand(const std::string& expression, const json& trigger,
                       const std::map<std::string, std::string>& key_of_id) const {
    std::map<std::string, std::string> fn;
    for (const auto& f : trigger.value("functions", json::array())) {
      auto key = key_of_id.find(Str(f["itemid"]));
      if (key == key_of_id.end()) continue;
      std::string param = Str(f["parameter"]);
      std::string item = "/" + d_.host + "/" + key->second;
      std::string args = !param.empty() && param[0] == '$' ? item + param.substr(1) : param;
      fn["{" + Str(f["functionid"]) + "}"] = Str(f["function"]) + "(" + args + ")";
    }
    std::string out;
    for (size_t i = 0; i < expression.size();) {
      if (expression[i] == '{') {
        size_t close = expression.find('}', i);
        if (close != std::string::npos) {
          auto it = fn.find(expression.substr(i, close - i + 1));
          if (it != fn.end()) {
            out += it->second;
            i = close + 1;
            continue;
          }
        }
      }
      out.push_back(expression[i++]);
    }
    return out;
  }

  Status Triggers() {
    json have = json::array();
    if (!host_new_) {
      TRAPLINE_ASSIGN_OR_RETURN(
          have, Call("trigger.get",
                     {{"hostids", {hostid_}},
                      {"output", {"triggerid", "description", "expression", "recovery_mode",
                                  "recovery_expression", "priority", "comments", "status"}},
                      {"selectFunctions", "extend"},
                      {"selectTags", "extend"},
                      {"selectDependencies", {"triggerid"}},
                      {"tags", {{{"tag", kPluginTag}, {"value", d_.plugin}, {"operator", 1}}}}}));
    }
    // Expressions as written (expandExpression would also expand the threshold macros).
    std::map<std::string, std::string> key_of_id;
    for (const auto& [key, id] : owned_items_) key_of_id[id] = key;
    for (auto& t : have) {
      t["expression"] = Unexpand(Str(t["expression"]), t, key_of_id);
      t["recovery_expression"] = Unexpand(Str(t["recovery_expression"]), t, key_of_id);
    }
    std::map<std::string, const json*> by_name;
    for (const auto& t : have) {
      by_name[Str(t["description"])] = &t;
      trigger_ids_[Str(t["description"])] = Str(t["triggerid"]);
    }
    auto items_ready = [&](const DesiredTrigger& t) {
      for (const auto* expr : {&t.expression, &t.recovery_expression}) {
        for (const auto& key : KeysOf(*expr, d_.host)) {
          if (!owned_items_.count(key)) return false;
        }
      }
      return true;
    };
    json create = json::array(), update = json::array();
    std::vector<const DesiredTrigger*> created;
    std::set<std::string> wanted;
    for (const auto& t : d_.triggers) {
      wanted.insert(t.name);
      if (!items_ready(t)) {
        r_.warnings.push_back(fmt::format("trigger '{}' skipped: an item it uses is not trapline's", t.name));
        continue;
      }
      json fields_json = {{"description", t.name},
                          {"expression", t.expression},
                          {"recovery_mode", t.recovery_expression.empty() ? 0 : 1},
                          {"priority", t.priority},
                          {"comments", t.comments},
                          {"tags", TagsJson(t.tags)}};
      if (!t.recovery_expression.empty()) fields_json["recovery_expression"] = t.recovery_expression;
      auto it = by_name.find(t.name);
      if (it == by_name.end()) {
        create.push_back(fields_json);
        created.push_back(&t);
        Record("create", "trigger", t.name);
        continue;
      }
      const json& e = *it->second;
      std::vector<std::string> fields;
      Diff(&fields, "expression", Squash(Str(e["expression"])), Squash(t.expression));
      Diff(&fields, "recovery_expression", Squash(Str(e["recovery_expression"])),
           Squash(t.recovery_expression));
      Diff(&fields, "priority", Str(e["priority"]), std::to_string(t.priority));
      Diff(&fields, "comments", Str(e["comments"]), t.comments);
      if (TagsOf(e) != t.tags) fields.push_back("tags");
      if (fields.empty()) continue;
      fields_json["triggerid"] = Str(e["triggerid"]);
      fields_json.erase("description");
      update.push_back(fields_json);
      Record("update", "trigger", t.name, Join(fields));
    }
    // Owned triggers that the template no longer declares (all their items still wanted):
    // deleted. Those of a vanished entity stay with its disabled items.
    json remove = json::array();
    std::set<std::string> wanted_keys;
    for (const auto& i : d_.items) wanted_keys.insert(i.key);
    for (const auto& t : have) {
      std::string name = Str(t["description"]);
      if (wanted.count(name)) continue;
      bool template_dropped = true;
      for (const auto& key : KeysOf(Str(t["expression"]), d_.host)) {
        if (!wanted_keys.count(key)) template_dropped = false;
      }
      if (!template_dropped) continue;
      remove.push_back(Str(t["triggerid"]));
      trigger_ids_.erase(name);
      Record("delete", "trigger", name);
    }
    if (!dry_) {
      if (!create.empty()) {
        TRAPLINE_ASSIGN_OR_RETURN(auto ids, Create("trigger", create));
        for (size_t i = 0; i < ids.size(); ++i) trigger_ids_[created[i]->name] = ids[i];
      }
      if (!remove.empty()) TRAPLINE_RETURN_IF_ERROR(Call("trigger.delete", remove).status());
    } else {
      for (const auto* t : created) trigger_ids_[t->name] = "new:" + t->name;
    }
    // Dependencies, once every trigger has an id; merged with the field updates above.
    std::map<std::string, size_t> update_index;  // triggerid -> position in `update`
    for (size_t i = 0; i < update.size(); ++i) update_index[update[i]["triggerid"].get<std::string>()] = i;
    for (const auto& t : d_.triggers) {
      auto id = trigger_ids_.find(t.name);
      if (id == trigger_ids_.end()) continue;
      std::set<std::string> want_deps;
      for (const auto& dep : t.depends_on) {
        auto d = trigger_ids_.find(dep);
        if (d != trigger_ids_.end()) want_deps.insert(d->second);
      }
      std::set<std::string> have_deps;
      auto e = by_name.find(t.name);
      if (e != by_name.end()) {
        for (const auto& dep : e->second->value("dependencies", json::array())) have_deps.insert(Str(dep["triggerid"]));
      }
      if (want_deps == have_deps) continue;
      json deps = json::array();
      for (const auto& d : want_deps) deps.push_back({{"triggerid", d}});
      auto u = update_index.find(id->second);
      if (u != update_index.end()) {
        update[u->second]["dependencies"] = deps;
        AppendDetail("trigger", t.name, "dependencies");
        continue;
      }
      update_index[id->second] = update.size();
      update.push_back({{"triggerid", id->second}, {"dependencies", deps}});
      if (e != by_name.end()) Record("update", "trigger", t.name, "dependencies");
    }
    if (dry_ || update.empty()) return Status::OK();
    return Call("trigger.update", update).status();
  }

  Status Dashboard() {
    TRAPLINE_ASSIGN_OR_RETURN(
        json have, Call("dashboard.get", {{"output", {"dashboardid", "name", "private"}},
                                          {"filter", {{"name", {d_.dashboard.name}}}},
                                          {"selectPages", "extend"}}));
    const std::string field_name = version().AtLeast(7, 0) ? "graphid.0" : "graphid";
    json pages = json::array();
    for (const auto& p : d_.dashboard.pages) {
      json widgets = json::array();
      for (const auto& w : p.widgets) {
        auto id = graph_ids_.find(w.graph);
        if (id == graph_ids_.end()) continue;
        widgets.push_back({{"type", "graph"}, {"name", w.name}, {"x", w.x}, {"y", w.y},
                           {"width", w.width}, {"height", w.height}, {"view_mode", 0},
                           {"fields", {{{"type", 6}, {"name", field_name}, {"value", id->second}}}}});
      }
      if (!widgets.empty()) pages.push_back({{"name", p.name}, {"widgets", widgets}});
    }
    if (have.empty()) {
      if (pages.empty()) return Status::OK();
      Record("create", "dashboard", d_.dashboard.name, fmt::format("{} pages", pages.size()));
      if (dry_) return Status::OK();
      return Call("dashboard.create", {{"name", d_.dashboard.name}, {"private", 0},
                                       {"display_period", 30}, {"auto_start", 1},
                                       {"pages", pages}})
          .status();
    }
    const json& e = have[0];
    if (Canonical(e.value("pages", json::array())) == Canonical(pages) && Str(e["private"]) == "0") {
      return Status::OK();
    }
    Record("update", "dashboard", d_.dashboard.name, fmt::format("{} pages", pages.size()));
    if (dry_) return Status::OK();
    return Call("dashboard.update", {{"dashboardid", Str(e["dashboardid"])}, {"private", 0}, {"pages", pages}})
        .status();
  }

  // Pages as "name|type,name,x,y,w,h,field=value..." lines: the fields trapline sets, as
  // strings, in grid order.
  static std::string Canonical(const json& pages) {
    std::string out;
    for (const auto& p : pages) {
      out += "page " + Str(p.value("name", json())) + "\n";
      std::vector<std::string> lines;
      for (const auto& w : p.value("widgets", json::array())) {
        std::string line = fmt::format("{},{},{},{},{},{},{}", Str(w["type"]), Str(w["name"]), Str(w["x"]),
                                       Str(w["y"]), Str(w["width"]), Str(w["height"]),
                                       Str(w.value("view_mode", json("0"))));
        std::vector<std::string> fields;
        for (const auto& f : w.value("fields", json::array())) {
          fields.push_back(Str(f["type"]) + ":" + Str(f["name"]) + "=" + Str(f["value"]));
        }
        std::sort(fields.begin(), fields.end());
        lines.push_back(line + "," + Join(fields, ","));
      }
      std::sort(lines.begin(), lines.end());
      out += Join(lines, "\n") + "\n";
    }
    return out;
  }

  static constexpr size_t kChunk = 1000;  // objects per create call

  Syncer& s_;
  const DesiredHost& d_;
  bool dry_;
  SyncReport& r_;
  bool host_new_ = false;
  std::string hostid_ = "new";
  std::map<std::string, std::string> owned_items_;  // key -> itemid
  std::map<std::string, bool> item_enabled_;
  std::map<std::string, std::string> graph_ids_;    // name -> graphid
  std::map<std::string, std::string> trigger_ids_;  // name -> triggerid
};

Syncer::Syncer(Api* api, SyncOptions options) : api_(api), options_(std::move(options)) {}

SyncReport Syncer::SyncHost(const plugins::PluginInfo& plugin, const std::string& host,
                            const std::vector<plugins::Entity>& entities, bool dry_run) {
  SyncReport report;
  report.host = host;
  report.plugin = std::string(plugin.name);
  report.dry_run = dry_run;
  int columns = options_.dashboard_columns > 0 ? options_.dashboard_columns
                                               : (api_->version().AtLeast(7, 0) ? 72 : 24);
  auto desired = BuildDesired(plugin, host, entities, options_, columns);
  if (!desired.ok()) {
    report.status = desired.status();
    return report;
  }
  Run run(this, *desired, dry_run, &report);
  report.status = run.Go();
  return report;
}

}  // namespace trapline::zabbix
