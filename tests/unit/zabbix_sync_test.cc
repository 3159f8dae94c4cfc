// zabbix-sync without a server: the desired state built from the plugins' declarations, the
// expansion of trigger expressions, and the requests a sync of a new host sends to a 6.0 and a
// 7.0 API (host groups selector, dashboard grid and widget field names, maintenance shape).
// The real 6.0 server is exercised by tests/integration/test_zabbix_sync.py.

#include <doctest/doctest.h>

#include <deque>
#include <map>
#include <set>

#include "plugins/builtin.h"
#include "plugins/linux/linux.h"
#include "zabbix-sync/desired.h"
#include "zabbix-sync/maintenance.h"
#include "zabbix-sync/sync.h"

namespace trapline::zabbix {
namespace {

using nlohmann::json;

// Answers like an empty Zabbix: gets return [], creates return ids in order. Records calls.
class RecordingApi : public Api {
 public:
  explicit RecordingApi(std::string version) : version_(*ApiVersion::Parse(version)) {}
  Result<json> Call(const std::string& method, json params) override {
    calls.push_back({method, params});
    auto fail = failures.find(method);
    if (fail != failures.end()) return Status::Rejected(method + ": " + fail->second);
    if (method.size() > 4 && method.substr(method.size() - 4) == ".get") return json::array();
    size_t dot = method.find('.');
    std::string object = method.substr(0, dot);
    std::string verb = method.substr(dot + 1);
    size_t n = params.is_array() ? params.size() : 1;
    json ids = json::array();
    for (size_t i = 0; i < n; ++i) ids.push_back(std::to_string(++next_id_));
    if (verb == "create" || verb == "createglobal") {
      std::string field = object == "hostgroup" ? "groupids"
                          : object == "usermacro" ? "globalmacroids"
                                                  : object + "ids";
      return json{{field, ids}};
    }
    return json{{object + "ids", ids}};
  }
  const ApiVersion& version() const override { return version_; }

  const json* Find(const std::string& method) const {
    for (const auto& c : calls) {
      if (c.first == method) return &c.second;
    }
    return nullptr;
  }
  int Count(const std::string& method) const {
    int n = 0;
    for (const auto& c : calls) n += c.first == method;
    return n;
  }

  std::vector<std::pair<std::string, json>> calls;
  std::map<std::string, std::string> failures;

 private:
  ApiVersion version_;
  int next_id_ = 100;
};

const plugins::PluginInfo& Linux() { return *plugins::FindPlugin("linux"); }

std::vector<plugins::Entity> SomeEntities() {
  return {{"cpu", "cpu0", {}},        {"cpu", "cpu1", {}},       {"disk", "sda", {}},
          {"filesystem", "/", {}},    {"filesystem", "/var", {}}, {"interface", "eth0", {}},
          {"cpu", "cpu0", {}},  // duplicate: merged
          {"nosuchkind", "x", {}}};   // a kind without metrics: ignored
}

TEST_CASE("desired items: one per metric and entity, with tags and value types") {
  auto d = BuildDesired(Linux(), "web1", SomeEntities(), SyncOptions{}, 24);
  REQUIRE(d.ok());
  size_t expected = 0;
  std::map<std::string, int> per_kind = {{"", 1}, {"cpu", 2}, {"disk", 1}, {"filesystem", 2}, {"interface", 1}};
  for (const auto& m : Linux().metrics()) expected += per_kind.count(m.entity_kind) ? per_kind[m.entity_kind] : 0;
  CHECK(d->items.size() == expected);
  std::set<std::string> keys;
  for (const auto& i : d->items) {
    CHECK(keys.insert(i.key).second);  // unique
    CHECK(i.name.find("{#ENTITY}") == std::string::npos);
    CHECK(std::find(i.tags.begin(), i.tags.end(), Tag{kPluginTag, "linux"}) != i.tags.end());
    CHECK(std::is_sorted(i.tags.begin(), i.tags.end()));
    if (!i.entity.empty()) {
      CHECK(std::find(i.tags.begin(), i.tags.end(), Tag{"entity", i.entity}) != i.tags.end());
    }
  }
  CHECK(keys.count("linux.mem.total"));
  CHECK(keys.count("linux.cpu.user[cpu1]"));
  CHECK(d->host_tags == std::vector<Tag>{{kManagedByTag, kManagedByValue}, {kPluginTag, "linux"}});
}

TEST_CASE("desired graphs, triggers and dashboard are consistent") {
  auto d = BuildDesired(Linux(), "web1", SomeEntities(), SyncOptions{}, 24);
  REQUIRE(d.ok());
  std::set<std::string> keys, graphs;
  for (const auto& i : d->items) keys.insert(i.key);
  for (const auto& g : d->graphs) {
    CHECK(graphs.insert(g.name).second);
    REQUIRE(!g.lines.empty());
    for (const auto& l : g.lines) CHECK_MESSAGE(keys.count(l.key), g.name << " draws " << l.key);
    if (g.summary) {
      for (const auto& l : g.lines) CHECK(l.calc_fnc == 2);
    } else if (g.graphtype == 0) {
      for (const auto& l : g.lines) CHECK(l.calc_fnc == 7);  // min, avg and max of value sets
    }
  }
  std::set<std::string> triggers;
  for (const auto& t : d->triggers) {
    CHECK(triggers.insert(t.name).second);
    CHECK(t.expression.find("{{") == std::string::npos);
    CHECK(t.expression.find("/web1/linux.") != std::string::npos);
  }
  for (const auto& t : d->triggers) {
    for (const auto& dep : t.depends_on) CHECK_MESSAGE(triggers.count(dep), t.name << " depends on " << dep);
  }
  REQUIRE(!d->dashboard.pages.empty());
  CHECK(d->dashboard.pages[0].name.rfind("Overview", 0) == 0);  // "Overview 1/2" when long
  CHECK(d->dashboard.name == "trapline: web1 / linux");
  size_t widgets = 0;
  for (const auto& p : d->dashboard.pages) {
    for (const auto& w : p.widgets) {
      ++widgets;
      CHECK(graphs.count(w.graph));
      CHECK(w.x + w.width <= 24);
      CHECK(w.y + w.height <= 64);
    }
  }
  CHECK(widgets == d->graphs.size());
}

TEST_CASE("expressions: placeholders, entity in macro context, unknown metrics") {
  const auto& metrics = Linux().metrics();
  auto e = ExpandExpression(R"(min({{fs.pused}},5m)>{$X:"{#ENTITY}"})", "linux", "web1",
                            "/var", metrics, "filesystem");
  REQUIRE(e.ok());
  CHECK(*e == R"(min(/web1/linux.fs.pused[/var],5m)>{$X:"/var"})");
  // An entity name with a quote: quoted in the key, escaped in the macro context.
  e = ExpandExpression(R"(last({{fs.pused}})>{$X:"{#ENTITY}"})", "linux", "h", "/mnt/a\"b",
                       metrics, "filesystem");
  REQUIRE(e.ok());
  CHECK(*e == R"(last(/h/linux.fs.pused["/mnt/a\"b"])>{$X:"/mnt/a\"b"})");
  CHECK(!ExpandExpression("last({{no.such}})>1", "linux", "h", "", metrics, "").ok());
  CHECK(!ExpandExpression("last({{mem.total)>1", "linux", "h", "", metrics, "").ok());
  // A per-entity metric in a host-level trigger is a template bug.
  CHECK(!ExpandExpression("last({{fs.pused}})>1", "linux", "h", "", metrics, "").ok());
}

TEST_CASE("sync of a new host on 6.0: the calls and their shapes") {
  RecordingApi api("6.0.14");
  SyncOptions opts;
  opts.trapper_hosts = "10.0.0.5";
  Syncer syncer(&api, opts);
  SyncReport r = syncer.SyncHost(Linux(), "web1", SomeEntities(), /*dry_run=*/false);
  REQUIRE_MESSAGE(r.status.ok(), r.status.ToString());
  // Reads of a host that does not exist stop at host.get: nothing else to read.
  CHECK(api.Count("item.get") == 0);
  CHECK(api.Count("graph.get") == 0);
  const json* hg = api.Find("host.get");
  REQUIRE(hg != nullptr);
  CHECK(hg->contains("selectGroups"));
  CHECK(!hg->contains("selectHostGroups"));
  // Everything in arrays: one create call per object type.
  CHECK(api.Count("item.create") == 1);
  CHECK(api.Count("graph.create") == 1);
  CHECK(api.Count("trigger.create") == 1);
  const json* items = api.Find("item.create");
  REQUIRE(items != nullptr);
  CHECK((*items)[0]["type"] == 2);
  CHECK((*items)[0]["trapper_hosts"] == "10.0.0.5");
  const json* dash = api.Find("dashboard.create");
  REQUIRE(dash != nullptr);
  const json& w = (*dash)["pages"][0]["widgets"][0];
  CHECK(w["fields"][0]["name"] == "graphid");
  CHECK(w["fields"][0]["type"] == 6);
  CHECK(w["width"] == 12);
  CHECK((*dash)["private"] == 0);
  int reads = 0;
  for (const auto& c : api.calls) reads += c.first.find(".get") != std::string::npos;
  CHECK(reads == 4);  // usermacro.get, host.get, hostgroup.get, dashboard.get
  CHECK(r.write_calls == r.api_calls - reads);
}

TEST_CASE("sync of a new host on 7.0: host groups selector, 72-column grid, graphid.0") {
  RecordingApi api("7.0.5");
  Syncer syncer(&api, SyncOptions{});
  SyncReport r = syncer.SyncHost(Linux(), "web1", SomeEntities(), false);
  REQUIRE_MESSAGE(r.status.ok(), r.status.ToString());
  const json* hg = api.Find("host.get");
  REQUIRE(hg != nullptr);
  CHECK(hg->contains("selectHostGroups"));
  CHECK(!hg->contains("selectGroups"));
  const json* dash = api.Find("dashboard.create");
  REQUIRE(dash != nullptr);
  for (const auto& page : (*dash)["pages"]) {
    for (const auto& w : page["widgets"]) {
      CHECK(w["fields"][0]["name"] == "graphid.0");
      CHECK(w["width"] == 36);
      CHECK(w["x"].get<int>() + w["width"].get<int>() <= 72);
    }
  }
}

TEST_CASE("dry run: reads only, the plan lists every object") {
  RecordingApi api("6.0.14");
  Syncer syncer(&api, SyncOptions{});
  SyncReport r = syncer.SyncHost(Linux(), "web1", SomeEntities(), /*dry_run=*/true);
  REQUIRE(r.status.ok());
  CHECK(r.write_calls == 0);
  for (const auto& c : api.calls) CHECK_MESSAGE(c.first.find(".get") != std::string::npos, c.first);
  auto counts = r.Counts();
  CHECK(counts["create host"] == 1);
  CHECK(counts["create item"] > 100);
  CHECK(counts["create dashboard"] == 1);
  CHECK(r.ToText().find("would create item linux.mem.total") != std::string::npos);
}

TEST_CASE("an API error stops the sync and the report keeps what was made") {
  RecordingApi api("6.0.14");
  api.failures["item.create"] = "Invalid parameter \"/1/history\": a time unit is expected.";
  Syncer syncer(&api, SyncOptions{});
  SyncReport r = syncer.SyncHost(Linux(), "web1", SomeEntities(), false);
  CHECK(!r.status.ok());
  CHECK(r.status.message().find("item.create for host web1") != std::string::npos);
  CHECK(r.Counts()["create host"] == 1);
  CHECK(api.Count("graph.create") == 0);  // nothing after the failure
  CHECK(r.ToText().find("FAILED") != std::string::npos);
}

TEST_CASE("an empty host name is refused before any call") {
  RecordingApi api("6.0.14");
  Syncer syncer(&api, SyncOptions{});
  SyncReport r = syncer.SyncHost(Linux(), "", {}, false);
  CHECK(!r.status.ok());
  CHECK(api.calls.empty());
}

TEST_CASE("maintenance object: with data collection, hosts, minute-rounded one-time period") {
  ApiVersion v60 = *ApiVersion::Parse("6.0.14"), v70 = *ApiVersion::Parse("7.0.0");
  for (const auto& v : {v60, v70}) {
    // 1699999980 and 1700007240 are whole minutes.
    json m = MaintenanceObject("web1", "10084", 1700000010, 1700007201, v);
    CHECK(m["name"] == "trapline: web1");
    CHECK(m["maintenance_type"] == 0);
    CHECK(m["hosts"] == json::array({{{"hostid", "10084"}}}));
    CHECK(!m.contains("hostids"));
    CHECK(m["active_since"] == 1699999980);
    CHECK(m["active_till"] == 1700007240);
    CHECK(m["timeperiods"][0]["timeperiod_type"] == 0);
    CHECK(m["timeperiods"][0]["period"] == 7260);
  }
  json open = MaintenanceObject("web1", "1", 1700000000, 0, v60);
  CHECK(open["active_till"].get<int64_t>() <= 2147483647);
}

TEST_CASE("--until parsing") {
  const int64_t now = 1700000000;
  CHECK(*ParseUntil("+2h", now) == now + 7200);
  CHECK(*ParseUntil("+90m", now) == now + 5400);
  CHECK(*ParseUntil("+1d", now) == now + 86400);
  CHECK(*ParseUntil("1700003600", now) == 1700003600);
  CHECK(*ParseUntil("2023-11-14 23:13", now) == 1700003580);
  CHECK(*ParseUntil("2023-11-14T23:13:20Z", now) == 1700003600);
  for (const char* bad : {"", "+", "+2", "+2w", "+-1h", "tomorrow", "2023-11-14", "99999999999999"}) {
    CHECK_MESSAGE(!ParseUntil(bad, now).ok(), bad);
  }
}

TEST_CASE("maintenance on refuses an end time less than 5 minutes away without calling") {
  RecordingApi api("6.0.14");
  Status st = MaintenanceOn(&api, "web1", 1700000000, 1700000100);
  CHECK(st.code() == StatusCode::kInvalidArgument);
  CHECK(api.calls.empty());
}

}  // namespace
}  // namespace trapline::zabbix
