#pragma once
// A small HTTP/1.1 server on an existing libuv loop (h2o underneath; no h2o type leaks out of
// this header). It serves the coordinator's JSON API, the discovery endpoint, the admin
// panel's static files and live updates (server-sent events), and /metrics.
//
// Contract:
//  - Thread: everything here runs on the loop's thread, handlers included.
//  - Routing: Handle(method, prefix, handler). A prefix ending in '/' matches every path under
//    it; any other prefix matches itself and the paths under "prefix/". The longest matching
//    prefix wins; if it has no route for the request's method the answer is 405 (with Allow),
//    if nothing matches it is 404. GET routes also answer HEAD. Errors are JSON:
//    {"error": "..."}.
//  - Handlers cannot throw into C: an exception becomes a 500 (and is logged); a non-OK
//    Status becomes a 4xx/5xx JSON error (HttpStatusFor).
//  - Deferred answers (HandleDeferred): the handler returns at once and answers later, on the
//    loop, through its Responder (from a database query's callback, say). The first Send()
//    wins; a Responder whose last copy is dropped unanswered answers 500; Stop() answers every
//    request still waiting with 503, after which Send() does nothing. h2o does not read from a
//    connection while its request waits, so a client that left is noticed when the answer is
//    written (and the connection closed then); sending to it is safe.
//  - Hostile input: request bodies are capped (max_body_bytes, checked against Content-Length
//    before the body is read, and while a chunked body arrives: 413); request line and headers
//    are capped (414/431 here, h2o's own hard limits above those: 400); a request that does
//    not arrive whole within request_timeout_ms, or an idle keep-alive connection, is closed;
//    connections past max_connections are closed at once.
//  - Shutdown: Stop() (or the destructor) closes the listeners, ends every event stream and
//    closes every connection; the last libuv handle is closed a few loop iterations after the
//    last connection, so run the loop after Stop() before closing it (then uv_loop_close()
//    == 0). The object itself may be destroyed before or after that. A server destroyed while
//    its loop never runs again leaks its connections' memory (nothing is freed under libuv).
//  - SIGPIPE: the constructor ignores it process-wide when it has its default action (a
//    client that leaves must not kill the process).
//  - Logs: one debug line per request, "[http] <name> <peer> <method> <path> <status> <bytes>B
//    <ms>ms".

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace trapline {

struct HttpServerOptions {
  std::string name = "http";            // in log lines
  size_t max_body_bytes = 1 << 20;      // larger request bodies: 413
  size_t max_url_bytes = 8192;          // longer request targets: 414
  size_t max_header_bytes = 64 << 10;   // larger header sections: 431
  uint64_t request_timeout_ms = 10000;  // whole request (headers + body), and keep-alive idle
  size_t max_connections = 1024;        // past it new connections are closed at once
  uint64_t sse_heartbeat_ms = 15000;    // comment line on idle event streams (finds dead clients)
  size_t sse_max_pending_bytes = 1 << 20;  // a stream whose client reads slower is closed
  uint64_t stop_grace_ms = 2000;           // then connections still open are cut
};

struct HttpRequest {
  std::string method;  // "GET"
  std::string path;    // normalised and percent-decoded, no query: "/api/v1/hosts/web 01"
  std::string rest;    // `path` after the matched route prefix, without a leading '/'
  std::string query;   // raw, after '?' (not decoded)
  std::vector<std::pair<std::string, std::string>> headers;  // names in lower case
  std::string body;
  std::string peer;  // "127.0.0.1:54321", "[::1]:54321"

  // The first header of that name (case-insensitive), or "" when absent.
  std::string_view Header(std::string_view name) const;
  // The decoded value of a query parameter ("a=1&b=x%20y"), or "" when absent.
  std::string QueryParam(std::string_view key) const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  // Extra headers; a name or value with CR or LF is dropped (logged).
  std::vector<std::pair<std::string, std::string>> headers;

  static HttpResponse Json(std::string body, int status = 200);
  static HttpResponse Text(std::string body, int status = 200,
                           std::string content_type = "text/plain; charset=utf-8");
  // {"error": "<message>"} with the message JSON-escaped.
  static HttpResponse Error(int status, std::string_view message);
};

// 400 kInvalidArgument, 401 kUnauthenticated, 403 kRejected, 404 kNotFound, 503 kUnavailable,
// 504 kTimeout, 502 kProtocolError, 500 otherwise.
int HttpStatusFor(StatusCode code);
// A JSON string literal (quotes included) for `s`; invalid UTF-8 bytes become U+FFFD.
std::string JsonQuote(std::string_view s);

class HttpServer {
 private:
  struct Core;

 public:
  // A server-sent event stream (text/event-stream). The server holds it while it is open;
  // the application keeps the shared_ptr to push events. Loop thread only.
  class Stream {
   public:
    // Queues one event: "id:"/"event:" lines when given, one "data:" line per line of `data`,
    // then a blank line. Returns false (and does nothing) once the stream is closed.
    bool Send(std::string_view data, std::string_view event = {}, std::string_view id = {});
    // Ends the response after what is queued. on_close is not called for this.
    void Close();
    bool open() const;
    // Called once when the stream ends because the client went away or the server stopped
    // (or the client read too slowly), not after Close().
    void set_on_close(std::function<void()> cb) { on_close_ = std::move(cb); }
    const std::string& peer() const { return peer_; }
    ~Stream();

   private:
    friend struct HttpServer::Core;
    struct Impl;
    Stream() = default;
    Impl* impl_ = nullptr;  // the response in progress; null once it has ended
    bool app_closed_ = false;
    std::string peer_;
    std::function<void()> on_close_;
  };

  // The answer to one deferred request. Copyable (copies share the request); loop thread only.
  // It may outlive the server: once the server stopped, Send() does nothing.
  class Responder {
   public:
    Responder() = default;
    // Answers the request: a non-OK Status becomes a JSON error (HttpStatusFor). Only the
    // first call counts; later ones (and calls after Stop()) do nothing.
    void Send(Result<HttpResponse> response) const;
    // True until the request has been answered (by Send, or by Stop()'s 503).
    bool pending() const;

   private:
    friend struct HttpServer::Core;
    struct State;
    std::shared_ptr<State> state_;
  };

  using Handler = std::function<Result<HttpResponse>(const HttpRequest&)>;
  // Answers through the Responder, now or later (see the contract above).
  using DeferredHandler = std::function<void(const HttpRequest&, Responder)>;
  // Returns OK to start the stream (headers go out at once), or an error Status to answer with
  // a JSON error instead. The stream may be kept or dropped; the server keeps it open.
  using StreamHandler = std::function<Status(const HttpRequest&, std::shared_ptr<Stream>)>;

  HttpServer(uv_loop_t* loop, HttpServerOptions options = {});
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // "127.0.0.1:8080", "[::1]:0", "0.0.0.0:9464", "[::]:80"; port 0 picks a free port.
  // May be called more than once (one listener each).
  Status Listen(const std::string& address);
  // The port the first listener is bound to (0 before Listen).
  int port() const;

  // REQUIRES: method in upper case; path_prefix starts with '/'.
  void Handle(std::string method, std::string path_prefix, Handler handler);
  // A route whose handler answers later through a Responder.
  // REQUIRES: as Handle().
  void HandleDeferred(std::string method, std::string path_prefix, DeferredHandler handler);
  // A GET route that opens an event stream.
  void HandleStream(std::string path_prefix, StreamHandler handler);
  // Serves the files under `dir` at `prefix` (GET/HEAD): index.html for a folder, content
  // types by extension, no dot-files, nothing outside `dir` (symlinks included). Files are read
  // whole on the loop: meant for a small static UI.
  Status ServeDirectory(std::string prefix, const std::string& dir);

  // Stops serving (see the contract above). Idempotent.
  void Stop();

  // Connections open now, event streams open now, deferred requests waiting for an answer.
  size_t connections() const;
  size_t streams() const;
  size_t deferred() const;

 private:
  Core* core_;  // owned; freed by itself after Stop() once libuv has closed its handles
};

}  // namespace trapline
