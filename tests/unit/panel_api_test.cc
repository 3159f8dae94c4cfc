#include "coordinator/panel_api.h"

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace trapline::coordinator::panel {
namespace {

using nlohmann::json;

HttpRequest Get(std::string query) {
  HttpRequest r;
  r.method = "GET";
  r.query = std::move(query);
  return r;
}

TEST_CASE("hosts filter: status, plugin, group, q, paging") {
  auto f = ParseHostFilter(
      Get("status=error&plugin=redis&group=Linux%20servers&q=Web&limit=50&offset=100"));
  REQUIRE(f.ok());
  CHECK(f->status == "error");
  CHECK(f->plugin == "redis");
  CHECK(f->group == "Linux servers");
  CHECK(f->q == "Web");
  CHECK(f->paging.limit == 50);
  CHECK(f->paging.offset == 100);
  CHECK(!f->enabled);
  for (const char* s : {"ok", "error", "unknown", "disabled", "maintenance"}) {
    CHECK(ParseHostFilter(Get(std::string("status=") + s)).ok());
  }
  CHECK(!ParseHostFilter(Get("status=broken")).ok());
  CHECK(!ParseHostFilter(Get("plugin=a%3Bb")).ok());
  CHECK(!ParseHostFilter(Get("group=a%3Bb")).ok());
  CHECK(!ParseHostFilter(Get("q=a%0Ab")).ok());
  CHECK(!ParseHostFilter(Get("q=" + std::string(300, 'a'))).ok());
  CHECK(!ParseHostFilter(Get("limit=0")).ok());
  CHECK(!ParseHostFilter(Get("enabled=maybe")).ok());
  CHECK(ParseHostFilter(Get("maintenance=true"))->maintenance == true);
  // The SQL injection string is only ever a parameter; as a plugin it is refused.
  CHECK(!ParseHostFilter(Get("plugin=%27%3B%20DROP%20TABLE%20hosts%3B%20--")).ok());
  CHECK(ParseHostFilter(Get("q=%27%3B%20DROP%20TABLE%20hosts%3B%20--")).ok());
}

TEST_CASE("complete: field and prefix") {
  auto c = ParseCompleteRequest(Get("field=host&prefix=we"));
  REQUIRE(c.ok());
  CHECK(c->field == "host");
  CHECK(c->prefix == "we");
  CHECK(ParseCompleteRequest(Get("field=group")).ok());
  CHECK(ParseCompleteRequest(Get("field=plugin&prefix=")).ok());
  CHECK(!ParseCompleteRequest(Get("field=users")).ok());
  CHECK(!ParseCompleteRequest(Get("prefix=a")).ok());
  CHECK(!ParseCompleteRequest(Get("field=host&prefix=" + std::string(300, 'x'))).ok());
}

TEST_CASE("bulk: actions, hosts, until and group") {
  auto b = ParseBulkRequest(R"({"hosts": ["web-1", "web-2", "web-1"], "action": "enable"})");
  REQUIRE(b.ok());
  CHECK(b->action == BulkAction::kEnable);
  CHECK(b->hosts == std::vector<std::string>{"web-1", "web-2"});
  b = ParseBulkRequest(
      R"({"hosts": ["a"], "action": "maintenance_on", "until": "2030-01-01T00:00:00Z"})");
  REQUIRE(b.ok());
  CHECK(b->until == doctest::Approx(1893456000.0));
  b = ParseBulkRequest(R"({"hosts": ["a"], "action": "maintenance_on", "until": null})");
  REQUIRE(b.ok());
  CHECK(!b->until);
  b = ParseBulkRequest(R"({"hosts": ["a"], "action": "move_group", "group": "DB/Prod"})");
  REQUIRE(b.ok());
  CHECK(b->group == "DB/Prod");
  CHECK(BulkAuditAction(BulkAction::kMaintenanceOn) == "maintenance.set");
  CHECK(BulkAuditAction(BulkAction::kDelete) == "host.delete");
  for (const char* bad :
       {R"({"hosts": ["a"]})", R"({"hosts": ["a"], "action": "reboot"})",
        R"({"hosts": [], "action": "enable"})", R"({"hosts": "a", "action": "enable"})",
        R"({"hosts": [1], "action": "enable"})", R"({"hosts": ["a;b"], "action": "enable"})",
        R"({"hosts": ["'; DROP TABLE hosts; --"], "action": "delete"})",
        R"({"hosts": ["a"], "action": "enable", "until": "2030-01-01T00:00:00Z"})",
        R"({"hosts": ["a"], "action": "maintenance_on", "until": "tomorrow"})",
        R"({"hosts": ["a"], "action": "maintenance_on", "until": 5})",
        R"({"hosts": ["a"], "action": "move_group"})",
        R"({"hosts": ["a"], "action": "move_group", "group": "a;b"})",
        R"({"hosts": ["a"], "action": "enable", "group": "g"})",
        R"({"hosts": ["a"], "action": "enable", "force": true})", "[]", "{", ""}) {
    CHECK_MESSAGE(!ParseBulkRequest(bad).ok(), bad);
  }
  json many = {{"action", "disable"}, {"hosts", json::array()}};
  for (size_t i = 0; i <= kMaxBulkHosts; ++i) many["hosts"].push_back("h" + std::to_string(i));
  auto too_many = ParseBulkRequest(many.dump());
  CHECK(!too_many.ok());
  CHECK(too_many.status().message().find("5000") != std::string::npos);
  many["hosts"].erase(many["hosts"].size() - 1);
  CHECK(ParseBulkRequest(many.dump()).ok());
}

TEST_CASE("audit filter: times, action prefix, paging") {
  auto f =
      ParseAuditFilter(Get("actor=alice&action=host.*&object_type=host&object=web-1&"
                           "since=2026-11-21T00:00:00Z&until=2026-11-22T00:00:00Z&limit=10"));
  REQUIRE(f.ok());
  CHECK(f->actor == "alice");
  CHECK(f->action == "host.*");
  CHECK(f->since < f->until);
  CHECK(!ParseAuditFilter(Get("since=yesterday")).ok());
  CHECK(!ParseAuditFilter(Get("since=2026-11-22T00:00:00Z&until=2026-11-21T00:00:00Z")).ok());
  CHECK(!ParseAuditFilter(Get("actor=a%00b")).ok());
  CHECK(!ParseAuditFilter(Get("offset=-1")).ok());
}

TEST_CASE("credential profiles: kind, options and secret shape per kind") {
  auto p = ParseNewProfile(R"({"name": "linux-prod", "kind": "ssh", "username": "monitor",
      "secret": {"private_key": "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n"},
      "options": {"known_hosts": "/etc/trapline/known_hosts", "trust_on_first_use": false,
                  "interval": 5, "plugin": {"filesystems": "ext4,xfs"}}})");
  REQUIRE(p.ok());
  CHECK(p->kind == "ssh");
  CHECK(p->username == "monitor");
  CHECK(p->set_secret);
  CHECK(json::parse(p->secret_json).contains("private_key"));
  CHECK(json::parse(*p->options_json)["interval"] == 5);
  p = ParseNewProfile(R"({"name": "pg", "kind": "postgresql", "secret": {"password": "s3cret"}})");
  REQUIRE(p.ok());
  CHECK(!p->options_json);
  CHECK(ParseNewProfile(R"({"name": "r", "kind": "redis"})").ok());
  for (const char* bad : {R"({"name": "x", "kind": "telnet"})", R"({"kind": "ssh"})",
                          R"({"name": "x"})", R"({"name": "a;b", "kind": "ssh"})",
                          R"({"name": "x", "kind": "redis", "secret": {"private_key": "k"}})",
                          R"({"name": "x", "kind": "postgresql", "secret": {"password": 5}})",
                          R"({"name": "x", "kind": "postgresql", "secret": "pw"})",
                          R"({"name": "x", "kind": "redis", "secret": {"password": "a\nb"}})",
                          R"({"name": "x", "kind": "ssh", "secret": {"passphrase": "p"}})",
                          R"({"name": "x", "kind": "redis", "options": {"known_hosts": "/k"}})",
                          R"({"name": "x", "kind": "ssh", "options": {"known_hosts": "relative"}})",
                          R"({"name": "x", "kind": "ssh", "options": {"use_agent": "yes"}})",
                          R"({"name": "x", "kind": "ssh", "options": {"interval": 0}})",
                          R"({"name": "x", "kind": "ssh", "options": {"plugin": {"a": 1}}})",
                          R"({"name": "x", "kind": "ssh", "options": {"sslmode": "require"}})",
                          R"({"name": "x", "kind": "ssh", "username": "a b"})",
                          R"({"name": "x", "kind": "ssh", "password": "p"})"}) {
    CHECK_MESSAGE(!ParseNewProfile(bad).ok(), bad);
  }
  // A secret's value never appears in an error.
  auto st =
      ParseNewProfile(R"({"name": "x", "kind": "redis", "secret": {"password": "hunter2\n"}})");
  REQUIRE(!st.ok());
  CHECK(st.status().message().find("hunter2") == std::string::npos);
  std::string big(17 * 1024, 'k');
  CHECK(
      !ParseNewProfile(R"({"name": "x", "kind": "ssh", "secret": {"private_key": ")" + big + "\"}}")
           .ok());

  p = ParseNewProfile(
      R"({"name": "r2", "kind": "redis", "host_groups": ["DB", "DB", "Cache/EU"], "is_default": true})");
  REQUIRE(p.ok());
  CHECK(p->host_groups == std::vector<std::string>{"DB", "Cache/EU"});
  CHECK(p->is_default == true);
  CHECK(!ParseNewProfile(R"({"name": "x", "kind": "redis", "host_groups": ["a;b"]})").ok());
  CHECK(!ParseNewProfile(R"({"name": "x", "kind": "redis", "host_groups": "DB"})").ok());
  CHECK(!ParseNewProfile(R"({"name": "x", "kind": "redis", "is_default": "yes"})").ok());

  auto patch = ParseProfilePatch(R"({"secret": {"password": "new"}})", "redis");
  REQUIRE(patch.ok());
  CHECK(patch->set_secret);
  CHECK(!patch->username);
  patch = ParseProfilePatch(R"({"username": "u2"})", "postgresql");
  REQUIRE(patch.ok());
  CHECK(!patch->set_secret);
  patch = ParseProfilePatch(R"({"secret": null})", "ssh");
  REQUIRE(patch.ok());
  CHECK(patch->secret_json == "{}");
  CHECK(ParseProfilePatch(R"({"kind": "ssh", "username": "u"})", "ssh").ok());
  CHECK(!ParseProfilePatch(R"({"kind": "redis"})", "ssh").ok());
  CHECK(!ParseProfilePatch("{}", "ssh").ok());
  CHECK(!ParseProfilePatch(R"({"secret": {"private_key": "k"}})", "redis").ok());
  CHECK(!ParseProfilePatch(R"({"name": "other"})", "redis").ok());
}

TEST_CASE("probe request: schemes, a password moved out of the URI") {
  auto p = ParseProbeRequest(R"({"uri": "redis://default:p%40ss@127.0.0.1:6379"})");
  REQUIRE(p.ok());
  CHECK(p->uri == "redis://default@127.0.0.1:6379");
  CHECK(p->password == "p@ss");
  CHECK(p->kind == "redis");
  p = ParseProbeRequest(R"({"uri": "redis://:pw@h:1"})");
  REQUIRE(p.ok());
  CHECK(p->uri == "redis://h:1");
  CHECK(p->password == "pw");
  p = ParseProbeRequest(
      R"({"uri": "postgres://mon@db:5432/postgres?sslmode=disable", "credential_profile": "pg"})");
  REQUIRE(p.ok());
  CHECK(p->kind == "postgresql");
  CHECK(p->uri == "postgres://mon@db:5432/postgres?sslmode=disable");
  CHECK(p->credential_profile == "pg");
  p = ParseProbeRequest(R"({"uri": "ssh://monitor@web1:22"})");
  REQUIRE(p.ok());
  CHECK(p->kind == "ssh");
  CHECK(p->password.empty());
  for (const char* bad :
       {R"({"uri": "http://h"})", R"({"uri": "-oProxyCommand=x"})", R"({"uri": "ssh://"})",
        R"({"uri": "ssh://u@:22"})", R"({"uri": "redis://h 1"})", R"({"uri": ""})", R"({})",
        R"({"uri": "redis://h", "credential_profile": 3})",
        R"({"uri": "redis://h", "credential_profile": "a;b"})",
        R"({"uri": "redis://h", "seconds": 100})"}) {
    CHECK_MESSAGE(!ParseProbeRequest(bad).ok(), bad);
  }
  CHECK(!ParseProbeRequest(json({{"uri", "redis://" + std::string(1100, 'a')}}).dump()).ok());
  CHECK(UriWithUser("ssh://web1:22", "monitor") == "ssh://monitor@web1:22");
  CHECK(UriWithUser("ssh://root@web1:22", "monitor") == "ssh://root@web1:22");
  CHECK(UriWithUser("postgresql://db/postgres?x=a@b", "mon") ==
        "postgresql://mon@db/postgres?x=a@b");
  CHECK(UriWithUser("redis://h", "") == "redis://h");
}

TEST_CASE("probe answer from the probe's JSON lines") {
  std::string out =
      "{\"entity\":\"database\",\"name\":\"db0\"}\n"
      "{\"key\":\"redis.clients[connected]\",\"value\":1,\"clock\":1,\"ns\":0}\n"
      "{\"key\":\"redis.memory[used]\",\"value\":1000,\"clock\":1,\"ns\":0}\n"
      "not json\n";
  json a = json::parse(ProbeAnswer(0, false, out, ""));
  CHECK(a["ok"] == true);
  CHECK(a["samples"] == 2);
  REQUIRE(a["entities"].size() == 1);
  CHECK(a["entities"][0]["kind"] == "database");
  CHECK(a["entities"][0]["name"] == "db0");
  CHECK(!a.contains("error"));
  a = json::parse(ProbeAnswer(1, false, "", "trapline probe: redis://h:1: connection refused\n"));
  CHECK(a["ok"] == false);
  CHECK(a["error"] == "redis://h:1: connection refused");
  a = json::parse(ProbeAnswer(137, true, "", ""));
  CHECK(a["ok"] == false);
  CHECK(a["error"].get<std::string>().find("did not finish") != std::string::npos);
  a = json::parse(ProbeAnswer(0, false, "", ""));
  CHECK(a["ok"] == false);
  a = json::parse(ProbeAnswer(2, false, "", ""));
  CHECK(a["error"].get<std::string>().find("exit status 2") != std::string::npos);
}

TEST_CASE("events: one per object per gap, host events derived, bursts folded") {
  EventCoalescer c(200, 5);
  std::vector<EventCoalescer::Event> out;
  CHECK(!c.Add(1000, "not json", &out));
  CHECK(!c.Add(1000, R"({"id": 1})", &out));
  CHECK(out.empty());
  CHECK(c.Add(1000, R"({"type": "host", "id": "web-1", "host": "web-1"})", &out));
  REQUIRE(out.size() == 1);
  CHECK(out[0].type == "host");
  out.clear();
  // Within 200 ms: held, the latest wins.
  c.Add(1050, R"({"type": "host", "id": "web-1", "host": "web-1", "n": 1})", &out);
  c.Add(1100, R"({"type": "host", "id": "web-1", "host": "web-1", "n": 2})", &out);
  CHECK(out.empty());
  c.Flush(1150, &out);
  CHECK(out.empty());
  c.Flush(1200, &out);
  REQUIRE(out.size() == 1);
  CHECK(json::parse(out[0].data)["n"] == 2);
  out.clear();
  // Another object is not held back by the first.
  c.Add(1210, R"({"type": "host", "id": "web-2", "host": "web-2"})", &out);
  CHECK(out.size() == 1);
  out.clear();
  // A service event carries a host event for its host.
  c.Add(1500, R"({"type": "service", "id": 7, "host": "db-1", "state": "error"})", &out);
  REQUIRE(out.size() == 2);
  CHECK(out[0].type == "service");
  CHECK(out[1].type == "host");
  CHECK(json::parse(out[1].data)["id"] == "db-1");
  CHECK(json::parse(out[1].data)["cause"] == "service");
  out.clear();
  // A burst past 5 of one type in a second: the rest become one "many" at the second's end.
  for (int i = 0; i < 20; ++i) {
    c.Add(3000 + static_cast<uint64_t>(i), json({{"type", "audit"}, {"id", i}}).dump(), &out);
  }
  CHECK(out.size() == 5);
  out.clear();
  c.Flush(3500, &out);
  CHECK(out.empty());
  c.Flush(4001, &out);
  REQUIRE(out.size() == 1);
  CHECK(out[0].type == "audit");
  CHECK(json::parse(out[0].data)["many"] == true);
  out.clear();
  c.Flush(10000, &out);
  CHECK(out.empty());
  CHECK(c.idle());
}

}  // namespace
}  // namespace trapline::coordinator::panel
