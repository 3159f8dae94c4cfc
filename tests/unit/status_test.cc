#include "common/status.h"

#include <doctest/doctest.h>

namespace trapline {
namespace {

Result<int> Half(int x) {
  if (x % 2 != 0) return Status::InvalidArgument(std::to_string(x) + " is odd");
  return x / 2;
}

Result<int> Quarter(int x) {
  TRAPLINE_ASSIGN_OR_RETURN(int h, Half(x));
  return Half(h);
}

TEST_CASE("Status carries code, message and context") {
  Status ok;
  CHECK(ok.ok());
  CHECK(ok.ToString() == "OK");
  Status st = Status::Unavailable("connection refused").WithContext("zabbix 127.0.0.1:10051");
  CHECK_FALSE(st.ok());
  CHECK(st.code() == StatusCode::kUnavailable);
  CHECK(st.message() == "zabbix 127.0.0.1:10051: connection refused");
  CHECK(st.ToString() == "Unavailable: zabbix 127.0.0.1:10051: connection refused");
}

TEST_CASE("Result propagates errors through ASSIGN_OR_RETURN") {
  CHECK(Quarter(8).value() == 2);
  Result<int> r = Quarter(6);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().message() == "3 is odd");
  CHECK(r.status().code() == StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace trapline
