#include "common/http_server.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <unordered_set>

// h2o 2.2 picks its event loop by macro; trapline uses the libuv build (libh2o, not
// libh2o-evloop). Its headers are system headers, so our warning flags do not apply to them.
#define H2O_USE_LIBUV 1
#include <h2o.h>

#include "common/log.h"
#include "common/uv.h"

namespace trapline {

// h2o 2.2.5's lifecycle, which the code below follows:
//  - An accepted connection is a uv_tcp_t we allocate; h2o_uv_socket_create() takes it over and
//    calls our close callback when it has uv_close()d it. That callback is the only place a
//    connection's memory is freed, and the count of open connections drops.
//  - h2o has no call that closes an HTTP/1 connection from outside. Stop() therefore half-closes
//    each socket (shutdown SHUT_RD): h2o then reads EOF at its next read and closes the
//    connection itself; event streams are ended first so that their connection goes back to
//    reading. After stop_grace_ms the sockets are shut down both ways (a stuck write fails).
//  - h2o_context_dispose() asserts that no connection is left, and uv_close()s the timers
//    embedded in h2o_context_t with no close callback. So the context is disposed only after
//    the last connection has closed, and the memory holding it is freed two idle turns of the
//    loop later, when libuv has run the closing-handle phase for those timers.
//  - h2o 2.2 reads a request body whole before the handler runs (no streaming bodies); its
//    own limit (max_request_entity_size) answers 413 before reading a body whose
//    Content-Length is too large, and while a chunked body grows past it. Its error responses
//    are text; a filter turns them into our JSON shape.
//  - While a request is being answered, h2o 2.2 does not read from its connection: a client
//    that leaves during an event stream is noticed only when a write fails. Idle streams get a
//    comment line every sse_heartbeat_ms for that reason.

namespace {

const char* ReasonPhrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 303:
      return "See Other";
    case 304:
      return "Not Modified";
    case 307:
      return "Temporary Redirect";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 410:
      return "Gone";
    case 413:
      return "Payload Too Large";
    case 414:
      return "URI Too Long";
    case 415:
      return "Unsupported Media Type";
    case 422:
      return "Unprocessable Entity";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return status < 400 ? "OK" : (status < 500 ? "Client Error" : "Server Error");
  }
}

bool HasCrLf(std::string_view s) {
  return s.find('\r') != std::string_view::npos || s.find('\n') != std::string_view::npos;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// application/x-www-form-urlencoded decoding ('+' is a space).
std::string FormDecode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out.push_back(' ');
    } else if (s[i] == '%' && i + 2 < s.size() && HexValue(s[i + 1]) >= 0 &&
               HexValue(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(HexValue(s[i + 1]) * 16 + HexValue(s[i + 2])));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

std::string FormatPeer(const sockaddr* sa) {
  char host[INET6_ADDRSTRLEN] = {0};
  if (sa->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    uv_ip4_name(in, host, sizeof(host));
    return std::string(host) + ":" + std::to_string(ntohs(in->sin_port));
  }
  if (sa->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    uv_ip6_name(in6, host, sizeof(host));
    return "[" + std::string(host) + "]:" + std::to_string(ntohs(in6->sin6_port));
  }
  return "?";
}

std::string_view ContentTypeFor(std::string_view path) {
  size_t dot = path.rfind('.');
  size_t slash = path.rfind('/');
  if (dot == std::string_view::npos || (slash != std::string_view::npos && dot < slash)) {
    return "application/octet-stream";
  }
  std::string ext = Lower(path.substr(dot + 1));
  if (ext == "html" || ext == "htm") return "text/html; charset=utf-8";
  if (ext == "js" || ext == "mjs") return "text/javascript; charset=utf-8";
  if (ext == "css") return "text/css; charset=utf-8";
  if (ext == "svg") return "image/svg+xml";
  if (ext == "png") return "image/png";
  if (ext == "json" || ext == "map") return "application/json";
  if (ext == "ico") return "image/x-icon";
  if (ext == "txt") return "text/plain; charset=utf-8";
  if (ext == "woff2") return "font/woff2";
  if (ext == "woff") return "font/woff";
  if (ext == "jpg" || ext == "jpeg") return "image/jpeg";
  if (ext == "webp") return "image/webp";
  return "application/octet-stream";
}

h2o_iovec_t PoolCopy(h2o_req_t* req, std::string_view s) {
  return h2o_strdup(&req->pool, s.data(), s.size());
}

double MillisBetween(const timeval& from, const timeval& to) {
  if (from.tv_sec == 0 || to.tv_sec == 0) return 0;
  return static_cast<double>(to.tv_sec - from.tv_sec) * 1000.0 +
         static_cast<double>(to.tv_usec - from.tv_usec) / 1000.0;
}

// Files larger than this are not served (the UI's bundles are far smaller).
constexpr off_t kMaxStaticFileBytes = 64 << 20;

}  // namespace

std::string_view HttpRequest::Header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (EqualsIgnoreCase(k, name)) return v;
  }
  return {};
}

std::string HttpRequest::QueryParam(std::string_view key) const {
  std::string_view q(query);
  while (!q.empty()) {
    size_t amp = q.find('&');
    std::string_view pair = q.substr(0, amp);
    q = amp == std::string_view::npos ? std::string_view() : q.substr(amp + 1);
    size_t eq = pair.find('=');
    std::string k = FormDecode(pair.substr(0, eq));
    if (k == key)
      return eq == std::string_view::npos ? std::string() : FormDecode(pair.substr(eq + 1));
  }
  return {};
}

HttpResponse HttpResponse::Json(std::string body, int status) {
  HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

HttpResponse HttpResponse::Text(std::string body, int status, std::string content_type) {
  HttpResponse r;
  r.status = status;
  r.content_type = std::move(content_type);
  r.body = std::move(body);
  return r;
}

HttpResponse HttpResponse::Error(int status, std::string_view message) {
  return Json("{\"error\": " + JsonQuote(message) + "}", status);
}

int HttpStatusFor(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return 200;
    case StatusCode::kInvalidArgument:
      return 400;
    case StatusCode::kNotFound:
      return 404;
    case StatusCode::kRejected:
      return 403;
    case StatusCode::kUnauthenticated:
      return 401;
    case StatusCode::kUnavailable:
      return 503;
    case StatusCode::kTimeout:
      return 504;
    case StatusCode::kProtocolError:
      return 502;
    case StatusCode::kIoError:
    case StatusCode::kInternal:
      return 500;
  }
  return 500;
}

std::string JsonQuote(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  out.push_back('"');
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      switch (c) {
        case '"':
          out += "\\\"";
          break;
        case '\\':
          out += "\\\\";
          break;
        case '\n':
          out += "\\n";
          break;
        case '\r':
          out += "\\r";
          break;
        case '\t':
          out += "\\t";
          break;
        default:
          if (c < 0x20 || c == 0x7f) {
            char buf[8];
            std::snprintf(buf, sizeof(buf), "\\u%04x", c);
            out += buf;
          } else {
            out.push_back(static_cast<char>(c));
          }
      }
      ++i;
      continue;
    }
    // A well-formed UTF-8 sequence is copied; anything else becomes U+FFFD.
    size_t len = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c <= 0xdf ? 2 : 0;
    if (c >= 0xf5) len = 0;
    bool ok = len != 0 && i + len <= s.size();
    for (size_t k = 1; ok && k < len; ++k) {
      ok = (static_cast<unsigned char>(s[i + k]) & 0xc0) == 0x80;
    }
    if (ok && len == 3) {
      auto c1 = static_cast<unsigned char>(s[i + 1]);
      ok = !(c == 0xe0 && c1 < 0xa0) && !(c == 0xed && c1 >= 0xa0);  // overlong, surrogates
    }
    if (ok && len == 4) {
      auto c1 = static_cast<unsigned char>(s[i + 1]);
      ok = !(c == 0xf0 && c1 < 0x90) && !(c == 0xf4 && c1 >= 0x90);
    }
    if (ok) {
      out.append(s.substr(i, len));
      i += len;
    } else {
      out += "\xef\xbf\xbd";
      ++i;
    }
  }
  out.push_back('"');
  return out;
}

// ---------------------------------------------------------------------------------------------
// Internals.

namespace {

struct Route {
  std::string method;
  std::string prefix;
  HttpServer::Handler handler;
  HttpServer::DeferredHandler deferred;
  HttpServer::StreamHandler stream;
  std::string static_root;  // ServeDirectory: realpath of the folder
};

bool PrefixMatches(const std::string& prefix, std::string_view path) {
  if (path.compare(0, prefix.size(), prefix) != 0) return false;
  if (prefix.back() == '/' || path.size() == prefix.size()) return true;
  return path[prefix.size()] == '/';
}

}  // namespace

struct HttpServer::Stream::Impl {
  struct Generator {
    h2o_generator_t gen;  // first: h2o hands this pointer back to proceed() and stop()
    Impl* self;
  };
  Generator generator{};
  HttpServer::Core* core = nullptr;
  h2o_req_t* req = nullptr;
  std::shared_ptr<Stream> stream;  // keeps the Stream alive while the response runs
  std::string inflight;            // handed to h2o; must stay put until proceed()
  std::string pending;             // queued behind it
  bool started = false;            // response headers sent
  bool writing = false;
  bool closing = false;      // end the response once `pending` is out
  bool server_stop = false;  // ending because the server stops (on_close is called)
  bool dead = false;         // the connection is being cut (too slow); nothing more is sent
};

// One deferred request waiting for its answer. `core` and `req` are cleared once it is answered
// (by the application, by Stop(), or by this destructor when the application dropped it).
struct HttpServer::Responder::State {
  HttpServer::Core* core = nullptr;
  h2o_req_t* req = nullptr;
  ~State();
};

struct HttpServer::Core {
  struct ConnBlock {
    uv_tcp_t tcp;  // first: h2o's close callback hands us this handle
    Core* core;
  };
  struct ListenerBlock {
    uv_tcp_t tcp;
  };
  struct HandlerExt {
    h2o_handler_t super;
    Core* core;
  };
  struct FilterExt {
    h2o_filter_t super;
    Core* core;
  };
  struct LoggerExt {
    h2o_logger_t super;
    Core* core;
  };
  struct JsonErrorOstream {
    h2o_ostream_t super;
    h2o_iovec_t body;
    bool head;
  };
  struct IdleBlock {
    uv_idle_t idle;
    Core* core;
    int turns;
  };

  Core(uv_loop_t* l, HttpServerOptions o)
      : loop(l),
        options(std::move(o)),
        heartbeat(std::make_unique<Timer>(l)),
        grace(std::make_unique<Timer>(l)) {
    h2o_config_init(&config);
    config.max_request_entity_size = options.max_body_bytes;
    config.http1.req_timeout = options.request_timeout_ms;
    config.http1.upgrade_to_http2 = 0;           // HTTP/1.1 only
    config.server_name = h2o_iovec_init("", 0);  // no Server header
    h2o_hostconf_t* host = h2o_config_register_host(&config, h2o_iovec_init("default", 7), 65535);
    h2o_pathconf_t* root = h2o_config_register_path(host, "/", 0);
    auto* handler = reinterpret_cast<HandlerExt*>(h2o_create_handler(root, sizeof(HandlerExt)));
    handler->super.on_req = &Core::OnRequest;
    handler->core = this;
    for (h2o_pathconf_t* pc : {root, &host->fallback_path}) {
      auto* filter = reinterpret_cast<FilterExt*>(h2o_create_filter(pc, sizeof(FilterExt)));
      filter->super.on_setup_ostream = &Core::OnSetupOstream;
      filter->core = this;
      auto* logger = reinterpret_cast<LoggerExt*>(h2o_create_logger(pc, sizeof(LoggerExt)));
      logger->super.log_access = &Core::OnLogAccess;
      logger->core = this;
    }
    h2o_context_init(&ctx, loop, &config);
    std::memset(&accept_ctx, 0, sizeof(accept_ctx));
    accept_ctx.ctx = &ctx;
    accept_ctx.hosts = config.hosts;
    if (options.sse_heartbeat_ms > 0) {
      heartbeat->Start(options.sse_heartbeat_ms, options.sse_heartbeat_ms, [this] { Heartbeat(); });
      heartbeat->Unref();
    }
  }

  ~Core() { h2o_config_dispose(&config); }

  // --- connections --------------------------------------------------------------------------

  static void OnConnection(uv_stream_t* server, int status) noexcept {
    auto* core = static_cast<Core*>(server->data);
    if (status < 0) {
      spdlog::warn("[http] {}: accept: {}", core->options.name, uv_strerror(status));
      return;
    }
    auto* c = new ConnBlock{};
    c->core = core;
    uv_tcp_init(core->loop, &c->tcp);
    auto free_block = [](uv_handle_t* h) { delete reinterpret_cast<ConnBlock*>(h); };
    if (uv_accept(server, reinterpret_cast<uv_stream_t*>(&c->tcp)) != 0) {
      uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp), free_block);
      return;
    }
    if (core->stopping || core->conns.size() >= core->options.max_connections) {
      spdlog::warn("[http] {}: connection refused: {}", core->options.name,
                   core->stopping ? "stopping" : "too many connections");
      uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp), free_block);
      return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    core->conns.insert(c);
    h2o_socket_t* sock =
        h2o_uv_socket_create(reinterpret_cast<uv_stream_t*>(&c->tcp), &Core::OnConnectionClosed);
    h2o_accept(&core->accept_ctx, sock);
  }

  static void OnConnectionClosed(uv_handle_t* h) noexcept {
    auto* c = reinterpret_cast<ConnBlock*>(h);
    Core* core = c->core;
    core->conns.erase(c);
    delete c;
    core->MaybeFinish();
  }

  static void ShutdownConnection(ConnBlock* c, int how) {
    uv_os_fd_t fd;
    if (uv_fileno(reinterpret_cast<uv_handle_t*>(&c->tcp), &fd) == 0) ::shutdown(fd, how);
  }

  // --- requests -----------------------------------------------------------------------------

  static int OnRequest(h2o_handler_t* self, h2o_req_t* req) noexcept {
    Core* core = reinterpret_cast<HandlerExt*>(self)->core;
    try {
      core->Serve(req);
    } catch (const std::exception& e) {
      // Only our own code can get here (handlers are caught in Serve): out of memory, say.
      spdlog::error("[http] {}: internal error: {}", core->options.name, e.what());
      core->Send(req, HttpResponse::Error(500, "internal error"));
    } catch (...) {
      spdlog::error("[http] {}: internal error", core->options.name);
      core->Send(req, HttpResponse::Error(500, "internal error"));
    }
    return 0;
  }

  void Serve(h2o_req_t* req) {
    if (stopping) {
      req->http1_is_persistent = 0;
      return Send(req, HttpResponse::Error(503, "server is stopping"));
    }
    if (req->input.path.len > options.max_url_bytes) {
      return Send(req,
                  HttpResponse::Error(414, "request target longer than " +
                                               std::to_string(options.max_url_bytes) + " bytes"));
    }
    size_t header_bytes = 0;
    for (size_t i = 0; i < req->headers.size; ++i) {
      header_bytes += req->headers.entries[i].name->len + req->headers.entries[i].value.len + 4;
    }
    if (header_bytes > options.max_header_bytes) {
      return Send(
          req, HttpResponse::Error(431, "request headers larger than " +
                                            std::to_string(options.max_header_bytes) + " bytes"));
    }
    HttpRequest r;
    r.method.assign(req->method.base, req->method.len);
    r.path.assign(req->path_normalized.base, req->path_normalized.len);
    if (req->query_at != SIZE_MAX && req->query_at < req->path.len) {
      r.query.assign(req->path.base + req->query_at + 1, req->path.len - req->query_at - 1);
    }
    r.headers.reserve(req->headers.size);
    for (size_t i = 0; i < req->headers.size; ++i) {
      const h2o_header_t& h = req->headers.entries[i];
      r.headers.emplace_back(Lower(std::string_view(h.name->base, h.name->len)),
                             std::string(h.value.base, h.value.len));
    }
    // h2o keeps HTTP/1's Host header as the request's authority only; handlers see it as
    // "host" (the session API compares a browser's Origin with it).
    if (req->authority.base != nullptr && r.Header("host").empty()) {
      r.headers.emplace_back("host", std::string(req->authority.base, req->authority.len));
    }
    if (req->entity.base != nullptr) r.body.assign(req->entity.base, req->entity.len);
    sockaddr_storage ss{};
    if (req->conn->callbacks->get_peername(req->conn, reinterpret_cast<sockaddr*>(&ss)) != 0) {
      r.peer = FormatPeer(reinterpret_cast<sockaddr*>(&ss));
    }

    // The longest matching prefix; then the method.
    size_t best = 0;
    bool any = false;
    for (const auto& route : routes) {
      if (PrefixMatches(route->prefix, r.path) && (!any || route->prefix.size() > best)) {
        best = route->prefix.size();
        any = true;
      }
    }
    if (!any) return Send(req, HttpResponse::Error(404, "no such resource: " + r.path));
    std::shared_ptr<Route> chosen;
    std::vector<std::string> allowed;
    for (const auto& route : routes) {
      if (route->prefix.size() != best || !PrefixMatches(route->prefix, r.path)) continue;
      for (const std::string& m :
           {route->method, std::string(route->method == "GET" ? "HEAD" : "")}) {
        if (!m.empty() && std::find(allowed.begin(), allowed.end(), m) == allowed.end()) {
          allowed.push_back(m);
        }
      }
      if (!chosen &&
          (route->method == r.method || (r.method == "HEAD" && route->method == "GET"))) {
        chosen = route;  // shared: a handler may add routes while it runs
      }
    }
    if (!chosen) {
      std::string allow;
      for (const std::string& m : allowed) allow += (allow.empty() ? "" : ", ") + m;
      HttpResponse res =
          HttpResponse::Error(405, "method " + r.method + " not allowed on " + r.path);
      res.headers.emplace_back("allow", allow);
      return Send(req, std::move(res));
    }
    std::string_view rest(r.path);
    rest.remove_prefix(std::min(chosen->prefix.size(), rest.size()));
    while (!rest.empty() && rest.front() == '/') rest.remove_prefix(1);
    r.rest = std::string(rest);

    if (!chosen->static_root.empty()) return Send(req, ServeFile(*chosen, r));
    if (chosen->stream && r.method == "HEAD") {
      return Send(req, HttpResponse::Text("", 200, "text/event-stream"));
    }
    if (chosen->stream) return StartStream(req, *chosen, std::move(r));
    if (chosen->deferred) return StartDeferred(req, *chosen, r);

    HttpResponse res;
    try {
      Result<HttpResponse> out = chosen->handler(r);
      if (out.ok()) {
        res = std::move(out).value();
      } else {
        res = HttpResponse::Error(HttpStatusFor(out.status().code()), out.status().message());
      }
    } catch (const std::exception& e) {
      spdlog::error("[http] {}: handler for {} {} threw: {}", options.name, r.method, r.path,
                    e.what());
      res = HttpResponse::Error(500, "internal error");
    } catch (...) {
      spdlog::error("[http] {}: handler for {} {} threw", options.name, r.method, r.path);
      res = HttpResponse::Error(500, "internal error");
    }
    Send(req, std::move(res));
  }

  void StartDeferred(h2o_req_t* req, const Route& route, const HttpRequest& r) {
    auto state = std::make_shared<Responder::State>();
    state->core = this;
    state->req = req;
    waiting.insert(state.get());
    Responder responder;
    responder.state_ = state;
    state.reset();
    try {
      route.deferred(r, responder);
    } catch (const std::exception& e) {
      spdlog::error("[http] {}: handler for {} {} threw: {}", options.name, r.method, r.path,
                    e.what());
      responder.Send(Status::Internal("internal error"));
    } catch (...) {
      spdlog::error("[http] {}: handler for {} {} threw", options.name, r.method, r.path);
      responder.Send(Status::Internal("internal error"));
    }
  }

  // Sends a deferred request's answer once; later calls find it answered and do nothing.
  void Answer(Responder::State* state, HttpResponse res) {
    if (state->req == nullptr) return;
    h2o_req_t* req = state->req;
    state->req = nullptr;
    state->core = nullptr;
    waiting.erase(state);
    if (stopping) req->http1_is_persistent = 0;
    Send(req, std::move(res));
  }

  void AddResponseHeaders(h2o_req_t* req, const HttpResponse& res) {
    if (!res.content_type.empty() && !HasCrLf(res.content_type)) {
      h2o_iovec_t v = PoolCopy(req, res.content_type);
      h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, nullptr, v.base, v.len);
    }
    // No page of ours is meant to be framed: the panel's one-click actions must not be
    // clickable through someone else's page (X-Frame-Options for older browsers, the CSP
    // directive for current ones).
    h2o_add_header_by_str(&req->pool, &req->res.headers, "x-content-type-options", 22, 0, nullptr,
                          "nosniff", 7);
    h2o_add_header_by_str(&req->pool, &req->res.headers, "x-frame-options", 15, 0, nullptr, "DENY",
                          4);
    h2o_add_header_by_str(&req->pool, &req->res.headers, "content-security-policy", 23, 0, nullptr,
                          "frame-ancestors 'none'", 22);
    for (const auto& [name, value] : res.headers) {
      if (name.empty() || HasCrLf(name) || HasCrLf(value) || name.find(':') != std::string::npos) {
        spdlog::warn("[http] {}: response header '{}' dropped (CR, LF or ':' in it)", options.name,
                     JsonQuote(name));
        continue;
      }
      h2o_iovec_t n = PoolCopy(req, Lower(name));
      h2o_iovec_t v = PoolCopy(req, value);
      h2o_add_header_by_str(&req->pool, &req->res.headers, n.base, n.len, 1, nullptr, v.base,
                            v.len);
    }
  }

  void Send(h2o_req_t* req, HttpResponse res) {
    int status = res.status < 100 || res.status > 999 ? 500 : res.status;
    req->res.status = status;
    req->res.reason = ReasonPhrase(status);
    req->res.content_length = res.body.size();
    AddResponseHeaders(req, res);
    answering = req;
    h2o_send_inline(req, res.body.data(), res.body.size());
    answering = nullptr;
  }

  // h2o's own error responses (413, 400 on a broken body, 417...) are text; make them JSON.
  static void OnSetupOstream(h2o_filter_t* self, h2o_req_t* req, h2o_ostream_t** slot) noexcept {
    Core* core = reinterpret_cast<FilterExt*>(self)->core;
    if (core->answering != req && req->res.status >= 400) {
      std::string message;
      if (req->res.status == 413) {
        message =
            "request body larger than " + std::to_string(core->options.max_body_bytes) + " bytes";
      } else {
        message = Lower(req->res.reason != nullptr ? req->res.reason : "error");
      }
      std::string json = "{\"error\": " + JsonQuote(message) + "}";
      req->res.content_length = json.size();
      h2o_set_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, "application/json", 16,
                     1);
      auto* os =
          reinterpret_cast<JsonErrorOstream*>(h2o_add_ostream(req, sizeof(JsonErrorOstream), slot));
      os->super.do_send = &Core::JsonErrorSend;
      os->body = PoolCopy(req, json);
      os->head = req->input.method.len == 4 && std::memcmp(req->input.method.base, "HEAD", 4) == 0;
      slot = &os->super.next;
    }
    h2o_setup_next_ostream(req, slot);
  }

  static void JsonErrorSend(h2o_ostream_t* self, h2o_req_t* req, h2o_iovec_t*, size_t,
                            h2o_send_state_t state) noexcept {
    auto* os = reinterpret_cast<JsonErrorOstream*>(self);
    if (h2o_send_state_is_in_progress(state) || os->head) {
      h2o_ostream_send_next(self, req, nullptr, 0, state);
    } else {
      h2o_ostream_send_next(self, req, &os->body, 1, state);
    }
  }

  static void OnLogAccess(h2o_logger_t* self, h2o_req_t* req) noexcept {
    Core* core = reinterpret_cast<LoggerExt*>(self)->core;
    if (!spdlog::should_log(spdlog::level::debug)) return;
    sockaddr_storage ss{};
    std::string peer = "?";
    if (req->conn->callbacks->get_peername(req->conn, reinterpret_cast<sockaddr*>(&ss)) != 0) {
      peer = FormatPeer(reinterpret_cast<sockaddr*>(&ss));
    }
    std::string_view method(req->input.method.base, req->input.method.len);
    std::string_view path(req->input.path.base, std::min<size_t>(req->input.path.len, 200));
    spdlog::debug("[http] {} {} {} {} {} {}B {:.1f}ms", core->options.name, peer, method, path,
                  req->res.status, req->bytes_sent,
                  MillisBetween(req->timestamps.request_begin_at, req->timestamps.response_end_at));
  }

  // --- static files -------------------------------------------------------------------------

  HttpResponse ServeFile(const Route& route, const HttpRequest& r) {
    std::string_view rest(r.rest);
    size_t start = 0;
    while (start <= rest.size()) {
      size_t end = rest.find('/', start);
      if (end == std::string_view::npos) end = rest.size();
      std::string_view seg = rest.substr(start, end - start);
      if (!seg.empty() && (seg.front() == '.' || seg.find('\0') != std::string_view::npos ||
                           seg.find('\\') != std::string_view::npos)) {
        return HttpResponse::Error(400, "bad path");
      }
      start = end + 1;
    }
    std::string path = route.static_root + "/" + std::string(rest);
    if (rest.empty() || rest.back() == '/') path += "index.html";
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) path += "/index.html";
    char resolved[PATH_MAX];
    if (::realpath(path.c_str(), resolved) == nullptr) {
      return HttpResponse::Error(404, "no such file: " + r.path);
    }
    std::string real(resolved);
    if (real.compare(0, route.static_root.size() + 1, route.static_root + "/") != 0) {
      spdlog::warn("[http] {}: {} asked for {} outside {}", options.name, r.peer, r.path,
                   route.static_root);
      return HttpResponse::Error(404, "no such file: " + r.path);
    }
    int fd = ::open(real.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return HttpResponse::Error(404, "no such file: " + r.path);
    HttpResponse res;
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > kMaxStaticFileBytes) {
      ::close(fd);
      return HttpResponse::Error(404, "no such file: " + r.path);
    }
    res.body.resize(static_cast<size_t>(st.st_size));
    size_t got = 0;
    while (got < res.body.size()) {
      ssize_t n = ::read(fd, res.body.data() + got, res.body.size() - got);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      got += static_cast<size_t>(n);
    }
    ::close(fd);
    if (got != res.body.size()) return HttpResponse::Error(500, "cannot read " + r.path);
    res.content_type = std::string(ContentTypeFor(real));
    res.headers.emplace_back("cache-control", "no-cache");
    return res;
  }

  // --- event streams ------------------------------------------------------------------------

  void StartStream(h2o_req_t* req, const Route& route, HttpRequest r) {
    auto stream = std::shared_ptr<Stream>(new Stream());
    stream->peer_ = r.peer;
    auto* impl = new Stream::Impl();
    impl->generator.gen.proceed = &Core::StreamProceed;
    impl->generator.gen.stop = &Core::StreamStop;
    impl->generator.self = impl;
    impl->core = this;
    impl->req = req;
    impl->stream = stream;
    stream->impl_ = impl;
    streams.insert(impl);
    Status st;
    try {
      st = route.stream(r, stream);
    } catch (const std::exception& e) {
      spdlog::error("[http] {}: stream handler for {} threw: {}", options.name, r.path, e.what());
      st = Status::Internal("internal error");
    } catch (...) {
      spdlog::error("[http] {}: stream handler for {} threw", options.name, r.path);
      st = Status::Internal("internal error");
    }
    if (!st.ok()) {
      streams.erase(impl);
      stream->impl_ = nullptr;
      delete impl;
      return Send(req, HttpResponse::Error(HttpStatusFor(st.code()), st.message()));
    }
    req->res.status = 200;
    req->res.reason = "OK";
    HttpResponse head;
    head.content_type = "text/event-stream";
    head.headers = {{"cache-control", "no-cache"}, {"x-accel-buffering", "no"}};
    AddResponseHeaders(req, head);
    if (stopping) {
      impl->closing = true;
      impl->server_stop = true;
      req->http1_is_persistent = 0;
    }
    answering = req;
    h2o_start_response(req, &impl->generator.gen);
    answering = nullptr;
    impl->started = true;
    impl->pending.insert(0, ": stream open\n\n");  // sends the headers now
    spdlog::debug("[http] {} {} stream {} open", options.name, r.peer, r.path);
    Flush(impl);
  }

  // Hands the queued text to h2o when no write is in flight; ends the response when asked.
  void Flush(Stream::Impl* impl) {
    if (!impl->started || impl->writing) return;
    if (!impl->pending.empty() && !impl->dead) {
      impl->inflight.swap(impl->pending);
      impl->pending.clear();
      impl->writing = true;
      h2o_iovec_t buf = h2o_iovec_init(impl->inflight.data(), impl->inflight.size());
      h2o_send(impl->req, &buf, 1, H2O_SEND_STATE_IN_PROGRESS);
      return;
    }
    if (impl->closing && !impl->dead) {
      // FINAL first: it clears the request's generator, so h2o will not call StreamStop.
      h2o_send(impl->req, nullptr, 0, H2O_SEND_STATE_FINAL);
      EndStream(impl, impl->server_stop);
    }
  }

  // Detaches and frees the stream's state; calls on_close if `notify` and the application did
  // not close it itself.
  void EndStream(Stream::Impl* impl, bool notify) {
    streams.erase(impl);
    std::shared_ptr<Stream> stream = std::move(impl->stream);
    stream->impl_ = nullptr;
    delete impl;
    spdlog::debug("[http] {} {} stream closed", options.name, stream->peer_);
    if (notify && !stream->app_closed_ && stream->on_close_) {
      auto cb = std::move(stream->on_close_);
      try {
        cb();
      } catch (...) {
        spdlog::error("[http] {}: a stream's on_close threw", options.name);
      }
    }
  }

  static void StreamProceed(h2o_generator_t* gen, h2o_req_t*) noexcept {
    Stream::Impl* impl = reinterpret_cast<Stream::Impl::Generator*>(gen)->self;
    impl->writing = false;
    impl->inflight.clear();
    impl->core->Flush(impl);
  }

  // The connection is going away under the response (client left, write failed).
  static void StreamStop(h2o_generator_t* gen, h2o_req_t*) noexcept {
    Stream::Impl* impl = reinterpret_cast<Stream::Impl::Generator*>(gen)->self;
    impl->core->EndStream(impl, true);
  }

  void Heartbeat() {
    std::vector<Stream::Impl*> list(streams.begin(), streams.end());
    for (Stream::Impl* impl : list) {
      if (impl->started && !impl->writing && !impl->closing && impl->pending.empty()) {
        impl->pending = ":\n\n";
        Flush(impl);
      }
    }
  }

  // A client that reads slower than events come: cut its connection (its write then fails
  // and StreamStop runs).
  void CutStream(Stream::Impl* impl) {
    spdlog::warn("[http] {}: event stream to {} cut: the client reads too slowly ({} bytes queued)",
                 options.name, impl->stream->peer_, impl->pending.size());
    impl->dead = true;
    impl->pending.clear();
    h2o_socket_t* sock = impl->req->conn->callbacks->get_socket(impl->req->conn);
    if (sock != nullptr) ::shutdown(h2o_socket_get_fd(sock), SHUT_RDWR);
  }

  // --- shutdown -----------------------------------------------------------------------------

  void Stop() {
    if (stopping) return;
    stopping = true;
    ctx.shutdown_requested = 1;  // h2o: no keep-alive for requests parsed from now on
    for (ListenerBlock* l : listeners) {
      uv_close(reinterpret_cast<uv_handle_t*>(&l->tcp),
               [](uv_handle_t* h) { delete reinterpret_cast<ListenerBlock*>(h); });
    }
    listeners.clear();
    std::vector<Stream::Impl*> list(streams.begin(), streams.end());
    for (Stream::Impl* impl : list) {
      impl->closing = true;
      impl->server_stop = true;
      impl->req->http1_is_persistent = 0;
      Flush(impl);
    }
    // Requests still waiting for the application: their connections close after this answer.
    std::vector<Responder::State*> pending(waiting.begin(), waiting.end());
    for (Responder::State* state : pending) {
      Answer(state, HttpResponse::Error(503, "server is stopping"));
    }
    for (ConnBlock* c : conns) ShutdownConnection(c, SHUT_RD);
    if (!conns.empty()) {
      spdlog::debug("[http] {}: stopping, {} connections to close", options.name, conns.size());
      grace->Start(options.stop_grace_ms, 0, [this] {
        for (ConnBlock* c : conns) ShutdownConnection(c, SHUT_RDWR);
      });
    }
    MaybeFinish();
  }

  void MaybeFinish() {
    if (!stopping || disposed || !conns.empty()) return;
    disposed = true;
    grace.reset();  // Timer closes its handle; safe inside its own callback
    heartbeat.reset();
    h2o_context_dispose(&ctx);
    // h2o closed the timers inside `ctx` without a close callback: free this only after the
    // loop has finished closing them (closing handles run at the end of a loop turn, idle
    // callbacks early in the next one; two idle turns cover a dispose from any phase).
    auto* b = new IdleBlock{};
    b->core = this;
    uv_idle_init(loop, &b->idle);
    b->idle.data = b;
    uv_idle_start(&b->idle, [](uv_idle_t* h) {
      auto* block = static_cast<IdleBlock*>(h->data);
      if (++block->turns < 2) return;
      uv_idle_stop(h);
      Core* core = block->core;
      core->memory_released = true;
      uv_close(reinterpret_cast<uv_handle_t*>(h),
               [](uv_handle_t* closed) { delete static_cast<IdleBlock*>(closed->data); });
      if (core->owner_gone) delete core;
    });
  }

  uv_loop_t* loop;
  HttpServerOptions options;
  h2o_globalconf_t config;
  h2o_context_t ctx;
  h2o_accept_ctx_t accept_ctx;
  std::vector<ListenerBlock*> listeners;
  int first_port = 0;
  std::unordered_set<ConnBlock*> conns;
  std::unordered_set<Stream::Impl*> streams;
  std::unordered_set<Responder::State*> waiting;  // deferred requests not yet answered
  std::vector<std::shared_ptr<Route>> routes;
  std::unique_ptr<Timer> heartbeat;  // null once stopped
  std::unique_ptr<Timer> grace;
  h2o_req_t* answering = nullptr;  // the request we are answering now (the filter skips it)
  bool stopping = false;
  bool disposed = false;         // h2o context disposed
  bool memory_released = false;  // ...and libuv is done with the handles inside it
  bool owner_gone = false;       // the HttpServer was destroyed
};

// ---------------------------------------------------------------------------------------------

HttpServer::Stream::~Stream() = default;

HttpServer::Responder::State::~State() {
  if (core == nullptr || req == nullptr) return;
  spdlog::error("[http] {}: a deferred request was dropped without an answer", core->options.name);
  core->Answer(this, HttpResponse::Error(500, "internal error: no answer"));
}

void HttpServer::Responder::Send(Result<HttpResponse> response) const {
  if (!state_ || state_->core == nullptr) return;
  HttpResponse res;
  if (response.ok()) {
    res = std::move(response).value();
  } else {
    res = HttpResponse::Error(HttpStatusFor(response.status().code()), response.status().message());
  }
  state_->core->Answer(state_.get(), std::move(res));
}

bool HttpServer::Responder::pending() const { return state_ && state_->core != nullptr; }

bool HttpServer::Stream::open() const {
  return impl_ != nullptr && !impl_->closing && !impl_->dead;
}

bool HttpServer::Stream::Send(std::string_view data, std::string_view event, std::string_view id) {
  if (!open()) return false;
  auto clean = [](std::string_view s) {
    std::string out(s);
    out.erase(std::remove_if(out.begin(), out.end(), [](char c) { return c == '\r' || c == '\n'; }),
              out.end());
    return out;
  };
  std::string& out = impl_->pending;
  if (!id.empty()) out += "id: " + clean(id) + "\n";
  if (!event.empty()) out += "event: " + clean(event) + "\n";
  size_t start = 0;
  while (true) {
    size_t nl = data.find('\n', start);
    std::string_view line = data.substr(start, nl == std::string_view::npos ? nl : nl - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    out += "data: ";
    out += line;
    out += "\n";
    if (nl == std::string_view::npos) break;
    start = nl + 1;
  }
  out += "\n";
  if (out.size() > impl_->core->options.sse_max_pending_bytes) {
    impl_->core->CutStream(impl_);
    return false;
  }
  impl_->core->Flush(impl_);
  return true;
}

void HttpServer::Stream::Close() {
  if (impl_ == nullptr || impl_->closing) return;
  app_closed_ = true;
  impl_->closing = true;
  impl_->core->Flush(impl_);
}

HttpServer::HttpServer(uv_loop_t* loop, HttpServerOptions options)
    : core_(new Core(loop, std::move(options))) {
  // libuv writes to sockets with writev(): a client that has gone would raise SIGPIPE and
  // kill the process. Ignore it unless someone installed a handler.
  struct sigaction current {};
  if (sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL) {
    std::signal(SIGPIPE, SIG_IGN);
  }
}

HttpServer::~HttpServer() {
  core_->Stop();
  core_->owner_gone = true;
  if (core_->memory_released) delete core_;
}

Status HttpServer::Listen(const std::string& address) {
  if (core_->stopping) return Status::InvalidArgument("http server: stopped");
  size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon + 1 >= address.size()) {
    return Status::InvalidArgument("listen address '" + address +
                                   "': expected HOST:PORT (127.0.0.1:8080, [::1]:8080)");
  }
  std::string host = address.substr(0, colon);
  std::string port_text = address.substr(colon + 1);
  char* end = nullptr;
  long port = std::strtol(port_text.c_str(), &end, 10);
  if (*end != '\0' || port < 0 || port > 65535) {
    return Status::InvalidArgument("listen address '" + address + "': bad port '" + port_text +
                                   "'");
  }
  sockaddr_storage ss{};
  bool v6 = host.size() >= 2 && host.front() == '[' && host.back() == ']';
  int rc =
      v6 ? uv_ip6_addr(host.substr(1, host.size() - 2).c_str(), static_cast<int>(port),
                       reinterpret_cast<sockaddr_in6*>(&ss))
         : uv_ip4_addr(host.c_str(), static_cast<int>(port), reinterpret_cast<sockaddr_in*>(&ss));
  if (rc != 0) {
    return Status::InvalidArgument("listen address '" + address +
                                   "': not a numeric IPv4 address or [IPv6] address");
  }
  auto* l = new Core::ListenerBlock{};
  uv_tcp_init(core_->loop, &l->tcp);
  l->tcp.data = core_;
  auto fail = [&](const char* what, int err) {
    uv_close(reinterpret_cast<uv_handle_t*>(&l->tcp),
             [](uv_handle_t* h) { delete reinterpret_cast<Core::ListenerBlock*>(h); });
    return UvError(what, err).WithContext("http server " + address);
  };
  rc = uv_tcp_bind(&l->tcp, reinterpret_cast<sockaddr*>(&ss), v6 ? UV_TCP_IPV6ONLY : 0);
  if (rc != 0) return fail("bind", rc);
  rc = uv_listen(reinterpret_cast<uv_stream_t*>(&l->tcp), 511, &Core::OnConnection);
  if (rc != 0) return fail("listen", rc);
  sockaddr_storage bound{};
  int len = sizeof(bound);
  rc = uv_tcp_getsockname(&l->tcp, reinterpret_cast<sockaddr*>(&bound), &len);
  if (rc != 0) return fail("getsockname", rc);
  int bound_port = bound.ss_family == AF_INET6
                       ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                       : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  if (core_->listeners.empty()) core_->first_port = bound_port;
  core_->listeners.push_back(l);
  spdlog::info("[http] {}: listening on {}", core_->options.name,
               FormatPeer(reinterpret_cast<sockaddr*>(&bound)));
  return Status::OK();
}

int HttpServer::port() const { return core_->first_port; }

namespace {
std::string CleanPrefix(std::string prefix) {
  if (prefix.empty() || prefix.front() != '/') prefix.insert(0, "/");
  return prefix;
}
}  // namespace

void HttpServer::Handle(std::string method, std::string path_prefix, Handler handler) {
  auto r = std::make_shared<Route>();
  r->method = std::move(method);
  r->prefix = CleanPrefix(std::move(path_prefix));
  r->handler = std::move(handler);
  core_->routes.push_back(std::move(r));
}

void HttpServer::HandleDeferred(std::string method, std::string path_prefix,
                                DeferredHandler handler) {
  auto r = std::make_shared<Route>();
  r->method = std::move(method);
  r->prefix = CleanPrefix(std::move(path_prefix));
  r->deferred = std::move(handler);
  core_->routes.push_back(std::move(r));
}

void HttpServer::HandleStream(std::string path_prefix, StreamHandler handler) {
  auto r = std::make_shared<Route>();
  r->method = "GET";
  r->prefix = CleanPrefix(std::move(path_prefix));
  r->stream = std::move(handler);
  core_->routes.push_back(std::move(r));
}

Status HttpServer::ServeDirectory(std::string prefix, const std::string& dir) {
  char resolved[PATH_MAX];
  if (::realpath(dir.c_str(), resolved) == nullptr) {
    return Status::NotFound("static folder '" + dir + "': " + std::strerror(errno));
  }
  struct stat st {};
  if (::stat(resolved, &st) != 0 || !S_ISDIR(st.st_mode)) {
    return Status::InvalidArgument("static folder '" + dir + "' is not a folder");
  }
  auto r = std::make_shared<Route>();
  r->method = "GET";
  r->prefix = CleanPrefix(std::move(prefix));
  r->static_root = resolved;
  if (r->static_root == "/") {
    return Status::InvalidArgument("static folder '" + dir + "': refusing to serve /");
  }
  core_->routes.push_back(std::move(r));
  return Status::OK();
}

void HttpServer::Stop() { core_->Stop(); }

size_t HttpServer::connections() const { return core_->conns.size(); }

size_t HttpServer::streams() const { return core_->streams.size(); }

size_t HttpServer::deferred() const { return core_->waiting.size(); }

}  // namespace trapline
