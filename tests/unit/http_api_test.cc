#include "coordinator/http_api.h"

#include <doctest/doctest.h>

#include <cmath>
#include <string>

namespace trapline::coordinator {
namespace {

TEST_CASE("names, groups and addresses: charset and length") {
  CHECK(ValidateName("web-01.example_com", "host name").ok());
  CHECK(ValidateName("Web server 1", "host name").ok());
  CHECK(ValidateName(std::string(128, 'a'), "host name").ok());
  CHECK(ValidateName(std::string(129, 'a'), "host name").code() == StatusCode::kInvalidArgument);
  CHECK(!ValidateName("", "host name").ok());
  CHECK(!ValidateName(" web", "host name").ok());
  CHECK(!ValidateName("web ", "host name").ok());
  for (const char* bad : {"'; DROP TABLE hosts; --", "a;b", "$(reboot)", "a`b`", "a/b", "a\\b",
                          "a\"b", "caf\xc3\xa9", "a\nb", "a\tb", "a%b", "a*b"}) {
    CHECK_MESSAGE(!ValidateName(bad, "host name").ok(), bad);
  }
  CHECK(!ValidateName(std::string("a\0b", 3), "host name").ok());
  Status st = ValidateName("'; DROP TABLE hosts; --", "host name");
  CHECK(st.message().find("host name") == 0);
  CHECK(ValidateGroup("Linux servers/Production").ok());
  CHECK(!ValidateGroup("a;b").ok());
  CHECK(ValidateAddress("").ok());
  CHECK(ValidateAddress("10.0.0.1").ok());
  CHECK(ValidateAddress("[::1]").ok());
  CHECK(ValidateAddress("db-1.example.com").ok());
  CHECK(!ValidateAddress("10.0.0.1; rm -rf /").ok());
  CHECK(!ValidateAddress("a b").ok());
}

TEST_CASE("RFC 3339 times") {
  CHECK(*ParseRfc3339("1970-01-01T00:00:00Z") == 0);
  CHECK(*ParseRfc3339("2026-11-21T18:00:00Z") == 1795284000);
  CHECK(*ParseRfc3339("2026-11-21T20:00:00+02:00") == 1795284000);
  CHECK(*ParseRfc3339("2026-11-21T17:30:00-00:30") == 1795284000);
  CHECK(std::fabs(*ParseRfc3339("2026-11-21t18:00:00.25z") - 1795284000.25) < 1e-6);
  CHECK(*ParseRfc3339("2024-02-29T00:00:00Z") == 1709164800);
  for (const char* bad : {"", "2026-11-21", "2026-11-21 18:00:00Z", "2026-11-21T18:00:00",
                          "2026-13-01T00:00:00Z", "2025-02-29T00:00:00Z", "2026-11-21T24:00:00Z",
                          "2026-11-21T18:00:00+2:00", "2026-11-21T18:00:00Zjunk",
                          "1969-12-31T23:59:59Z", "2026-11-21T18:00:00.Z", "+2h", "null"}) {
    CHECK_MESSAGE(ParseRfc3339(bad).status().code() == StatusCode::kInvalidArgument, bad);
  }
}

TEST_CASE("bearer tokens: constant-time compare, scheme, missing vs wrong") {
  CHECK(ConstantTimeEquals("abc", "abc"));
  CHECK(!ConstantTimeEquals("abc", "abd"));
  CHECK(!ConstantTimeEquals("abc", "abcd"));
  CHECK(!ConstantTimeEquals("", "a"));
  CHECK(ConstantTimeEquals("", ""));
  const std::string token = "s3cret-token-0123456789";
  CHECK(CheckBearer("Bearer " + token, token) == BearerCheck::kOk);
  CHECK(CheckBearer("bearer  " + token + " ", token) == BearerCheck::kOk);
  CHECK(CheckBearer("", token) == BearerCheck::kMissing);
  CHECK(CheckBearer("Bearer wrong", token) == BearerCheck::kWrong);
  CHECK(CheckBearer("Basic " + token, token) == BearerCheck::kWrong);
  CHECK(CheckBearer(token, token) == BearerCheck::kWrong);
  CHECK(CheckBearer("Bearer ", "") == BearerCheck::kWrong);
  CHECK(CheckBearer("Bearer x", "") == BearerCheck::kWrong);
  CHECK(CheckBearer("   ", token) == BearerCheck::kMissing);
  CHECK(BearerToken("Bearer abc") == "abc");
  CHECK(BearerToken("  bearer   abc  ") == "abc");
  CHECK(BearerToken("Basic abc").empty());
  CHECK(BearerToken("Bearer ").empty());
  CHECK(BearerToken("").empty());
}

TEST_CASE("query parameters: paging, booleans, ids") {
  HttpRequest r;
  CHECK(ParsePaging(r)->limit == 100);
  CHECK(ParsePaging(r)->offset == 0);
  r.query = "limit=5&offset=10";
  CHECK(ParsePaging(r)->limit == 5);
  CHECK(ParsePaging(r)->offset == 10);
  for (const char* bad : {"limit=0", "limit=1001", "limit=-1", "limit=x", "offset=-1",
                          "limit=1e3", "limit=5%3B", "offset=99999999999999999999"}) {
    r.query = bad;
    CHECK_MESSAGE(ParsePaging(r).status().code() == StatusCode::kInvalidArgument, bad);
  }
  CHECK(!ParseBoolParam("", "enabled")->has_value());
  CHECK(**ParseBoolParam("true", "enabled"));
  CHECK(!**ParseBoolParam("0", "enabled"));
  CHECK(!ParseBoolParam("yes", "enabled").ok());
  CHECK(*ParseId("42", "id") == 42);
  CHECK(!ParseId("0", "id").ok());
  CHECK(!ParseId("-1", "id").ok());
  CHECK(!ParseId("1; DROP TABLE services", "id").ok());
  CHECK(!ParseId("", "id").ok());
}

TEST_CASE("weight bodies: a number > 0, known fields only") {
  CHECK(ParseWeightPatch("{\"weight\": 2.5}")->weight == 2.5);
  CHECK(ParseWeightPatch("{\"weight\": 1}")->weight == 1);
  for (const char* bad : {"{\"weight\": 0}", "{\"weight\": -1}", "{\"weight\": \"x\"}",
                          "{\"weight\": NaN}", "{\"weight\": \"NaN\"}", "{\"weight\": 1e400}",
                          "{\"weight\": 2e6}", "{\"weight\": null}", "{}", "", "[1]", "2",
                          "{\"weight\": 2, \"state\": \"dead\"}", "{\"weight\": 2", "not json",
                          "{\"weight\": true}"}) {
    CHECK_MESSAGE(ParseWeightPatch(bad).status().code() == StatusCode::kInvalidArgument, bad);
  }
  Status unknown = ParseWeightPatch("{\"weight\": 2, \"state\": \"dead\"}").status();
  CHECK(unknown.message().find("unknown field 'state'") != std::string::npos);
  std::string deep(10000, '[');
  CHECK(ParseWeightPatch(deep).status().message().find("nested too deeply") != std::string::npos);
}

TEST_CASE("host bodies: new host, patch, one-click enable") {
  auto h = ParseNewHost(R"({"name": "web-1", "address": "10.0.0.1", "groups": ["Linux", "Linux"], "enabled": true})");
  REQUIRE(h.ok());
  CHECK(h->name == "web-1");
  CHECK(h->address == "10.0.0.1");
  CHECK(h->groups == std::vector<std::string>{"Linux"});
  CHECK(h->enabled);
  CHECK(!ParseNewHost(R"({"address": "10.0.0.1"})").ok());
  CHECK(!ParseNewHost(R"({"name": "'; DROP TABLE hosts; --"})").ok());
  CHECK(!ParseNewHost(R"({"name": "a", "groups": "Linux"})").ok());
  CHECK(!ParseNewHost(R"({"name": "a", "groups": [1]})").ok());
  CHECK(!ParseNewHost(R"({"name": "a", "enabled": "yes"})").ok());
  CHECK(!ParseNewHost(R"({"name": "a", "id": 5})").ok());

  auto p = ParseHostPatch(R"({"enabled": true, "services": "all"})");
  REQUIRE(p.ok());
  CHECK(*p->enabled);
  CHECK(p->all_services);
  CHECK(!p->address);
  CHECK(!ParseHostPatch(R"({"services": "all"})").ok());
  CHECK(!ParseHostPatch(R"({"enabled": true, "services": "some"})").ok());
  CHECK(!ParseHostPatch("{}").ok());
  CHECK(ParseHostPatch(R"({"address": "db-1"})")->address == "db-1");
}

TEST_CASE("service and maintenance bodies") {
  auto s = ParseServicePatch(R"({"enabled": false, "credential_profile": "ssh-monitor"})");
  REQUIRE(s.ok());
  CHECK(!*s->enabled);
  CHECK(s->set_credential_profile);
  CHECK(*s->credential_profile == "ssh-monitor");
  auto none = ParseServicePatch(R"({"credential_profile": null})");
  REQUIRE(none.ok());
  CHECK(none->set_credential_profile);
  CHECK(!none->credential_profile);
  CHECK(!ParseServicePatch(R"({"credential_profile": 3})").ok());
  CHECK(!ParseServicePatch(R"({"secret": "x"})").ok());

  CHECK(!ParseMaintenanceBody("")->has_value());
  CHECK(!ParseMaintenanceBody(R"({"until": null})")->has_value());
  CHECK(**ParseMaintenanceBody(R"({"until": "2026-11-21T18:00:00Z"})") == 1795284000);
  CHECK(!ParseMaintenanceBody(R"({"until": "tomorrow"})").ok());
  CHECK(!ParseMaintenanceBody(R"({"until": 1795284000})").ok());
  CHECK(!ParseMaintenanceBody(R"({"from": "2026-11-21T18:00:00Z"})").ok());
  CHECK(JsonStringArray({"a", "b\"c"}) == R"(["a","b\"c"])");
}

TEST_CASE("coordinator /metrics text") {
  CoordinatorSelf self;
  self.name = "co1";
  self.leader = true;
  self.epoch = 3;
  self.schema_version = 2;
  self.registry_connected = true;
  self.zabbix_sync = true;
  self.syncs_done = 5;
  RegistryCounts counts;
  counts.collectors_active = 2;
  counts.tasks = 10;
  counts.tasks_unassigned = 1;
  std::map<std::pair<std::string, int>, uint64_t> requests = {{{"GET /api/v1/hosts", 200}, 7}};
  std::string text = RenderCoordinatorMetrics(self, counts, requests);
  CHECK(text.find("# TYPE trapline_coordinator_leader gauge\ntrapline_coordinator_leader 1\n") !=
        std::string::npos);
  CHECK(text.find("trapline_coordinator_collectors{state=\"active\"} 2\n") != std::string::npos);
  CHECK(text.find("trapline_coordinator_tasks_unassigned 1\n") != std::string::npos);
  CHECK(text.find("trapline_coordinator_zabbix_syncs_done_total 5\n") != std::string::npos);
  CHECK(text.find("trapline_coordinator_http_requests_total{route=\"GET /api/v1/hosts\",code=\"200\"} 7\n") !=
        std::string::npos);
  std::string down = RenderCoordinatorMetrics(CoordinatorSelf{}, std::nullopt, {});
  CHECK(down.find("trapline_coordinator_leader 0\n") != std::string::npos);
  CHECK(down.find("trapline_coordinator_tasks") == std::string::npos);
}

}  // namespace
}  // namespace trapline::coordinator
