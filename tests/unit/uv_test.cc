#include "common/uv.h"

#include <doctest/doctest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>

#include "common/tcp_exchange.h"

namespace trapline {
namespace {

// Every libuv test ends with all handles closed and uv_loop_close() == 0.
void CloseLoop(uv_loop_t* loop) {
  uv_run(loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(loop) == 0);
}

TEST_CASE("Timer fires, repeats, and may be destroyed inside its own callback") {
  uv_loop_t loop;
  uv_loop_init(&loop);
  int fired = 0;
  auto once = std::make_unique<Timer>(&loop);
  auto repeat = std::make_unique<Timer>(&loop);
  once->Start(1, 0, [&] { ++fired; });
  int ticks = 0;
  repeat->Start(1, 1, [&] {
    if (++ticks == 3) repeat.reset();  // destroys the timer from its callback
  });
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(fired == 1);
  CHECK(ticks == 3);
  once.reset();
  CloseLoop(&loop);
}

TEST_CASE("SocketWatcher reports readability and stops cleanly") {
  uv_loop_t loop;
  uv_loop_init(&loop);
  int fds[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
  int events_seen = 0;
  std::unique_ptr<SocketWatcher> w;
  w = std::make_unique<SocketWatcher>(&loop, fds[0], [&](int status, int events) {
    CHECK(status == 0);
    events_seen |= events;
    w->Stop();
  });
  REQUIRE(w->init_status().ok());
  REQUIRE(w->Watch(true, false).ok());
  REQUIRE(::write(fds[1], "x", 1) == 1);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK((events_seen & UV_READABLE) != 0);
  w.reset();
  ::close(fds[0]);
  ::close(fds[1]);
  CloseLoop(&loop);
}

TEST_CASE("SocketWatcher destroyed inside its own callback: the callback's captures live until it returns") {
  uv_loop_t loop;
  uv_loop_init(&loop);
  int fds[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
  auto state = std::make_shared<int>(0);
  std::weak_ptr<int> watch = state;
  std::unique_ptr<SocketWatcher> w;
  int after = -1;
  w = std::make_unique<SocketWatcher>(&loop, fds[0], [&w, &after, state](int, int) {
    w.reset();        // the watcher goes while its callback runs ...
    *state += 1;      // ... and what the callback captured is still there
    after = *state;
  });
  state.reset();  // the callback holds the only reference now
  REQUIRE(w->Watch(true, false).ok());
  REQUIRE(::write(fds[1], "x", 1) == 1);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(after == 1);
  CHECK(watch.expired());  // freed with the handle's block in the close callback
  ::close(fds[0]);
  ::close(fds[1]);
  CloseLoop(&loop);
}

TEST_CASE("TcpExchange: refused connection is Unavailable, callback once, loop closes") {
  uv_loop_t loop;
  uv_loop_init(&loop);
  // A port nothing listens on: bind one, close it.
  int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  REQUIRE(bind(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
  REQUIRE(getsockname(s, reinterpret_cast<sockaddr*>(&a), &len) == 0);
  uint16_t port = ntohs(a.sin_port);
  ::close(s);

  int calls = 0;
  Status result;
  auto ex = std::make_unique<TcpExchange>(
      &loop, "127.0.0.1", port, "hello", 2000, [](std::string_view) { return int64_t{0}; },
      [&](Result<std::string> r) {
        ++calls;
        result = r.status();
      });
  ex->Start();
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(calls == 1);
  CHECK(result.code() == StatusCode::kUnavailable);
  CHECK(result.message().find("127.0.0.1:" + std::to_string(port)) != std::string::npos);
  ex.reset();
  CloseLoop(&loop);
}

TEST_CASE("TcpExchange destroyed before it completes never calls back and frees everything") {
  uv_loop_t loop;
  uv_loop_init(&loop);
  int calls = 0;
  auto ex = std::make_unique<TcpExchange>(
      &loop, "localhost", 9, "x", 1000, [](std::string_view) { return int64_t{0}; },
      [&](Result<std::string>) { ++calls; });
  ex->Start();  // getaddrinfo in flight
  ex.reset();
  CloseLoop(&loop);
  CHECK(calls == 0);
}

}  // namespace
}  // namespace trapline
