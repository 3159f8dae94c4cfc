#include "coordinator/discovery.h"

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <string>

namespace trapline::coordinator {
namespace {

using nlohmann::json;

// A report as trapline-discover writes it on a Debian database server.
json Report() {
  return json::parse(R"json({
    "version": 1,
    "script": "trapline-discover 1.0",
    "host": {"name": "db01", "fqdn": "db01.example.com", "os": "Debian GNU/Linux 12 (bookworm)",
             "kernel": "6.1.0-26-amd64", "addresses": ["fe80::1%eth0", "10.0.0.5", "2001:db8::5"],
             "cpus": 8, "memory_bytes": 33554432000},
    "services": [
      {"kind": "ssh", "port": 22},
      {"kind": "postgresql", "port": 5432, "version": "15.8",
       "data_directory": "/var/lib/postgresql/15/main"},
      {"kind": "postgresql", "port": 5433, "version": "16.4",
       "data_directory": "/var/lib/postgresql/16/main"},
      {"kind": "redis", "port": 6379, "version": "7.0.15"},
      {"kind": "generic", "name": "nginx", "port": 80}
    ]
  })json");
}

// The reason a changed report is refused ("" when it is accepted).
template <typename F>
std::string Refusal(F change) {
  json j = Report();
  change(j);
  auto r = ParseDiscoveryReport(j.dump());
  if (r.ok()) return "";
  CHECK(r.status().code() == StatusCode::kInvalidArgument);
  return r.status().message();
}

bool Has(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

TEST_CASE("discovery report: a realistic report parses whole") {
  auto r = ParseDiscoveryReport(Report().dump(2));
  REQUIRE(r.ok());
  CHECK(r->host == "db01");
  CHECK(r->fqdn == "db01.example.com");
  CHECK(r->os == "Debian GNU/Linux 12 (bookworm)");
  CHECK(r->kernel == "6.1.0-26-amd64");
  CHECK(r->script == "trapline-discover 1.0");
  CHECK(r->addresses.size() == 3);
  CHECK(r->cpus == 8);
  CHECK(r->memory_bytes == 33554432000);
  REQUIRE(r->services.size() == 5);
  CHECK(r->services[0].plugin() == "linux");
  CHECK(r->services[0].port == 22);
  CHECK(r->services[1].plugin() == "postgresql");
  CHECK(r->services[1].version == "15.8");
  CHECK(r->services[1].data_directory == "/var/lib/postgresql/15/main");
  CHECK(r->services[2].port == 5433);
  CHECK(r->services[3].plugin() == "redis");
  CHECK(r->services[4].plugin() == "generic:nginx");
  CHECK(r->folded == 0);

  json facts = json::parse(FactsJson(*r));
  CHECK(facts["os"] == "Debian GNU/Linux 12 (bookworm)");
  CHECK(facts["cpus"] == 8);
  CHECK(facts["addresses"].size() == 3);
  json services = json::parse(ServicesJson(*r));
  REQUIRE(services.size() == 5);
  CHECK(services[1]["plugin"] == "postgresql");
  CHECK(services[1]["details"]["data_directory"] == "/var/lib/postgresql/15/main");
  CHECK(services[4]["details"]["name"] == "nginx");
  CHECK(services[0]["details"].empty());
}

TEST_CASE("discovery report: the smallest report, and optional facts absent or null") {
  auto r = ParseDiscoveryReport(R"({"version": 1, "host": {"name": "h1"}, "services": []})");
  REQUIRE(r.ok());
  CHECK(r->services.empty());
  CHECK(!r->cpus);
  json facts = json::parse(FactsJson(*r));
  CHECK(facts["cpus"].is_null());
  CHECK(
      ParseDiscoveryReport(
          R"({"version": 1, "host": {"name": "h1", "cpus": null, "addresses": null}, "services": []})")
          .ok());
}

TEST_CASE("discovery report: the body as a whole") {
  CHECK(Has(ParseDiscoveryReport("").status().message(), "empty"));
  CHECK(Has(ParseDiscoveryReport("{\"version\": 1,").status().message(), "not valid JSON"));
  CHECK(Has(ParseDiscoveryReport("[1, 2]").status().message(), "not a JSON object"));
  CHECK(Has(ParseDiscoveryReport(std::string(100000, '[')).status().message(), "nested deeper"));
  CHECK(Has(ParseDiscoveryReport(std::string(kMaxDiscoveryBodyBytes + 1, ' ')).status().message(),
            "larger than"));
  // Deep nesting inside a field the format knows is refused before the JSON parser.
  CHECK(Has(Refusal([](json& j) { j["services"][0]["version"] = json::parse("[[[1]]]"); }),
            "nested deeper"));
}

TEST_CASE("discovery report: version, unknown fields, required fields") {
  CHECK(Has(Refusal([](json& j) { j["version"] = 2; }), "version must be 1"));
  CHECK(Has(Refusal([](json& j) { j["version"] = "1"; }), "version must be 1"));
  CHECK(Has(Refusal([](json& j) { j.erase("version"); }), "version is required"));
  CHECK(Has(Refusal([](json& j) { j["extra"] = 1; }), "unknown field 'extra'"));
  CHECK(Has(Refusal([](json& j) { j["host"]["uptime"] = 1; }), "unknown field 'uptime' in host"));
  CHECK(Has(Refusal([](json& j) { j["services"][2]["user"] = "postgres"; }),
            "unknown field 'user' in services[2]"));
  CHECK(Has(Refusal([](json& j) { j.erase("host"); }), "host is required"));
  CHECK(Has(Refusal([](json& j) { j["host"] = "db01"; }), "host must be an object"));
  CHECK(Has(Refusal([](json& j) { j["host"].erase("name"); }), "host.name is required"));
  CHECK(Has(Refusal([](json& j) { j.erase("services"); }), "services is required"));
  CHECK(Has(Refusal([](json& j) { j["services"] = json::object(); }), "services is required"));
  CHECK(Has(Refusal([](json& j) { j["script"] = 1; }), "script must be a string"));
  CHECK(Has(Refusal([](json& j) { j["script"] = std::string(65, 'x'); }),
            "script is longer than 64"));
}

TEST_CASE("discovery report: host name and facts") {
  for (const char* bad : {"'; DROP TABLE hosts; --", "$(reboot)", "a`id`", "db01;rm -rf /", "a/b",
                          "a\"b", " db01", "caf\xc3\xa9", ""}) {
    std::string why = Refusal([&](json& j) { j["host"]["name"] = bad; });
    CHECK_MESSAGE(Has(why, "host.name"), bad);
  }
  CHECK(
      Has(Refusal([](json& j) { j["host"]["name"] = std::string(129, 'a'); }), "longer than 128"));
  CHECK(Refusal([](json& j) { j["host"]["name"] = "Web server 1"; }).empty());
  CHECK(Has(Refusal([](json& j) { j["host"]["name"] = 5; }), "host.name is required"));
  CHECK(Has(Refusal([](json& j) { j["host"]["fqdn"] = "db01.example.com;id"; }), "host.fqdn"));
  CHECK(Has(Refusal([](json& j) { j["host"]["os"] = "Debian\n12"; }), "host.os"));
  CHECK(
      Has(Refusal([](json& j) { j["host"]["os"] = std::string(129, 'x'); }), "host.os is longer"));
  CHECK(Has(Refusal([](json& j) { j["host"]["kernel"] = 6; }), "host.kernel must be a string"));
  CHECK(
      Has(Refusal([](json& j) { j["host"]["cpus"] = 0; }), "host.cpus must be an integer from 1"));
  CHECK(Has(Refusal([](json& j) { j["host"]["cpus"] = 2.5; }), "host.cpus"));
  CHECK(Has(Refusal([](json& j) { j["host"]["cpus"] = "8"; }), "host.cpus"));
  CHECK(Has(Refusal([](json& j) { j["host"]["memory_bytes"] = -1; }), "host.memory_bytes"));
  CHECK(Has(Refusal([](json& j) { j["host"]["memory_bytes"] = 18446744073709551615ULL; }),
            "host.memory_bytes"));
}

TEST_CASE("discovery report: addresses") {
  CHECK(
      Has(Refusal([](json& j) { j["host"]["addresses"] = "10.0.0.5"; }), "host.addresses must be"));
  CHECK(Has(Refusal([](json& j) { j["host"]["addresses"][1] = "10.0.0.5/24"; }),
            "host.addresses[1]"));
  CHECK(
      Has(Refusal([](json& j) { j["host"]["addresses"][1] = "10.0.0.256"; }), "host.addresses[1]"));
  CHECK(Has(Refusal([](json& j) { j["host"]["addresses"][0] = "db01.example.com"; }),
            "host.addresses[0]"));
  CHECK(Has(Refusal([](json& j) { j["host"]["addresses"][0] = "fe80::1%eth0;id"; }), "bad zone"));
  CHECK(Has(Refusal([](json& j) { j["host"]["addresses"][2] = 10; }),
            "host.addresses[2] must be a string"));
  CHECK(Has(Refusal([](json& j) {
              j["host"]["addresses"] = json::array();
              for (int i = 0; i < 65; ++i)
                j["host"]["addresses"].push_back("10.0.0." + std::to_string(i));
            }),
            "at most 64"));
  // The same address twice is kept once.
  json j = Report();
  j["host"]["addresses"] = {"10.0.0.5", "10.0.0.5", "::1"};
  auto r = ParseDiscoveryReport(j.dump());
  REQUIRE(r.ok());
  CHECK(r->addresses.size() == 2);
}

TEST_CASE("discovery report: services") {
  CHECK(Has(Refusal([](json& j) { j["services"][0] = 22; }), "services[0] must be an object"));
  CHECK(Has(Refusal([](json& j) { j["services"][0]["kind"] = "telnet"; }),
            "services[0].kind 'telnet' is not"));
  CHECK(Has(Refusal([](json& j) { j["services"][0].erase("kind"); }),
            "services[0].kind is required"));
  for (const json& port : {json(0), json(65536), json(-1), json("x"), json(22.5), json(nullptr),
                           json("22"), json(true), json(99999999999999999LL)}) {
    std::string why = Refusal([&](json& j) { j["services"][3]["port"] = port; });
    CHECK_MESSAGE(Has(why, "services[3].port must be an integer from 1 to 65535"), port.dump());
  }
  CHECK(Has(Refusal([](json& j) { j["services"][3]["port"] = "x"; }), "not \"x\""));
  CHECK(Has(Refusal([](json& j) { j["services"][1].erase("port"); }),
            "services[1].port is required"));
  CHECK(Refusal([](json& j) { j["services"][0]["port"] = 65535; }).empty());
  CHECK(Refusal([](json& j) { j["services"][0]["port"] = 1; }).empty());
  // Generic names.
  CHECK(Has(Refusal([](json& j) { j["services"][4].erase("name"); }),
            "services[4].name is required"));
  for (const char* bad : {"Nginx", "ngi nx", "a;b", "", "$(id)", "../x"}) {
    CHECK_MESSAGE(
        Has(Refusal([&](json& j) { j["services"][4]["name"] = bad; }), "services[4].name"), bad);
  }
  CHECK(Has(Refusal([](json& j) { j["services"][4]["name"] = std::string(65, 'a'); }),
            "services[4].name"));
  CHECK(Refusal([](json& j) { j["services"][4]["name"] = "php-fpm8.2_x"; }).empty());
  CHECK(Has(Refusal([](json& j) { j["services"][0]["name"] = "sshd"; }), "only for generic"));
  // Version and data directory.
  CHECK(Has(Refusal([](json& j) { j["services"][1]["version"] = std::string(65, '1'); }),
            "services[1].version is longer"));
  CHECK(Has(Refusal([](json& j) { j["services"][1]["data_directory"] = "var/lib/pg"; }),
            "absolute path"));
  CHECK(Has(Refusal([](json& j) { j["services"][1]["data_directory"] = "/var/\x01lib"; }),
            "control character"));
}

TEST_CASE("discovery report: at most 256 services; duplicates folded") {
  auto many = [](size_t n) {
    json j = Report();
    j["services"] = json::array();
    for (size_t i = 0; i < n; ++i)
      j["services"].push_back({{"kind", "generic"}, {"name", "d"}, {"port", 1 + i}});
    return j.dump();
  };
  CHECK(ParseDiscoveryReport(many(256)).ok());
  auto r = ParseDiscoveryReport(many(257));
  CHECK(Has(r.status().message(), "services has 257 entries; at most 256"));
  json tenk = Report();
  tenk["services"] = json::array();
  for (int i = 1; i <= 9000; ++i) tenk["services"].push_back({{"kind", "ssh"}, {"port", i}});
  REQUIRE(tenk.dump().size() < kMaxDiscoveryBodyBytes);
  r = ParseDiscoveryReport(tenk.dump());
  CHECK(Has(r.status().message(), "services has 9000 entries"));

  json j = Report();
  j["services"].push_back({{"kind", "ssh"}, {"port", 22}});                           // same as [0]
  j["services"].push_back({{"kind", "redis"}, {"port", 6379}, {"version", "x"}});     // same as [3]
  j["services"].push_back({{"kind", "generic"}, {"name", "apache2"}, {"port", 80}});  // other name
  auto f = ParseDiscoveryReport(j.dump());
  REQUIRE(f.ok());
  CHECK(f->folded == 2);
  CHECK(f->services.size() == 6);
  CHECK(f->services[3].version == "7.0.15");  // the first one wins
}

TEST_CASE("discovery: preferred address for a host without one") {
  DiscoveryReport r;
  r.host = "db01";
  CHECK(PreferredAddress(r) == "db01");
  r.fqdn = "db01.example.com";
  CHECK(PreferredAddress(r) == "db01.example.com");
  r.addresses = {"127.0.0.1", "::1", "fe80::1%eth0", "fe80::2", "169.254.1.1"};
  CHECK(PreferredAddress(r) == "db01.example.com");
  r.addresses.push_back("2001:db8::5");
  CHECK(PreferredAddress(r) == "2001:db8::5");
  r.addresses.push_back("10.0.0.5");
  CHECK(PreferredAddress(r) == "10.0.0.5");
}

TEST_CASE("discovery: clone bodies and services added by hand") {
  auto c = ParseCloneBody(R"({"to": ["web-2", "web-3", "web-2"]})");
  REQUIRE(c.ok());
  CHECK(*c == std::vector<std::string>{"web-2", "web-3"});
  CHECK(!ParseCloneBody(R"({"to": []})").ok());
  CHECK(!ParseCloneBody(R"({"to": "web-2"})").ok());
  CHECK(!ParseCloneBody(R"({"to": ["a;b"]})").ok());
  CHECK(!ParseCloneBody(R"({"to": ["a"], "groups": []})").ok());
  json many = {{"to", json::array()}};
  for (int i = 0; i < 101; ++i) many["to"].push_back("h" + std::to_string(i));
  CHECK(Has(ParseCloneBody(many.dump()).status().message(), "more than 100"));

  auto s = ParseNewService(R"({"plugin": "redis", "port": 6380, "credential_profile": "redis-prod",
                               "enabled": true})");
  REQUIRE(s.ok());
  CHECK(s->plugin == "redis");
  CHECK(s->port == 6380);
  CHECK(s->credential_profile == "redis-prod");
  CHECK(s->enabled);
  s = ParseNewService(R"({"plugin": "postgresql", "uri": "postgresql://db01:5432/postgres"})");
  REQUIRE(s.ok());
  CHECK(s->port == 0);
  CHECK(!s->enabled);
  CHECK(Has(ParseNewService(R"({"port": 1})").status().message(), "plugin is required"));
  CHECK(Has(ParseNewService(R"({"plugin": "Redis"})").status().message(), "not a plugin name"));
  CHECK(Has(ParseNewService(R"({"plugin": "redis", "port": 70000})").status().message(), "port"));
  CHECK(Has(ParseNewService(R"({"plugin": "redis", "uri": "redis://a b"})").status().message(),
            "space"));
  CHECK(
      Has(ParseNewService(R"({"plugin": "redis", "credential_profile": "x;y"})").status().message(),
          "credential profile"));
  CHECK(Has(ParseNewService(R"({"plugin": "redis", "enabled": "yes"})").status().message(),
            "enabled"));
  CHECK(Has(ParseNewService(R"({"plugin": "postgresql", "uri": "postgresql://u:pw@db01/x"})")
                .status()
                .message(),
            "credentials belong in a credential profile"));
}

TEST_CASE("UriHasSecret: passwords in the userinfo or the query") {
  // with a password
  CHECK(UriHasSecret("postgresql://u:secret@db01:5432/postgres"));
  CHECK(UriHasSecret("postgresql://u:se/cr?et@db01/postgres"));  // '/' and '?' in it
  CHECK(UriHasSecret("postgresql://u:a@b@db01/postgres"));       // '@' in it
  CHECK(UriHasSecret("redis://:secret@db01:6379/0"));
  CHECK(UriHasSecret("ssh://root:pw@db01:22"));
  CHECK(UriHasSecret("postgresql://u@db01/postgres?password=secret"));
  CHECK(UriHasSecret("postgresql://db01/postgres?sslmode=require&PassWord=x"));
  CHECK(UriHasSecret("postgresql://db01/postgres?pass%77ord=x"));
  CHECK(UriHasSecret("postgresql://db01/postgres?passfile=/root/.pgpass"));
  CHECK(UriHasSecret("postgresql://db01/postgres?sslpassword=x"));
  CHECK(UriHasSecret("redis://db01:6379?password"));
  // without one
  CHECK(!UriHasSecret("postgresql://db01:5432/postgres"));
  CHECK(!UriHasSecret("postgresql://monitor@db01:5432/postgres?sslmode=require"));
  CHECK(!UriHasSecret("postgresql://monitor@[::1]:5432/postgres"));
  CHECK(!UriHasSecret("redis://db01:6379/0"));
  CHECK(!UriHasSecret("ssh://root@db01:22"));
  CHECK(!UriHasSecret("postgresql://db01/postgres?application_name=password"));
  CHECK(!UriHasSecret("postgresql://db01/postgres?password_encryption_note=1"));
  CHECK(!UriHasSecret(""));
}

TEST_CASE("discovery: token bucket per key") {
  RateLimiter rl(0.1, 2, 4);  // one per 10 s, burst 2
  CHECK(rl.Take("a", 100) == 0);
  CHECK(rl.Take("a", 100) == 0);
  double wait = rl.Take("a", 100);
  CHECK(wait == doctest::Approx(10));
  CHECK(rl.Take("a", 105) == doctest::Approx(5));
  CHECK(rl.Take("a", 110) == 0);
  CHECK(rl.Take("b", 110) == 0);  // another key has its own bucket
  // Bounded: past max_keys, full buckets are forgotten first.
  for (int i = 0; i < 10; ++i) rl.Take("k" + std::to_string(i), 200);
  CHECK(rl.keys() <= 4);
}

TEST_CASE("discovery: host tokens") {
  std::string t1 = NewHostToken(), t2 = NewHostToken();
  CHECK(t1.size() == 64);
  CHECK(t1 != t2);
  CHECK(t1.find_first_not_of("0123456789abcdef") == std::string::npos);
  // SHA-256("abc")
  CHECK(HostTokenHash("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(HostTokenHash(t1) != HostTokenHash(t2));
}

}  // namespace
}  // namespace trapline::coordinator
