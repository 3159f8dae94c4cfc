#include "collector/postgres_target.h"

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <thread>

namespace trapline {
namespace {

namespace pg = postgres;
namespace pgp = plugins::postgresql;

std::string TempPath(const char* name) {
  const char* dir = std::getenv("TMPDIR");
  return std::string(dir != nullptr ? dir : "/tmp") + "/trapline-pgt-" + std::to_string(getpid()) +
         "-" + name;
}

std::string Entry(const pg::ConnParams& p, const std::string& key) {
  for (const auto& [k, v] : p.entries) {
    if (k == key) return v;
  }
  return "<absent>";
}

TEST_CASE("conn params: URI or keyword/value string, defaults first, password last") {
  auto p = pg::BuildConnParams("postgresql://mon@db1:5433/app?sslmode=require", "s3cret", 10);
  REQUIRE(p.ok());
  REQUIRE(p->entries.size() == 5);
  CHECK(p->entries[0] == std::make_pair(std::string("connect_timeout"), std::string("10")));
  CHECK(p->entries[1].first == "fallback_application_name");
  CHECK(p->entries[1].second == "trapline");
  CHECK(p->entries[2] == std::make_pair(std::string("gssencmode"), std::string("disable")));
  CHECK(p->entries[3].first == "dbname");  // expanded by libpq: may override the defaults
  CHECK(p->entries[3].second == "postgresql://mon@db1:5433/app?sslmode=require");
  CHECK(p->entries[4] == std::make_pair(std::string("password"), std::string("s3cret")));
  auto k = p->keywords();
  auto v = p->values();
  REQUIRE(k.size() == 6);
  CHECK(k.back() == nullptr);
  CHECK(v.back() == nullptr);
  CHECK(std::string(k[4]) == "password");

  // No password given: none set, so PGPASSWORD / .pgpass / PGPASSFILE still apply.
  auto kv = pg::BuildConnParams("host=127.0.0.1 port=5432 user=mon dbname=postgres", "", 0.5);
  REQUIRE(kv.ok());
  CHECK(Entry(*kv, "password") == "<absent>");
  CHECK(Entry(*kv, "connect_timeout") == "2");  // libpq's minimum
  CHECK(Entry(*pg::BuildConnParams("host=x", "", 2.1), "connect_timeout") == "3");
}

// What libpq makes of the parameters, without connecting anywhere that answers (port 1).
std::string EffectiveOption(const pg::ConnParams& p, const char* keyword) {
  auto k = p.keywords();
  auto v = p.values();
  PGconn* conn = PQconnectStartParams(k.data(), v.data(), 1);
  REQUIRE(conn != nullptr);
  std::string out = "<unset>";
  PQconninfoOption* opts = PQconninfo(conn);
  for (PQconninfoOption* o = opts; o != nullptr && o->keyword != nullptr; ++o) {
    if (std::strcmp(o->keyword, keyword) == 0 && o->val != nullptr) out = o->val;
  }
  PQconninfoFree(opts);
  PQfinish(conn);
  return out;
}

TEST_CASE("conn params: no GSSAPI encryption by default; the URI's own gssencmode wins") {
  auto plain = pg::BuildConnParams("postgresql://mon@127.0.0.1:1/app", "", 10);
  REQUIRE(plain.ok());
  CHECK(EffectiveOption(*plain, "gssencmode") == "disable");
  auto asked = pg::BuildConnParams("postgresql://mon@127.0.0.1:1/app?gssencmode=prefer", "", 10);
  REQUIRE(asked.ok());
  CHECK(EffectiveOption(*asked, "gssencmode") == "prefer");
  auto kv = pg::BuildConnParams("hostaddr=127.0.0.1 port=1 gssencmode=require", "", 10);
  REQUIRE(kv.ok());
  CHECK(EffectiveOption(*kv, "gssencmode") == "require");
}

TEST_CASE("conn params: a malformed connection string is InvalidArgument with libpq's reason") {
  auto bad = pg::BuildConnParams("postgresql://mon@db1:5433/app?nosuchoption=1", "", 10);
  REQUIRE(!bad.ok());
  CHECK(bad.status().code() == StatusCode::kInvalidArgument);
  CHECK(bad.status().message().find("nosuchoption") != std::string::npos);
  auto kv = pg::BuildConnParams("host=x port", "", 10);
  REQUIRE(!kv.ok());
  CHECK(kv.status().message().find("invalid PostgreSQL connection string") == 0);
  CHECK(kv.status().message().find('\n') == std::string::npos);
  CHECK(!pg::BuildConnParams("", "", 10).ok());
}

TEST_CASE("password file: first line, CR stripped; errors name the file, never the content") {
  std::string path = TempPath("pw");
  {
    std::ofstream f(path);
    f << "pa ss\r\nsecond line\n";
  }
  auto pw = ReadSecretFile(path, "password_file");
  REQUIRE(pw.ok());
  CHECK(*pw == "pa ss");

  TargetConfig c;
  c.password = "inline";
  CHECK(*pg::PasswordFor(c) == "inline");
  c.password_file = path;
  CHECK(*pg::PasswordFor(c) == "pa ss");  // the file wins, as for Redis
  c = TargetConfig{};
  CHECK(pg::PasswordFor(c)->empty());

  {
    std::ofstream f(path);
    f << "\nsecret-on-line-2\n";
  }
  auto empty = ReadSecretFile(path, "password_file");
  REQUIRE(!empty.ok());
  CHECK(empty.status().message().find(path) != std::string::npos);
  CHECK(empty.status().message().find("secret") == std::string::npos);
  std::remove(path.c_str());
  auto missing = ReadSecretFile(path, "password_file");
  REQUIRE(!missing.ok());
  CHECK(missing.status().code() == StatusCode::kInvalidArgument);
}

TEST_CASE("libpq messages on one line; refused is Unavailable, a server FATAL is Rejected") {
  const char* refused =
      "connection to server at \"127.0.0.1\", port 1 failed: Connection refused\n"
      "\tIs the server running on that host and accepting TCP/IP connections?\n";
  CHECK(pg::OneLine(refused) ==
        "connection to server at \"127.0.0.1\", port 1 failed: Connection refused; Is the server "
        "running on that host and accepting TCP/IP connections?");
  CHECK(pg::ConnectFailure(refused).code() == StatusCode::kUnavailable);
  const char* auth =
      "connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  password authentication "
      "failed for user \"mon\"\n";
  Status st = pg::ConnectFailure(auth);
  CHECK(st.code() == StatusCode::kRejected);
  CHECK(st.message() ==
        "connection to server at \"127.0.0.1\", port 5432 failed: FATAL: password authentication "
        "failed for user \"mon\"");
  CHECK(pg::OneLine("server closed the connection unexpectedly\n\tThis probably means the "
                    "server terminated abnormally\n\tbefore or while processing the request.\n") ==
        "server closed the connection unexpectedly; This probably means the server terminated "
        "abnormally before or while processing the request.");
  CHECK(pg::OneLine("") == "");
  CHECK(pg::OneLine("\n\n  A  \n B\n\tc\n") == "A; B c");
  CHECK(pg::ConnectFailure("").message().find("no reason") != std::string::npos);
}

TEST_CASE("server versions: formatted, and < 12 refused with a clear message") {
  CHECK(pg::FormatServerVersion(150004) == "15.4");
  CHECK(pg::FormatServerVersion(120000) == "12.0");
  CHECK(pg::FormatServerVersion(90624) == "9.6.24");
  CHECK(pg::CheckServerVersion(120000).ok());
  CHECK(pg::CheckServerVersion(170002).ok());
  Status old = pg::CheckServerVersion(110005);
  CHECK(old.code() == StatusCode::kRejected);
  CHECK(old.message().find("unsupported PostgreSQL version 11.5") == 0);
  CHECK(!pg::CheckServerVersion(0).ok());
}

TEST_CASE("statements: TickQueries splits into one statement per result the parser expects") {
  CHECK(pg::SplitStatements("SELECT 1;\nSELECT 2;\n") ==
        std::vector<std::string>{"SELECT 1;\n", "SELECT 2;\n"});
  CHECK(pg::SplitStatements("SELECT 1;\nSELECT ';' AS x") ==
        std::vector<std::string>{"SELECT 1;\n", "SELECT ';' AS x"});
  CHECK(pg::SplitStatements("SELECT 1;\n  \n").size() == 1);
  CHECK(pg::SplitStatements("").empty());
  for (int v : {120000, 130000, 140000, 150004, 160000, 170000, 180000}) {
    CAPTURE(v);
    auto parts = pg::SplitStatements(pgp::TickQueries(v));
    CHECK(parts.size() == pgp::kStatementNames.size());
    for (const auto& s : parts) CHECK(s.rfind("SELECT", 0) == 0);
    // Shared by the connections: built once per version (and thread).
    const pg::TickSql& sql = pg::TickSqlFor(v);
    CHECK(&sql == &pg::TickSqlFor(v));
    CHECK(sql.statements[1] == parts);
    CHECK(sql.text_query[1] == pgp::TickQueryText(v));
    // Without the sizes: the same statements but the last, which calls no pg_database_size.
    CHECK(sql.statements[0].size() == parts.size());
    CHECK(std::equal(parts.begin(), parts.end() - 1, sql.statements[0].begin()));
    CHECK(parts.back().find("pg_database_size(") != std::string::npos);
    CHECK(sql.statements[0].back().find("pg_database_size(") == std::string::npos);
    CHECK(sql.text_query[0].find("pg_database_size(") == std::string::npos);
  }
  CHECK(&pg::TickSqlFor(160000) != &pg::TickSqlFor(170000));
}

TEST_CASE("results: names, text values and NULLs from a PGresult; errors as text") {
  PGresult* res = PQmakeEmptyPGresult(nullptr, PGRES_TUPLES_OK);
  REQUIRE(res != nullptr);
  PGresAttDesc attrs[2] = {};
  attrs[0].name = const_cast<char*>("datname");
  attrs[0].typid = 25;
  attrs[0].typlen = -1;
  attrs[1].name = const_cast<char*>("size_bytes");
  attrs[1].typid = 20;
  attrs[1].typlen = 8;
  REQUIRE(PQsetResultAttrs(res, 2, attrs) == 1);
  REQUIRE(PQsetvalue(res, 0, 0, const_cast<char*>("postgres"), 8) == 1);
  REQUIRE(PQsetvalue(res, 0, 1, const_cast<char*>("7561699"), 7) == 1);
  REQUIRE(PQsetvalue(res, 1, 0, const_cast<char*>("secret"), 6) == 1);
  REQUIRE(PQsetvalue(res, 1, 1, nullptr, -1) == 1);
  pgp::ResultSet rs = pg::ToResultSet(res);
  PQclear(res);
  CHECK(rs.error.empty());
  CHECK(rs.columns == std::vector<std::string>{"datname", "size_bytes"});
  REQUIRE(rs.rows.size() == 2);
  CHECK(rs.rows[0][0] == std::optional<std::string>("postgres"));
  CHECK(rs.rows[0][1] == std::optional<std::string>("7561699"));
  CHECK(rs.rows[1][0] == std::optional<std::string>("secret"));
  CHECK(!rs.rows[1][1].has_value());

  PGresult* err = PQmakeEmptyPGresult(nullptr, PGRES_FATAL_ERROR);
  pgp::ResultSet e = pg::ToResultSet(err);
  PQclear(err);
  CHECK(!e.error.empty());
  PGresult* aborted = PQmakeEmptyPGresult(nullptr, PGRES_PIPELINE_ABORTED);
  CHECK(pg::ToResultSet(aborted).error.find("not run") == 0);
  PQclear(aborted);
}

// ---------------------------------------------------------------------------------------------
// The target on a loop, against sockets that are not PostgreSQL servers or only pretend to be:
// every failure is reported once per attempt, and the loop closes with no handle left.

void CloseLoop(uv_loop_t* loop) {
  uv_run(loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(loop) == 0);
}

int ListenLoopback(uint16_t* port) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  REQUIRE(bind(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
  REQUIRE(listen(s, 8) == 0);
  REQUIRE(getsockname(s, reinterpret_cast<sockaddr*>(&a), &len) == 0);
  *port = ntohs(a.sin_port);
  return s;
}

TargetConfig Config(uint16_t port, double timeout_s = 2) {
  TargetConfig c;
  c.host = "pg-test";
  c.plugin = "postgresql";
  c.uri = "postgresql://mon@127.0.0.1:" + std::to_string(port) +
          "/postgres?sslmode=disable&gssencmode=disable";
  c.password = "x";
  c.timeout_s = timeout_s;
  c.reconnect_base_s = 60;  // one attempt per test
  return c;
}

// Runs the loop until the target reports a failure (or 10 s pass); returns the error.
std::string RunUntilFailure(uv_loop_t* loop, PostgresTarget* t, int* failures, int* connects) {
  t->set_on_state([&](const TargetBase& b) {
    if (b.state().connected) ++*connects;
    if (!b.state().connected && !b.state().last_error.empty()) {
      ++*failures;
      uv_stop(loop);
    }
  });
  Timer guard(loop);
  guard.Start(10000, 0, [&] { uv_stop(loop); });
  t->Start();
  uv_run(loop, UV_RUN_DEFAULT);
  return t->state().last_error;
}

TEST_CASE("PostgresTarget: refused connection fails once with libpq's reason, loop closes") {
  uv_loop_t loop;
  uv_loop_init(&loop);
  uint16_t port = 0;
  ::close(ListenLoopback(&port));  // now nothing listens there
  int failures = 0, connects = 0;
  auto t = std::make_unique<PostgresTarget>(&loop, Config(port), nullptr);
  std::string err = RunUntilFailure(&loop, t.get(), &failures, &connects);
  CHECK(failures == 1);
  CHECK(connects == 0);
  CHECK(err.find("Connection refused") != std::string::npos);
  CHECK(err.find('\n') == std::string::npos);
  CHECK(t->phase() == PostgresTarget::Phase::kIdle);
  t.reset();
  CloseLoop(&loop);
}

TEST_CASE("PostgresTarget: a server that never answers hits the connect deadline") {
  uv_loop_t loop;
  uv_loop_init(&loop);
  uint16_t port = 0;
  int s = ListenLoopback(&port);  // the kernel completes the handshake; nobody answers
  int failures = 0, connects = 0;
  auto t = std::make_unique<PostgresTarget>(&loop, Config(port, 0.3), nullptr);
  std::string err = RunUntilFailure(&loop, t.get(), &failures, &connects);
  CHECK(failures == 1);
  CHECK(err.find("connect: no answer within 300 ms") == 0);
  t.reset();
  ::close(s);
  CloseLoop(&loop);
}

// A pretend server for one connection (in a thread, blocking I/O): answers the startup packet
// with AuthenticationOk, server_version, BackendKeyData and ReadyForQuery; then reads what
// comes and closes the connection after the first bytes.
class FakeServer {
 public:
  explicit FakeServer(std::string version) : version_(std::move(version)) {
    listen_fd_ = ListenLoopback(&port_);
    thread_ = std::thread([this] { Serve(); });
  }
  ~FakeServer() {
    stop_ = true;
    thread_.join();
    ::close(listen_fd_);
  }
  uint16_t port() const { return port_; }
  int queries_seen() const { return queries_seen_; }

 private:
  static void Put32(std::string* out, uint32_t v) {
    uint32_t n = htonl(v);
    out->append(reinterpret_cast<const char*>(&n), 4);
  }
  bool WaitReadable(int fd) {
    while (!stop_) {
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 50) > 0) return true;
    }
    return false;
  }
  void Serve() {
    if (!WaitReadable(listen_fd_)) return;
    int c = accept(listen_fd_, nullptr, nullptr);
    if (c < 0) return;
    char buf[4096];
    // Startup packet: int32 length (itself included), then the rest.
    size_t got = 0, need = 4;
    uint32_t len = 0;
    while (got < need && WaitReadable(c)) {
      ssize_t n = read(c, buf + got, need - got);
      if (n <= 0) break;
      got += static_cast<size_t>(n);
      if (got == 4 && need == 4) {
        std::memcpy(&len, buf, 4);
        need = std::min<size_t>(ntohl(len), sizeof(buf));
      }
    }
    std::string reply;
    reply += 'R';
    Put32(&reply, 8);
    Put32(&reply, 0);
    std::string param = std::string("server_version") + '\0' + version_ + '\0';
    reply += 'S';
    Put32(&reply, static_cast<uint32_t>(4 + param.size()));
    reply += param;
    reply += 'K';
    Put32(&reply, 12);
    Put32(&reply, 4242);
    Put32(&reply, 1);
    reply += 'Z';
    Put32(&reply, 5);
    reply += 'I';
    if (write(c, reply.data(), reply.size()) != static_cast<ssize_t>(reply.size())) {
      ::close(c);
      return;
    }
    if (WaitReadable(c) && read(c, buf, sizeof(buf)) > 0) ++queries_seen_;
    ::close(c);  // mid-tick, from the client's point of view
  }

  std::string version_;
  uint16_t port_ = 0;
  int listen_fd_ = -1;
  std::atomic<bool> stop_{false};
  std::atomic<int> queries_seen_{0};
  std::thread thread_;
};

TEST_CASE(
    "PostgresTarget: a server older than 12 is refused with 'unsupported PostgreSQL version'") {
  uv_loop_t loop;
  uv_loop_init(&loop);
  FakeServer server("11.5");
  int failures = 0, connects = 0;
  auto t = std::make_unique<PostgresTarget>(&loop, Config(server.port()), nullptr);
  std::string err = RunUntilFailure(&loop, t.get(), &failures, &connects);
  CHECK(failures == 1);
  CHECK(connects == 0);
  CHECK(t->server_version() == 110005);
  CHECK(err.find("unsupported PostgreSQL version 11.5") == 0);
  CHECK(t->state().last_error_clock > 0);
  t.reset();
  CloseLoop(&loop);
}

TEST_CASE("PostgresTarget: connection closed mid-tick fails the tick, nothing delivered") {
  uv_loop_t loop;
  uv_loop_init(&loop);
  FakeServer server("15.4");
  int failures = 0, connects = 0, delivered = 0;
  auto t = std::make_unique<PostgresTarget>(&loop, Config(server.port()),
                                            [&](ZbxTime, plugins::ParseResult) { ++delivered; });
  std::string err = RunUntilFailure(&loop, t.get(), &failures, &connects);
  CHECK(connects == 1);
  CHECK(failures == 1);
  CHECK(delivered == 0);
  CHECK(server.queries_seen() == 1);
  CHECK(err.find("server closed the connection unexpectedly") == 0);
  CHECK(t->phase() == PostgresTarget::Phase::kIdle);
  t.reset();
  CloseLoop(&loop);
}

}  // namespace
}  // namespace trapline
