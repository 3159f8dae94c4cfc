// The sender against a scripted trapper peer on loopback. The real Zabbix is exercised by the
// integration tests; this peer exists to misbehave in ways a real server will not on demand
// (garbage replies, resets mid-reply, silence) and to count exactly what arrived.

#include "collector/sender.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

namespace trapline {
namespace {

enum class Mode { kAccept, kGarbage, kResetMidReply, kSilent };

// A minimal trapper: one request per connection, as Zabbix.
class FakeTrapper {
 public:
  explicit FakeTrapper(uv_loop_t* loop) : loop_(loop) {}
  ~FakeTrapper() { Stop(); }

  uint16_t Listen(uint16_t port = 0) {
    server_ = new uv_tcp_t;
    uv_tcp_init(loop_, server_);
    server_->data = this;
    sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", port, &addr);
    REQUIRE(uv_tcp_bind(server_, reinterpret_cast<sockaddr*>(&addr), 0) == 0);
    REQUIRE(uv_listen(reinterpret_cast<uv_stream_t*>(server_), 64, [](uv_stream_t* s, int) {
              static_cast<FakeTrapper*>(s->data)->OnConnection();
            }) == 0);
    int len = sizeof(addr);
    uv_tcp_getsockname(server_, reinterpret_cast<sockaddr*>(&addr), &len);
    return ntohs(addr.sin_port);
  }

  void Stop() {
    if (server_ == nullptr) return;
    uv_close(reinterpret_cast<uv_handle_t*>(server_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_tcp_t*>(h); });
    server_ = nullptr;
  }

  Mode mode = Mode::kAccept;
  std::set<std::string> failing_keys;  // values of these keys count as "failed"
  std::vector<nlohmann::json> stored;  // values counted processed, in arrival order
  int requests = 0;

 private:
  struct Conn {
    uv_tcp_t tcp;
    FakeTrapper* owner;
    std::string in;
  };

  void OnConnection() {
    auto* c = new Conn{};
    c->owner = this;
    uv_tcp_init(loop_, &c->tcp);
    c->tcp.data = c;
    uv_accept(reinterpret_cast<uv_stream_t*>(server_), reinterpret_cast<uv_stream_t*>(&c->tcp));
    uv_read_start(
        reinterpret_cast<uv_stream_t*>(&c->tcp),
        [](uv_handle_t*, size_t s, uv_buf_t* b) { *b = uv_buf_init(new char[s], static_cast<unsigned>(s)); },
        [](uv_stream_t* st, ssize_t n, const uv_buf_t* b) {
          std::unique_ptr<char[]> own(b->base);
          auto* conn = static_cast<Conn*>(st->data);
          if (n < 0) return Close(conn);
          conn->in.append(b->base, static_cast<size_t>(n));
          int64_t size = FrameSize(conn->in);
          if (size > 0 && conn->in.size() >= static_cast<size_t>(size)) conn->owner->OnRequest(conn);
        });
  }

  static void Close(Conn* c) {
    if (uv_is_closing(reinterpret_cast<uv_handle_t*>(&c->tcp))) return;
    uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp),
             [](uv_handle_t* h) { delete static_cast<Conn*>(h->data); });
  }

  static void Write(Conn* c, std::string data, bool then_close) {
    struct W {
      uv_write_t req;
      std::string data;
      Conn* conn;
      bool close;
    };
    auto* w = new W{{}, std::move(data), c, then_close};
    w->req.data = w;
    uv_buf_t buf = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
    uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&c->tcp), &buf, 1, [](uv_write_t* r, int) {
      auto* ww = static_cast<W*>(r->data);
      if (ww->close) Close(ww->conn);
      delete ww;
    });
  }

  void OnRequest(Conn* c) {
    ++requests;
    uv_read_stop(reinterpret_cast<uv_stream_t*>(&c->tcp));
    auto payload = DecodeFrame(c->in);
    REQUIRE(payload.ok());
    auto req = nlohmann::json::parse(*payload);
    CHECK(req["request"] == "sender data");
    switch (mode) {
      case Mode::kGarbage:
        return Write(c, "HTTP/1.1 400 Bad Request\r\n\r\n", true);
      case Mode::kResetMidReply: {
        auto frame = EncodeFrame(R"({"response":"success","info":"processed: 1; failed: 0; total: 1"})", false);
        return Write(c, frame->substr(0, 20), true);
      }
      case Mode::kSilent:
        return;  // the client's timeout closes it
      case Mode::kAccept:
        break;
    }
    int processed = 0, failed = 0;
    for (auto& v : req["data"]) {
      if (failing_keys.count(v["key"].get<std::string>())) {
        ++failed;
      } else {
        ++processed;
        stored.push_back(v);
      }
    }
    char info[128];
    std::snprintf(info, sizeof(info), "processed: %d; failed: %d; total: %d; seconds spent: 0.000100",
                  processed, failed, processed + failed);
    nlohmann::json reply = {{"response", "success"}, {"info", info}};
    Write(c, *EncodeFrame(reply.dump(), false), true);
  }

  uv_loop_t* loop_;
  uv_tcp_t* server_ = nullptr;
};

struct Fixture {
  Loop loop;
  FakeTrapper peer{loop.get()};
  SenderOptions opts;
  Fixture() {
    opts.port = peer.Listen();
    opts.flush_interval_ms = 20;
    opts.timeout_ms = 500;
    opts.backoff_min_ms = 20;
    opts.backoff_max_ms = 100;
    opts.retry_interval_ms = 30;
  }
  // Runs until the sender has drained, or fails the test after `limit_ms`.
  Status Drain(Sender* s, bool give_up = false, uint64_t limit_ms = 5000) {
    Status out = Status::Timeout("drain did not finish");
    bool done = false;
    Timer guard(loop.get());
    guard.Start(limit_ms, 0, [&] { loop.Stop(); });
    s->Drain(give_up, [&](Status st) {
      out = st;
      done = true;
      loop.Stop();
    });
    while (!done && guard.active()) loop.Run();
    return out;
  }
};

SenderValue V(const std::string& key, int i) {
  return SenderValue{"host", key, std::to_string(i), 0, 0, 0};
}

TEST_CASE("sender: batches by count over several connections, every value once, in order per item") {
  Fixture f;
  f.opts.batch_values = 100;
  f.opts.connections = 3;
  Sender s(f.loop.get(), f.opts);
  REQUIRE(s.Start().ok());
  for (int i = 0; i < 1050; ++i) s.Enqueue(V("k" + std::to_string(i % 10), i));
  REQUIRE(f.Drain(&s).ok());
  CHECK(f.peer.stored.size() == 1050);
  CHECK(f.peer.requests == 11);
  std::set<std::pair<int64_t, int64_t>> times;
  for (auto& v : f.peer.stored) times.insert({v["clock"].get<int64_t>(), v["ns"].get<int64_t>()});
  CHECK(times.size() == 1050);  // every value stamped with a distinct (clock, ns)
  SenderCounters c = s.counters();
  CHECK(c.sent == 1050);
  CHECK(c.queued == 1050);
  CHECK(c.in_memory == 0);
  s.Shutdown();
}

TEST_CASE("sender: the timer flushes a partial batch") {
  Fixture f;
  Sender s(f.loop.get(), f.opts);
  REQUIRE(s.Start().ok());
  s.Enqueue(V("k", 1));
  Timer stop(f.loop.get());
  stop.Start(200, 0, [&] { f.loop.Stop(); });
  f.loop.Run();
  CHECK(f.peer.stored.size() == 1);
  s.Shutdown();
}

TEST_CASE("sender: a reply that is not Zabbix's keeps the values and retries") {
  Fixture f;
  f.peer.mode = Mode::kGarbage;
  Sender s(f.loop.get(), f.opts);
  REQUIRE(s.Start().ok());
  for (int i = 0; i < 5; ++i) s.Enqueue(V("k", i));
  Timer fix(f.loop.get());
  fix.Start(150, 0, [&] { f.peer.mode = Mode::kAccept; });
  REQUIRE(f.Drain(&s).ok());
  CHECK(f.peer.stored.size() == 5);
  CHECK(s.counters().request_errors >= 1);
  s.Shutdown();
}

TEST_CASE("sender: a connection reset mid-reply and a silent peer are retried, nothing lost") {
  for (Mode m : {Mode::kResetMidReply, Mode::kSilent}) {
    Fixture f;
    f.peer.mode = m;
    f.opts.timeout_ms = 100;
    Sender s(f.loop.get(), f.opts);
    REQUIRE(s.Start().ok());
    for (int i = 0; i < 5; ++i) s.Enqueue(V("k", i));
    Timer fix(f.loop.get());
    fix.Start(250, 0, [&] { f.peer.mode = Mode::kAccept; });
    REQUIRE(f.Drain(&s).ok());
    // The peer saw every value once as processed (the broken replies stored nothing).
    CHECK(f.peer.stored.size() == 5);
    s.Shutdown();
  }
}

TEST_CASE("sender: unreachable Zabbix with give-up reports Unavailable and keeps values") {
  Fixture f;
  f.peer.Stop();
  Sender s(f.loop.get(), f.opts);
  REQUIRE(s.Start().ok());
  s.Enqueue(V("k", 1));
  Status st = f.Drain(&s, /*give_up=*/true);
  CHECK(st.code() == StatusCode::kUnavailable);
  CHECK(st.message().find("127.0.0.1:" + std::to_string(f.opts.port)) != std::string::npos);
  CHECK(s.counters().in_memory == 1);
  CHECK_FALSE(s.counters().reachable);
  s.Shutdown();
  CHECK(s.counters().dropped == 1);  // no spool: counted as lost
}

TEST_CASE("sender: rejected values are traced to their host and key, the rest stored once") {
  Fixture f;
  f.peer.failing_keys = {"bad1", "bad2"};
  f.opts.grace_ms = 100;
  f.opts.batch_values = 64;
  Sender s(f.loop.get(), f.opts);
  std::map<std::string, uint64_t> rejected;
  s.set_on_reject([&](const std::string& host, const std::string& key, uint64_t n, const std::string&) {
    CHECK(host == "host");
    rejected[key] += n;
  });
  REQUIRE(s.Start().ok());
  for (int i = 0; i < 60; ++i) s.Enqueue(V(i % 20 == 3 ? "bad1" : i % 20 == 7 ? "bad2" : "good" + std::to_string(i % 5), i));
  REQUIRE(f.Drain(&s).ok());
  CHECK(rejected["bad1"] == 3);
  CHECK(rejected["bad2"] == 3);
  CHECK(rejected.size() == 2);
  // Bisecting re-sends good values; with (clock, ns) unchanged the history key dedups them.
  std::set<std::tuple<std::string, int64_t, int64_t>> unique;
  for (auto& v : f.peer.stored) {
    unique.insert({v["key"].get<std::string>(), v["clock"].get<int64_t>(), v["ns"].get<int64_t>()});
  }
  CHECK(unique.size() == 54);
  SenderCounters c = s.counters();
  CHECK(c.rejected == 6);
  CHECK(c.sent >= 54);
  s.Shutdown();
}

TEST_CASE("sender: a value for an item Zabbix loads later is delivered within the grace") {
  Fixture f;
  f.peer.failing_keys = {"new.item"};
  Sender s(f.loop.get(), f.opts);
  REQUIRE(s.Start().ok());
  s.Enqueue(V("new.item", 42));
  s.Enqueue(V("old.item", 1));
  Timer cache_sync(f.loop.get());
  cache_sync.Start(200, 0, [&] { f.peer.failing_keys.clear(); });
  REQUIRE(f.Drain(&s).ok());
  bool found = false;
  for (auto& v : f.peer.stored) found |= v["key"] == "new.item" && v["value"] == "42";
  CHECK(found);
  CHECK(s.counters().rejected == 0);
  s.Shutdown();
}

TEST_CASE("sender: memory bound overflows to the spool; restart replays in order, once") {
  char tmpl[] = "/tmp/trapline-sender-spool-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  uint16_t port;
  {
    Fixture f;
    port = f.opts.port;
    f.peer.Stop();  // Zabbix down
    f.opts.memory_values = 10;
    f.opts.spool_dir = dir;
    Sender s(f.loop.get(), f.opts);
    REQUIRE(s.Start().ok());
    for (int i = 0; i < 35; ++i) s.Enqueue(V("k", i));
    Timer t(f.loop.get());
    t.Start(100, 0, [&] { f.loop.Stop(); });
    f.loop.Run();
    CHECK(s.counters().spooled >= 30);
    s.Shutdown();  // the rest goes to the spool too
    CHECK(s.counters().in_spool == 35);
  }
  {
    Fixture f;
    f.peer.Stop();
    f.opts.port = f.peer.Listen(port);  // Zabbix back on the same port
    f.opts.spool_dir = dir;
    f.opts.batch_values = 8;
    f.opts.connections = 1;
    Sender s(f.loop.get(), f.opts);
    REQUIRE(s.Start().ok());
    REQUIRE(f.Drain(&s).ok());
    REQUIRE(f.peer.stored.size() == 35);
    std::string got, want;
    for (int i = 0; i < 35; ++i) {
      got += f.peer.stored[static_cast<size_t>(i)]["value"].get<std::string>() + " ";
      want += std::to_string(i) + " ";
    }
    CHECK(got == want);
    s.Shutdown();
    CHECK(s.counters().in_spool == 0);
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace trapline
