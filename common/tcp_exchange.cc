#include "common/tcp_exchange.h"

#include <cstring>
#include <memory>

namespace trapline {

// Owned jointly by the TcpExchange and libuv: `refs` counts the owner plus each libuv
// handle or request that still has a callback to come. The last one frees the block.
struct TcpExchange::State {
  uv_loop_t* loop;
  std::string host;
  uint16_t port;
  std::string request;
  uint64_t timeout_ms;
  Framer framer;
  Done done;
  std::string peer;
  std::string service;  // the port as text, for getaddrinfo

  int refs = 1;  // the owner
  bool finished = false;
  bool tcp_open = false;

  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_connect_t connect_req;
  uv_write_t write_req;
  uv_getaddrinfo_t gai_req;
  std::string received;

  void Unref() {
    if (--refs == 0) delete this;
  }

  // Reports once, then closes everything.
  void Finish(Result<std::string> r) {
    if (finished) return;
    finished = true;
    uv_timer_stop(&timer);
    CloseSocket();
    Done cb = std::move(done);
    done = nullptr;
    if (cb) cb(std::move(r));  // may destroy the owner; `this` lives while refs > 0
  }

  void CloseSocket() {
    if (tcp_open) {
      tcp_open = false;
      uv_close(reinterpret_cast<uv_handle_t*>(&tcp), [](uv_handle_t* h) {
        static_cast<State*>(h->data)->Unref();
      });
    }
  }

  Status Fail(const char* what, int err) const {
    return UvError(what, err).WithContext(peer);
  }

  void Connect(const sockaddr* addr) {
    int rc = uv_tcp_init(loop, &tcp);
    if (rc != 0) return Finish(Fail("uv_tcp_init", rc));
    tcp.data = this;
    tcp_open = true;
    ++refs;
    uv_tcp_nodelay(&tcp, 1);
    connect_req.data = this;
    ++refs;
    rc = uv_tcp_connect(&connect_req, &tcp, addr, [](uv_connect_t* req, int status) {
      auto* s = static_cast<State*>(req->data);
      s->OnConnect(status);
      s->Unref();
    });
    if (rc != 0) {
      --refs;
      Finish(Fail("connect", rc));
    }
  }

  void OnConnect(int status) {
    if (finished) return;
    if (status != 0) return Finish(Fail("connect", status));
    uv_buf_t buf = uv_buf_init(request.data(), static_cast<unsigned>(request.size()));
    write_req.data = this;
    ++refs;
    int rc = uv_write(&write_req, reinterpret_cast<uv_stream_t*>(&tcp), &buf, 1,
                      [](uv_write_t* req, int st) {
                        auto* s = static_cast<State*>(req->data);
                        if (st != 0 && !s->finished) s->Finish(s->Fail("write", st));
                        s->Unref();
                      });
    if (rc != 0) {
      --refs;
      return Finish(Fail("write", rc));
    }
    rc = uv_read_start(
        reinterpret_cast<uv_stream_t*>(&tcp),
        [](uv_handle_t*, size_t suggested, uv_buf_t* b) {
          b->base = new char[suggested];
          b->len = suggested;
        },
        [](uv_stream_t* stream, ssize_t n, const uv_buf_t* b) {
          std::unique_ptr<char[]> owned(b->base);
          static_cast<State*>(stream->data)->OnRead(n, b->base);
        });
    if (rc != 0) Finish(Fail("read", rc));
  }

  void OnRead(ssize_t n, const char* data) {
    if (finished) return;
    if (n > 0) {
      received.append(data, static_cast<size_t>(n));
      int64_t size = framer(received);
      if (size < 0) {
        return Finish(Status::ProtocolError(peer + ": reply is not in the expected protocol (" +
                                            std::to_string(received.size()) + " bytes received)"));
      }
      if (size > 0 && received.size() >= static_cast<size_t>(size)) {
        received.resize(static_cast<size_t>(size));
        return Finish(std::move(received));
      }
      return;
    }
    if (n == UV_EOF) {
      if (received.empty()) {
        return Finish(Status::Unavailable(peer + ": connection closed without a reply"));
      }
      return Finish(Status::ProtocolError(peer + ": connection closed mid-reply after " +
                                          std::to_string(received.size()) + " bytes"));
    }
    if (n < 0) Finish(Fail(received.empty() ? "read" : "read (mid-reply)", static_cast<int>(n)));
  }
};

TcpExchange::TcpExchange(uv_loop_t* loop, std::string host, uint16_t port, std::string request,
                         uint64_t timeout_ms, Framer framer, Done done)
    : state_(new State()) {  // value-initialised: the libuv structs start zeroed
  state_->loop = loop;
  state_->host = std::move(host);
  state_->port = port;
  state_->request = std::move(request);
  state_->timeout_ms = timeout_ms;
  state_->framer = std::move(framer);
  state_->done = std::move(done);
  bool v6 = state_->host.find(':') != std::string::npos;
  peer_ = (v6 ? "[" + state_->host + "]" : state_->host) + ":" + std::to_string(port);
  state_->peer = peer_;
  state_->service = std::to_string(port);
  uv_timer_init(loop, &state_->timer);
  state_->timer.data = state_;
  ++state_->refs;  // the timer, until its close callback
}

TcpExchange::~TcpExchange() {
  State* s = state_;
  s->done = nullptr;
  s->finished = true;
  uv_timer_stop(&s->timer);
  s->CloseSocket();
  if (s->gai_req.data == s) uv_cancel(reinterpret_cast<uv_req_t*>(&s->gai_req));
  uv_close(reinterpret_cast<uv_handle_t*>(&s->timer), [](uv_handle_t* h) {
    static_cast<State*>(h->data)->Unref();
  });
  s->Unref();
}

void TcpExchange::Start() {
  State* s = state_;
  uv_timer_start(
      &s->timer,
      [](uv_timer_t* t) {
        auto* st = static_cast<State*>(t->data);
        st->Finish(Status::Timeout(st->peer + ": no complete reply within " +
                                   std::to_string(st->timeout_ms) + " ms"));
      },
      s->timeout_ms, 0);

  sockaddr_storage addr{};
  if (uv_ip4_addr(s->host.c_str(), s->port, reinterpret_cast<sockaddr_in*>(&addr)) == 0 ||
      uv_ip6_addr(s->host.c_str(), s->port, reinterpret_cast<sockaddr_in6*>(&addr)) == 0) {
    s->Connect(reinterpret_cast<sockaddr*>(&addr));
    return;
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  s->gai_req.data = s;
  ++s->refs;
  int rc = uv_getaddrinfo(
      s->loop, &s->gai_req,
      [](uv_getaddrinfo_t* req, int status, addrinfo* res) {
        auto* st = static_cast<State*>(req->data);
        req->data = nullptr;
        if (!st->finished) {
          if (status != 0 || res == nullptr) {
            st->Finish(Status::Unavailable(st->peer + ": cannot resolve host: " +
                                           (status != 0 ? uv_strerror(status) : "no address")));
          } else {
            st->Connect(res->ai_addr);
          }
        }
        uv_freeaddrinfo(res);
        st->Unref();
      },
      s->host.c_str(), s->service.c_str(), &hints);
  if (rc != 0) {
    s->gai_req.data = nullptr;
    --s->refs;
    s->Finish(s->Fail("getaddrinfo", rc));
  }
}

}  // namespace trapline
