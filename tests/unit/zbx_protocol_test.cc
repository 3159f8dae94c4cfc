#include "collector/zbx_protocol.h"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>

namespace trapline {
namespace {

std::string Fixture(const std::string& name) {
  std::ifstream in(std::string(TRAPLINE_FIXTURES) + "/" + name, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST_CASE("frames round-trip, plain and compressed") {
  std::string payload = R"({"request":"sender data","data":[]})";
  for (bool compress : {false, true}) {
    auto frame = EncodeFrame(payload, compress);
    REQUIRE(frame.ok());
    CHECK(frame->substr(0, 4) == "ZBXD");
    CHECK(static_cast<uint8_t>((*frame)[4]) == (compress ? 0x03 : 0x01));
    CHECK(FrameSize(*frame) == static_cast<int64_t>(frame->size()));
    CHECK(FrameSize(frame->substr(0, 7)) == 0);  // header incomplete
    auto back = DecodeFrame(*frame);
    REQUIRE(back.ok());
    CHECK(*back == payload);
  }
}

TEST_CASE("a reply captured from Zabbix 6.0 parses") {
  std::string frame = Fixture("zabbix/sender_reply_6.0.bin");
  REQUIRE(!frame.empty());
  REQUIRE(FrameSize(frame) == static_cast<int64_t>(frame.size()));
  auto payload = DecodeFrame(frame);
  REQUIRE(payload.ok());
  auto r = ParseSenderReply(*payload);
  REQUIRE(r.ok());
  CHECK(r->processed + r->failed == r->total);
  CHECK(r->info.rfind("processed: ", 0) == 0);
}

TEST_CASE("reply parsing: counts, failures, garbage") {
  auto ok = ParseSenderReply(
      R"({"response":"success","info":"processed: 7; failed: 3; total: 10; seconds spent: 0.000120"})");
  REQUIRE(ok.ok());
  CHECK(ok->processed == 7);
  CHECK(ok->failed == 3);
  CHECK(ok->total == 10);
  CHECK(ok->seconds_spent == doctest::Approx(0.00012));

  auto failed = ParseSenderReply(R"({"response":"failed","info":"cannot parse"})");
  REQUIRE_FALSE(failed.ok());
  CHECK(failed.status().code() == StatusCode::kRejected);
  CHECK(failed.status().message().find("cannot parse") != std::string::npos);

  auto html = ParseSenderReply("HTTP/1.1 400 Bad Request\r\n\r\n");
  REQUIRE_FALSE(html.ok());
  CHECK(html.status().code() == StatusCode::kProtocolError);

  auto noinfo = ParseSenderReply(R"({"response":"success","info":"all good"})");
  CHECK(noinfo.status().code() == StatusCode::kProtocolError);
}

TEST_CASE("not a Zabbix frame is recognised at once") {
  CHECK(FrameSize("HTTP/1.1 200 OK") == -1);
  CHECK(FrameSize("ZB") == 0);
  CHECK(FrameSize("ZBXD\x09") == -1);  // unknown flags
  std::string huge = std::string("ZBXD\x01", 5) + std::string("\xff\xff\xff\x7f\0\0\0\0", 8);
  CHECK(FrameSize(huge) == -1);  // over 1 GiB
  CHECK_FALSE(DecodeFrame("ZBXD\x01\x05\0\0\0\0\0\0\0ab").ok());  // truncated
}

TEST_CASE("request JSON escapes every byte that needs it and parses back") {
  std::vector<SenderValue> vals = {
      {"host \"one\"", "key[a\\b]", "line1\nline2\t\x01", 1700000000, 5, 0},
      {"h", "k", "v", 0, 0, 0},
  };
  std::string req = BuildSenderRequest(vals, 1700000001, 7);
  auto j = nlohmann::json::parse(req);
  CHECK(j["request"] == "sender data");
  CHECK(j["clock"] == 1700000001);
  CHECK(j["data"][0]["host"] == "host \"one\"");
  CHECK(j["data"][0]["key"] == "key[a\\b]");
  CHECK(j["data"][0]["value"] == "line1\nline2\t\x01");
  CHECK(j["data"][0]["ns"] == 5);
  CHECK_FALSE(j["data"][1].contains("clock"));

  std::string one;
  AppendValueJson(vals[0], &one);
  auto back = ParseValueJson(one);
  REQUIRE(back.ok());
  CHECK(back->host == vals[0].host);
  CHECK(back->value == vals[0].value);
  CHECK(back->clock == 1700000000);
  CHECK_FALSE(ParseValueJson("{\"host\":1}").ok());
}

}  // namespace
}  // namespace trapline
