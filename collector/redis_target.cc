#include "collector/redis_target.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include <charconv>
#include <new>
#include <string>
#include <vector>

#include "plugins/redis/redis.h"

namespace trapline {

Result<RedisAddress> ParseRedisUri(const std::string& uri) {
  constexpr std::string_view kScheme = "redis://";
  if (uri.rfind(kScheme, 0) != 0) {
    return Status::InvalidArgument("'" + uri + "' is not a redis:// URI");
  }
  std::string_view rest = std::string_view(uri).substr(kScheme.size());
  RedisAddress a;
  if (size_t at = rest.rfind('@'); at != std::string_view::npos) {
    std::string_view cred = rest.substr(0, at);
    rest = rest.substr(at + 1);
    size_t colon = cred.find(':');
    a.user = std::string(cred.substr(0, colon));
    if (colon != std::string_view::npos) a.password = std::string(cred.substr(colon + 1));
  }
  if (size_t slash = rest.find('/'); slash != std::string_view::npos) rest = rest.substr(0, slash);
  std::string_view hostport = rest;
  std::string_view port;
  if (!hostport.empty() && hostport.front() == '[') {  // [v6]:port
    size_t close = hostport.find(']');
    if (close == std::string_view::npos) return Status::InvalidArgument("bad IPv6 address in '" + uri + "'");
    a.host = std::string(hostport.substr(1, close - 1));
    if (close + 1 < hostport.size() && hostport[close + 1] == ':') port = hostport.substr(close + 2);
  } else {
    size_t colon = hostport.rfind(':');
    a.host = std::string(hostport.substr(0, colon));
    if (colon != std::string_view::npos) port = hostport.substr(colon + 1);
  }
  if (a.host.empty()) return Status::InvalidArgument("no host in '" + uri + "'");
  if (!port.empty()) {
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), a.port);
    if (ec != std::errc() || end != port.data() + port.size() || a.port < 1 || a.port > 65535) {
      return Status::InvalidArgument("bad port '" + std::string(port) + "' in '" + uri + "'");
    }
  }
  return a;
}

// One hiredis connection. hiredis owns the redisAsyncContext; we own the Link, which outlives
// the context: hiredis may call our callbacks (with NULL replies) while it frees the context,
// so the Link is deleted only from a zero-delay timer after the context is gone. `owner` is
// cleared when the target lets go, so late callbacks find no one to call.
struct RedisTarget::Link {
  RedisTarget* owner;
  redisAsyncContext* ac = nullptr;
  std::unique_ptr<SocketWatcher> watcher;
  bool want_read = false;
  bool want_write = false;
  bool context_gone = false;  // hiredis called cleanup
  bool batching = false;      // defer watch changes until the end of our own call
  Timer reaper;

  Link(RedisTarget* o, uv_loop_t* loop) : owner(o), reaper(loop) {}

  void UpdateWatch() {
    if (watcher && !batching) (void)watcher->Watch(want_read, want_write);
  }

  // hiredis event hooks.
  static void AddRead(void* p) { auto* l = static_cast<Link*>(p); l->want_read = true; l->UpdateWatch(); }
  static void DelRead(void* p) { auto* l = static_cast<Link*>(p); l->want_read = false; l->UpdateWatch(); }
  static void AddWrite(void* p) { auto* l = static_cast<Link*>(p); l->want_write = true; l->UpdateWatch(); }
  static void DelWrite(void* p) { auto* l = static_cast<Link*>(p); l->want_write = false; l->UpdateWatch(); }
  static void Cleanup(void* p) {
    auto* l = static_cast<Link*>(p);
    l->watcher.reset();  // closes the poll handle before hiredis closes the socket
    l->context_gone = true;
    l->ac = nullptr;
  }

  // Frees the Link once hiredis is done with it.
  static void Release(Link* l) {
    l->owner = nullptr;
    l->reaper.Start(0, 0, [l] { delete l; });
  }
};

RedisTarget::RedisTarget(uv_loop_t* loop, TargetConfig config, DeliverFn deliver)
    : TargetBase(loop, std::move(config), std::move(deliver)), connect_deadline_(loop) {}

RedisTarget::~RedisTarget() { Disconnect(); }

void RedisTarget::Connect() {
  auto addr = ParseRedisUri(config().uri);
  if (!addr.ok()) return Failed(addr.status());
  password_ = addr->password;
  if (!config().password.empty()) password_ = config().password;
  if (!config().password_file.empty()) {
    auto password = ReadSecretFile(config().password_file, "password_file");
    if (!password.ok()) return Failed(password.status());
    password_ = std::move(password).value();
  }
  redisAsyncContext* ac = redisAsyncConnect(addr->host.c_str(), addr->port);
  if (ac == nullptr) return Failed(Status::Internal("redisAsyncConnect: out of memory"));
  if (ac->err) {
    Status st = Status::Unavailable(std::string("connect: ") + ac->errstr);
    redisAsyncFree(ac);
    return Failed(st);
  }
  connect_deadline_.Start(timeout_ms(), 0, [this] {
    Failed(Status::Timeout("not connected and authenticated within " +
                           std::to_string(timeout_ms()) + " ms"));
  });
  auto* link = new Link(this, loop());
  link->ac = ac;
  link->watcher = std::make_unique<SocketWatcher>(
      loop(), ac->c.fd, [link, counter = busy_counter()](int status, int events) {
    if (link->ac == nullptr) return;
    BusyScope busy(counter);
    if (status < 0) {
      // A socket error: let hiredis find it on read.
      redisAsyncHandleRead(link->ac);
      return;
    }
    if (events & UV_READABLE) redisAsyncHandleRead(link->ac);
    if (link->ac != nullptr && (events & UV_WRITABLE)) redisAsyncHandleWrite(link->ac);
  });
  ac->ev.data = link;
  ac->ev.addRead = Link::AddRead;
  ac->ev.delRead = Link::DelRead;
  ac->ev.addWrite = Link::AddWrite;
  ac->ev.delWrite = Link::DelWrite;
  ac->ev.cleanup = Link::Cleanup;
  ac->data = link;
  link_ = link;
  redisAsyncSetConnectCallback(ac, [](const redisAsyncContext* c, int status) {
    auto* l = static_cast<Link*>(c->data);
    if (l->owner != nullptr) l->owner->OnConnected(status, c->errstr);
  });
  redisAsyncSetDisconnectCallback(ac, [](const redisAsyncContext* c, int status) {
    auto* l = static_cast<Link*>(c->data);
    if (l->owner != nullptr && status != REDIS_OK) {
      RedisTarget* owner = l->owner;
      owner->Failed(Status::Unavailable(std::string("connection lost: ") +
                                        (c->errstr[0] != '\0' ? c->errstr : "closed by the server")));
    }
  });
  // hiredis writes commands once connected: AUTH goes first, so nothing else runs unauthenticated.
  if (!password_.empty()) {
    const char* argv[3] = {"AUTH", addr->user.c_str(), password_.c_str()};
    size_t lens[3] = {4, addr->user.size(), password_.size()};
    int argc = addr->user.empty() ? 2 : 3;
    if (addr->user.empty()) {
      argv[1] = password_.c_str();
      lens[1] = password_.size();
    }
    redisAsyncCommandArgv(
        ac,
        [](redisAsyncContext* c, void* reply, void*) {
          auto* l = static_cast<Link*>(c->data);
          if (l->owner != nullptr) l->owner->OnAuth(reply, c->errstr);
        },
        nullptr, argc, argv, lens);
  }
}

void RedisTarget::OnConnected(int status, const char* errstr) {
  if (status != REDIS_OK) {
    // hiredis frees the context after this callback.
    link_->owner = nullptr;
    Link::Release(link_);
    link_ = nullptr;
    return Failed(Status::Unavailable(std::string("connect: ") + errstr));
  }
  if (password_.empty()) {
    connect_deadline_.Stop();
    Connected();
  }
}

void RedisTarget::OnAuth(void* r, const char* errstr) {
  auto* reply = static_cast<redisReply*>(r);
  if (reply == nullptr) return Failed(Status::Unavailable(std::string("AUTH: ") + errstr));
  if (reply->type == REDIS_REPLY_ERROR) {
    return Failed(Status::Rejected("authentication failed: " + std::string(reply->str, reply->len)));
  }
  connect_deadline_.Stop();
  Connected();
}

void RedisTarget::Tick() {
  // The command never changes: hiredis formats it once, and it is handed over as it is (no
  // argv formatting per tick).
  static const std::string command = [] {
    std::vector<std::string> args = plugins::redis::TickCommand();
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (const auto& a : args) {
      argv.push_back(a.c_str());
      lens.push_back(a.size());
    }
    char* formatted = nullptr;
    int len = redisFormatCommandArgv(&formatted, static_cast<int>(argv.size()), argv.data(),
                                     lens.data());
    if (len < 0) throw std::bad_alloc();  // its only failure
    std::string out(formatted, static_cast<size_t>(len));
    redisFreeCommand(formatted);
    return out;
  }();
  // Queue the command and write it at once instead of waiting for a writable event: the
  // socket is almost always writable, and this saves a wake-up per tick. hiredis asks for
  // write interest when the command is queued and drops it when it is written; with the
  // changes folded into one at the end, the watch stays "readable" and no epoll_ctl is made
  // (libuv's uv_poll_start removes the socket from epoll and adds it again on every change).
  Link* l = link_;
  l->batching = true;
  int rc = redisAsyncFormattedCommand(
      l->ac,
      [](redisAsyncContext* c, void* reply, void*) {
        auto* link = static_cast<Link*>(c->data);
        if (link->owner != nullptr) link->owner->OnInfo(reply, c->errstr);
      },
      nullptr, command.data(), command.size());
  if (rc != REDIS_OK) {
    l->batching = false;
    return Failed(Status::Unavailable("cannot queue INFO: connection closing"));
  }
  redisAsyncHandleWrite(l->ac);
  l->batching = false;
  if (link_ == l) l->UpdateWatch();
}

void RedisTarget::OnInfo(void* r, const char* errstr) {
  auto* reply = static_cast<redisReply*>(r);
  if (reply == nullptr) return Failed(Status::Unavailable(std::string("INFO: ") + errstr));
  if (reply->type == REDIS_REPLY_ERROR) {
    return Failed(Status::Rejected("INFO refused: " + std::string(reply->str, reply->len)));
  }
  if (reply->type != REDIS_REPLY_STRING) {
    return Failed(Status::ProtocolError("INFO answered with a reply of type " + std::to_string(reply->type)));
  }
  Deliver(plugins::redis::ParseInfo(std::string_view(reply->str, reply->len)));
}

void RedisTarget::Disconnect() {
  connect_deadline_.Stop();
  if (link_ == nullptr) return;
  Link* l = link_;
  link_ = nullptr;
  l->owner = nullptr;
  // Inside a hiredis callback this only marks the context; hiredis frees it on return.
  if (l->ac != nullptr) redisAsyncFree(l->ac);
  Link::Release(l);
}

}  // namespace trapline
