#pragma once
// The pure parts of the SSH target (collector/ssh_target.h): no I/O, no clocks, no libssh2.
//
//  - ssh:// URIs and the known_hosts name of a host and port.
//  - A minimal SFTP version 3 client codec (draft-ietf-secsh-filexfer-02 plus OpenSSH's
//    statvfs@openssh.com): just what reading /proc files needs. The target speaks it over a
//    libssh2 "sftp" subsystem channel instead of libssh2's own SFTP API because libssh2 1.10
//    keeps one read state per SFTP session (a read on a second handle while the first waits
//    fails with "sftp_read() internal error"), so reads of several files cannot be pipelined,
//    and its read-ahead asks for offsets far beyond the end of /proc files (each such READ
//    makes the kernel regenerate the whole file on the target).
//  - The framing of the fallback stream (one long-running shell command streaming the files
//    on request, where the SFTP subsystem is disabled).
//
// Thread-safety: everything here is reentrant; objects are used by one thread at a time.

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace trapline::ssh {

// ---------------------------------------------------------------------------------------------
// URIs and host names

struct SshUri {
  std::string user;  // percent-decoded; never empty
  std::string host;  // a name, an IPv4 literal, or an IPv6 literal without brackets
  uint16_t port = 22;
  friend bool operator==(const SshUri&, const SshUri&) = default;
};

// Parses "ssh://user@host[:port][/]". IPv6 literals go in brackets ("ssh://u@[::1]:2222").
// The user is required (a collector runs as a service account, whose name is rarely the one
// to log in with); "%XX" escapes in it are decoded. No password, path, query or fragment.
Result<SshUri> ParseSshUri(std::string_view uri);

// The name of a host in known_hosts, as OpenSSH writes it: "host" for port 22, else
// "[host]:port" (IPv6 literals too: "[::1]:2222").
std::string KnownHostsName(std::string_view host, uint16_t port);

// The 1-based line of a known_hosts text whose key (the base64 field after the key type) is
// `key_base64`, or 0. Comments, blank lines and "@cert-authority"/"@revoked" markers are
// understood; the host field is not looked at (it may be hashed).
int KnownHostsLineOfKey(std::string_view known_hosts_text, std::string_view key_base64);

// Standard base64 (RFC 4648) without '=' padding, as OpenSSH prints "SHA256:..." fingerprints.
std::string Base64NoPad(std::string_view bytes);

// Quotes a word for a POSIX shell: 'it'\''s'.
std::string ShellQuote(std::string_view word);

// ---------------------------------------------------------------------------------------------
// SSH wire encoding (RFC 4251): big-endian uint32/uint64 and uint32-length-prefixed strings,
// shared by the SFTP codec and the key code.

void PutU32(std::string* out, uint32_t v);
void PutU64(std::string* out, uint64_t v);
void PutString(std::string* out, std::string_view s);

// Reads wire fields off the front of a buffer; a read that the buffer is too short for
// returns false.
class WireReader {
 public:
  explicit WireReader(std::string_view s) : s_(s) {}
  bool U32(uint32_t* v);
  bool U64(uint64_t* v);
  bool String(std::string_view* v);
  bool empty() const { return s_.empty(); }
  std::string_view rest() const { return s_; }

 private:
  std::string_view s_;
};

// ---------------------------------------------------------------------------------------------
// SFTP version 3

namespace sftp {

enum PacketType : uint8_t {
  kInit = 1,
  kVersion = 2,
  kOpen = 3,
  kClose = 4,
  kRead = 5,
  kStatus = 101,
  kHandle = 102,
  kData = 103,
  kExtended = 200,
  kExtendedReply = 201,
};

// SSH_FX_* status codes.
enum StatusCode : uint32_t {
  kOk = 0,
  kEof = 1,
  kNoSuchFile = 2,
  kPermissionDenied = 3,
  kFailure = 4,
  kBadMessage = 5,
  kOpUnsupported = 8,
};

inline constexpr uint32_t kOpenRead = 0x00000001;  // SSH_FXF_READ
inline constexpr std::string_view kStatvfsExtension = "statvfs@openssh.com";
// Packets larger than this are a protocol error (OpenSSH's sftp-server caps replies at
// 256 KiB; libssh2 at 256 KiB + a little).
inline constexpr uint32_t kMaxPacket = 256 * 1024 + 1024;

// Requests, appended to *out ready to send (length prefix included).
void AppendInit(std::string* out);
void AppendOpenRead(std::string* out, uint32_t id, std::string_view path);
void AppendRead(std::string* out, uint32_t id, std::string_view handle, uint64_t offset,
                uint32_t length);
void AppendClose(std::string* out, uint32_t id, std::string_view handle);
void AppendStatvfs(std::string* out, uint32_t id, std::string_view path);

// One reply, viewing the bytes of the buffer it came from (valid until the next Next()).
struct Packet {
  uint8_t type = 0;
  uint32_t id = 0;              // 0 for VERSION
  std::string_view payload;     // after type and id (after type for VERSION)
};

// Frames packets out of the byte stream of the channel. Reuses its buffer: after warm-up,
// framing allocates nothing.
class Framer {
 public:
  // Space for at least `n` more bytes; write into it, then Commit() what was written.
  char* Reserve(size_t n);
  void Commit(size_t n) { end_ += n; }
  // Appends bytes (tests; the target reads into Reserve()).
  void Append(std::string_view bytes);

  // The next complete packet: true and *p set; false when more bytes are needed. A malformed
  // stream (length 0 or above kMaxPacket, or a packet too short for its id) sets *error.
  bool Next(Packet* p, Status* error);
  size_t buffered() const { return end_ - begin_; }
  size_t capacity() const { return buf_.size(); }

 private:
  std::string buf_;
  size_t begin_ = 0, end_ = 0;
};

// Payload parsers: false when the payload is malformed.
struct StatusReply {
  uint32_t code = 0;
  std::string_view message;
};
bool ParseStatus(std::string_view payload, StatusReply* out);
bool ParseHandle(std::string_view payload, std::string_view* handle);
bool ParseData(std::string_view payload, std::string_view* data);
// VERSION: the version and the names of the extensions the server announced.
bool ParseVersion(std::string_view payload, uint32_t* version,
                  std::vector<std::string>* extensions);

struct Statvfs {
  uint64_t bsize = 0, frsize = 0, blocks = 0, bfree = 0, bavail = 0, files = 0, ffree = 0,
           favail = 0, fsid = 0, flag = 0, namemax = 0;
};
bool ParseStatvfs(std::string_view payload, Statvfs* out);

// "no such file", "permission denied"... for an SSH_FX_* code.
std::string_view StatusName(uint32_t code);

}  // namespace sftp

// ---------------------------------------------------------------------------------------------
// The fallback stream

namespace stream {

// The remote command, for a POSIX login shell: `exec sh -c '<script>' sh '<bash script>'
// FILE...`. On each request it writes, for each file, "@@<path>\n" and its lines (or
// "@@!<path>\n" when it cannot be opened); then, when the request carried mountpoints,
// "@@STATFS\n" and one line per mountpoint from `stat -f -c '%s %S %b %f %a %c %d %n'` (the
// only process it ever starts); then "@@END\n". Reading uses shell builtins only: bash's
// `mapfile` when the target has bash (and prefer_bash), else sh's `read`, which reads a byte
// per system call and so gets only the first byte of /proc/sys files (see ssh_wire.cc). A file
// that opens but cannot be read comes back empty.
std::string Command(const std::vector<std::string>& files, bool prefer_bash = true);

// A request: optional mountpoints to statfs ("S<path>\n" each), then "\n".
void AppendRequest(std::string* out, const std::vector<std::string>& statfs_paths);

// One `stat -f` line: bsize frsize blocks bfree bavail files ffree mountpoint.
struct StatfsLine {
  std::string mountpoint;
  uint64_t bsize = 0, frsize = 0, blocks = 0, bfree = 0, bavail = 0, files = 0, ffree = 0;
};
bool ParseStatfsLine(std::string_view line, StatfsLine* out);

// Parses the command's output, one reply per request. Contents go into *files (the map is
// reused: existing strings keep their capacity, so a steady state allocates nothing).
class Parser {
 public:
  // Consumes `bytes`. Returns true when a reply ended ("@@END"); the bytes after it stay
  // buffered for the next reply. Call again with an empty view to continue with them.
  bool Feed(std::string_view bytes);

  // The reply that ended: files read (path -> content; files of the previous reply that are
  // not in this one are erased), files that could not be read, and statfs lines.
  std::map<std::string, std::string>& files() { return files_; }
  const std::vector<std::string>& unreadable() const { return unreadable_; }
  const std::vector<StatfsLine>& statfs() const { return statfs_; }
  bool had_statfs() const { return had_statfs_; }
  // Lines that fit nowhere (before the first "@@" of a reply, bad statfs lines).
  const std::vector<std::string>& junk() const { return junk_; }
  // Bytes buffered (an unfinished line); the target gives up above a limit.
  size_t buffered() const { return pending_.size(); }

 private:
  void StartReply();
  void Line(std::string_view line);

  std::string pending_;  // an unfinished line
  bool in_reply_ = false;
  std::map<std::string, std::string> files_;
  std::vector<const std::string*> seen_;  // keys of the current reply, to erase stale ones
  std::string key_;
  std::string* current_ = nullptr;
  bool in_statfs_ = false;
  bool had_statfs_ = false;
  std::vector<std::string> unreadable_;
  std::vector<StatfsLine> statfs_;
  std::vector<std::string> junk_;
};

}  // namespace stream

}  // namespace trapline::ssh
