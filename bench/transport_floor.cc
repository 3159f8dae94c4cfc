// The floor under the collector's CPU figures: what the bare transport of one tick costs on
// this machine, with nothing of trapline in the way. bench/collector_load.py --floor runs it
// beside the collector, against the same server, so that the two figures share one run.
//
//   transport_floor redis --port P --connections N --seconds S [--command info|echo]
//       N TCP connections to one Redis server; each sends INFO (or a 1-byte ECHO: the least a
//       round trip can carry) once a second and reads the whole reply, no parsing. The ticks
//       are spread over 10 slots a second and replies are read after a 2 ms pause, as the
//       collector does (TargetBase::kTickSlotMs, reply_batch_ms), with plain epoll.
//   transport_floor postgresql --uri URI --connections N --seconds S
//       N libpq connections; each runs the postgresql plugin's prepared tick statement
//       (TickQueryText, without the database sizes: what the collector sends in all ticks but
//       one a minute) once a second and drops the result, unread. Same slots and pause.
//   transport_floor ssh-stream --uri ssh://user@host:port --identity KEY --known-hosts FILE
//                              [--mib M] [--tick-bytes B]
//       One libssh2 session reads M MiB from `head -c` on the target, in the largest packets
//       sshd sends: the client CPU per KiB received (decryption, MAC, kernel), the least
//       libssh2 can spend on a tick's B bytes.
//
// CPU is the process's (CLOCK_PROCESS_CPUTIME_ID, user and kernel from getrusage) over a
// window after a warm-up. It prints figures and asserts nothing about speed; it exits 1 with
// the reason when a server cannot be reached.

#include <arpa/inet.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <libssh2.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "collector/ssh_wire.h"
#include "plugins/postgresql/postgresql.h"

namespace {

constexpr int kSlots = 10;          // as TargetBase::kTickSlotMs = 100
constexpr int kReplyBatchMs = 2;    // as the collector's reply_batch_ms default
constexpr double kWarmupSeconds = 3;

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "transport_floor: %s\n", what.c_str());
  std::exit(1);
}

double Monotonic() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

struct Cpu {
  double total, user, kernel;  // seconds
};

Cpu ProcessCpu() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto sec = [](timeval tv) { return static_cast<double>(tv.tv_sec) + tv.tv_usec * 1e-6; };
  return {static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9,
          sec(ru.ru_utime), sec(ru.ru_stime)};
}

void SleepSeconds(double s) {
  if (s <= 0) return;
  timespec ts{static_cast<time_t>(s), static_cast<long>((s - static_cast<time_t>(s)) * 1e9)};
  nanosleep(&ts, nullptr);
}

// One kind of connection: starts a tick's request, and consumes what arrived (true once the
// tick's reply is complete).
class Transport {
 public:
  virtual ~Transport() = default;
  virtual int fd(int i) const = 0;
  virtual void StartTick(int i) = 0;
  virtual bool OnReadable(int i) = 0;
  virtual int connections() const = 0;
  uint64_t reply_bytes = 0;
};

// Ticks every connection once a second in its slot (i % kSlots) and reads replies in batches,
// as the collector's loop does; returns the CPU per target-second over `seconds` after the
// warm-up.
void RunSlots(Transport* t, double seconds, const char* kind) {
  int n = t->connections();
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) Fail(std::string("epoll_create1: ") + std::strerror(errno));
  for (int i = 0; i < n; ++i) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = static_cast<uint32_t>(i);
    if (epoll_ctl(ep, EPOLL_CTL_ADD, t->fd(i), &ev) != 0) Fail("epoll_ctl failed");
  }
  std::vector<char> busy(n, 0);
  int outstanding = 0;  // requests sent whose replies are not complete yet (any slot's)
  const double start = Monotonic();
  double window_start = 0;
  Cpu cpu0{};
  uint64_t ticks = 0, late = 0, bytes0 = 0;
  for (int slot = 0;; ++slot) {
    double now = Monotonic();
    if (window_start == 0 && now - start >= kWarmupSeconds) {
      window_start = now;
      cpu0 = ProcessCpu();
      ticks = 0;
      late = 0;
      bytes0 = t->reply_bytes;
    }
    if (window_start != 0 && now - window_start >= seconds) break;
    const double slot_end = start + (slot + 1) * (1.0 / kSlots);
    for (int i = slot % kSlots; i < n; i += kSlots) {
      if (busy[i]) {
        ++late;  // its last reply has not come yet: skip this tick, as a target would
        continue;
      }
      t->StartTick(i);
      busy[i] = 1;
      ++outstanding;
    }
    // Replies are read until every outstanding one is in (also late ones of earlier slots) or
    // the slot ends.
    epoll_event events[256];
    while (outstanding > 0) {
      SleepSeconds(kReplyBatchMs / 1000.0);
      int timeout_ms = static_cast<int>((slot_end - Monotonic()) * 1000);
      int k = epoll_wait(ep, events, 256, 0);
      if (k == 0) k = epoll_wait(ep, events, 256, timeout_ms > 0 ? timeout_ms : 0);
      if (k < 0 && errno != EINTR) Fail(std::string("epoll_wait: ") + std::strerror(errno));
      for (int j = 0; j < k; ++j) {
        int i = static_cast<int>(events[j].data.u32);
        if (busy[i] && t->OnReadable(i)) {
          busy[i] = 0;
          ++ticks;
          --outstanding;
        }
      }
      if (k <= 0 && Monotonic() >= slot_end) break;
    }
    SleepSeconds(slot_end - Monotonic());
  }
  Cpu cpu1 = ProcessCpu();
  double elapsed = Monotonic() - window_start;
  auto per = [&](double a, double b) { return (b - a) / elapsed / n * 1e6; };
  // Per target-second as the collector's figure is counted; per tick too, which differs when
  // the server could not answer every tick in time (late: skipped, as a target skips them).
  std::printf(
      "floor %s: %d connections, %.1f us CPU per target-second (user %.1f, kernel %.1f), "
      "%.1f us per tick, %.0f ticks/s, %llu late, %.0f B per reply\n",
      kind, n, per(cpu0.total, cpu1.total), per(cpu0.user, cpu1.user),
      per(cpu0.kernel, cpu1.kernel), ticks ? (cpu1.total - cpu0.total) / ticks * 1e6 : 0.0,
      ticks / elapsed, static_cast<unsigned long long>(late),
      ticks ? static_cast<double>(t->reply_bytes - bytes0) / ticks : 0.0);
  close(ep);
}

// ---- Redis: raw sockets, RESP bulk replies.

class RedisFloor : public Transport {
 public:
  RedisFloor(int port, int n, std::string command) : command_(std::move(command)), conns_(n) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    for (Conn& c : conns_) {
      c.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (connect(c.fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
        Fail("redis 127.0.0.1:" + std::to_string(port) + ": " + std::strerror(errno));
      }
      int one = 1;
      setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      fcntl(c.fd, F_SETFL, O_NONBLOCK);
    }
  }
  ~RedisFloor() override {
    for (Conn& c : conns_) close(c.fd);
  }
  int fd(int i) const override { return conns_[i].fd; }
  int connections() const override { return static_cast<int>(conns_.size()); }
  void StartTick(int i) override {
    Conn& c = conns_[i];
    c.need = -1;
    c.got = 0;
    if (write(c.fd, command_.data(), command_.size()) != static_cast<ssize_t>(command_.size())) {
      Fail(std::string("redis write: ") + std::strerror(errno));
    }
  }
  bool OnReadable(int i) override {
    Conn& c = conns_[i];
    for (;;) {
      ssize_t r = read(c.fd, buf_, sizeof(buf_));
      if (r == 0) Fail("redis closed the connection");
      if (r < 0) return false;  // EAGAIN: the rest comes later
      if (c.need < 0) {         // "$<len>\r\n" opens a bulk reply (INFO and ECHO)
        const char* eol = static_cast<const char*>(std::memchr(buf_, '\n', r));
        if (buf_[0] != '$' || eol == nullptr) Fail("unexpected reply from redis");
        c.need = std::atol(buf_ + 1) + (eol - buf_ + 1) + 2;
      }
      c.got += r;
      reply_bytes += static_cast<uint64_t>(r);
      if (c.got >= c.need) return true;
    }
  }

 private:
  struct Conn {
    int fd = -1;
    long need = -1, got = 0;
  };
  std::string command_;
  std::vector<Conn> conns_;
  char buf_[65536];
};

// ---- PostgreSQL: libpq, the plugin's tick statement, prepared.

class PostgresFloor : public Transport {
 public:
  PostgresFloor(const std::string& uri, int n) {
    for (int i = 0; i < n; ++i) {
      PGconn* c = PQconnectdb(uri.c_str());
      if (PQstatus(c) != CONNECTION_OK) Fail(std::string("postgresql: ") + PQerrorMessage(c));
      conns_.push_back(c);
      std::string sql =
          trapline::plugins::postgresql::TickQueryText(PQserverVersion(c), /*with_sizes=*/false);
      if (sql.empty()) Fail("postgresql: server version not supported by the plugin");
      PGresult* r = PQprepare(c, "tick", sql.c_str(), 0, nullptr);
      if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        Fail(std::string("postgresql prepare: ") + PQresultErrorMessage(r));
      }
      PQclear(r);
      PQsetnonblocking(c, 1);
    }
  }
  ~PostgresFloor() override {
    for (PGconn* c : conns_) PQfinish(c);
  }
  int fd(int i) const override { return PQsocket(conns_[i]); }
  int connections() const override { return static_cast<int>(conns_.size()); }
  void StartTick(int i) override {
    if (!PQsendQueryPrepared(conns_[i], "tick", 0, nullptr, nullptr, nullptr, 0) ||
        PQflush(conns_[i]) != 0) {
      Fail(std::string("postgresql send: ") + PQerrorMessage(conns_[i]));
    }
  }
  bool OnReadable(int i) override {
    PGconn* c = conns_[i];
    if (!PQconsumeInput(c)) Fail(std::string("postgresql: ") + PQerrorMessage(c));
    while (!PQisBusy(c)) {
      PGresult* r = PQgetResult(c);
      if (r == nullptr) return true;
      if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        Fail(std::string("postgresql tick: ") + PQresultErrorMessage(r));
      }
      for (int row = 0; row < PQntuples(r); ++row) reply_bytes += PQgetlength(r, row, 0);
      PQclear(r);
    }
    return false;
  }

 private:
  std::vector<PGconn*> conns_;
};

// ---- SSH: libssh2's receive cost per byte, in the largest packets.

void SshStream(const std::string& uri_text, const std::string& identity,
               const std::string& known_hosts, double mib, double tick_bytes) {
  auto uri = trapline::ssh::ParseSshUri(uri_text);
  if (!uri.ok()) Fail(uri.status().message());
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* ai = nullptr;
  std::string port = std::to_string(uri->port);
  if (getaddrinfo(uri->host.c_str(), port.c_str(), &hints, &ai) != 0 || ai == nullptr) {
    Fail("cannot resolve " + uri->host);
  }
  int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
    Fail(uri_text + ": " + std::strerror(errno));
  }
  freeaddrinfo(ai);
  libssh2_init(0);
  LIBSSH2_SESSION* s = libssh2_session_init();
  libssh2_session_set_blocking(s, 1);
  if (libssh2_session_handshake(s, fd) != 0) Fail("ssh handshake failed");
  // The host key is checked as the collector checks it: listed in known_hosts, or refused.
  size_t key_len = 0;
  int key_type = 0;
  const char* key = libssh2_session_hostkey(s, &key_len, &key_type);
  LIBSSH2_KNOWNHOSTS* kh = libssh2_knownhost_init(s);
  if (key == nullptr || libssh2_knownhost_readfile(kh, known_hosts.c_str(),
                                                   LIBSSH2_KNOWNHOST_FILE_OPENSSH) < 0) {
    Fail("cannot read known_hosts " + known_hosts);
  }
  int check = libssh2_knownhost_checkp(
      kh, uri->host.c_str(), uri->port, key, key_len,
      LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW, nullptr);
  if (check != LIBSSH2_KNOWNHOST_CHECK_MATCH) Fail("host key not in " + known_hosts);
  libssh2_knownhost_free(kh);
  if (libssh2_userauth_publickey_fromfile(s, uri->user.c_str(), nullptr, identity.c_str(),
                                          nullptr) != 0) {
    Fail("authentication with " + identity + " failed");
  }
  LIBSSH2_CHANNEL* ch = libssh2_channel_open_session(s);
  auto bytes = static_cast<uint64_t>(mib * 1024 * 1024);
  std::string cmd = "head -c " + std::to_string(bytes) + " /dev/zero";
  if (ch == nullptr || libssh2_channel_exec(ch, cmd.c_str()) != 0) Fail("exec failed");
  const char* cipher = libssh2_session_methods(s, LIBSSH2_METHOD_CRYPT_SC);
  const char* mac = libssh2_session_methods(s, LIBSSH2_METHOD_MAC_SC);
  static char buf[256 * 1024];
  uint64_t got = 0;
  Cpu cpu0 = ProcessCpu();
  for (;;) {
    ssize_t r = libssh2_channel_read(ch, buf, sizeof(buf));
    if (r < 0) Fail("channel read failed: " + std::to_string(r));
    if (r == 0 && libssh2_channel_eof(ch)) break;
    got += static_cast<uint64_t>(r);
  }
  Cpu cpu1 = ProcessCpu();
  if (got != bytes) Fail("got " + std::to_string(got) + " of " + std::to_string(bytes) + " bytes");
  double ns_per_kib = (cpu1.total - cpu0.total) / (static_cast<double>(got) / 1024) * 1e9;
  std::printf(
      "floor ssh-stream: libssh2 %s, %s/%s: %.0f ns CPU per KiB received (user %.0f, kernel "
      "%.0f) over %.0f MiB; a tick of %.0f B: %.1f us\n",
      libssh2_version(0), cipher ? cipher : "?", mac ? mac : "?", ns_per_kib,
      (cpu1.user - cpu0.user) / (static_cast<double>(got) / 1024) * 1e9,
      (cpu1.kernel - cpu0.kernel) / (static_cast<double>(got) / 1024) * 1e9, mib, tick_bytes,
      ns_per_kib * tick_bytes / 1024 / 1000);
  libssh2_channel_close(ch);
  libssh2_channel_free(ch);
  libssh2_session_disconnect(s, "done");
  libssh2_session_free(s);
  close(fd);
  libssh2_exit();
}

constexpr const char* kUsage =
    "usage: transport_floor redis --port P --connections N --seconds S [--command info|echo]\n"
    "       transport_floor postgresql --uri URI --connections N --seconds S\n"
    "       transport_floor ssh-stream --uri ssh://user@host:port --identity KEY "
    "--known-hosts FILE [--mib M] [--tick-bytes B]\n";

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0) {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  std::string kind = argv[1];
  std::map<std::string, std::string> opt = {{"--command", "info"}, {"--mib", "256"},
                                            {"--tick-bytes", "11500"}, {"--seconds", "20"}};
  for (int i = 2; i < argc; i += 2) {
    if (i + 1 >= argc || std::strncmp(argv[i], "--", 2) != 0) {
      std::fprintf(stderr, "transport_floor: bad argument '%s'\n%s", argv[i], kUsage);
      return 2;
    }
    opt[argv[i]] = argv[i + 1];
  }
  auto need = [&](const char* name) {
    if (!opt.count(name)) {
      std::fprintf(stderr, "transport_floor: %s needs %s\n%s", kind.c_str(), name, kUsage);
      std::exit(2);
    }
    return opt[name];
  };
  double seconds = std::atof(opt["--seconds"].c_str());
  if (kind == "redis") {
    std::string command = opt["--command"] == "echo" ? "*2\r\n$4\r\nECHO\r\n$1\r\nx\r\n"
                                                     : "*1\r\n$4\r\nINFO\r\n";
    RedisFloor t(std::atoi(need("--port").c_str()), std::atoi(need("--connections").c_str()),
                 command);
    RunSlots(&t, seconds, opt["--command"] == "echo" ? "redis echo" : "redis info");
  } else if (kind == "postgresql") {
    PostgresFloor t(need("--uri"), std::atoi(need("--connections").c_str()));
    RunSlots(&t, seconds, "postgresql tick");
  } else if (kind == "ssh-stream") {
    SshStream(need("--uri"), need("--identity"), need("--known-hosts"),
              std::atof(opt["--mib"].c_str()), std::atof(opt["--tick-bytes"].c_str()));
  } else {
    std::fprintf(stderr, "transport_floor: unknown kind '%s'\n%s", kind.c_str(), kUsage);
    return 2;
  }
  return 0;
}
