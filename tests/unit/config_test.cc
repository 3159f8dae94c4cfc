#include "common/config.h"

#include <doctest/doctest.h>

#include "collector/sender.h"

namespace trapline {
namespace {

TEST_CASE("config: typed getters with defaults and ranges") {
  auto t = ConfigTable::Parse("name = \"x\"\nport = 10051\nratio = 0.5\nflag = true\n", "test.toml");
  REQUIRE(t.ok());
  CHECK(t->GetString("name", "d").value() == "x");
  CHECK(t->GetString("absent", "d").value() == "d");
  CHECK(t->GetInt("port", 1, 1, 65535).value() == 10051);
  CHECK(t->GetDouble("ratio", 0, 0, 1).value() == 0.5);
  CHECK(t->GetBool("flag", false).value());
  CHECK(t->CheckKnown().ok());
}

TEST_CASE("config: a misspelt key is named with its line") {
  auto t = ConfigTable::Parse("[sender]\nserver = \"127.0.0.1\"\nbatch_vaules = 10\n", "c.toml");
  REQUIRE(t.ok());
  auto sender = t->GetTable("sender");
  REQUIRE(sender.ok());
  auto opts = SenderOptions::FromConfig(sender.value());
  REQUIRE(opts.ok());
  Status st = t->CheckKnown();
  REQUIRE_FALSE(st.ok());
  CHECK(st.message().find("c.toml:3") != std::string::npos);
  CHECK(st.message().find("'sender.batch_vaules' is not a known key") != std::string::npos);
  CHECK(st.message().find("batch_values") != std::string::npos);  // lists the known keys
}

TEST_CASE("config: wrong type and out of range values are errors naming the key") {
  auto t = ConfigTable::Parse("port = \"ten\"\nconnections = 0\n", "c.toml");
  REQUIRE(t.ok());
  auto port = t->GetInt("port", 1, 1, 65535);
  REQUIRE_FALSE(port.ok());
  CHECK(port.status().message() == "c.toml:1: 'port' must be an integer");
  auto conns = t->GetInt("connections", 4, 1, 64);
  REQUIRE_FALSE(conns.ok());
  CHECK(conns.status().message().find("must be in [1, 64]") != std::string::npos);
}

TEST_CASE("config: syntax errors and missing files are clear") {
  auto bad = ConfigTable::Parse("port = = 3\n", "broken.toml");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().message().rfind("broken.toml: not valid TOML", 0) == 0);
  CHECK(bad.status().message().find('\n') == std::string::npos);
  auto missing = ConfigTable::LoadFile("/nonexistent/trapline.toml");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.status().code() == StatusCode::kNotFound);
}

}  // namespace
}  // namespace trapline
