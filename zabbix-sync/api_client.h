#pragma once
// A Zabbix API (JSON-RPC 2.0 at <url>/api_jsonrpc.php) client: libcurl's multi interface
// driven by the libuv loop through SocketWatcher and Timer, nlohmann/json for the bodies.
//
// Contracts:
//  - ApiClient belongs to one loop and is used only from that loop's thread. Callbacks run on
//    the loop, exactly once per call, also when the client is destroyed with calls pending
//    (they get Status::Unavailable("...: client closed")) -- never after the destructor returns.
//  - Versions: Connect() asks apiinfo.version (no login needed), then logs in with
//    user/password (user.login {"username","password"}) unless a token is configured. The
//    token (session or API token) goes into the request's "auth" field before 6.4 and into an
//    "Authorization: Bearer" header from 6.4 on (7.2 removed "auth").
//  - Errors: a JSON-RPC error is Status::Rejected("<method>: <message> <data>"); a reply that
//    is not JSON-RPC is ProtocolError naming the HTTP status and the start of the body;
//    network failures and HTTP 5xx are Unavailable / Timeout and are retried (with backoff)
//    up to `retries` times; API errors are never retried (they would fail again).
//  - Secrets (password, token) never appear in an error message or a log line.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <uv.h>

#include "common/status.h"

namespace trapline::zabbix {

struct ApiConfig {
  std::string url;       // frontend URL, e.g. http://127.0.0.1:8080 (or the full .../api_jsonrpc.php)
  std::string user;      // with password: user.login
  std::string password;
  std::string token;     // API token (or session id): used instead of user/password
  double timeout_s = 30;   // per HTTP request
  int retries = 3;         // transient failures only
  double retry_base_s = 0.5;
  bool verify_tls = true;
  std::string ca_file;   // extra CA bundle for https
  int max_connections = 8;  // concurrent HTTP connections to the frontend; more calls queue
};

struct ApiVersion {
  int major = 0, minor = 0, patch = 0;
  bool AtLeast(int maj, int min) const { return major > maj || (major == maj && minor >= min); }
  std::string ToString() const;
  // "6.0.14" -> {6,0,14}; InvalidArgument otherwise.
  static Result<ApiVersion> Parse(const std::string& text);
};

// Pure request/response shaping, exposed for unit tests over captured 6.0 and 7.0 shapes.
namespace wire {
// False for the methods that must be called without any token (apiinfo.version, user.login,
// user.checkAuthentication): Zabbix refuses them when an "auth" field is present.
bool NeedsAuth(const std::string& method);
// The JSON-RPC body. Never carries "auth" for a method that !NeedsAuth(). `auth` is put in the body only when non-empty and the version is < 6.4.
nlohmann::json Request(const std::string& method, const nlohmann::json& params, int64_t id,
                       const std::string& auth, const ApiVersion& version);
// Extra HTTP headers: "Content-Type: application/json-rpc", and from 6.4 on
// "Authorization: Bearer <auth>" when auth is non-empty. Callers pass an empty auth for a
// method that !NeedsAuth().
std::vector<std::string> Headers(const std::string& auth, const ApiVersion& version);
// The "result" of a reply body, or Rejected with the API's message and data, or ProtocolError.
Result<nlohmann::json> ParseReply(const std::string& method, long http_status, const std::string& body);
// The endpoint: url as given if it ends in .php, else url + "/api_jsonrpc.php".
std::string Endpoint(const std::string& url);
}  // namespace wire

class ApiClient {
 public:
  using Callback = std::function<void(Result<nlohmann::json>)>;

  ApiClient(uv_loop_t* loop, ApiConfig config);
  ~ApiClient();
  ApiClient(const ApiClient&) = delete;
  ApiClient& operator=(const ApiClient&) = delete;

  // Detects the version and logs in. `done` gets OK, or the reason (wrong URL, not a Zabbix
  // API, wrong password...). A configured token is checked with `host.get {"countOutput":
  // true}`: any authenticated method proves it, and this one works the same for session ids
  // and API tokens on 6.0 to 7.x (user.checkAuthentication takes only session ids on 6.0).
  // Without user or token, only the version is detected. With user/password, a session that
  // Zabbix later ends ("Session terminated, re-login, please.") is renewed once per call.
  void Connect(std::function<void(Status)> done);
  // One API call. REQUIRES: Connect() succeeded (apiinfo.version may be called before).
  // Several calls may be in flight at once.
  void Call(const std::string& method, nlohmann::json params, Callback done);

  const ApiVersion& version() const;
  // Calls sent so far (each retry counts), for benchmarks and "reads only" checks.
  int64_t calls() const;
  // Calls by method name since construction, e.g. {"item.get": 3, ...}.
  const std::map<std::string, int64_t>& calls_by_method() const;
  // The most HTTP requests handed to libcurl at once, and the most sockets it had open at
  // once: proof that calls really run side by side.
  int max_in_flight() const;
  int max_sockets() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// What code that plans and applies changes needs: blocking calls. BlockingApi is the real one;
// unit tests replay captured replies through a fake.
class Api {
 public:
  virtual ~Api() = default;
  virtual Result<nlohmann::json> Call(const std::string& method, nlohmann::json params) = 0;
  virtual const ApiVersion& version() const = 0;
};

// A blocking facade for command-line tools and for code that runs outside a loop (the
// coordinator runs syncs on a worker thread): owns a private loop and runs it until each call
// completes. Not thread-safe; one per thread.
class BlockingApi : public Api {
 public:
  explicit BlockingApi(ApiConfig config);
  ~BlockingApi() override;
  Status Connect();
  Result<nlohmann::json> Call(const std::string& method, nlohmann::json params) override;
  const ApiVersion& version() const override;
  int64_t calls() const;
  const std::map<std::string, int64_t>& calls_by_method() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace trapline::zabbix
