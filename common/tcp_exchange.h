#pragma once
// One request, one reply, one TCP connection: what the Zabbix trapper protocol does (the
// server closes the connection after its reply). Non-blocking on a libuv loop.

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "common/status.h"
#include "common/uv.h"

namespace trapline {

class TcpExchange {
 public:
  // Called exactly once with the reply bytes or the error, unless the TcpExchange is
  // destroyed first (then never). May destroy the TcpExchange.
  using Done = std::function<void(Result<std::string> reply)>;
  // Given the bytes received so far: 0 if more are needed, otherwise the reply's total size
  // (the reply may end before the peer closes), or -1 when the bytes can never be a reply.
  using Framer = std::function<int64_t(std::string_view received)>;

  // `host` is an IPv4/IPv6 literal or a name (resolved with getaddrinfo off the loop).
  // `timeout_ms` bounds the whole exchange: resolve, connect, write and read.
  TcpExchange(uv_loop_t* loop, std::string host, uint16_t port, std::string request,
              uint64_t timeout_ms, Framer framer, Done done);
  ~TcpExchange();
  TcpExchange(const TcpExchange&) = delete;
  TcpExchange& operator=(const TcpExchange&) = delete;

  // REQUIRES: called once.
  void Start();

  // "host:port" ("[v6]:port"), for logs.
  std::string_view peer() const { return peer_; }

 private:
  struct State;
  State* state_;  // freed once the socket is closed and every libuv request has completed
  std::string peer_;
};

}  // namespace trapline
