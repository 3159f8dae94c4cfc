#include "collector/ssh_target.h"

#include <fcntl.h>
#include <libssh2.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <unordered_map>
#include <utility>

#include "collector/ssh_keys.h"

namespace trapline {

namespace linuxhost = plugins::linuxhost;
namespace sftp = ssh::sftp;

namespace {

// Flow-control window and largest packet of our channels. The window bounds what the server
// may send before we read it (and so what libssh2 may buffer for us). 2 MiB (libssh2's own
// default) lasts about 180 ticks of a small host before TopUpWindow() sends a WINDOW_ADJUST
// (a packet, a send and a wake-up of sshd); 256 KiB needed one every dozen ticks.
constexpr unsigned kChannelWindow = 2 * 1024 * 1024;
constexpr unsigned kChannelPacket = 32 * 1024;
// One READ asks for this much; seq_files answer at most a page per read() anyway.
constexpr uint32_t kReadLength = 64 * 1024;
// Bytes asked from the channel per libssh2_channel_read().
constexpr size_t kReadChunk = 16 * 1024;
// The mount table is read every this many ticks (and at once when a filesystem's statvfs says
// another filesystem now answers at its mountpoint): it rarely changes, and on container hosts
// it is the largest file of a tick (tens of KB for hundreds of mounts). Between reads the last
// table stands; a new mount is seen within this many ticks, an unmount at the next tick.
constexpr int kMountsEveryTicks = 10;
// A file larger than this is not parsed (a sanity bound on memory, not a real limit).
constexpr uint64_t kMaxFileBytes = 4u << 20;
// Request ids: reads use the file's index, these ranges the rest.
constexpr uint32_t kOpenIdBase = 0x10000000;
constexpr uint32_t kStatvfsIdBase = 0x20000000;
constexpr uint32_t kProbeIdBase = 0x30000000;

std::string LastError(LIBSSH2_SESSION* s) {
  char* msg = nullptr;
  int len = 0;
  int code = libssh2_session_last_error(s, &msg, &len, 0);
  std::string out = msg != nullptr && len > 0 ? std::string(msg, static_cast<size_t>(len))
                                              : std::string("unknown error");
  return out + " (libssh2 error " + std::to_string(code) + ")";
}

bool FileExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

Result<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::IoError(path + ": " + std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const char* HostKeyTypeName(int type) {
  switch (type) {
    case LIBSSH2_HOSTKEY_TYPE_RSA: return "ssh-rsa";
    case LIBSSH2_HOSTKEY_TYPE_DSS: return "ssh-dss";
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_256: return "ecdsa-sha2-nistp256";
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_384: return "ecdsa-sha2-nistp384";
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_521: return "ecdsa-sha2-nistp521";
    case LIBSSH2_HOSTKEY_TYPE_ED25519: return "ssh-ed25519";
    default: return "unknown-key-type";
  }
}

int KnownHostKeyBits(int hostkey_type) {
  switch (hostkey_type) {
    case LIBSSH2_HOSTKEY_TYPE_RSA: return LIBSSH2_KNOWNHOST_KEY_SSHRSA;
    case LIBSSH2_HOSTKEY_TYPE_DSS: return LIBSSH2_KNOWNHOST_KEY_SSHDSS;
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_256: return LIBSSH2_KNOWNHOST_KEY_ECDSA_256;
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_384: return LIBSSH2_KNOWNHOST_KEY_ECDSA_384;
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_521: return LIBSSH2_KNOWNHOST_KEY_ECDSA_521;
    case LIBSSH2_HOSTKEY_TYPE_ED25519: return LIBSSH2_KNOWNHOST_KEY_ED25519;
    default: return LIBSSH2_KNOWNHOST_KEY_UNKNOWN;
  }
}

// Host key algorithms for a known_hosts key type, most preferred first.
const char* HostKeyMethods(int knownhost_key_bits) {
  switch (knownhost_key_bits) {
    case LIBSSH2_KNOWNHOST_KEY_ED25519: return "ssh-ed25519";
    case LIBSSH2_KNOWNHOST_KEY_ECDSA_256: return "ecdsa-sha2-nistp256";
    case LIBSSH2_KNOWNHOST_KEY_ECDSA_384: return "ecdsa-sha2-nistp384";
    case LIBSSH2_KNOWNHOST_KEY_ECDSA_521: return "ecdsa-sha2-nistp521";
    case LIBSSH2_KNOWNHOST_KEY_SSHRSA: return "rsa-sha2-512,rsa-sha2-256,ssh-rsa";
    case LIBSSH2_KNOWNHOST_KEY_SSHDSS: return "ssh-dss";
    default: return nullptr;
  }
}
constexpr const char* kAllHostKeyMethods =
    "ssh-ed25519,ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,ecdsa-sha2-nistp521,rsa-sha2-512,"
    "rsa-sha2-256,ssh-rsa,ssh-dss";

// libssh2's sign callback for RSA keys: rsa-sha2-512 through OpenSSL (see ssh_keys.h).
// *abstract is the RsaSha2Signer. The signature is allocated with malloc(), libssh2's default
// allocator, which frees it.
int RsaSha2Sign(LIBSSH2_SESSION*, unsigned char** sig, size_t* sig_len, const unsigned char* data,
                size_t data_len, void** abstract) noexcept {
  const auto* signer = static_cast<const ssh::RsaSha2Signer*>(*abstract);
  auto s = signer->Sign(std::string_view(reinterpret_cast<const char*>(data), data_len));
  if (!s.ok()) {
    spdlog::warn("[ssh] {}", s.status().message());
    return -1;
  }
  *sig = static_cast<unsigned char*>(std::malloc(s->size()));
  if (*sig == nullptr) return -1;
  std::memcpy(*sig, s->data(), s->size());
  *sig_len = s->size();
  return 0;
}

// Parse() warns "<path>: not read" for every file missing from its map. Files this target
// already explained (absent for the session, logged once; or failed this tick, with the
// reason) need no second warning.
void DropNotReadWarnings(const std::vector<std::string>& explained,
                         std::vector<std::string>* warnings) {
  if (explained.empty()) return;
  constexpr std::string_view kSuffix = ": not read";
  std::erase_if(*warnings, [&](const std::string& w) {
    if (w.size() <= kSuffix.size() || w.compare(w.size() - kSuffix.size(), kSuffix.size(),
                                                kSuffix) != 0) {
      return false;
    }
    std::string_view path(w.data(), w.size() - kSuffix.size());
    return std::find(explained.begin(), explained.end(), path) != explained.end();
  });
}

// The same for ssh-agent RSA keys: *abstract is the AgentRsa of the connection.
struct AgentRsa {
  std::string socket;    // $SSH_AUTH_SOCK
  std::string key_blob;  // the agent's "ssh-rsa" blob, which names the key to the agent
};
int AgentRsaSha2Sign(LIBSSH2_SESSION*, unsigned char** sig, size_t* sig_len,
                     const unsigned char* data, size_t data_len, void** abstract) noexcept {
  const auto* a = static_cast<const AgentRsa*>(*abstract);
  auto s = ssh::AgentSignRsaSha2(a->socket, a->key_blob,
                                 std::string_view(reinterpret_cast<const char*>(data), data_len));
  if (!s.ok()) {
    spdlog::debug("[ssh] {}", s.status().message());
    return -1;
  }
  *sig = static_cast<unsigned char*>(std::malloc(s->size()));
  if (*sig == nullptr) return -1;
  std::memcpy(*sig, s->data(), s->size());
  *sig_len = s->size();
  return 0;
}

void InitLibssh2Once() {
  static std::once_flag once;
  std::call_once(once, [] { (void)libssh2_init(0); });
}

std::string SockaddrText(const sockaddr_storage& ss) {
  char host[INET6_ADDRSTRLEN] = "?";
  uint16_t port = 0;
  if (ss.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    uv_ip4_name(a, host, sizeof host);
    port = ntohs(a->sin_port);
    return std::string(host) + ":" + std::to_string(port);
  }
  const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
  uv_ip6_name(a, host, sizeof host);
  port = ntohs(a->sin6_port);
  return "[" + std::string(host) + "]:" + std::to_string(port);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Per-connection state

struct SshTarget::FileSlot {
  std::string path;
  std::string handle;  // the SFTP handle; empty while not open
  bool absent = false;  // could not be opened: not asked again this session
  // Where to send an EOF probe along with the READ at offset 0 (0: none). Set when the last
  // tick's first reply held the whole file but linuxhost::ShortReadReachesEnd() could not
  // vouch for it (e.g. /proc/mounts): a file of the same length then needs no second round.
  uint64_t probe_at = 0;
  // This tick.
  enum class State { kIdle, kReading, kDone, kFailed } state = State::kIdle;
  uint64_t offset = 0;
  uint64_t rounds = 0;       // dependent READs of this file (1: answered in the first round)
  uint64_t first_reply = 0;  // bytes in the reply to the READ at offset 0
  bool probe_pending = false;  // the probe's reply has not come yet
  bool probe_adopted = false;  // the probe asks for this file's next piece: its reply is used
  std::string content;  // keeps its capacity across ticks
  std::string error;
};

struct SshTarget::Conn {
  uint64_t generation = 0;
  Phase phase = Phase::kIdle;
  // TCP
  std::vector<sockaddr_storage> addrs;
  size_t addr_index = 0;
  std::string connect_errors;
  int fd = -1;
  std::unique_ptr<SocketWatcher> watcher;
  // SSH
  LIBSSH2_SESSION* session = nullptr;
  LIBSSH2_AGENT* agent = nullptr;
  libssh2_agent_publickey* identity = nullptr;
  std::string agent_errors;
  // An RSA identity of the agent is tried as rsa-sha2-512 first (ssh_keys.h).
  AgentRsa agent_rsa;
  void* agent_rsa_abstract = &agent_rsa;
  std::string agent_rsa_blob;  // the retyped blob; empty: not RSA, or already tried
  // An RSA key file signs with rsa-sha2-512 through our callback first (ssh_keys.h).
  bool key_loaded = false;
  std::string passphrase;  // the key's, read once per connection (identity_passphrase_file)
  std::unique_ptr<ssh::RsaSha2Signer> rsa;
  void* rsa_abstract = nullptr;  // libssh2's `abstract` for the sign callback: rsa.get()
  bool rsa_refused = false;
  std::string rsa_note;
  LIBSSH2_CHANNEL* channel = nullptr;
  bool healthy = false;  // a disconnect message is worth sending
  bool stderr_ignored = false;
  // SFTP
  bool sftp = true;
  bool statvfs_supported = false;
  std::vector<FileSlot> slots;
  size_t opens_pending = 0;
  sftp::Framer framer;
  std::string out;  // bytes to send on the channel
  size_t out_pos = 0;
  // The tick in progress.
  bool in_tick = false;
  size_t outstanding = 0;
  bool second_round = false;   // the mount table of this tick was looked at
  bool second_wave = false;    // and asked for filesystems the previous one did not list
  uint64_t requests = 0;
  std::vector<std::string> fs_asked;  // mountpoints asked this tick; id = kStatvfsIdBase + index
  struct FsResult {
    bool ok = false;
    bool moved = false;  // another filesystem answered at the mountpoint: dropped, no warning
    linuxhost::FsStat st;
    std::string error;
  };
  std::vector<FsResult> fs_results;
  // The filesystem id statvfs last gave for each mountpoint: a different one means the mount
  // table changed (an unmount shows the filesystem underneath).
  std::unordered_map<std::string, uint64_t> fs_ids;
  int ticks_to_mounts = 0;     // the mount table is read again when it reaches 0
  bool mounts_kept = false;    // the mounts slot holds a whole table from an earlier tick
  std::vector<std::string> fs_paths;  // the filesystems of the latest mount table
  // linuxhost::SelectMounts() of the latest mount table, made again only when its text changes.
  linuxhost::MountSelection mount_selection;
  std::string mount_selection_from;  // the mount table it was made from
  bool mount_selection_valid = false;
  std::vector<const std::string*> parse_files;  // ParseTickFiles()'s input, reused
  // Fallback stream.
  std::string command;
  ssh::stream::Parser parser;
  int ticks_to_statfs = 0;
  bool statfs_asked = false;

  ~Conn() {
    watcher.reset();  // stops polling before the socket goes away
    if (session != nullptr) {
      // A session that worked says goodbye; a broken one may have half a packet pending, and
      // libssh2 refuses other packets then: no harm.
      if (healthy && fd >= 0) {
        (void)libssh2_session_disconnect(session, "trapline: closing");
      }
      // With the socket shut down, libssh2's attempts to close channels fail at once instead
      // of waiting, so freeing in blocking mode cannot block.
      if (fd >= 0) ::shutdown(fd, SHUT_RDWR);
      libssh2_session_set_blocking(session, 1);
      if (agent != nullptr) {
        (void)libssh2_agent_disconnect(agent);
        libssh2_agent_free(agent);
      }
      if (channel != nullptr) (void)libssh2_channel_free(channel);
      (void)libssh2_session_free(session);
    }
    if (fd >= 0) ::close(fd);
  }
};

// A pending getaddrinfo: owned by libuv until its callback; `owner` is cleared when the
// connection attempt it belongs to is dropped.
struct SshTarget::Resolve {
  SshTarget* owner = nullptr;
  uint64_t generation = 0;
  uv_getaddrinfo_t req;
};

// ---------------------------------------------------------------------------------------------

SshTarget::SshTarget(uv_loop_t* loop, TargetConfig config, DeliverFn deliver)
    : TargetBase(loop, std::move(config), std::move(deliver)),
      reaper_(loop),
      connect_deadline_(loop),
      keepalive_(loop) {
  InitLibssh2Once();
  config_status_ = Validate(this->config());
  if (config_status_.ok()) {
    auto uri = ssh::ParseSshUri(this->config().uri);
    uri_ = std::move(uri).value();
    std::string err = linuxhost::ParseFilters(this->config().options, &filters_);
    if (!err.empty()) config_status_ = Status::InvalidArgument("linux plugin options: " + err);
  }
}

SshTarget::~SshTarget() {
  Disconnect();
  dying_.clear();
}

Status SshTarget::Validate(const TargetConfig& config) {
  if (!config.plugin.empty() && config.plugin != linuxhost::kPluginName) {
    return Status::InvalidArgument("the ssh target serves the linux plugin, not " +
                                   config.plugin);
  }
  auto uri = ssh::ParseSshUri(config.uri);
  if (!uri.ok()) return uri.status();
  if (config.known_hosts.empty() && !config.trust_on_first_use) {
    return Status::InvalidArgument(
        "no known_hosts file for " + config.uri +
        " (set known_hosts, or trust_on_first_use to accept an unknown host key)");
  }
  if (config.identity.empty() && !config.use_agent) {
    return Status::InvalidArgument("no identity (private key file) for " + config.uri +
                                   " and use_agent is off");
  }
  linuxhost::Filters filters;
  std::string err = linuxhost::ParseFilters(config.options, &filters);
  if (!err.empty()) return Status::InvalidArgument("linux plugin options: " + err);
  return Status::OK();
}

const char* SshTarget::PhaseName(Phase p) {
  switch (p) {
    case Phase::kIdle: return "idle";
    case Phase::kResolving: return "resolving the name";
    case Phase::kConnecting: return "TCP connect";
    case Phase::kHandshake: return "SSH handshake";
    case Phase::kAgent: return "ssh-agent authentication";
    case Phase::kAuthKey: return "key authentication";
    case Phase::kSftpChannel: return "opening a channel";
    case Phase::kSftpSubsystem: return "sftp subsystem request";
    case Phase::kSftpVersion: return "SFTP version exchange";
    case Phase::kSftpOpen: return "opening the files";
    case Phase::kDropSftpChannel: return "closing the SFTP channel";
    case Phase::kExecChannel: return "opening a channel for the fallback";
    case Phase::kExec: return "starting the fallback command";
    case Phase::kReady: return "ready";
  }
  return "?";
}

Status SshTarget::SessionLost(Conn* c, int rc) const {
  std::string why = LastError(c->session);
  if (rc == LIBSSH2_ERROR_SOCKET_RECV || rc == LIBSSH2_ERROR_SOCKET_DISCONNECT ||
      rc == LIBSSH2_ERROR_SOCKET_SEND) {
    why = "the connection was closed or reset (" + why + ")";
  }
  return Status::Unavailable("SSH session to " + Where() + " lost: " + why);
}

std::string SshTarget::Where() const { return ssh::KnownHostsName(uri_.host, uri_.port); }

std::string SshTarget::AuthFailure(const std::string& detail) const {
  std::string msg = "authentication failed for user " + uri_.user;
  if (!config().identity.empty()) msg += " with key " + config().identity;
  if (config().use_agent) msg += config().identity.empty() ? " with ssh-agent" : " (and ssh-agent)";
  return msg + ": " + detail;
}

// ---------------------------------------------------------------------------------------------
// Connecting

void SshTarget::Connect() {
  if (!config_status_.ok()) {
    Failed(config_status_);
    return;
  }
  Disconnect();  // any leftover of an earlier attempt
  conn_ = std::make_unique<Conn>();
  Conn* c = conn_.get();
  c->generation = next_generation_++;
  stats_ = SshTargetStats{};
  connect_deadline_.Start(timeout_ms(), 0, [this] {
    if (conn_ && conn_->phase != Phase::kReady) {
      std::string hint;
      if (conn_->phase == Phase::kSftpVersion && conn_->out_pos >= conn_->out.size()) {
        // INIT sent, no VERSION: sshd runs the subsystem through the user's login shell
        // (`$SHELL -c sftp-server`), so slow shell start-up files (e.g. a ~/.bashrc that runs
        // `pyenv init`) hold up the answer.
        hint = "; the SFTP INIT was sent but sftp-server has not answered: sshd starts it "
               "through the user's shell, whose start-up files (~/.bashrc) may be slow";
      }
      Failed(Status::Timeout("SSH session to " + Where() + " not ready within " +
                             std::to_string(timeout_ms()) + " ms (stuck at: " +
                             PhaseName(conn_->phase) + ")" + hint));
    }
  });

  // Literal addresses need no resolver.
  sockaddr_storage ss{};
  if (uv_ip4_addr(uri_.host.c_str(), uri_.port, reinterpret_cast<sockaddr_in*>(&ss)) == 0 ||
      uv_ip6_addr(uri_.host.c_str(), uri_.port, reinterpret_cast<sockaddr_in6*>(&ss)) == 0) {
    c->addrs.push_back(ss);
    Status st = StartTcp();
    if (!st.ok()) {
      Failed(st);
      return;
    }
    Pump();
    return;
  }

  c->phase = Phase::kResolving;
  auto* r = new Resolve;
  r->owner = this;
  r->generation = c->generation;
  r->req.data = r;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG;
  int rc = uv_getaddrinfo(
      loop(), &r->req,
      [](uv_getaddrinfo_t* req, int status, addrinfo* res) {
        std::unique_ptr<Resolve> own(static_cast<Resolve*>(req->data));
        if (own->owner == nullptr) {
          if (res != nullptr) uv_freeaddrinfo(res);
          return;
        }
        own->owner->resolve_ = nullptr;
        own->owner->OnResolved(status, res);
      },
      uri_.host.c_str(), std::to_string(uri_.port).c_str(), &hints);
  if (rc != 0) {
    delete r;
    Failed(UvError(("resolve " + uri_.host).c_str(), rc));
    return;
  }
  resolve_ = r;
}

void SshTarget::OnResolved(int status, addrinfo* res) {
  Conn* c = conn_.get();
  if (c == nullptr) {
    if (res != nullptr) uv_freeaddrinfo(res);
    return;
  }
  if (status != 0) {
    if (res != nullptr) uv_freeaddrinfo(res);
    Failed(UvError(("resolve " + uri_.host).c_str(), status));
    return;
  }
  for (addrinfo* a = res; a != nullptr; a = a->ai_next) {
    if (a->ai_family != AF_INET && a->ai_family != AF_INET6) continue;
    sockaddr_storage ss{};
    std::memcpy(&ss, a->ai_addr, std::min<size_t>(a->ai_addrlen, sizeof ss));
    c->addrs.push_back(ss);
  }
  uv_freeaddrinfo(res);
  if (c->addrs.empty()) {
    Failed(Status::Unavailable("resolve " + uri_.host + ": no IPv4 or IPv6 address"));
    return;
  }
  Status st = StartTcp();
  if (!st.ok()) {
    Failed(st);
    return;
  }
  Pump();
}

// Starts a non-blocking connect to the next address; phase kConnecting.
Status SshTarget::StartTcp() {
  Conn* c = conn_.get();
  while (c->addr_index < c->addrs.size()) {
    const sockaddr_storage& ss = c->addrs[c->addr_index];
    c->watcher.reset();
    if (c->fd >= 0) ::close(c->fd);
    c->fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) return Status::IoError(std::string("socket: ") + std::strerror(errno));
    int one = 1;
    (void)::setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    socklen_t len = ss.ss_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
    int rc = ::connect(c->fd, reinterpret_cast<const sockaddr*>(&ss), len);
    if (rc == 0 || errno == EINPROGRESS) {
      uint64_t gen = c->generation;
      c->watcher = std::make_unique<SocketWatcher>(loop(), c->fd, [this, gen](int status, int) {
        if (!conn_ || conn_->generation != gen) return;
        BusyScope busy(busy_counter());
        // libuv stops polling after an error; while connecting, SO_ERROR tells what it was.
        if (status < 0 && conn_->phase != Phase::kConnecting) {
          Failed(UvError(("SSH session to " + Where() + ": poll").c_str(), status));
          return;
        }
        Pump();
      });
      if (!c->watcher->init_status().ok()) return c->watcher->init_status();
      c->phase = Phase::kConnecting;
      return Status::OK();
    }
    c->connect_errors += (c->connect_errors.empty() ? "" : "; ") + SockaddrText(ss) + ": " +
                         std::strerror(errno);
    ++c->addr_index;
  }
  return Status::Unavailable("connect to " + uri_.host + " port " + std::to_string(uri_.port) +
                             ": " + c->connect_errors);
}

// kConnecting: the socket became writable (or failed).
Status SshTarget::FinishTcp(bool* again) {
  Conn* c = conn_.get();
  int err = 0;
  socklen_t len = sizeof err;
  if (::getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
  if (err == 0) {
    // Writable and no error; a connect still in progress would not be writable, but check.
    sockaddr_storage peer;
    socklen_t plen = sizeof peer;
    if (::getpeername(c->fd, reinterpret_cast<sockaddr*>(&peer), &plen) != 0) {
      if (errno == ENOTCONN) {
        *again = true;
        return Status::OK();
      }
      err = errno;
    }
  }
  if (err == EINPROGRESS || err == EALREADY) {
    *again = true;
    return Status::OK();
  }
  if (err != 0) {
    c->connect_errors += (c->connect_errors.empty() ? "" : "; ") +
                         SockaddrText(c->addrs[c->addr_index]) + ": " + std::strerror(err);
    ++c->addr_index;
    TRAPLINE_RETURN_IF_ERROR(StartTcp());
    *again = true;  // the next address is connecting
    return Status::OK();
  }
  // Connected: start SSH.
  c->session = libssh2_session_init_ex(nullptr, nullptr, nullptr, nullptr);
  if (c->session == nullptr) return Status::Internal("libssh2_session_init failed");
  libssh2_session_set_blocking(c->session, 0);

  // Prefer the host key types known_hosts has for this host, as OpenSSH does, so that a host
  // with several keys shows the one we can check.
  std::string prefs;
  if (!config().known_hosts.empty() && FileExists(config().known_hosts)) {
    LIBSSH2_KNOWNHOSTS* kh = libssh2_knownhost_init(c->session);
    if (kh != nullptr) {
      if (libssh2_knownhost_readfile(kh, config().known_hosts.c_str(),
                                     LIBSSH2_KNOWNHOST_FILE_OPENSSH) >= 0) {
        std::string name = ssh::KnownHostsName(uri_.host, uri_.port);
        libssh2_knownhost* e = nullptr;
        while (libssh2_knownhost_get(kh, &e, e) == 0) {
          if (e->name == nullptr || name != e->name) continue;
          const char* m = HostKeyMethods(e->typemask & LIBSSH2_KNOWNHOST_KEY_MASK);
          if (m != nullptr && prefs.find(m) == std::string::npos) {
            prefs += (prefs.empty() ? "" : ",") + std::string(m);
          }
        }
      }
      libssh2_knownhost_free(kh);
    }
  }
  if (!prefs.empty()) {
    prefs += std::string(",") + kAllHostKeyMethods;  // duplicates are harmless
    (void)libssh2_session_method_pref(c->session, LIBSSH2_METHOD_HOSTKEY, prefs.c_str());
  }
  c->phase = Phase::kHandshake;
  return Status::OK();
}

Status SshTarget::CheckHostKey() {
  Conn* c = conn_.get();
  const std::string name = ssh::KnownHostsName(uri_.host, uri_.port);
  size_t key_len = 0;
  int key_type = 0;
  const char* key = libssh2_session_hostkey(c->session, &key_len, &key_type);
  if (key == nullptr) return Status::ProtocolError("no host key from " + name);
  const char* hash = libssh2_hostkey_hash(c->session, LIBSSH2_HOSTKEY_HASH_SHA256);
  std::string fingerprint = std::string(HostKeyTypeName(key_type)) + " SHA256:" +
                            (hash != nullptr ? ssh::Base64NoPad(std::string_view(hash, 32))
                                             : std::string("?"));
  const std::string& file = config().known_hosts;
  LIBSSH2_KNOWNHOSTS* kh = libssh2_knownhost_init(c->session);
  if (kh == nullptr) return Status::Internal("libssh2_knownhost_init failed");
  std::unique_ptr<LIBSSH2_KNOWNHOSTS, void (*)(LIBSSH2_KNOWNHOSTS*)> guard(
      kh, libssh2_knownhost_free);
  bool file_exists = !file.empty() && FileExists(file);
  if (file_exists &&
      libssh2_knownhost_readfile(kh, file.c_str(), LIBSSH2_KNOWNHOST_FILE_OPENSSH) < 0) {
    return Status::InvalidArgument("cannot read known_hosts " + file + ": " +
                                   LastError(c->session));
  }
  if (!file.empty() && !file_exists && !config().trust_on_first_use) {
    return Status::InvalidArgument("known_hosts " + file + " does not exist");
  }
  const int typemask = LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW |
                       KnownHostKeyBits(key_type);
  libssh2_knownhost* entry = nullptr;
  int check = libssh2_knownhost_checkp(kh, uri_.host.c_str(), uri_.port, key, key_len, typemask,
                                       &entry);
  switch (check) {
    case LIBSSH2_KNOWNHOST_CHECK_MATCH:
      return Status::OK();
    case LIBSSH2_KNOWNHOST_CHECK_MISMATCH: {
      std::string where = "known_hosts " + file;
      if (entry != nullptr && entry->key != nullptr) {
        auto text = ReadWholeFile(file);
        int line = text.ok() ? ssh::KnownHostsLineOfKey(*text, entry->key) : 0;
        if (line > 0) where = "known_hosts line " + std::to_string(line) + " of " + file;
      }
      return Status::Rejected("host key mismatch for " + name + " (" + where +
                              "): the server offers " + fingerprint +
                              ", which is not the key on record; refusing to connect (if the "
                              "host was reinstalled, replace its line)");
    }
    case LIBSSH2_KNOWNHOST_CHECK_NOTFOUND:
      break;
    default:
      return Status::Internal("checking the host key of " + name + " failed: " +
                              LastError(c->session));
  }
  if (!config().trust_on_first_use) {
    return Status::Rejected("unknown host key for " + name + ": " + fingerprint + " is not in " +
                            (file.empty() ? std::string("known_hosts") : file) +
                            "; refusing to connect (add the host's key there, e.g. with "
                            "ssh-keyscan, or set trust_on_first_use)");
  }
  if (file.empty()) {
    spdlog::warn("[ssh] {}: trusting host key {} on first use (no known_hosts file to record it)",
                 name, fingerprint);
    return Status::OK();
  }
  libssh2_knownhost* added = nullptr;
  std::string comment = "added by trapline";
  if (libssh2_knownhost_addc(kh, name.c_str(), nullptr, key, key_len, comment.data(),
                             comment.size(), typemask, &added) != 0) {
    return Status::Internal("cannot record the host key of " + name + ": " +
                            LastError(c->session));
  }
  // Appended, not rewritten: lines libssh2 cannot parse (other key types, markers) stay.
  char line[8192];
  size_t line_len = 0;
  if (libssh2_knownhost_writeline(kh, added, line, sizeof line, &line_len,
                                  LIBSSH2_KNOWNHOST_FILE_OPENSSH) != 0) {
    return Status::Internal("cannot format the known_hosts line of " + name + ": " +
                            LastError(c->session));
  }
  std::string text(line, line_len);
  if (file_exists) {
    // A last line without its newline would swallow ours.
    auto old = ReadWholeFile(file);
    if (old.ok() && !old->empty() && old->back() != '\n') text.insert(0, "\n");
  }
  int fd = ::open(file.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return Status::IoError("cannot record the host key of " + name + " in " + file + ": " +
                           std::strerror(errno));
  }
  ssize_t w = ::write(fd, text.data(), text.size());
  int werr = errno;
  ::close(fd);
  if (w != static_cast<ssize_t>(text.size())) {
    return Status::IoError("cannot record the host key of " + name + " in " + file + ": " +
                           std::strerror(werr));
  }
  spdlog::warn("[ssh] {}: unknown host key {} trusted on first use and added to {}", name,
               fingerprint, file);
  return Status::OK();
}

// Sets up the rsa-sha2-512 attempt for the current agent identity when it is an RSA key.
void SshTarget::PrepareAgentIdentity(Conn* c) {
  c->agent_rsa_blob.clear();
  if (c->identity == nullptr) return;
  std::string_view blob(reinterpret_cast<const char*>(c->identity->blob), c->identity->blob_len);
  c->agent_rsa_blob = ssh::RsaSha2BlobFromSshRsa(blob);
  if (c->agent_rsa_blob.empty()) return;
  const char* sock = std::getenv("SSH_AUTH_SOCK");
  c->agent_rsa.socket = sock != nullptr ? sock : "";
  c->agent_rsa.key_blob.assign(blob);
}

Status SshTarget::StepAgent(bool* again) {
  Conn* c = conn_.get();
  if (c->agent == nullptr) {
    // The agent conversation blocks (a local unix socket); see the header.
    c->agent = libssh2_agent_init(c->session);
    if (c->agent == nullptr) {
      c->agent_errors = "ssh-agent: " + LastError(c->session);
    } else if (libssh2_agent_connect(c->agent) != 0) {
      c->agent_errors = "ssh-agent: cannot connect (is SSH_AUTH_SOCK set?): " +
                        LastError(c->session);
    } else if (libssh2_agent_list_identities(c->agent) != 0) {
      c->agent_errors = "ssh-agent: cannot list identities: " + LastError(c->session);
    } else if (libssh2_agent_get_identity(c->agent, &c->identity, nullptr) != 0) {
      c->agent_errors = "ssh-agent has no identities";
      c->identity = nullptr;
    }
    PrepareAgentIdentity(c);
  }
  while (c->identity != nullptr) {
    if (!c->agent_rsa_blob.empty()) {
      int rc = libssh2_userauth_publickey(
          c->session, uri_.user.c_str(),
          reinterpret_cast<const unsigned char*>(c->agent_rsa_blob.data()),
          c->agent_rsa_blob.size(), AgentRsaSha2Sign, &c->agent_rsa_abstract);
      if (rc == LIBSSH2_ERROR_EAGAIN) {
        *again = true;
        return Status::OK();
      }
      c->agent_rsa_blob.clear();  // tried; next comes libssh2's own ssh-rsa attempt
      if (rc == 0) {
        c->phase = Phase::kSftpChannel;
        return Status::OK();
      }
    }
    int rc = libssh2_agent_userauth(c->agent, uri_.user.c_str(), c->identity);
    if (rc == LIBSSH2_ERROR_EAGAIN) {
      *again = true;
      return Status::OK();
    }
    if (rc == 0) {
      spdlog::debug("[ssh] {}: authenticated as {} with agent key {}", Where(), uri_.user,
                    c->identity->comment != nullptr ? c->identity->comment : "");
      c->phase = Phase::kSftpChannel;
      return Status::OK();
    }
    libssh2_agent_publickey* next = nullptr;
    if (libssh2_agent_get_identity(c->agent, &next, c->identity) != 0) next = nullptr;
    c->identity = next;
    PrepareAgentIdentity(c);
    if (next == nullptr) c->agent_errors = "no ssh-agent identity was accepted";
  }
  if (config().identity.empty()) return Status::Rejected(AuthFailure(c->agent_errors));
  spdlog::debug("[ssh] {}: {}; trying key {}", Where(), c->agent_errors, config().identity);
  c->phase = Phase::kAuthKey;
  return Status::OK();
}

Status SshTarget::StepAuthKey(bool* again) {
  Conn* c = conn_.get();
  const std::string& key = config().identity;
  const std::string& pass = c->passphrase;
  if (!c->key_loaded) {
    // This step is entered again after every EAGAIN: the key and its passphrase are read once.
    c->passphrase = config().identity_passphrase;
    if (!config().identity_passphrase_file.empty()) {
      auto read = ReadSecretFile(config().identity_passphrase_file, "identity_passphrase_file");
      if (!read.ok()) return read.status();
      c->passphrase = std::move(read).value();
    }
    c->key_loaded = true;
    auto signer = ssh::RsaSha2Signer::Load(key, pass);
    if (signer.ok()) {
      c->rsa = std::move(signer).value();
      c->rsa_abstract = c->rsa.get();
    } else if (signer.status().code() != StatusCode::kNotFound) {
      // Unusable for rsa-sha2 (e.g. an encrypted OpenSSH-format key): libssh2 tries it.
      c->rsa_note = signer.status().message();
      spdlog::debug("[ssh] {}: {}", Where(), c->rsa_note);
    }
  }
  if (c->rsa && !c->rsa_refused) {
    const std::string& blob = c->rsa->auth_blob();
    int rc = libssh2_userauth_publickey(c->session, uri_.user.c_str(),
                                        reinterpret_cast<const unsigned char*>(blob.data()),
                                        blob.size(), RsaSha2Sign, &c->rsa_abstract);
    if (rc == LIBSSH2_ERROR_EAGAIN) {
      *again = true;
      return Status::OK();
    }
    if (rc == 0) {
      c->phase = Phase::kSftpChannel;
      return Status::OK();
    }
    // A server that refuses this form may still take libssh2's ssh-rsa below.
    c->rsa_refused = true;
    c->rsa_note = std::string(ssh::kRsaSha2Algorithm) + " refused: " + LastError(c->session);
    spdlog::debug("[ssh] {}: {}; trying ssh-rsa", Where(), c->rsa_note);
  }
  std::string pub = key + ".pub";
  bool has_pub = FileExists(pub);
  int rc = libssh2_userauth_publickey_fromfile_ex(
      c->session, uri_.user.c_str(), static_cast<unsigned>(uri_.user.size()),
      has_pub ? pub.c_str() : nullptr, key.c_str(), pass.empty() ? nullptr : pass.c_str());
  if (rc == LIBSSH2_ERROR_EAGAIN) {
    *again = true;
    return Status::OK();
  }
  if (rc != 0) {
    std::string detail = LastError(c->session);
    if (rc == LIBSSH2_ERROR_FILE) {
      detail = "cannot use the key file (missing, unreadable, wrong passphrase or unsupported "
               "format): " + detail;
    } else if (rc == LIBSSH2_ERROR_AUTHENTICATION_FAILED ||
               rc == LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED) {
      detail = "the server refused the key: " + detail;
    }
    if (!c->rsa_note.empty()) detail += "; " + c->rsa_note;
    if (!c->agent_errors.empty()) detail += "; " + c->agent_errors;
    return Status::Rejected(AuthFailure(detail));
  }
  c->phase = Phase::kSftpChannel;
  return Status::OK();
}

Status SshTarget::StartFallback(const std::string& why) {
  Conn* c = conn_.get();
  spdlog::warn(
      "[ssh] {}: SFTP unavailable ({}); falling back to one streaming shell command (no "
      "process per tick; filesystem space every {} ticks through `stat -f`)",
      Where(), why, kStreamStatfsEvery);
  c->sftp = false;
  c->out.clear();
  c->out_pos = 0;
  c->phase = Phase::kDropSftpChannel;
  return Status::OK();
}

Status SshTarget::StepSftpVersion(bool* again) {
  Conn* c = conn_.get();
  if (c->out_pos < c->out.size()) {
    TRAPLINE_RETURN_IF_ERROR(Flush(again));
    if (*again) return Status::OK();
  }
  for (;;) {
    sftp::Packet p;
    Status perr;
    if (c->framer.Next(&p, &perr)) {
      if (p.type != sftp::kVersion) {
        return Status::ProtocolError("sftp: expected VERSION, got packet type " +
                                     std::to_string(p.type));
      }
      uint32_t version = 0;
      std::vector<std::string> ext;
      if (!sftp::ParseVersion(p.payload, &version, &ext)) {
        return Status::ProtocolError("sftp: malformed VERSION");
      }
      if (version < 3) {
        return Status::ProtocolError("sftp: server speaks version " + std::to_string(version) +
                                     ", need 3");
      }
      c->statvfs_supported =
          std::find(ext.begin(), ext.end(), sftp::kStatvfsExtension) != ext.end();
      if (!c->statvfs_supported) {
        spdlog::warn("[ssh] {}: the SFTP server lacks {}: no filesystem space", Where(),
                     sftp::kStatvfsExtension);
      }
      // Open every file once, pipelined.
      c->out.clear();
      c->out_pos = 0;
      for (size_t i = 0; i < c->slots.size(); ++i) {
        sftp::AppendOpenRead(&c->out, kOpenIdBase + static_cast<uint32_t>(i), c->slots[i].path);
      }
      c->opens_pending = c->slots.size();
      c->phase = Phase::kSftpOpen;
      return Status::OK();
    }
    if (!perr.ok()) return perr;
    bool eof = false;
    char* buf = c->framer.Reserve(kReadChunk);
    ssize_t n = libssh2_channel_read(c->channel, buf, kReadChunk);
    if (n == LIBSSH2_ERROR_EAGAIN) {
      *again = true;
      return Status::OK();
    }
    if (n < 0) {
      return SessionLost(c, static_cast<int>(n));
    }
    if (n == 0) eof = libssh2_channel_eof(c->channel) != 0;
    if (eof) return StartFallback("the sftp subsystem closed before answering");
    if (n == 0) {
      *again = true;
      return Status::OK();
    }
    c->framer.Commit(static_cast<size_t>(n));
  }
}

Status SshTarget::StepSftpOpen(bool* again) {
  Conn* c = conn_.get();
  if (c->out_pos < c->out.size()) {
    TRAPLINE_RETURN_IF_ERROR(Flush(again));
    if (*again) return Status::OK();
  }
  while (c->opens_pending > 0) {
    sftp::Packet p;
    Status perr;
    if (c->framer.Next(&p, &perr)) {
      if (p.id < kOpenIdBase || p.id >= kOpenIdBase + c->slots.size()) {
        return Status::ProtocolError("sftp: reply to an unknown request " + std::to_string(p.id));
      }
      FileSlot& slot = c->slots[p.id - kOpenIdBase];
      if (!slot.handle.empty() || slot.absent) {
        return Status::ProtocolError("sftp: second reply to OPEN " + slot.path);
      }
      std::string_view handle;
      sftp::StatusReply status;
      if (p.type == sftp::kHandle && sftp::ParseHandle(p.payload, &handle)) {
        slot.handle.assign(handle);
      } else if (p.type == sftp::kStatus && sftp::ParseStatus(p.payload, &status)) {
        slot.absent = true;
        stats_.absent.push_back(slot.path);
        spdlog::info("[ssh] {}: {} cannot be opened ({}); not read this session", Where(),
                     slot.path, sftp::StatusName(status.code));
      } else {
        return Status::ProtocolError("sftp: bad reply to OPEN " + slot.path);
      }
      --c->opens_pending;
      continue;
    }
    if (!perr.ok()) return perr;
    char* buf = c->framer.Reserve(kReadChunk);
    ssize_t n = libssh2_channel_read(c->channel, buf, kReadChunk);
    if (n == LIBSSH2_ERROR_EAGAIN || (n == 0 && !libssh2_channel_eof(c->channel))) {
      *again = true;
      return Status::OK();
    }
    if (n < 0) {
      return SessionLost(c, static_cast<int>(n));
    }
    if (n == 0) return Status::Unavailable("sftp-server on " + Where() + " closed the channel");
    c->framer.Commit(static_cast<size_t>(n));
  }
  bool any = std::any_of(c->slots.begin(), c->slots.end(),
                         [](const FileSlot& s) { return !s.handle.empty(); });
  if (!any) {
    return Status::Rejected("none of the files to read could be opened on " + Where() +
                            " (is SFTP chrooted?)");
  }
  c->phase = Phase::kReady;
  return Status::OK();
}

Status SshTarget::Step(bool* again) {
  Conn* c = conn_.get();
  *again = false;
  switch (c->phase) {
    case Phase::kIdle:
    case Phase::kResolving:
      *again = true;  // nothing to do on the socket yet
      return Status::OK();
    case Phase::kConnecting:
      return FinishTcp(again);
    case Phase::kHandshake: {
      int rc = libssh2_session_handshake(c->session, c->fd);
      if (rc == LIBSSH2_ERROR_EAGAIN) {
        *again = true;
        return Status::OK();
      }
      if (rc != 0) {
        return Status::Unavailable("SSH handshake with " + Where() + " failed: " +
                                   LastError(c->session));
      }
      TRAPLINE_RETURN_IF_ERROR(CheckHostKey());
      c->phase = config().use_agent ? Phase::kAgent : Phase::kAuthKey;
      return Status::OK();
    }
    case Phase::kAgent:
      return StepAgent(again);
    case Phase::kAuthKey:
      return StepAuthKey(again);
    case Phase::kSftpChannel:
    case Phase::kExecChannel: {
      if (c->phase == Phase::kSftpChannel && c->slots.empty()) {
        // The files are fixed per session; filled once, before the first OPEN.
        for (std::string& f : linuxhost::TickFiles()) c->slots.emplace_back().path = std::move(f);
        for (const std::string& f : extra_files_) c->slots.emplace_back().path = f;
      }
      if (c->channel == nullptr) {
        c->channel = libssh2_channel_open_ex(c->session, "session", sizeof("session") - 1,
                                             kChannelWindow, kChannelPacket, nullptr, 0);
        if (c->channel == nullptr) {
          if (libssh2_session_last_errno(c->session) == LIBSSH2_ERROR_EAGAIN) {
            *again = true;
            return Status::OK();
          }
          return Status::Unavailable("cannot open an SSH channel on " + Where() + ": " +
                                     LastError(c->session));
        }
      }
      c->phase = c->phase == Phase::kSftpChannel ? Phase::kSftpSubsystem : Phase::kExec;
      return Status::OK();
    }
    case Phase::kSftpSubsystem: {
      int rc = libssh2_channel_subsystem(c->channel, "sftp");
      if (rc == LIBSSH2_ERROR_EAGAIN) {
        *again = true;
        return Status::OK();
      }
      if (rc != 0) {
        if (rc == LIBSSH2_ERROR_CHANNEL_REQUEST_DENIED || rc == LIBSSH2_ERROR_CHANNEL_FAILURE) {
          return StartFallback("the server refused the sftp subsystem: " + LastError(c->session));
        }
        return Status::Unavailable("sftp subsystem request to " + Where() + " failed: " +
                                   LastError(c->session));
      }
      c->out.clear();
      c->out_pos = 0;
      sftp::AppendInit(&c->out);
      c->phase = Phase::kSftpVersion;
      return Status::OK();
    }
    case Phase::kSftpVersion:
      return StepSftpVersion(again);
    case Phase::kSftpOpen:
      return StepSftpOpen(again);
    case Phase::kDropSftpChannel: {
      if (c->channel != nullptr) {
        int rc = libssh2_channel_free(c->channel);
        if (rc == LIBSSH2_ERROR_EAGAIN) {
          *again = true;
          return Status::OK();
        }
        c->channel = nullptr;
      }
      c->framer = sftp::Framer();
      c->phase = Phase::kExecChannel;
      return Status::OK();
    }
    case Phase::kExec: {
      if (!c->stderr_ignored) {
        // The script's stderr is of no use; ignoring it keeps it from filling the window.
        int rc = libssh2_channel_handle_extended_data2(c->channel,
                                                       LIBSSH2_CHANNEL_EXTENDED_DATA_IGNORE);
        if (rc == LIBSSH2_ERROR_EAGAIN) {
          *again = true;
          return Status::OK();
        }
        c->stderr_ignored = true;
      }
      if (c->command.empty()) {
        std::vector<std::string> files = linuxhost::TickFiles();
        files.insert(files.end(), extra_files_.begin(), extra_files_.end());
        c->command = ssh::stream::Command(files);
      }
      int rc = libssh2_channel_exec(c->channel, c->command.c_str());
      if (rc == LIBSSH2_ERROR_EAGAIN) {
        *again = true;
        return Status::OK();
      }
      if (rc != 0) {
        return Status::Rejected("SFTP is unavailable on " + Where() +
                                " and so is running a command: " + LastError(c->session));
      }
      c->phase = Phase::kReady;
      return Status::OK();
    }
    case Phase::kReady:
      return Status::OK();
  }
  return Status::Internal("bad phase");
}

void SshTarget::Pump() {
  Conn* c = conn_.get();
  if (c == nullptr) return;
  for (;;) {
    if (c->phase == Phase::kReady) {
      (void)PumpReady();
      return;
    }
    bool again = false;
    Status st = Step(&again);
    if (!st.ok()) {
      Failed(st);
      return;
    }
    if (again) {
      WatchSocket();
      return;
    }
    if (c->phase == Phase::kReady) {
      connect_deadline_.Stop();
      c->healthy = true;
      stats_.sftp = c->sftp;
      if (config().keepalive_s > 0) {  // 0 or less: no keepalives
        libssh2_keepalive_config(c->session, 1,
                                 static_cast<unsigned>(std::max(1.0, config().keepalive_s)));
        keepalive_.Start(static_cast<uint64_t>(std::max(1.0, config().keepalive_s) * 1000), 0,
                         [this] { SendKeepalive(); });
      }
      WatchSocket();
      Connected();
      return;
    }
  }
}

void SshTarget::WatchSocket() {
  Conn* c = conn_.get();
  if (c == nullptr || c->watcher == nullptr) return;
  bool r = false, w = false;
  if (c->phase == Phase::kConnecting) {
    w = true;
  } else {
    int dirs = c->session != nullptr ? libssh2_session_block_directions(c->session) : 0;
    r = (dirs & LIBSSH2_SESSION_BLOCK_INBOUND) != 0;
    w = (dirs & LIBSSH2_SESSION_BLOCK_OUTBOUND) != 0;
    // Ready and not in the middle of a write: always watch for replies and for the peer going
    // away. While a write is half done, only what libssh2 asks for (PumpReady() does nothing
    // but retry the write then, so an unrequested readable socket would spin). Waiting with no
    // direction (e.g. for the peer to reopen a channel window) is waiting to read.
    bool writing = c->out_pos < c->out.size();
    if ((c->phase == Phase::kReady && !writing) || (!r && !w)) r = true;
  }
  Status st = c->watcher->Watch(r, w);
  if (!st.ok()) Failed(st);
}

void SshTarget::SendKeepalive() {
  Conn* c = conn_.get();
  if (c == nullptr || c->phase != Phase::kReady) return;
  int next = 0;
  // A keepalive may not be sent while a channel write is half done (libssh2 refuses other
  // packets then); a tick in progress is traffic enough.
  if (!c->in_tick && c->out_pos >= c->out.size()) {
    int rc = libssh2_keepalive_send(c->session, &next);
    if (rc != 0 && rc != LIBSSH2_ERROR_EAGAIN) {
      Failed(Status::Unavailable("SSH session to " + Where() + " lost (keepalive): " +
                                 LastError(c->session)));
      return;
    }
    WatchSocket();
  }
  uint64_t ms = static_cast<uint64_t>(std::max(1.0, config().keepalive_s) * 1000);
  if (next > 0) ms = static_cast<uint64_t>(next) * 1000;
  keepalive_.Start(ms, 0, [this] { SendKeepalive(); });
}

void SshTarget::Disconnect() {
  connect_deadline_.Stop();
  keepalive_.Stop();
  if (resolve_ != nullptr) {
    resolve_->owner = nullptr;
    (void)uv_cancel(reinterpret_cast<uv_req_t*>(&resolve_->req));
    resolve_ = nullptr;
  }
  if (conn_) {
    conn_->watcher.reset();  // no callback of this connection from now on
    dying_.push_back(std::move(conn_));
    // Freed outside the current call stack, which may be inside this connection's code.
    reaper_.Start(0, 0, [this] { dying_.clear(); });
  }
}

// ---------------------------------------------------------------------------------------------
// Ticking

void SshTarget::Tick() {
  Conn* c = conn_.get();
  if (c == nullptr || c->phase != Phase::kReady) {
    TickDone();
    return;
  }
  c->in_tick = true;
  c->requests = 0;
  if (c->sftp) {
    c->second_round = false;
    c->second_wave = false;
    c->outstanding = 0;
    const bool read_mounts = !c->mounts_kept || --c->ticks_to_mounts <= 0;
    if (read_mounts) c->ticks_to_mounts = kMountsEveryTicks;
    for (size_t i = 0; i < c->slots.size(); ++i) {
      FileSlot& s = c->slots[i];
      if (!read_mounts && s.path == linuxhost::kMountsFile) {
        // The last table stands this tick: its content, length and EOF probe are kept.
        s.state = FileSlot::State::kDone;
        s.rounds = 0;
        s.probe_pending = false;
        s.probe_adopted = false;
        continue;
      }
      s.content.clear();
      s.error.clear();
      s.offset = 0;
      s.rounds = 0;
      s.first_reply = 0;
      s.probe_pending = false;
      s.probe_adopted = false;
      if (s.handle.empty()) {
        s.state = FileSlot::State::kIdle;
        continue;
      }
      s.state = FileSlot::State::kReading;
      s.rounds = 1;
      sftp::AppendRead(&c->out, static_cast<uint32_t>(i), s.handle, 0, kReadLength);
      ++c->outstanding;
      ++c->requests;
      if (s.probe_at > 0) {
        // sftp-server answers a handle's requests in order: this READ runs after the one at
        // offset 0, and at that offset when the file kept its length, which for a seq_file
        // costs no re-generation (seq_lseek() to the current position).
        sftp::AppendRead(&c->out, kProbeIdBase + static_cast<uint32_t>(i), s.handle, s.probe_at,
                         kReadLength);
        s.probe_pending = true;
        ++c->outstanding;
        ++c->requests;
      }
    }
    // Filesystems of the previous mount table, in the same round.
    c->fs_asked.clear();
    c->fs_results.clear();
    if (c->statvfs_supported) {
      for (const std::string& mp : c->fs_paths) {
        sftp::AppendStatvfs(&c->out, kStatvfsIdBase + static_cast<uint32_t>(c->fs_asked.size()),
                            mp);
        c->fs_asked.push_back(mp);
        ++c->outstanding;
        ++c->requests;
      }
      c->fs_results.resize(c->fs_asked.size());
    }
  } else {
    c->statfs_asked = false;
    static const std::vector<std::string> kNone;
    const std::vector<std::string>* statfs = &kNone;
    if (!c->fs_paths.empty() && --c->ticks_to_statfs <= 0) {
      statfs = &c->fs_paths;
      c->statfs_asked = true;
      c->ticks_to_statfs = kStreamStatfsEvery;
    }
    ssh::stream::AppendRequest(&c->out, *statfs);
    c->requests = 1;
  }
  (void)PumpReady(/*just_sent=*/true);
}

Status SshTarget::Flush(bool* again) {
  Conn* c = conn_.get();
  *again = false;
  while (c->out_pos < c->out.size()) {
    ssize_t n = libssh2_channel_write(c->channel, c->out.data() + c->out_pos,
                                      c->out.size() - c->out_pos);
    if (n == LIBSSH2_ERROR_EAGAIN) {
      *again = true;
      return Status::OK();
    }
    if (n < 0) {
      return SessionLost(c, static_cast<int>(n));
    }
    c->out_pos += static_cast<size_t>(n);
  }
  c->out.clear();
  c->out_pos = 0;
  return Status::OK();
}

bool SshTarget::PumpReady(bool just_sent) {
  Conn* c = conn_.get();
  for (;;) {
    bool again = false;
    if (c->out_pos < c->out.size()) {
      Status st = Flush(&again);
      if (!st.ok()) {
        Failed(st);
        return false;
      }
      // Until the write completes libssh2 accepts no other packet (a window adjust sent by a
      // read would be one): wait for the socket.
      if (again) break;
    }
    // The tick's requests just went out: no reply can be there yet, and whatever came before
    // was read until EAGAIN (an SFTP packet between ticks is an error), so a read now would
    // only cost a recv() that fails with EAGAIN (libssh2_channel_read() always tries one).
    // The socket watcher (level-triggered) calls back when the replies arrive.
    if (just_sent) break;
    bool finished = false;
    Status st = ReadChannel(&again, &finished);
    if (!st.ok()) {
      Failed(st);
      return false;
    }
    if (finished) {
      WatchSocket();
      if (conn_.get() != c) return false;
      if (c->sftp) {
        DeliverSftpTick();
      } else {
        DeliverStreamTick();
      }
      return false;
    }
    if (again && c->out_pos >= c->out.size()) break;
  }
  WatchSocket();
  return true;
}

// Reads what the channel has and handles it; *finished when the tick's last reply came.
Status SshTarget::ReadChannel(bool* again, bool* finished) {
  Conn* c = conn_.get();
  *again = false;
  for (;;) {
    if (c->sftp) {
      // Complete packets first: a reply may append requests; send those before reading on.
      sftp::Packet p;
      Status perr;
      bool appended = false;
      while (c->framer.Next(&p, &perr)) {
        size_t before = c->out.size();
        TRAPLINE_RETURN_IF_ERROR(HandleSftpPacket(p, finished));
        if (*finished) return Status::OK();
        appended = appended || c->out.size() != before;
      }
      if (!perr.ok()) return perr;
      if (appended) return Status::OK();  // flush them; the caller comes back
    }
    TRAPLINE_RETURN_IF_ERROR(TopUpWindow());
    char* buf = c->framer.Reserve(kReadChunk);
    ssize_t n = libssh2_channel_read(c->channel, buf, kReadChunk);
    if (n == LIBSSH2_ERROR_EAGAIN) {
      *again = true;
      return Status::OK();
    }
    if (n < 0) {
      return SessionLost(c, static_cast<int>(n));
    }
    if (n == 0) {
      if (libssh2_channel_eof(c->channel) == 0) {
        *again = true;
        return Status::OK();
      }
      if (c->sftp) {
        return Status::Unavailable("sftp-server on " + Where() + " closed the channel");
      }
      int code = libssh2_channel_get_exit_status(c->channel);
      return Status::Unavailable("the streaming command on " + Where() + " ended (exit status " +
                                 std::to_string(code) + ")");
    }
    if (c->sftp) {
      c->framer.Commit(static_cast<size_t>(n));
      continue;
    }
    TRAPLINE_RETURN_IF_ERROR(
        HandleStreamBytes(std::string_view(buf, static_cast<size_t>(n)), finished));
    if (*finished) return Status::OK();
  }
}

// libssh2_channel_read() itself tops the receive window up by just its buffer size whenever
// the window is smaller than that: with kReadChunk reads and about 11 KiB a tick, a
// WINDOW_ADJUST packet (and a send, and a wake-up of sshd) would go out on most ticks. Topped
// up here to the whole window once half of it is used: one packet every ~90 ticks.
Status SshTarget::TopUpWindow() {
  Conn* c = conn_.get();
  // While a write is half done libssh2 takes no other packet; the next call comes back here.
  if (c->out_pos < c->out.size()) return Status::OK();
  unsigned long window = libssh2_channel_window_read_ex(c->channel, nullptr, nullptr);
  if (window >= kChannelWindow / 2) return Status::OK();
  unsigned int now = 0;
  int rc = libssh2_channel_receive_window_adjust2(c->channel, kChannelWindow - window, 0, &now);
  if (rc != 0 && rc != LIBSSH2_ERROR_EAGAIN) return SessionLost(c, rc);
  return Status::OK();  // on EAGAIN libssh2 keeps the packet and sends it on its next call
}

Status SshTarget::HandleSftpPacket(const sftp::Packet& p, bool* finished) {
  Conn* c = conn_.get();
  if (!c->in_tick || c->outstanding == 0) {
    return Status::ProtocolError("sftp: unexpected packet type " + std::to_string(p.type) +
                                 " between ticks");
  }
  uint32_t id = p.id;
  if (id >= kProbeIdBase) {
    size_t i = id - kProbeIdBase;
    if (i >= c->slots.size() || !c->slots[i].probe_pending) {
      return Status::ProtocolError("sftp: reply to an unknown request " + std::to_string(p.id));
    }
    FileSlot& s = c->slots[i];
    s.probe_pending = false;
    if (!s.probe_adopted || s.state != FileSlot::State::kReading) {
      // The file's length changed (or it is done): the reply answers nothing we need.
      --c->outstanding;
      if (c->outstanding == 0) return AfterReadRound(finished);
      return Status::OK();
    }
    s.probe_adopted = false;
    id = static_cast<uint32_t>(i);  // the reply to the file's READ in flight
  }
  if (id >= kStatvfsIdBase) {
    size_t i = id - kStatvfsIdBase;
    if (i >= c->fs_results.size()) {
      return Status::ProtocolError("sftp: reply to an unknown request " + std::to_string(p.id));
    }
    Conn::FsResult& r = c->fs_results[i];
    sftp::Statvfs v;
    sftp::StatusReply status;
    if (p.type == sftp::kExtendedReply && sftp::ParseStatvfs(p.payload, &v)) {
      auto [known, fresh] = c->fs_ids.try_emplace(c->fs_asked[i], v.fsid);
      if (!fresh && known->second != v.fsid) {
        // Unmounted (or mounted over) since the mount table was read: these figures are
        // another filesystem's. Dropped; the table is read at the next tick.
        known->second = v.fsid;
        r.moved = true;
        c->mounts_kept = false;
        --c->outstanding;
        if (c->outstanding == 0) return AfterReadRound(finished);
        return Status::OK();
      }
      r.ok = true;
      r.st.mountpoint = c->fs_asked[i];
      r.st.bsize = v.bsize;
      r.st.frsize = v.frsize;
      r.st.blocks = v.blocks;
      r.st.bfree = v.bfree;
      r.st.bavail = v.bavail;
      r.st.files = v.files;
      r.st.ffree = v.ffree;
      r.st.favail = v.favail;
    } else if (p.type == sftp::kStatus && sftp::ParseStatus(p.payload, &status)) {
      r.error = std::string(sftp::StatusName(status.code));
      if (!status.message.empty()) r.error += ": " + std::string(status.message);
    } else {
      return Status::ProtocolError("sftp: bad reply to statvfs " + c->fs_asked[i]);
    }
    --c->outstanding;
  } else {
    if (id >= c->slots.size() || c->slots[id].state != FileSlot::State::kReading) {
      return Status::ProtocolError("sftp: reply to an unknown request " + std::to_string(p.id));
    }
    FileSlot& s = c->slots[id];
    std::string_view data;
    sftp::StatusReply status;
    if (p.type == sftp::kData && sftp::ParseData(p.payload, &data)) {
      if (s.content.size() + data.size() > kMaxFileBytes) {
        s.state = FileSlot::State::kFailed;
        s.error = "larger than " + std::to_string(kMaxFileBytes) + " bytes; not parsed";
        --c->outstanding;
      } else {
        if (s.offset == 0) s.first_reply = data.size();
        s.content.append(data);
        s.offset += data.size();
        if (data.size() < kReadLength && !s.content.empty() && s.content.back() == '\n' &&
            linuxhost::ShortReadReachesEnd(s.path, data.size())) {
          // One read(2) that came back short, of a file the plugin knows ends there.
          s.state = FileSlot::State::kDone;
          --c->outstanding;
        } else if (s.probe_pending && s.probe_at == s.offset) {
          s.probe_adopted = true;  // already asked: its reply is the next piece, or EOF
          --c->outstanding;
        } else {
          // The next piece; a short read need not be the end (seq_files answer a page at a
          // time).
          sftp::AppendRead(&c->out, id, s.handle, s.offset, kReadLength);
          ++s.rounds;
          ++c->requests;
        }
      }
    } else if (p.type == sftp::kStatus && sftp::ParseStatus(p.payload, &status)) {
      if (status.code == sftp::kEof) {
        s.state = FileSlot::State::kDone;
      } else {
        s.state = FileSlot::State::kFailed;
        s.error = "read failed: " + std::string(sftp::StatusName(status.code));
        if (!status.message.empty()) s.error += " (" + std::string(status.message) + ")";
      }
      --c->outstanding;
    } else {
      return Status::ProtocolError("sftp: bad reply to READ " + s.path);
    }
  }
  if (c->outstanding == 0) return AfterReadRound(finished);
  return Status::OK();
}

// Every request of the round is answered: ask the filesystems this tick's mount table added,
// or finish.
Status SshTarget::AfterReadRound(bool* finished) {
  Conn* c = conn_.get();
  if (!c->second_round && c->statvfs_supported) {
    c->second_round = true;
    for (const FileSlot& s : c->slots) {
      if (s.path != linuxhost::kMountsFile) continue;
      if (s.state != FileSlot::State::kDone) break;
      SelectMounts(c, s.content);
      for (const std::string& mp : c->fs_paths) {
        if (std::find(c->fs_asked.begin(), c->fs_asked.end(), mp) != c->fs_asked.end()) continue;
        sftp::AppendStatvfs(&c->out, kStatvfsIdBase + static_cast<uint32_t>(c->fs_asked.size()),
                            mp);
        c->fs_asked.push_back(mp);
        c->fs_results.emplace_back();
        ++c->outstanding;
        ++c->requests;
        c->second_wave = true;
      }
      break;
    }
    if (c->outstanding > 0) return Status::OK();
  }
  *finished = true;
  return Status::OK();
}

void SshTarget::SelectMounts(Conn* c, const std::string& proc_mounts) {
  if (c->mount_selection_valid && proc_mounts == c->mount_selection_from) return;
  c->mount_selection = linuxhost::SelectMounts(proc_mounts, filters_);
  c->mount_selection_from = proc_mounts;
  c->mount_selection_valid = true;
  c->fs_paths.clear();
  for (const linuxhost::Mount& m : c->mount_selection.mounts) c->fs_paths.push_back(m.mountpoint);
}

void SshTarget::DeliverSftpTick() {
  Conn* c = conn_.get();
  c->in_tick = false;
  // What ParseTickFiles() reads: the slots' contents in place, by their TickFiles() index (the
  // slots are in that order; extra files after them are read but not parsed).
  uint64_t bytes = 0, round_trips = 0;
  std::vector<std::string> warnings;
  const std::string* mounts = nullptr;
  c->parse_files.assign(c->slots.size(), nullptr);
  for (size_t i = 0; i < c->slots.size(); ++i) {
    FileSlot& s = c->slots[i];
    if (s.state == FileSlot::State::kDone) {
      c->parse_files[i] = &s.content;
      if (s.rounds > 0) bytes += s.content.size();  // read this tick (not a kept mount table)
      if (s.path == linuxhost::kMountsFile) {
        mounts = &s.content;
        if (s.rounds > 0) c->mounts_kept = true;
      }
    } else if (s.state == FileSlot::State::kFailed) {
      warnings.push_back(s.path + ": " + s.error);
    }
    if (s.path == linuxhost::kMountsFile && s.state != FileSlot::State::kDone) {
      c->mounts_kept = false;  // read again next tick
    }
    round_trips = std::max(round_trips, s.rounds);
    // A file that came whole in its first reply but needed a READ to see EOF: next tick, that
    // READ goes along with the first.
    const bool probe = s.state == FileSlot::State::kDone && s.first_reply > 0 &&
                       s.first_reply == s.offset &&
                       !linuxhost::ShortReadReachesEnd(s.path, s.first_reply);
    s.probe_at = probe ? s.offset : 0;
  }
  if (c->second_wave) ++round_trips;
  if (mounts != nullptr) SelectMounts(c, *mounts);  // done already when statvfs is supported
  // Filesystem ids of mountpoints the table no longer lists are forgotten (containers' volumes
  // come and go; the map stays the size of the table).
  if (c->fs_ids.size() > c->fs_paths.size()) {
    std::erase_if(c->fs_ids, [c](const auto& kv) {
      return std::find(c->fs_paths.begin(), c->fs_paths.end(), kv.first) == c->fs_paths.end();
    });
  }
  // Filesystems: this tick's table, in its order; results for mountpoints no longer listed
  // (unmounted since the last tick) are dropped.
  fs_.clear();
  for (const std::string& mp : c->fs_paths) {
    auto it = std::find(c->fs_asked.begin(), c->fs_asked.end(), mp);
    if (it == c->fs_asked.end()) continue;
    Conn::FsResult& r = c->fs_results[static_cast<size_t>(it - c->fs_asked.begin())];
    if (r.ok) {
      fs_.push_back(r.st);
    } else if (!r.moved) {
      warnings.push_back("statvfs " + mp + ": " + r.error);
    }
  }
  plugins::ParseResult result = linuxhost::ParseTickFiles(
      c->parse_files, fs_, filters_, mounts != nullptr ? &c->mount_selection : nullptr);
  std::vector<std::string> explained = stats_.absent;
  for (const FileSlot& s : c->slots) {
    if (s.state == FileSlot::State::kFailed) explained.push_back(s.path);
  }
  DropNotReadWarnings(explained, &result.warnings);
  result.warnings.insert(result.warnings.end(), std::make_move_iterator(warnings.begin()),
                         std::make_move_iterator(warnings.end()));
  stats_.last_tick_round_trips = round_trips;
  stats_.last_tick_requests = c->requests;
  stats_.last_tick_bytes_in = bytes;
  ++stats_.ticks;
  Deliver(std::move(result));
}

// `bytes` sit in the framer's space, uncommitted (the framer is unused in this mode): the
// parser copies them.
Status SshTarget::HandleStreamBytes(std::string_view bytes, bool* finished) {
  Conn* c = conn_.get();
  if (!c->in_tick) {
    return Status::ProtocolError("unexpected output from the streaming command between ticks");
  }
  if (c->parser.Feed(bytes)) {
    *finished = true;
    return Status::OK();
  }
  if (c->parser.buffered() > kMaxFileBytes) {
    return Status::ProtocolError("the streaming command sent a line longer than " +
                                 std::to_string(kMaxFileBytes) + " bytes");
  }
  return Status::OK();
}

void SshTarget::DeliverStreamTick() {
  Conn* c = conn_.get();
  c->in_tick = false;
  std::vector<std::string> warnings;
  for (const std::string& path : c->parser.unreadable()) {
    if (std::find(stats_.absent.begin(), stats_.absent.end(), path) == stats_.absent.end()) {
      stats_.absent.push_back(path);
      spdlog::info("[ssh] {}: {} cannot be read; skipped", Where(), path);
    }
  }
  for (const std::string& j : c->parser.junk()) {
    warnings.push_back("streaming command: unexpected line: " + j);
  }
  std::map<std::string, std::string>& files = c->parser.files();
  uint64_t bytes = 0;
  for (const auto& [path, content] : files) bytes += content.size();
  auto mounts_it = files.find(std::string(linuxhost::kMountsFile));
  if (mounts_it != files.end()) {
    std::vector<linuxhost::Mount> mounts =
        linuxhost::FilesystemsToStat(mounts_it->second, filters_);
    bool first = c->fs_paths.empty();
    c->fs_paths.clear();
    for (linuxhost::Mount& m : mounts) c->fs_paths.push_back(std::move(m.mountpoint));
    if (first) c->ticks_to_statfs = 1;  // ask on the next tick
  }
  fs_.clear();
  if (c->statfs_asked) {
    for (const ssh::stream::StatfsLine& l : c->parser.statfs()) {
      if (std::find(c->fs_paths.begin(), c->fs_paths.end(), l.mountpoint) == c->fs_paths.end()) {
        continue;
      }
      linuxhost::FsStat st;
      st.mountpoint = l.mountpoint;
      st.bsize = l.bsize;
      st.frsize = l.frsize;
      st.blocks = l.blocks;
      st.bfree = l.bfree;
      st.bavail = l.bavail;
      st.files = l.files;
      st.ffree = l.ffree;
      st.favail = l.ffree;  // stat -f has no "available to unprivileged users" for inodes
      fs_.push_back(std::move(st));
    }
  }
  plugins::ParseResult result = linuxhost::Parse(files, fs_, filters_);
  DropNotReadWarnings(stats_.absent, &result.warnings);
  result.warnings.insert(result.warnings.end(), std::make_move_iterator(warnings.begin()),
                         std::make_move_iterator(warnings.end()));
  stats_.last_tick_round_trips = 1;
  stats_.last_tick_requests = 1;
  stats_.last_tick_bytes_in = bytes;
  ++stats_.ticks;
  Deliver(std::move(result));
}

}  // namespace trapline
