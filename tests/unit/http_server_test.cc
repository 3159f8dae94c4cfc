#include "common/http_server.h"

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace trapline {
namespace {

// The server's loop runs in its own thread; the test thread is the HTTP client (blocking
// sockets). Anything that touches the server after Start() goes through Run().
class LoopThread {
 public:
  LoopThread() {
    uv_loop_init(&loop_);
    uv_async_init(&loop_, &async_, [](uv_async_t* a) {
      auto* self = static_cast<LoopThread*>(a->data);
      std::vector<std::function<void()>> work;
      {
        std::lock_guard<std::mutex> lock(self->mu_);
        work.swap(self->work_);
      }
      for (auto& fn : work) fn();
    });
    async_.data = this;
  }
  ~LoopThread() {
    if (thread_.joinable()) Finish();
  }
  uv_loop_t* loop() { return &loop_; }
  void Start() {
    thread_ = std::thread([this] { uv_run(&loop_, UV_RUN_DEFAULT); });
  }
  // Runs `fn` on the loop thread and waits for it.
  void Run(std::function<void()> fn) {
    std::mutex done_mu;
    std::condition_variable cv;
    bool done = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      work_.push_back([&] {
        fn();
        std::lock_guard<std::mutex> l(done_mu);
        done = true;
        cv.notify_one();
      });
    }
    uv_async_send(&async_);
    std::unique_lock<std::mutex> l(done_mu);
    cv.wait(l, [&] { return done; });
  }
  // Closes the last test handle, waits until the loop has nothing left, and closes it.
  int Finish() {
    Run([this] { uv_close(reinterpret_cast<uv_handle_t*>(&async_), nullptr); });
    thread_.join();
    int rc = uv_loop_close(&loop_);
    if (rc != 0) {
      uv_walk(
          &loop_,
          [](uv_handle_t* h, void*) {
            MESSAGE("open handle: " << std::string(uv_handle_type_name(h->type)) << " active="
                                    << uv_is_active(h) << " closing=" << uv_is_closing(h));
          },
          nullptr);
    }
    return rc;
  }

 private:
  uv_loop_t loop_;
  uv_async_t async_;
  std::thread thread_;
  std::mutex mu_;
  std::vector<std::function<void()>> work_;
};

int Connect(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
  return fd;
}

bool SendAll(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

// Reads until EOF (or error/timeout).
std::string ReadAll(int fd) {
  std::string out;
  char buf[65536];
  while (true) {
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

struct Reply {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  bool complete = false;
};

// Parses one response from the front of `raw` (Content-Length or chunked); erases it.
Reply ParseOne(std::string* raw) {
  Reply r;
  size_t end = raw->find("\r\n\r\n");
  if (end == std::string::npos) return r;
  std::string head = raw->substr(0, end);
  size_t pos = end + 4;
  r.status = std::atoi(head.substr(9, 3).c_str());
  size_t line = head.find("\r\n");
  while (line != std::string::npos) {
    size_t next = head.find("\r\n", line + 2);
    std::string h =
        head.substr(line + 2, next == std::string::npos ? std::string::npos : next - line - 2);
    size_t colon = h.find(':');
    if (colon != std::string::npos) {
      std::string name = h.substr(0, colon);
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      std::string value = h.substr(colon + 1);
      while (!value.empty() && value.front() == ' ') value.erase(0, 1);
      r.headers[name] = value;
    }
    line = next;
  }
  if (r.headers.count("content-length")) {
    size_t len = std::stoul(r.headers["content-length"]);
    if (raw->size() < pos + len) return r;
    r.body = raw->substr(pos, len);
    raw->erase(0, pos + len);
    r.complete = true;
  } else if (r.headers["transfer-encoding"] == "chunked") {
    while (true) {
      size_t crlf = raw->find("\r\n", pos);
      if (crlf == std::string::npos) return r;
      size_t n = std::stoul(raw->substr(pos, crlf - pos), nullptr, 16);
      if (n == 0) {
        raw->erase(0, std::min(raw->size(), crlf + 4));
        r.complete = true;
        return r;
      }
      if (raw->size() < crlf + 2 + n + 2) return r;
      r.body += raw->substr(crlf + 2, n);
      pos = crlf + 2 + n + 2;
    }
  } else {
    r.body = raw->substr(pos);
    raw->clear();
    r.complete = true;
  }
  return r;
}

// One request on a fresh connection ("Connection: close" is added).
Reply Request(int port, const std::string& method, const std::string& target,
              const std::string& body = "", const std::string& extra_headers = "") {
  int fd = Connect(port);
  std::string req =
      method + " " + target + " HTTP/1.1\r\nHost: test\r\nConnection: close\r\n" + extra_headers;
  if (!body.empty() || method == "POST")
    req += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  req += "\r\n" + body;
  REQUIRE(SendAll(fd, req));
  std::string raw = ReadAll(fd);
  ::close(fd);
  return ParseOne(&raw);
}

std::string MakeTempDir() {
  char tmpl[] = "/tmp/trapline-http-XXXXXX";
  REQUIRE(::mkdtemp(tmpl) != nullptr);
  return tmpl;
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
}

TEST_CASE("JsonQuote escapes and repairs UTF-8; query parameters decode") {
  CHECK(JsonQuote("a\"b\\c\n\x01") == "\"a\\\"b\\\\c\\n\\u0001\"");
  CHECK(JsonQuote("caf\xc3\xa9") == "\"caf\xc3\xa9\"");
  CHECK(JsonQuote("bad\xff") == "\"bad\xef\xbf\xbd\"");
  CHECK(JsonQuote("\xed\xa0\x80") == "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"");  // a surrogate
  HttpRequest r;
  r.query = "a=1&name=web%2001&plus=x+y&flag&a=2";
  CHECK(r.QueryParam("a") == "1");
  CHECK(r.QueryParam("name") == "web 01");
  CHECK(r.QueryParam("plus") == "x y");
  CHECK(r.QueryParam("flag").empty());
  CHECK(r.QueryParam("missing").empty());
  r.headers = {{"content-type", "application/json"}};
  CHECK(r.Header("Content-Type") == "application/json");
  CHECK(HttpResponse::Error(404, "no \"x\"").body == "{\"error\": \"no \\\"x\\\"\"}");
  CHECK(HttpStatusFor(StatusCode::kInvalidArgument) == 400);
  CHECK(HttpStatusFor(StatusCode::kUnavailable) == 503);
}

TEST_CASE("Listen rejects bad addresses and reports the bound port") {
  uv_loop_t loop;
  uv_loop_init(&loop);
  {
    HttpServer server(&loop);
    CHECK(server.port() == 0);
    CHECK(server.Listen("localhost:80").code() == StatusCode::kInvalidArgument);
    CHECK(server.Listen("127.0.0.1").code() == StatusCode::kInvalidArgument);
    CHECK(server.Listen("127.0.0.1:99999").code() == StatusCode::kInvalidArgument);
    CHECK(server.Listen("127.0.0.1:x").code() == StatusCode::kInvalidArgument);
    REQUIRE(server.Listen("127.0.0.1:0").ok());
    CHECK(server.port() > 0);
    HttpServer other(&loop);
    Status busy = other.Listen("127.0.0.1:" + std::to_string(server.port()));
    CHECK(!busy.ok());
    CHECK(busy.message().find("in use") != std::string::npos);
    Status v6 = server.Listen("[::1]:0");
    if (!v6.ok()) MESSAGE("no IPv6 loopback here: " << v6.message());
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
}

TEST_CASE("routes: GET/POST JSON, 404, 405, error statuses, exceptions, limits, keep-alive") {
  LoopThread lt;
  HttpServerOptions opts;
  opts.name = "test";
  opts.max_url_bytes = 1024;
  auto server = std::make_unique<HttpServer>(lt.loop(), opts);
  server->Handle("GET", "/api/v1/hello", [](const HttpRequest& r) -> Result<HttpResponse> {
    return HttpResponse::Json("{\"hello\": " + JsonQuote(r.QueryParam("name")) + ", \"rest\": " +
                              JsonQuote(r.rest) + ", \"peer\": " + JsonQuote(r.peer) + "}");
  });
  server->Handle("POST", "/api/v1/echo", [](const HttpRequest& r) -> Result<HttpResponse> {
    HttpResponse res = HttpResponse::Text(r.body, 201, std::string(r.Header("content-type")));
    res.headers.emplace_back("X-Echo-Length", std::to_string(r.body.size()));
    res.headers.emplace_back("X-Bad", "a\r\nInjected: yes");
    return res;
  });
  server->Handle("GET", "/api/v1/missing", [](const HttpRequest&) -> Result<HttpResponse> {
    return Status::NotFound("host 'x' is not registered");
  });
  server->Handle("GET", "/api/v1/throws", [](const HttpRequest&) -> Result<HttpResponse> {
    throw std::runtime_error("boom");
  });
  REQUIRE(server->Listen("127.0.0.1:0").ok());
  int port = server->port();
  lt.Start();

  Reply r = Request(port, "GET", "/api/v1/hello/a%20b?name=web%2001");
  CHECK(r.status == 200);
  CHECK(r.headers["content-type"] == "application/json");
  CHECK(r.headers["x-content-type-options"] == "nosniff");
  CHECK(r.headers["x-frame-options"] == "DENY");
  CHECK(r.headers["content-security-policy"] == "frame-ancestors 'none'");
  CHECK(r.body.find("\"hello\": \"web 01\"") != std::string::npos);
  CHECK(r.body.find("\"rest\": \"a b\"") != std::string::npos);
  CHECK(r.body.find("\"peer\": \"127.0.0.1:") != std::string::npos);

  r = Request(port, "HEAD", "/api/v1/hello");
  CHECK(r.status == 200);

  r = Request(port, "POST", "/api/v1/echo", "{\"a\": [1, 2]}",
              "Content-Type: application/json\r\n");
  CHECK(r.status == 201);
  CHECK(r.body == "{\"a\": [1, 2]}");
  CHECK(r.headers["content-type"] == "application/json");
  CHECK(r.headers["x-echo-length"] == "13");
  CHECK(r.headers.count("x-bad") == 0);
  CHECK(r.headers.count("injected") == 0);

  r = Request(port, "GET", "/nope");
  CHECK(r.status == 404);
  CHECK(r.headers["content-type"] == "application/json");
  CHECK(r.body.find("{\"error\": ") == 0);
  r = Request(port, "GET", "/api/v1/hellox");  // a prefix matches at a segment boundary only
  CHECK(r.status == 404);

  r = Request(port, "DELETE", "/api/v1/echo");
  CHECK(r.status == 405);
  CHECK(r.headers["allow"] == "POST");
  CHECK(r.body.find("\"error\"") != std::string::npos);

  r = Request(port, "GET", "/api/v1/missing");
  CHECK(r.status == 404);
  CHECK(r.body == "{\"error\": \"host 'x' is not registered\"}");

  r = Request(port, "GET", "/api/v1/throws");
  CHECK(r.status == 500);
  CHECK(r.body == "{\"error\": \"internal error\"}");

  r = Request(port, "GET", "/api/v1/hello/" + std::string(2000, 'a'));
  CHECK(r.status == 414);
  CHECK(r.body.find("\"error\"") != std::string::npos);

  std::string big_headers;
  for (int i = 0; i < 90; ++i)
    big_headers += "X-Filler-" + std::to_string(i) + ": " + std::string(1000, 'v') + "\r\n";
  r = Request(port, "GET", "/api/v1/hello", "", big_headers);
  CHECK(r.status == 431);

  r = Request(port, "POST", "/api/v1/echo", "x", "Transfer-Encoding: gzip\r\n");
  CHECK(r.status == 400);
  CHECK(r.headers["content-type"] == "application/json");

  // Garbage instead of HTTP: h2o answers 400 (its own text) and closes.
  {
    int fd = Connect(port);
    REQUIRE(SendAll(fd, "\x16\x03\x01 not http at all\r\n\r\n"));
    std::string raw = ReadAll(fd);
    ::close(fd);
    CHECK(raw.find("400") != std::string::npos);
  }

  // Two requests on one keep-alive connection; the connection is still open at Stop().
  int keep = Connect(port);
  REQUIRE(SendAll(keep,
                  "GET /api/v1/hello?name=1 HTTP/1.1\r\nHost: t\r\n\r\n"
                  "GET /api/v1/hello?name=2 HTTP/1.1\r\nHost: t\r\n\r\n"));
  std::string raw;
  Reply a, b;
  char buf[4096];
  while (!b.complete) {
    ssize_t n = ::recv(keep, buf, sizeof(buf), 0);
    REQUIRE(n > 0);
    raw.append(buf, static_cast<size_t>(n));
    if (!a.complete) a = ParseOne(&raw);
    if (a.complete && !b.complete) b = ParseOne(&raw);
  }
  CHECK(a.body.find("\"1\"") != std::string::npos);
  CHECK(b.body.find("\"2\"") != std::string::npos);
  size_t open_conns = 0;
  lt.Run([&] { open_conns = server->connections(); });
  CHECK(open_conns == 1);

  auto t0 = std::chrono::steady_clock::now();
  lt.Run([&] { server.reset(); });  // destroyed with a keep-alive connection open
  CHECK(ReadAll(keep).empty());     // the server closes it
  ::close(keep);
  CHECK(lt.Finish() == 0);
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(2));
}

TEST_CASE("request bodies over the limit get a JSON 413 without being read whole") {
  LoopThread lt;
  HttpServerOptions opts;  // 1 MiB
  HttpServer server(lt.loop(), opts);
  std::atomic<int> handled{0};
  server.Handle("POST", "/upload", [&](const HttpRequest& r) -> Result<HttpResponse> {
    ++handled;
    return HttpResponse::Json("{\"bytes\": " + std::to_string(r.body.size()) + "}");
  });
  REQUIRE(server.Listen("127.0.0.1:0").ok());
  int port = server.port();
  lt.Start();

  // Just under the limit: accepted.
  Reply ok = Request(port, "POST", "/upload", std::string((1 << 20) - 10, 'x'));
  CHECK(ok.status == 200);
  CHECK(ok.body == "{\"bytes\": 1048566}");

  // 2 MiB with Content-Length: the answer comes after the headers alone.
  {
    int fd = Connect(port);
    REQUIRE(SendAll(fd, "POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 2097152\r\n\r\n"));
    std::string raw = ReadAll(fd);  // the server answers and closes without the body
    ::close(fd);
    Reply r = ParseOne(&raw);
    CHECK(r.status == 413);
    CHECK(r.headers["content-type"] == "application/json");
    CHECK(r.body == "{\"error\": \"request body larger than 1048576 bytes\"}");
  }
  // 2 MiB with Content-Length, body sent as well: the client may see its send fail, but the
  // answer is there.
  {
    int fd = Connect(port);
    std::string req = "POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 2097152\r\n\r\n" +
                      std::string(2 << 20, 'y');
    (void)SendAll(fd, req);
    std::string raw = ReadAll(fd);
    ::close(fd);
    if (!raw.empty()) CHECK(ParseOne(&raw).status == 413);
  }
  // Chunked: cut once 1 MiB has arrived.
  {
    int fd = Connect(port);
    REQUIRE(SendAll(fd, "POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"));
    std::string chunk = "10000\r\n" + std::string(0x10000, 'z') + "\r\n";
    int sent = 0;
    for (; sent < 32; ++sent) {  // up to 2 MiB
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 5) > 0) break;  // the answer is already there
      if (!SendAll(fd, chunk)) break;
    }
    std::string raw = ReadAll(fd);
    ::close(fd);
    MESSAGE("chunked: the 413 came after " << sent << " chunks of 64 KiB");
    Reply r = ParseOne(&raw);
    CHECK(r.status == 413);
    CHECK(r.body.find("request body larger than") != std::string::npos);
  }
  CHECK(handled == 1);
  lt.Run([&] { server.Stop(); });
  CHECK(lt.Finish() == 0);
}

TEST_CASE("static files: index.html, content types, no traversal, no dot-files, no symlinks out") {
  std::string dir = MakeTempDir();
  REQUIRE(::mkdir((dir + "/ui").c_str(), 0755) == 0);
  REQUIRE(::mkdir((dir + "/ui/assets").c_str(), 0755) == 0);
  WriteFile(dir + "/ui/index.html", "<!doctype html><title>trapline</title>");
  WriteFile(dir + "/ui/assets/app.js", "console.log(1)");
  WriteFile(dir + "/ui/assets/app.css", "body{}");
  WriteFile(dir + "/ui/assets/logo.svg", "<svg/>");
  WriteFile(dir + "/ui/assets/logo.png", std::string("\x89PNG\r\n\x1a\n\0\0", 10));
  WriteFile(dir + "/ui/assets/data.json", "{}");
  WriteFile(dir + "/ui/.env", "SECRET=1");
  WriteFile(dir + "/secret.txt", "outside");
  REQUIRE(::symlink((dir + "/secret.txt").c_str(), (dir + "/ui/assets/link.txt").c_str()) == 0);
  REQUIRE(::symlink("/etc", (dir + "/ui/etc").c_str()) == 0);

  LoopThread lt;
  HttpServer server(lt.loop());
  REQUIRE(server.ServeDirectory("/ui", dir + "/ui").ok());
  CHECK(server.ServeDirectory("/x", dir + "/does-not-exist").code() == StatusCode::kNotFound);
  CHECK(server.ServeDirectory("/x", dir + "/secret.txt").code() == StatusCode::kInvalidArgument);
  REQUIRE(server.Listen("127.0.0.1:0").ok());
  int port = server.port();
  lt.Start();

  for (const char* p : {"/ui", "/ui/", "/ui/index.html"}) {
    Reply r = Request(port, "GET", p);
    CHECK_MESSAGE(r.status == 200, p);
    CHECK(r.headers["content-type"] == "text/html; charset=utf-8");
    CHECK(r.body.find("trapline") != std::string::npos);
  }
  std::map<std::string, std::string> types = {
      {"/ui/assets/app.js", "text/javascript; charset=utf-8"},
      {"/ui/assets/app.css", "text/css; charset=utf-8"},
      {"/ui/assets/logo.svg", "image/svg+xml"},
      {"/ui/assets/logo.png", "image/png"},
      {"/ui/assets/data.json", "application/json"}};
  for (const auto& [p, type] : types) {
    Reply r = Request(port, "GET", p);
    CHECK_MESSAGE(r.status == 200, p);
    CHECK_MESSAGE(r.headers["content-type"] == type, p);
  }
  CHECK(Request(port, "GET", "/ui/assets/logo.png").body.size() == 10);
  CHECK(Request(port, "POST", "/ui/index.html").status == 405);
  CHECK(Request(port, "GET", "/ui/nope.html").status == 404);

  for (const char* p :
       {"/ui/../../etc/passwd", "/ui/%2e%2e/%2e%2e/etc/passwd", "/ui/..%2f..%2f..%2fetc%2fpasswd",
        "/ui/assets/../../secret.txt", "/ui/.env", "/ui/assets/link.txt", "/ui/etc/passwd",
        "/ui/%00/x", "/ui/..\\..\\etc\\passwd"}) {
    Reply r = Request(port, "GET", p);
    CHECK_MESSAGE((r.status == 400 || r.status == 404), p << " -> " << r.status);
    CHECK_MESSAGE(r.body.find("root:") == std::string::npos, p);
    CHECK_MESSAGE(r.body.find("outside") == std::string::npos, p);
    CHECK_MESSAGE(r.body.find("SECRET") == std::string::npos, p);
  }
  lt.Run([&] { server.Stop(); });
  CHECK(lt.Finish() == 0);
  std::system(("rm -rf " + dir).c_str());
}

TEST_CASE("server-sent events: two events arrive, then the stream ends when the server stops") {
  LoopThread lt;
  HttpServerOptions opts;
  opts.sse_heartbeat_ms = 50;
  auto server = std::make_unique<HttpServer>(lt.loop(), opts);
  std::vector<std::shared_ptr<HttpServer::Stream>> streams;
  int closed_by_peer_or_stop = 0;
  server->HandleStream("/events",
                       [&](const HttpRequest& r, std::shared_ptr<HttpServer::Stream> s) -> Status {
                         if (r.QueryParam("token") != "ok") return Status::Rejected("bad token");
                         s->set_on_close([&] { ++closed_by_peer_or_stop; });
                         s->Send("hello", "welcome");  // queued before the headers go out
                         streams.push_back(std::move(s));
                         return Status::OK();
                       });
  REQUIRE(server->Listen("127.0.0.1:0").ok());
  int port = server->port();
  lt.Start();

  Reply refused = Request(port, "GET", "/events?token=no");
  CHECK(refused.status == 403);
  CHECK(refused.body == "{\"error\": \"bad token\"}");

  auto wait_for = [](int fd, std::string* raw, const std::string& what) {
    char buf[4096];
    while (raw->find(what) == std::string::npos) {
      ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
      if (n <= 0) return false;
      raw->append(buf, static_cast<size_t>(n));
    }
    return true;
  };

  // A client that goes away: noticed at the next heartbeat write.
  int gone = Connect(port);
  REQUIRE(SendAll(gone, "GET /events?token=ok HTTP/1.1\r\nHost: t\r\n\r\n"));
  std::string gone_raw;
  REQUIRE(wait_for(gone, &gone_raw, "data: hello"));
  ::close(gone);
  for (int i = 0; i < 100; ++i) {
    int n = 0;
    lt.Run([&] { n = closed_by_peer_or_stop; });
    if (n == 1) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  lt.Run([&] {
    CHECK(closed_by_peer_or_stop == 1);
    CHECK(!streams[0]->open());
    CHECK(!streams[0]->Send("lost"));
  });

  int fd = Connect(port);
  REQUIRE(SendAll(fd, "GET /events?token=ok HTTP/1.1\r\nHost: t\r\n\r\n"));
  std::string raw;
  REQUIRE(wait_for(fd, &raw, "data: hello\n\n"));
  CHECK(raw.find("HTTP/1.1 200") == 0);
  CHECK(raw.find("content-type: text/event-stream") != std::string::npos);
  CHECK(raw.find("event: welcome\n") != std::string::npos);
  size_t open_streams = 0;
  lt.Run([&] {
    open_streams = server->streams();
    REQUIRE(streams.size() == 2);
    CHECK(streams[1]->open());
    CHECK(streams[1]->Send("one"));
    CHECK(streams[1]->Send("two\nlines", "update", "42"));
  });
  CHECK(open_streams == 1);
  REQUIRE(wait_for(fd, &raw, "data: one\n\n"));
  REQUIRE(wait_for(fd, &raw, "id: 42\nevent: update\ndata: two\ndata: lines\n\n"));

  lt.Run([&] { server->Stop(); });
  REQUIRE(wait_for(fd, &raw, "0\r\n\r\n"));  // the chunked response ends...
  char c;
  CHECK(::recv(fd, &c, 1, 0) == 0);  // ...and the connection closes
  ::close(fd);
  lt.Run([&] {
    CHECK(closed_by_peer_or_stop == 2);
    CHECK(!streams[1]->open());
    CHECK(server->streams() == 0);
    server.reset();
  });
  CHECK(lt.Finish() == 0);
}

TEST_CASE("a stream closed by the application ends its response; on_close is not called") {
  LoopThread lt;
  HttpServer server(lt.loop());
  std::shared_ptr<HttpServer::Stream> stream;
  bool notified = false;
  server.HandleStream("/events", [&](const HttpRequest&, std::shared_ptr<HttpServer::Stream> s) {
    s->set_on_close([&] { notified = true; });
    stream = s;
    return Status::OK();
  });
  REQUIRE(server.Listen("127.0.0.1:0").ok());
  int port = server.port();
  lt.Start();
  int fd = Connect(port);
  REQUIRE(SendAll(fd, "GET /events HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"));
  for (int i = 0; i < 200; ++i) {
    bool have = false;
    lt.Run([&] { have = stream != nullptr; });
    if (have) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  lt.Run([&] {
    REQUIRE(stream);
    stream->Send("last");
    stream->Close();
    CHECK(!stream->open());
  });
  std::string raw = ReadAll(fd);
  ::close(fd);
  CHECK(raw.find("data: last\n\n") != std::string::npos);
  CHECK(raw.find("0\r\n\r\n") != std::string::npos);
  lt.Run([&] { server.Stop(); });
  CHECK(lt.Finish() == 0);
  CHECK(!notified);
}

TEST_CASE("200 concurrent connections are served; a slow request is cut by the timeout") {
  LoopThread lt;
  HttpServerOptions opts;
  opts.request_timeout_ms = 300;
  HttpServer server(lt.loop(), opts);
  int served = 0;
  server.Handle("GET", "/n", [&](const HttpRequest& r) -> Result<HttpResponse> {
    ++served;
    return HttpResponse::Json("{\"n\": " + std::string(r.rest) + "}");
  });
  REQUIRE(server.Listen("127.0.0.1:0").ok());
  int port = server.port();
  lt.Start();

  constexpr int kClients = 200;
  std::vector<int> fds;
  for (int i = 0; i < kClients; ++i) fds.push_back(Connect(port));
  for (int i = 0; i < kClients; ++i) {
    REQUIRE(SendAll(fds[i], "GET /n/" + std::to_string(i) + " HTTP/1.1\r\nHost: t\r\n\r\n"));
  }
  int ok = 0;
  for (int i = 0; i < kClients; ++i) {
    std::string raw;
    Reply r;
    char buf[4096];
    while (!r.complete) {
      ssize_t n = ::recv(fds[i], buf, sizeof(buf), 0);
      if (n <= 0) break;
      raw.append(buf, static_cast<size_t>(n));
      r = ParseOne(&raw);
    }
    if (r.status == 200 && r.body == "{\"n\": " + std::to_string(i) + "}") ++ok;
  }
  CHECK(ok == kClients);
  size_t open_conns = 0;
  lt.Run([&] { open_conns = server.connections(); });
  CHECK(open_conns == kClients);  // all kept alive at once
  for (int fd : fds) ::close(fd);

  // Half a request, then silence: closed after request_timeout_ms.
  int slow = Connect(port);
  REQUIRE(SendAll(slow, "GET /n/1 HTTP/1.1\r\nHo"));
  auto t0 = std::chrono::steady_clock::now();
  CHECK(ReadAll(slow).find("200") == std::string::npos);
  auto waited = std::chrono::steady_clock::now() - t0;
  CHECK(waited >= std::chrono::milliseconds(200));
  CHECK(waited < std::chrono::seconds(5));
  ::close(slow);

  lt.Run([&] {
    CHECK(served == kClients);
    server.Stop();
  });
  CHECK(lt.Finish() == 0);
}

TEST_CASE("connections past max_connections are refused; the server keeps serving") {
  LoopThread lt;
  HttpServerOptions opts;
  opts.max_connections = 3;
  HttpServer server(lt.loop(), opts);
  server.Handle("GET", "/", [](const HttpRequest&) -> Result<HttpResponse> {
    return HttpResponse::Json("{}");
  });
  REQUIRE(server.Listen("127.0.0.1:0").ok());
  int port = server.port();
  lt.Start();
  std::vector<int> held;
  for (int i = 0; i < 3; ++i) held.push_back(Connect(port));
  for (int i = 0; i < 50; ++i) {  // wait until the server has accepted them
    size_t n = 0;
    lt.Run([&] { n = server.connections(); });
    if (n == 3) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  int extra = Connect(port);
  (void)SendAll(extra, "GET / HTTP/1.1\r\nHost: t\r\n\r\n");
  CHECK(ReadAll(extra).empty());
  ::close(extra);
  for (int fd : held) ::close(fd);
  bool served = false;
  for (int i = 0; i < 50 && !served; ++i) {
    served = Request(port, "GET", "/").status == 200;
    if (!served) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  CHECK(served);
  lt.Run([&] { server.Stop(); });
  CHECK(lt.Finish() == 0);
}

TEST_CASE("deferred answers: later on the loop, once, 500 when dropped, 503 at Stop, client gone") {
  LoopThread lt;
  auto server = std::make_unique<HttpServer>(lt.loop());
  std::vector<HttpServer::Responder> held;
  server->HandleDeferred("GET", "/later", [&](const HttpRequest&, HttpServer::Responder r) {
    held.push_back(std::move(r));
  });
  server->HandleDeferred("GET", "/dropped", [](const HttpRequest&, HttpServer::Responder) {});
  server->HandleDeferred("POST", "/now", [](const HttpRequest& req, HttpServer::Responder r) {
    r.Send(HttpResponse::Json(req.body, 201));
    r.Send(HttpResponse::Json("{\"second\": true}"));  // ignored
  });
  server->HandleDeferred("GET", "/throws", [](const HttpRequest&, HttpServer::Responder) {
    throw std::runtime_error("boom");
  });
  REQUIRE(server->Listen("127.0.0.1:0").ok());
  int port = server->port();
  lt.Start();

  auto wait_held = [&](size_t n) {
    for (int i = 0; i < 500; ++i) {
      size_t have = 0;
      lt.Run([&] { have = held.size(); });
      if (have >= n) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  };

  Reply r = Request(port, "POST", "/now", "{\"a\": 1}");
  CHECK(r.status == 201);
  CHECK(r.body == "{\"a\": 1}");
  r = Request(port, "GET", "/dropped");
  CHECK(r.status == 500);
  CHECK(r.body.find("\"error\"") != std::string::npos);
  r = Request(port, "GET", "/throws");
  CHECK(r.status == 500);

  // Answered later, from the loop; a non-OK Status is a JSON error.
  std::thread client([&] {
    Reply a = Request(port, "GET", "/later");
    CHECK(a.status == 200);
    CHECK(a.body == "{\"late\": true}");
    Reply b = Request(port, "GET", "/later");
    CHECK(b.status == 404);
    CHECK(b.body == "{\"error\": \"no host 'x'\"}");
  });
  REQUIRE(wait_held(1));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  lt.Run([&] {
    CHECK(server->deferred() == 1);
    CHECK(held[0].pending());
    held[0].Send(HttpResponse::Json("{\"late\": true}"));
    CHECK(!held[0].pending());
    held[0].Send(Status::Internal("ignored"));
  });
  REQUIRE(wait_held(2));
  lt.Run([&] { held[1].Send(Status::NotFound("no host 'x'")); });
  client.join();

  // A client that leaves before the answer: the answer goes nowhere, nothing breaks.
  int gone = Connect(port);
  REQUIRE(SendAll(gone, "GET /later HTTP/1.1\r\nHost: t\r\n\r\n"));
  REQUIRE(wait_held(3));
  ::close(gone);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  lt.Run([&] { held[2].Send(HttpResponse::Json("{}")); });
  for (int i = 0; i < 200; ++i) {
    size_t conns = 1;
    lt.Run([&] { conns = server->connections(); });
    if (conns == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  lt.Run([&] {
    CHECK(server->connections() == 0);
    CHECK(server->deferred() == 0);
  });

  // Stop() answers what still waits with 503 and closes the connection.
  int fd = Connect(port);
  REQUIRE(SendAll(fd, "GET /later HTTP/1.1\r\nHost: t\r\n\r\n"));
  REQUIRE(wait_held(4));
  lt.Run([&] { server->Stop(); });
  std::string raw = ReadAll(fd);
  ::close(fd);
  Reply stopped = ParseOne(&raw);
  CHECK(stopped.status == 503);
  lt.Run([&] {
    CHECK(!held[3].pending());
    held[3].Send(HttpResponse::Json("{}"));  // after Stop: nothing happens
    server.reset();
  });
  lt.Run([&] { held.clear(); });  // Responders outliving the server are harmless
  CHECK(lt.Finish() == 0);
}

}  // namespace
}  // namespace trapline
