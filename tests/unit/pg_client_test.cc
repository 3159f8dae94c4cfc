#include "common/pg_client.h"

#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>

namespace trapline::pg {
namespace {

TEST_CASE("pg_client: backoff doubles up to the cap, jitter only shortens") {
  CHECK(BackoffDelayMs(1, 500, 10000, 0, 0) == 500);
  CHECK(BackoffDelayMs(2, 500, 10000, 0, 0) == 1000);
  CHECK(BackoffDelayMs(3, 500, 10000, 0, 0) == 2000);
  CHECK(BackoffDelayMs(10, 500, 10000, 0, 0) == 10000);
  CHECK(BackoffDelayMs(1000, 500, 10000, 0, 0) == 10000);  // no overflow
  CHECK(BackoffDelayMs(0, 500, 10000, 0, 0) == 500);
  CHECK(BackoffDelayMs(2, 500, 10000, 0.2, 0.5) == 900);
  CHECK(BackoffDelayMs(2, 500, 10000, 0.2, 0.999) >= 800);
  CHECK(BackoffDelayMs(1, 1, 1, 1, 0.999) >= 1);  // never 0
}

TEST_CASE("pg_client: identifiers are quoted, arrays spelled as PostgreSQL reads them") {
  CHECK(QuoteIdent("trapline_assign").value() == "\"trapline_assign\"");
  CHECK(QuoteIdent("a\"b").value() == "\"a\"\"b\"");
  CHECK_FALSE(QuoteIdent("").ok());
  CHECK_FALSE(QuoteIdent(std::string("a\0b", 3)).ok());
  CHECK(Int64ArrayLiteral({}) == "{}");
  CHECK(Int64ArrayLiteral({1, std::nullopt, -3}) == "{1,NULL,-3}");
}

TEST_CASE("pg_client: query errors name the query, not its parameters") {
  Status st = QueryError("query 'read tasks'", "relation \"tasks\" does not exist", "42P01", false);
  CHECK(st.code() == StatusCode::kRejected);
  CHECK(st.message() == "query 'read tasks': relation \"tasks\" does not exist (SQLSTATE 42P01)");
  CHECK(QueryError("query 'x'", "", "", true).code() == StatusCode::kUnavailable);
  CHECK(OneLine("FATAL:  password authentication failed\n\tfor user x\n") ==
        "FATAL: password authentication failed for user x");
}

TEST_CASE("pg_client: connection parameters; a malformed string is refused without I/O") {
  auto p = BuildConnParams("postgresql://u@127.0.0.1:5432/db", "app", 3);
  REQUIRE(p.ok());
  REQUIRE(!p->entries.empty());
  CHECK(p->entries.back().first == "dbname");
  CHECK(p->entries.front() == std::pair<std::string, std::string>("connect_timeout", "3"));
  auto bad = BuildConnParams("postgresql://u@host/db?no_such_option=1", "app", 3);
  CHECK_FALSE(bad.ok());
  CHECK(bad.status().code() == StatusCode::kInvalidArgument);
  CHECK_FALSE(BuildConnParams("", "app", 3).ok());
}

// A port nothing listens on (bound, never listened, closed).
int DeadPort() {
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  int port = ntohs(a.sin_port);
  ::close(s);
  return port;
}

TEST_CASE("pg_client: refused connection; queries fail exactly once, never inside Query()") {
  uv_loop_t loop;
  uv_loop_init(&loop);
  {
    Client::Options o;
    o.conninfo = "host=127.0.0.1 port=" + std::to_string(DeadPort()) + " dbname=x user=x";
    o.reconnect_base_s = 0.01;
    o.reconnect_max_s = 0.02;
    auto client = std::make_unique<Client>(&loop, o);
    int downs = 0;
    Status last;
    client->SetStateCallback([&](bool connected, const Status& why) {
      CHECK_FALSE(connected);
      last = why;
      if (++downs == 3) {
        // Issued while disconnected: fails from the loop, once; then Close() from a callback.
        int calls = 0;
        client->Query("probe", "SELECT $1", {"x"}, [&calls](Result<Rows> r) {
          ++calls;
          CHECK(r.status().code() == StatusCode::kUnavailable);
          CHECK(r.status().message().find("query 'probe'") != std::string::npos);
        });
        CHECK(calls == 0);
        uv_run(&loop, UV_RUN_NOWAIT);
        CHECK(calls == 1);
        client.reset();  // destroyed inside its own state callback
      }
    });
    client->Start();
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(downs == 3);
    CHECK(last.code() == StatusCode::kUnavailable);
    CHECK(last.message().find("refused") != std::string::npos);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
}

TEST_CASE("pg_client: a malformed connection string stops the client with the reason") {
  uv_loop_t loop;
  uv_loop_init(&loop);
  {
    Client::Options o;
    o.conninfo = "postgresql://x@h:99999999999/db?nonsense_option=1";
    Client client(&loop, o);
    int downs = 0;
    client.SetStateCallback([&](bool, const Status&) { ++downs; });
    client.Start();
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(downs == 1);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
}

}  // namespace
}  // namespace trapline::pg
