#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "common/uv.h"
#include "zabbix-sync/api_client.h"

namespace trapline::zabbix {
namespace {

using nlohmann::json;

std::string Fixture(const std::string& name) {
  std::ifstream in(std::string(TRAPLINE_FIXTURES) + "/zabbix-api/" + name, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "missing fixture " << name);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The HTTP status each captured 6.0 reply came with.
long HttpStatus(const std::string& name) {
  static const json statuses = json::parse(Fixture("statuses.json"));
  return statuses.at("http_status").at(name).get<long>();
}

Result<json> Captured(const std::string& method, const std::string& name) {
  return wire::ParseReply(method, HttpStatus(name), Fixture(name));
}

ApiVersion V(int major, int minor, int patch = 0) {
  ApiVersion v;
  v.major = major;
  v.minor = minor;
  v.patch = patch;
  return v;
}

bool Has(const std::vector<std::string>& v, const std::string& s) {
  for (const auto& x : v) {
    if (x == s) return true;
  }
  return false;
}

TEST_CASE("ApiVersion::Parse") {
  auto v = ApiVersion::Parse("6.0.14");
  REQUIRE(v.ok());
  CHECK(v->major == 6);
  CHECK(v->minor == 0);
  CHECK(v->patch == 14);
  CHECK(v->ToString() == "6.0.14");
  auto short_form = ApiVersion::Parse("7.0");
  REQUIRE(short_form.ok());
  CHECK(short_form->ToString() == "7.0.0");
  auto pre = ApiVersion::Parse("7.2.0rc1");
  REQUIRE(pre.ok());
  CHECK(pre->ToString() == "7.2.0");
  for (const char* bad : {"", "7", "abc", "6.x", "6.0.14.2", "-1.0", "6.0 ", "6..0", "v6.0.1"}) {
    auto r = ApiVersion::Parse(bad);
    CHECK_MESSAGE(!r.ok(), bad);
    if (!r.ok()) CHECK(r.status().code() == StatusCode::kInvalidArgument);
  }
  CHECK(V(6, 0, 14).AtLeast(6, 0));
  CHECK(!V(6, 0, 14).AtLeast(6, 4));
  CHECK(V(6, 4).AtLeast(6, 4));
  CHECK(V(7, 0).AtLeast(6, 4));
  CHECK(!V(5, 4).AtLeast(6, 0));
}

TEST_CASE("wire::Request and Headers put the token in the body before 6.4, in a header after") {
  const std::string token = "0424bd59b807674191e7d77572075f33";
  const json params = {{"output", {"hostid"}}};
  for (ApiVersion v : {V(6, 0, 14), V(6, 2, 1)}) {
    json body = wire::Request("host.get", params, 7, token, v);
    CHECK(body.at("jsonrpc") == "2.0");
    CHECK(body.at("method") == "host.get");
    CHECK(body.at("params") == params);
    CHECK(body.at("id") == 7);
    CHECK(body.at("auth") == token);
    auto h = wire::Headers(token, v);
    CHECK(Has(h, "Content-Type: application/json-rpc"));
    CHECK(h.size() == 1);
  }
  for (ApiVersion v : {V(6, 4, 0), V(7, 0, 0), V(7, 2, 3)}) {
    json body = wire::Request("host.get", params, 8, token, v);
    CHECK(!body.contains("auth"));
    auto h = wire::Headers(token, v);
    CHECK(Has(h, "Content-Type: application/json-rpc"));
    CHECK(Has(h, "Authorization: Bearer " + token));
  }
  // No token yet: neither.
  CHECK(!wire::Request("host.get", params, 9, "", V(6, 0)).contains("auth"));
  CHECK(wire::Headers("", V(7, 0)).size() == 1);
}

TEST_CASE("apiinfo.version and user.login never carry a token") {
  for (const char* m : {"apiinfo.version", "user.login", "user.checkAuthentication"}) {
    CHECK(!wire::NeedsAuth(m));
    for (ApiVersion v : {V(0, 0), V(6, 0), V(6, 2), V(6, 4), V(7, 0), V(7, 2)}) {
      CHECK(!wire::Request(m, json::object(), 1, "secret-token", v).contains("auth"));
    }
  }
  CHECK(wire::NeedsAuth("host.get"));
  CHECK(wire::NeedsAuth("user.logout"));
}

TEST_CASE("wire::Endpoint") {
  CHECK(wire::Endpoint("http://127.0.0.1:8080") == "http://127.0.0.1:8080/api_jsonrpc.php");
  CHECK(wire::Endpoint("http://127.0.0.1:8080/") == "http://127.0.0.1:8080/api_jsonrpc.php");
  CHECK(wire::Endpoint("https://z.example/zabbix//") == "https://z.example/zabbix/api_jsonrpc.php");
  CHECK(wire::Endpoint("https://z.example/zabbix/api_jsonrpc.php") ==
        "https://z.example/zabbix/api_jsonrpc.php");
}

TEST_CASE("ParseReply: captured Zabbix 6.0 successes") {
  auto v = Captured("apiinfo.version", "6.0-apiinfo.version.json");
  REQUIRE(v.ok());
  CHECK(*v == "6.0.14");
  auto login = Captured("user.login", "6.0-user.login.json");
  REQUIRE(login.ok());
  CHECK(login->is_string());
  CHECK(login->get<std::string>().size() == 32);
  auto groups = Captured("hostgroup.get", "6.0-hostgroup.get.json");
  REQUIRE(groups.ok());
  REQUIRE(groups->is_array());
  CHECK(groups->size() == 2);
  CHECK((*groups)[0].at("name") == "Linux servers");
  // countOutput answers a number as a string
  auto count = Captured("host.get", "6.0-host.get-count.json");
  REQUIRE(count.ok());
  CHECK(*count == "1");
  auto with_token = Captured("host.get", "6.0-host.get-api-token.json");
  REQUIRE(with_token.ok());
  auto tokens = Captured("token.generate", "6.0-token.generate.json");
  REQUIRE(tokens.ok());
  CHECK(tokens->at(0).at("tokenid") == "1");
  // 6.0 ignores an unknown host.get parameter instead of refusing it
  auto ignored = Captured("host.get", "6.0-host.get-unknown-param-ignored.json");
  REQUIRE(ignored.ok());
  CHECK(ignored->at(0).at("hostid") == "10084");
}

TEST_CASE("ParseReply: captured Zabbix 6.0 errors are Rejected with message and data") {
  auto wrong = Captured("user.login", "6.0-user.login-wrong-password.json");
  REQUIRE(!wrong.ok());
  CHECK(wrong.status().code() == StatusCode::kRejected);
  CHECK(wrong.status().message() ==
        "user.login: Application error. Incorrect user name or password or account is "
        "temporarily blocked.");
  auto invalid = Captured("host.create", "6.0-host.create-invalid-params.json");
  REQUIRE(!invalid.ok());
  CHECK(invalid.status().code() == StatusCode::kRejected);
  CHECK(invalid.status().message() ==
        "host.create: Invalid params. Host \"capture\" cannot be without host group.");
  auto with_auth = Captured("apiinfo.version", "6.0-apiinfo.version-with-auth.json");
  CHECK(with_auth.status().message().find("must be called without the \"auth\" parameter") !=
        std::string::npos);
  auto no_method = Captured("nosuch.method", "6.0-nosuch.method.json");
  CHECK(no_method.status().message() ==
        "nosuch.method: Method not found. Incorrect API \"nosuch\".");
  auto parse = Captured("host.get", "6.0-parse-error.json");
  CHECK(parse.status().code() == StatusCode::kRejected);
  CHECK(parse.status().message().find("Parse error Invalid JSON.") != std::string::npos);
  // A session id (or API token) Zabbix does not know
  auto bad_auth = Captured("host.get", "6.0-host.get-bad-auth.json");
  CHECK(bad_auth.status().message() ==
        "host.get: Invalid params. Session terminated, re-login, please.");
  // 6.0 ignores an Authorization header: the call is unauthenticated
  auto bearer = Captured("host.get", "6.0-host.get-bearer-ignored.json");
  CHECK(bearer.status().message() == "host.get: Invalid params. Not authorized.");
  // user.checkAuthentication takes session ids only on 6.0, not API tokens
  auto check = Captured("user.checkAuthentication", "6.0-user.checkAuthentication-api-token.json");
  CHECK(check.status().code() == StatusCode::kRejected);
}

TEST_CASE("ParseReply: what is not a JSON-RPC reply") {
  // `php -S` 404 page for a missing .php file
  auto not_found = Captured("apiinfo.version", "6.0-not-found-404.html");
  REQUIRE(!not_found.ok());
  CHECK(not_found.status().code() == StatusCode::kProtocolError);
  CHECK(not_found.status().message().find("apiinfo.version: HTTP 404, not a JSON-RPC reply: an "
                                          "HTML page titled \"404 Not Found\"") == 0);
  // the frontend's login page (php -S serves index.php for paths without a file)
  auto page = Captured("apiinfo.version", "6.0-frontend-page-200.html");
  CHECK(page.status().code() == StatusCode::kProtocolError);
  CHECK(page.status().message().find("HTTP 200") != std::string::npos);
  CHECK(page.status().message().find("\"trapline test: Zabbix\"") != std::string::npos);
  // a proxy's error page: retried like an unreachable server
  auto bad_gateway = wire::ParseReply("host.get", 502, "<html><title>502 Bad Gateway</title>");
  CHECK(bad_gateway.status().code() == StatusCode::kUnavailable);
  CHECK(bad_gateway.status().message().find("HTTP 502") != std::string::npos);
  auto empty = wire::ParseReply("host.get", 200, "");
  CHECK(empty.status().code() == StatusCode::kProtocolError);
  CHECK(empty.status().message().find("empty body") != std::string::npos);
  auto text = wire::ParseReply("host.get", 200, "hello\n\tworld");
  CHECK(text.status().message().find("body \"hello world\"") != std::string::npos);
  // JSON, but not JSON-RPC 2.0
  CHECK(wire::ParseReply("host.get", 200, R"({"result": 1})").status().code() ==
        StatusCode::kProtocolError);
  CHECK(wire::ParseReply("host.get", 200, R"({"jsonrpc": "2.0", "id": 1})").status().code() ==
        StatusCode::kProtocolError);
  CHECK(wire::ParseReply("host.get", 200, "[1, 2]").status().code() == StatusCode::kProtocolError);
  // a JSON-RPC error is the API's answer whatever the HTTP status
  auto err412 = wire::ParseReply(
      "host.get", 412,
      R"({"jsonrpc":"2.0","error":{"code":-32700,"message":"Parse error","data":"x"},"id":1})");
  CHECK(err412.status().code() == StatusCode::kRejected);
  // error without data, and with structured data
  CHECK(
      wire::ParseReply("m", 200, R"({"jsonrpc":"2.0","error":{"code":1,"message":"Boom."},"id":1})")
          .status()
          .message() == "m: Boom.");
  CHECK(wire::ParseReply(
            "m", 200,
            R"({"jsonrpc":"2.0","error":{"code":1,"message":"Boom.","data":{"a":1}},"id":1})")
            .status()
            .message() == R"(m: Boom. {"a":1})");
  // a null result is a result
  auto null_result = wire::ParseReply("m", 200, R"({"jsonrpc":"2.0","result":null,"id":1})");
  REQUIRE(null_result.ok());
  CHECK(null_result->is_null());
}

TEST_CASE("ParseReply: 7.0-shaped replies (from the Zabbix 7.0 documentation)") {
  auto v = wire::ParseReply("apiinfo.version", 200, Fixture("7.0-apiinfo.version.json"));
  REQUIRE(v.ok());
  auto parsed = ApiVersion::Parse(v->get<std::string>());
  REQUIRE(parsed.ok());
  CHECK(parsed->AtLeast(6, 4));
  auto login = wire::ParseReply("user.login", 200, Fixture("7.0-user.login.json"));
  REQUIRE(login.ok());
  CHECK(login->is_string());
  auto groups = wire::ParseReply("hostgroup.get", 200, Fixture("7.0-hostgroup.get.json"));
  REQUIRE(groups.ok());
  CHECK(groups->size() == 2);
  auto perm = wire::ParseReply("host.create", 200, Fixture("7.0-host.create-no-permissions.json"));
  CHECK(perm.status().code() == StatusCode::kRejected);
  CHECK(perm.status().message() ==
        "host.create: Invalid params. No permissions to referred object or it does not exist!");
  // what 7.2+ answers to an "auth" field: why the token moves to a header from 6.4 on
  auto auth = wire::ParseReply("host.get", 200, Fixture("7.4-auth-in-body-rejected.json"));
  CHECK(auth.status().message() ==
        "host.get: Invalid request. Invalid parameter \"/\": unexpected parameter \"auth\".");
}

// --------------------------------------------------------------------------------------------
// ApiClient on a real loop, without a Zabbix: refused connections, a server that never answers.

// A port on 127.0.0.1 where nothing listens (bound, then closed).
int ClosedPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

// A listening socket that never accepts: the kernel completes the handshake, nobody answers.
struct SilentServer {
  int fd = -1;
  int port = 0;
  SilentServer() {
    fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(listen(fd, 64) == 0);
    socklen_t len = sizeof a;
    getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
  }
  ~SilentServer() { close(fd); }
};

void RunFor(uv_loop_t* loop, uint64_t ms) {
  Timer t(loop);
  bool done = false;
  t.Start(ms, 0, [&] { done = true; });
  while (!done) uv_run(loop, UV_RUN_ONCE);
}

TEST_CASE("ApiClient: a refused connection is retried, then Unavailable; counters") {
  uv_loop_t loop;
  uv_loop_init(&loop);
  {
    ApiConfig c;
    c.url = "http://127.0.0.1:" + std::to_string(ClosedPort());
    c.user = "Admin";
    c.password = "very-secret-pw";
    c.retries = 2;
    c.retry_base_s = 0.01;
    ApiClient client(&loop, c);
    int called = 0;
    Status got;
    client.Connect([&](Status st) {
      ++called;
      got = st;
    });
    while (called == 0) uv_run(&loop, UV_RUN_ONCE);
    CHECK(got.code() == StatusCode::kUnavailable);
    CHECK(got.message().find("apiinfo.version http://127.0.0.1:") == 0);
    CHECK(got.message().find("(3 attempts)") != std::string::npos);
    CHECK(got.message().find("very-secret-pw") == std::string::npos);
    CHECK(client.calls() == 3);
    CHECK(client.calls_by_method().at("apiinfo.version") == 3);
    RunFor(&loop, 20);
    CHECK(called == 1);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
}

TEST_CASE("ApiClient: a server that never answers gives Timeout") {
  SilentServer server;
  uv_loop_t loop;
  uv_loop_init(&loop);
  {
    ApiConfig c;
    c.url = "http://127.0.0.1:" + std::to_string(server.port) + "/zabbix/";
    c.timeout_s = 0.2;
    c.retries = 0;
    ApiClient client(&loop, c);
    std::vector<Result<json>> got;
    client.Call("apiinfo.version", json::object(), [&](Result<json> r) { got.push_back(r); });
    while (got.empty()) uv_run(&loop, UV_RUN_ONCE);
    CHECK(got[0].status().code() == StatusCode::kTimeout);
    CHECK(got[0].status().message().find("/zabbix/api_jsonrpc.php") != std::string::npos);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
}

TEST_CASE("ApiClient: destroyed with calls in flight, each callback runs once with client closed") {
  SilentServer server;
  uv_loop_t loop;
  uv_loop_init(&loop);
  std::vector<int> calls(5, 0);
  std::vector<Status> statuses(5);
  {
    ApiConfig c;
    c.url = "http://127.0.0.1:" + std::to_string(server.port);
    auto client = std::make_unique<ApiClient>(&loop, c);
    for (int i = 0; i < 5; ++i) {
      client->Call("host.get", json::object(), [&, i](Result<json> r) {
        ++calls[i];
        statuses[i] = r.status();
      });
    }
    RunFor(&loop, 100);  // connected and sent, waiting for replies
    CHECK(client->max_in_flight() == 5);
    CHECK(client->max_sockets() >= 2);
    client.reset();
    for (int i = 0; i < 5; ++i) {
      CHECK(calls[i] == 1);
      CHECK(statuses[i].code() == StatusCode::kUnavailable);
      CHECK(statuses[i].message() == "zabbix api host.get: client closed");
    }
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
  for (int n : calls) CHECK(n == 1);
}

TEST_CASE("ApiClient: destroyed from inside a callback, the other calls still complete once") {
  uv_loop_t loop;
  uv_loop_init(&loop);
  {
    ApiConfig c;
    c.url = "http://127.0.0.1:" + std::to_string(ClosedPort());
    c.retries = 0;
    auto client = std::make_unique<ApiClient>(&loop, c);
    std::vector<int> calls(4, 0);
    for (int i = 0; i < 4; ++i) {
      client->Call("host.get", json::object(), [&, i](Result<json>) {
        ++calls[i];
        client.reset();  // the first callback destroys the client
      });
    }
    while (client) uv_run(&loop, UV_RUN_ONCE);
    for (int n : calls) CHECK(n == 1);
    RunFor(&loop, 20);
    for (int n : calls) CHECK(n == 1);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
}

TEST_CASE("BlockingApi: a call against a closed port fails with the reason, not a hang") {
  ApiConfig c;
  c.url = "http://127.0.0.1:" + std::to_string(ClosedPort());
  c.retries = 0;
  BlockingApi api(c);
  Status st = api.Connect();
  CHECK(st.code() == StatusCode::kUnavailable);
  auto r = api.Call("apiinfo.version", json::object());
  CHECK(r.status().code() == StatusCode::kUnavailable);
  CHECK(api.calls() == 2);
}

}  // namespace
}  // namespace trapline::zabbix
