#include "collector/send_input.h"

#include <doctest/doctest.h>

namespace trapline {
namespace {

TEST_CASE("zabbix_sender input lines: plain, quoted, timestamps") {
  SendInputFormat plain;
  auto v = ParseSendLine("web01 system.cpu.load 1.5", plain);
  REQUIRE(v.ok());
  CHECK(v->host == "web01");
  CHECK(v->key == "system.cpu.load");
  CHECK(v->value == "1.5");
  CHECK(v->clock == 0);

  auto q = ParseSendLine("\"host one\"\t\"key[\\\"a b\\\"]\" \"va\\\\lue x\"", plain);
  REQUIRE(q.ok());
  CHECK(q->host == "host one");
  CHECK(q->key == "key[\"a b\"]");
  CHECK(q->value == "va\\lue x");

  auto rest = ParseSendLine("h k hello   world ", plain);
  REQUIRE(rest.ok());
  CHECK(rest->value == "hello   world ");  // unquoted value: the rest of the line

  SendInputFormat ts{true, true, "default-host"};
  auto t = ParseSendLine("- k 1700000000 123 42\r", ts);
  REQUIRE(t.ok());
  CHECK(t->host == "default-host");
  CHECK(t->clock == 1700000000);
  CHECK(t->ns == 123);
  CHECK(t->value == "42");
}

TEST_CASE("zabbix_sender input lines: errors say which field and why") {
  SendInputFormat plain;
  SendInputFormat ts{true, false, ""};
  CHECK(ParseSendLine("", plain).status().message() == "'Hostname' required");
  CHECK(ParseSendLine("host", plain).status().message() == "'Key' required");
  CHECK(ParseSendLine("host key", plain).status().message() == "'Key value' required");
  CHECK(ParseSendLine("- key 1", plain).status().message().find("no default hostname") !=
        std::string::npos);
  CHECK(ParseSendLine("h k notatime 1", ts).status().message() ==
        "invalid 'Timestamp' value detected: 'notatime'");
  CHECK(ParseSendLine("\"h k 1", plain).status().message() == "'Hostname': missing closing quote");
  CHECK(ParseSendLine("\"h\"x k 1", plain).status().message().find("after a closing quote") !=
        std::string::npos);
  CHECK(ParseSendLine("h k \"v\" extra", plain).status().message().find("too many") !=
        std::string::npos);
  SendInputFormat ns{true, true, ""};
  CHECK(ParseSendLine("h k 1700000000 2000000000 1", ns).status().message().find("Nanoseconds") !=
        std::string::npos);
}

TEST_CASE("QuoteSendField round-trips through ParseSendLine") {
  SendInputFormat plain;
  for (std::string host : {"web01", "host one", "a\"b", "back\\slash", "\"lead"}) {
    for (std::string key : {"k", "key[\"a b\"]", "x\ty"}) {
      std::string line = QuoteSendField(host) + " " + QuoteSendField(key) + " 1";
      auto v = ParseSendLine(line, plain);
      REQUIRE_MESSAGE(v.ok(), line);
      CHECK(v->host == host);
      CHECK(v->key == key);
    }
  }
  CHECK(QuoteSendField("plain") == "plain");
}

}  // namespace
}  // namespace trapline
