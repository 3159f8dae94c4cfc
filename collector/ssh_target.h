#pragma once
// The SSH target: one long-lived SSH session to a Linux host, driven entirely on the
// collector's loop (non-blocking socket, libssh2 in non-blocking mode, one SocketWatcher on
// the socket, watching what libssh2_session_block_directions() asks for).
//
// State machine of one connection attempt (Connect()), each step retried on EAGAIN:
//
//   resolve (uv_getaddrinfo; literals skip it) -> TCP connect (non-blocking, each address in
//   turn) -> SSH handshake -> host key check (known_hosts) -> auth (ssh-agent, then the key
//   file; RSA keys sign rsa-sha2-512 themselves, see ssh_keys.h) -> open a session channel ->
//   "sftp" subsystem -> SFTP INIT/VERSION -> OPEN every file of linuxhost::TickFiles() once
//   -> ready (Connected()).
//
//   When the server refuses the SFTP subsystem (or the channel closes before VERSION), the
//   channel is dropped and the fallback starts instead: exec channel -> one long-running
//   `sh -c` script that streams the files on request (see ssh::stream) -> ready.
//
// A tick (SFTP): one READ at offset 0 for every open file and one statvfs@openssh.com for every
// filesystem of the previous tick's mount table, all sent at once. /proc files report size 0
// and seq_files return at most a page per read, so a DATA reply is the whole file only when
// linuxhost::ShortReadReachesEnd() says so (files the kernel makes in one piece, short reads of
// line-record files); otherwise the next READ of that file follows at the next offset until
// the server answers EOF. A file that needed that READ only to see EOF (/proc/mounts) gets it
// in the first round of the next tick, at the offset where it ended (sftp-server answers a
// handle's requests in order; a file whose length changed just ignores that reply). When this
// tick's /proc/mounts lists filesystems that were not asked (first tick, new mounts), they are
// asked in a second round. Results for filesystems no longer listed are dropped. Then
// linuxhost::ParseTickFiles() (the mount table's selection kept while its text stays the same)
// and Deliver(). Typically 1 round trip and one request per file per tick
// (2 on the first tick). /proc/mounts is read every kMountsEveryTicks ticks only (the last
// table stands between): a filesystem whose statvfs answers with another fsid than before
// (unmounted: the one underneath answers) is dropped from that tick and the table is read at
// the next.
//
// A tick (fallback): one request line on the script's stdin, the framed reply parsed, Parse(),
// Deliver(). Filesystem space is asked every kStreamStatfsEvery ticks only (it is the one
// place where the script starts a process: `stat -f`).
//
// Keepalives: every TargetConfig::keepalive_s (<= 0: none) when no tick is in progress,
// libssh2_keepalive_send() (a global request the server answers); a dead peer then shows as a
// socket error or as the next tick's timeout.
//
// Errors: connection refused/unreachable, DNS failures, auth failures, an unknown or
// mismatching host key, a dead session (EOF, reset, keepalive or tick timeout) end in
// Failed(status); TargetBase logs it, rate-limited, and reconnects with backoff. A file that
// cannot be opened is remembered as absent for the whole session (logged once) and not asked
// again; a READ that fails on one file is a warning in that tick's ParseResult while the other
// files are still parsed.
//
// Blocking: everything is non-blocking but the ssh-agent conversation (libssh2's agent API,
// and our rsa-sha2 sign requests, talk to $SSH_AUTH_SOCK, a local unix socket, with blocking
// calls; a healthy agent answers in microseconds) and reading/appending the known_hosts file
// and the key files (local files).
//
// Disconnect() (also from inside this class's callbacks, via Failed()) stops the socket
// watcher at once and hands the connection to a zero-delay timer that frees it (socket shut
// down first, so libssh2_session_free() cannot block), outside any call stack of its own.
//
// Memory: about 100 KiB per session on a small host (tests/integration/test_ssh_target.py
// measures it): libssh2 and OpenSSL state, the file contents, the read buffer. Nothing big is
// allocated per tick: contents (parsed in place) and the read buffer keep their capacity.
//
// Thread: the loop's. Lifetime: may be destroyed at any time (also from the DeliverFn or the
// state callback: Deliver(), Connected() and Failed() are always the last thing a callback of
// this class does).

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "collector/ssh_wire.h"
#include "collector/target.h"
#include "common/status.h"
#include "common/uv.h"
#include "plugins/linux/linux.h"

namespace trapline {

// What the last ticks cost; for tests, the probe command and the admin panel.
struct SshTargetStats {
  bool sftp = false;                    // false: the streaming fallback
  std::vector<std::string> absent;      // files that could not be opened this session
  uint64_t last_tick_round_trips = 0;   // longest chain of dependent requests
  uint64_t last_tick_requests = 0;      // SFTP requests sent (fallback: 1)
  uint64_t last_tick_bytes_in = 0;      // bytes of file content received
  uint64_t ticks = 0;                   // ticks delivered this session
};

class SshTarget : public TargetBase {
 public:
  // Filesystem space in fallback mode: every this many ticks (one `stat -f` on the target).
  static constexpr int kStreamStatfsEvery = 30;

  // REQUIRES: config.plugin == "linux" (its options are linuxhost::ParseFilters() options).
  // A bad URI, missing known_hosts (without trust_on_first_use), missing identity (without
  // use_agent) or bad plugin options make every Connect() fail with that error; Validate()
  // tells beforehand.
  SshTarget(uv_loop_t* loop, TargetConfig config, DeliverFn deliver);
  ~SshTarget() override;

  // The configuration errors the constructor would keep (see above); OK when usable.
  static Status Validate(const TargetConfig& config);

  const SshTargetStats& ssh_stats() const { return stats_; }

  // Extra files read every tick after linuxhost::TickFiles() like the others: a failed read is
  // a warning, the plugin parses none of them (tests use a path that opens but cannot be read,
  // e.g. a directory).
  // REQUIRES: before Start().
  void set_extra_files(std::vector<std::string> files) { extra_files_ = std::move(files); }

 protected:
  void Connect() override;
  void Tick() override;
  void Disconnect() override;

 private:
  enum class Phase {
    kIdle,
    kResolving,
    kConnecting,
    kHandshake,
    kAgent,
    kAuthKey,
    kSftpChannel,
    kSftpSubsystem,
    kSftpVersion,
    kSftpOpen,
    kDropSftpChannel,
    kExecChannel,
    kExec,
    kReady,
  };
  struct Conn;
  struct FileSlot;
  struct Resolve;

  // Advances the current connection as far as it can without blocking; on EAGAIN watches the
  // socket. REQUIRES: conn_.
  void Pump();
  // One step of the current phase: OK and *again=false when it completed (phase advanced),
  // *again=true on EAGAIN, or an error.
  Status Step(bool* again);

  void OnResolved(int status, struct addrinfo* res);
  Status StartTcp();
  Status FinishTcp(bool* again);
  Status CheckHostKey();
  Status StepAgent(bool* again);
  void PrepareAgentIdentity(Conn* c);
  Status StepAuthKey(bool* again);
  Status StepSftpVersion(bool* again);
  Status StepSftpOpen(bool* again);
  Status StartFallback(const std::string& why);

  // Ready: moves bytes both ways and handles replies; false after Failed() or Deliver().
  // `just_sent`: called right after a tick's requests were queued; reads wait for the socket.
  bool PumpReady(bool just_sent = false);
  Status Flush(bool* again);
  Status ReadChannel(bool* again, bool* finished);
  Status TopUpWindow();
  Status HandleSftpPacket(const ssh::sftp::Packet& p, bool* finished);
  Status HandleStreamBytes(std::string_view bytes, bool* finished);
  Status AfterReadRound(bool* finished);
  // Makes c->mount_selection and c->fs_paths from this tick's mount table, unless it is the
  // table they were made from.
  void SelectMounts(Conn* c, const std::string& proc_mounts);
  void DeliverSftpTick();
  void DeliverStreamTick();
  void WatchSocket();
  void SendKeepalive();

  static const char* PhaseName(Phase p);
  Status SessionLost(Conn* c, int rc) const;
  std::string Where() const;  // "[host]:port" (or "host" for port 22) for messages
  std::string AuthFailure(const std::string& detail) const;

  Status config_status_;
  ssh::SshUri uri_;
  plugins::linuxhost::Filters filters_;
  std::vector<std::string> extra_files_;

  std::unique_ptr<Conn> conn_;
  // Connections dropped by Disconnect(): freed by reaper_ outside any callback of theirs.
  std::vector<std::unique_ptr<Conn>> dying_;
  Timer reaper_;
  Timer connect_deadline_;
  Timer keepalive_;
  Resolve* resolve_ = nullptr;  // the pending getaddrinfo, if any (freed by its callback)
  uint64_t next_generation_ = 1;

  // Per-session tick state (file contents included, parsed in place) lives in Conn.
  std::vector<plugins::linuxhost::FsStat> fs_;
  SshTargetStats stats_;
};

}  // namespace trapline
