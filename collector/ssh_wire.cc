#include "collector/ssh_wire.h"

#include <charconv>
#include <cstring>

namespace trapline::ssh {

// ---------------------------------------------------------------------------------------------
// URIs and host names

namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool PercentDecode(std::string_view in, std::string* out) {
  out->clear();
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out->push_back(in[i]);
      continue;
    }
    if (i + 2 >= in.size()) return false;
    int hi = HexValue(in[i + 1]), lo = HexValue(in[i + 2]);
    if (hi < 0 || lo < 0) return false;
    out->push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return true;
}

bool ValidHostChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '-' || c == '.' || c == '_';
}

}  // namespace

Result<SshUri> ParseSshUri(std::string_view uri) {
  auto bad = [&](std::string_view why) {
    return Status::InvalidArgument("bad ssh URI \"" + std::string(uri) + "\": " +
                                   std::string(why) + " (expected ssh://user@host[:port])");
  };
  constexpr std::string_view kScheme = "ssh://";
  if (uri.substr(0, kScheme.size()) != kScheme) return bad("not ssh://");
  std::string_view rest = uri.substr(kScheme.size());
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  if (rest.find_first_of("/?#") != std::string_view::npos) {
    return bad("a path, query or fragment is not allowed");
  }
  size_t at = rest.rfind('@');
  if (at == std::string_view::npos || at == 0) return bad("no user");
  SshUri out;
  std::string_view userinfo = rest.substr(0, at);
  if (userinfo.find(':') != std::string_view::npos) {
    return bad("a password in the URI is not supported (use a key)");
  }
  if (!PercentDecode(userinfo, &out.user)) return bad("bad %-escape in the user");
  if (out.user.empty()) return bad("no user");
  std::string_view hostport = rest.substr(at + 1);
  std::string_view port_text;
  if (!hostport.empty() && hostport.front() == '[') {
    size_t close = hostport.find(']');
    if (close == std::string_view::npos) return bad("'[' without ']'");
    out.host = std::string(hostport.substr(1, close - 1));
    if (out.host.empty() || out.host.find(':') == std::string::npos) {
      return bad("brackets are for IPv6 literals");
    }
    bool zone = false;  // after '%': an interface name ("fe80::1%eth0")
    for (char c : out.host) {
      if (c == '%' && !zone) {
        zone = true;
      } else if (zone ? !ValidHostChar(c) : (HexValue(c) < 0 && c != ':' && c != '.')) {
        return bad("bad character in the IPv6 literal");
      }
    }
    std::string_view after = hostport.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return bad("junk after ']'");
      port_text = after.substr(1);
      if (port_text.empty()) return bad("empty port");
    }
  } else {
    if (hostport.find(':') != hostport.rfind(':')) return bad("IPv6 goes in brackets");
    size_t colon = hostport.find(':');
    std::string_view host = hostport.substr(0, colon);
    if (colon != std::string_view::npos) {
      port_text = hostport.substr(colon + 1);
      if (port_text.empty()) return bad("empty port");
    }
    if (host.empty()) return bad("no host");
    for (char c : host) {
      if (!ValidHostChar(c)) return bad("bad character in the host (IPv6 goes in brackets)");
    }
    out.host = std::string(host);
  }
  if (!port_text.empty()) {
    unsigned v = 0;
    auto [p, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), v);
    if (ec != std::errc() || p != port_text.data() + port_text.size() || v == 0 || v > 65535) {
      return bad("port must be 1-65535");
    }
    out.port = static_cast<uint16_t>(v);
  }
  return out;
}

std::string KnownHostsName(std::string_view host, uint16_t port) {
  if (port == 22) return std::string(host);
  return "[" + std::string(host) + "]:" + std::to_string(port);
}

int KnownHostsLineOfKey(std::string_view text, std::string_view key_base64) {
  int line_no = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    std::string_view line = text.substr(pos, nl == std::string_view::npos ? nl : nl - pos);
    pos = nl == std::string_view::npos ? text.size() : nl + 1;
    ++line_no;
    std::vector<std::string_view> fields;
    size_t i = 0;
    while (i < line.size() && fields.size() < 4) {
      while (i < line.size() && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r')) ++i;
      size_t j = i;
      while (j < line.size() && line[j] != ' ' && line[j] != '\t' && line[j] != '\r') ++j;
      if (j > i) fields.push_back(line.substr(i, j - i));
      i = j;
    }
    if (fields.empty() || fields[0][0] == '#') continue;
    size_t first = fields[0][0] == '@' ? 1 : 0;  // a marker before the hosts
    if (fields.size() >= first + 3 && fields[first + 2] == key_base64) return line_no;
  }
  return 0;
}

std::string Base64NoPad(std::string_view bytes) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  auto byte = [&](size_t k) { return static_cast<uint32_t>(static_cast<unsigned char>(bytes[k])); };
  for (; i + 3 <= bytes.size(); i += 3) {
    uint32_t v = byte(i) << 16 | byte(i + 1) << 8 | byte(i + 2);
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(kAlphabet[(v >> 6) & 63]);
    out.push_back(kAlphabet[v & 63]);
  }
  size_t left = bytes.size() - i;
  if (left == 1) {
    uint32_t v = byte(i) << 16;
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
  } else if (left == 2) {
    uint32_t v = byte(i) << 16 | byte(i + 1) << 8;
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(kAlphabet[(v >> 6) & 63]);
  }
  return out;
}

std::string ShellQuote(std::string_view word) {
  std::string out = "'";
  for (char c : word) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out.push_back(c);
    }
  }
  out.push_back('\'');
  return out;
}

// ---------------------------------------------------------------------------------------------
// SFTP

// SSH wire encoding.

void PutU32(std::string* out, uint32_t v) {
  char b[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
               static_cast<char>(v)};
  out->append(b, 4);
}

void PutU64(std::string* out, uint64_t v) {
  PutU32(out, static_cast<uint32_t>(v >> 32));
  PutU32(out, static_cast<uint32_t>(v));
}

void PutString(std::string* out, std::string_view s) {
  PutU32(out, static_cast<uint32_t>(s.size()));
  out->append(s);
}

bool WireReader::U32(uint32_t* v) {
  if (s_.size() < 4) return false;
  auto b = [this](size_t k) { return static_cast<uint32_t>(static_cast<unsigned char>(s_[k])); };
  *v = b(0) << 24 | b(1) << 16 | b(2) << 8 | b(3);
  s_.remove_prefix(4);
  return true;
}

bool WireReader::U64(uint64_t* v) {
  uint32_t hi = 0, lo = 0;
  if (!U32(&hi) || !U32(&lo)) return false;
  *v = static_cast<uint64_t>(hi) << 32 | lo;
  return true;
}

bool WireReader::String(std::string_view* v) {
  uint32_t n = 0;
  if (!U32(&n) || s_.size() < n) return false;
  *v = s_.substr(0, n);
  s_.remove_prefix(n);
  return true;
}

namespace sftp {

namespace {

using Cursor = WireReader;

uint32_t LoadU32(const char* p) {
  auto b = [p](int k) { return static_cast<uint32_t>(static_cast<unsigned char>(p[k])); };
  return b(0) << 24 | b(1) << 16 | b(2) << 8 | b(3);
}

// Starts a packet: a length placeholder, the type and (but for INIT) the id. Returns the offset
// of the length, which Finish() fills in.
size_t Begin(std::string* out, PacketType type) {
  size_t at = out->size();
  PutU32(out, 0);
  out->push_back(static_cast<char>(type));
  return at;
}

void Finish(std::string* out, size_t at) {
  uint32_t len = static_cast<uint32_t>(out->size() - at - 4);
  (*out)[at] = static_cast<char>(len >> 24);
  (*out)[at + 1] = static_cast<char>(len >> 16);
  (*out)[at + 2] = static_cast<char>(len >> 8);
  (*out)[at + 3] = static_cast<char>(len);
}

}  // namespace

void AppendInit(std::string* out) {
  size_t at = Begin(out, kInit);
  PutU32(out, 3);
  Finish(out, at);
}

void AppendOpenRead(std::string* out, uint32_t id, std::string_view path) {
  size_t at = Begin(out, kOpen);
  PutU32(out, id);
  PutString(out, path);
  PutU32(out, kOpenRead);
  PutU32(out, 0);  // attrs: no flags
  Finish(out, at);
}

void AppendRead(std::string* out, uint32_t id, std::string_view handle, uint64_t offset,
                uint32_t length) {
  size_t at = Begin(out, kRead);
  PutU32(out, id);
  PutString(out, handle);
  PutU64(out, offset);
  PutU32(out, length);
  Finish(out, at);
}

void AppendClose(std::string* out, uint32_t id, std::string_view handle) {
  size_t at = Begin(out, kClose);
  PutU32(out, id);
  PutString(out, handle);
  Finish(out, at);
}

void AppendStatvfs(std::string* out, uint32_t id, std::string_view path) {
  size_t at = Begin(out, kExtended);
  PutU32(out, id);
  PutString(out, kStatvfsExtension);
  PutString(out, path);
  Finish(out, at);
}

char* Framer::Reserve(size_t n) {
  if (begin_ == end_) begin_ = end_ = 0;
  if (buf_.size() - end_ < n && begin_ > 0) {
    std::memmove(buf_.data(), buf_.data() + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
  }
  if (buf_.size() - end_ < n) buf_.resize(end_ + n);
  return buf_.data() + end_;
}

void Framer::Append(std::string_view bytes) {
  char* p = Reserve(bytes.size());
  std::memcpy(p, bytes.data(), bytes.size());
  Commit(bytes.size());
}

bool Framer::Next(Packet* p, Status* error) {
  size_t have = end_ - begin_;
  if (have < 4) return false;
  uint32_t len = LoadU32(buf_.data() + begin_);
  if (len == 0 || len > kMaxPacket) {
    *error = Status::ProtocolError("sftp: bad packet length " + std::to_string(len));
    return false;
  }
  if (have < 4 + static_cast<size_t>(len)) {
    // Make room for the whole packet now, so the caller's next read can complete it.
    if (buf_.size() - begin_ < 4 + static_cast<size_t>(len)) (void)Reserve(4 + len - have);
    return false;
  }
  const char* body = buf_.data() + begin_ + 4;
  p->type = static_cast<uint8_t>(body[0]);
  if (p->type == kVersion) {
    p->id = 0;
    p->payload = std::string_view(body + 1, len - 1);
  } else {
    if (len < 5) {
      *error = Status::ProtocolError("sftp: packet of type " + std::to_string(p->type) +
                                     " too short for an id");
      return false;
    }
    p->id = LoadU32(body + 1);
    p->payload = std::string_view(body + 5, len - 5);
  }
  begin_ += 4 + len;
  return true;
}

bool ParseStatus(std::string_view payload, StatusReply* out) {
  Cursor c(payload);
  if (!c.U32(&out->code)) return false;
  out->message = {};
  // The message and language tag are optional in practice (some servers omit them).
  std::string_view msg;
  if (c.String(&msg)) out->message = msg;
  return true;
}

bool ParseHandle(std::string_view payload, std::string_view* handle) {
  Cursor c(payload);
  return c.String(handle) && !handle->empty() && handle->size() <= 256;
}

bool ParseData(std::string_view payload, std::string_view* data) {
  Cursor c(payload);
  return c.String(data);
}

bool ParseVersion(std::string_view payload, uint32_t* version,
                  std::vector<std::string>* extensions) {
  Cursor c(payload);
  if (!c.U32(version)) return false;
  extensions->clear();
  while (!c.empty()) {
    std::string_view name, data;
    if (!c.String(&name) || !c.String(&data)) return false;
    extensions->emplace_back(name);
  }
  return true;
}

bool ParseStatvfs(std::string_view payload, Statvfs* out) {
  Cursor c(payload);
  return c.U64(&out->bsize) && c.U64(&out->frsize) && c.U64(&out->blocks) &&
         c.U64(&out->bfree) && c.U64(&out->bavail) && c.U64(&out->files) &&
         c.U64(&out->ffree) && c.U64(&out->favail) && c.U64(&out->fsid) && c.U64(&out->flag) &&
         c.U64(&out->namemax);
}

std::string_view StatusName(uint32_t code) {
  switch (code) {
    case kOk: return "ok";
    case kEof: return "end of file";
    case kNoSuchFile: return "no such file";
    case kPermissionDenied: return "permission denied";
    case kFailure: return "failure";
    case kBadMessage: return "bad message";
    case 6: return "no connection";
    case 7: return "connection lost";
    case kOpUnsupported: return "operation unsupported";
    default: return "unknown status";
  }
}

}  // namespace sftp

// ---------------------------------------------------------------------------------------------
// The fallback stream

namespace stream {

namespace {

// Two versions of one loop. Requests are lines on stdin: "S<mountpoint>" queues a mountpoint
// for statfs, an empty line (anything else) asks for one reply. The files are the positional
// parameters.
//
// bash, when the target has it: `mapfile` reads each file with 4 KiB read()s. The POSIX `read`
// builtin reads one byte per read(), which is slow and wrong for /proc/sys files: the kernel
// answers any read at a non-zero offset of a sysctl file with EOF, so "3553\t0\t2466170" would
// come back as "3".
constexpr std::string_view kBashScript =
    "set -f\n"
    "m=()\n"
    "while IFS= read -r c; do\n"
    "  case $c in S*) m+=(\"${c#S}\"); continue;; esac\n"
    "  for f in \"$@\"; do\n"
    "    if mapfile -t L 2>/dev/null < \"$f\"; then\n"
    "      printf '@@%s\\n' \"$f\"\n"
    "      (( ${#L[@]} )) && printf '%s\\n' \"${L[@]}\"\n"
    "    else\n"
    "      printf '@@!%s\\n' \"$f\"\n"
    "    fi\n"
    "  done\n"
    "  if (( ${#m[@]} )); then\n"
    "    printf '@@STATFS\\n'\n"
    "    stat -f -c '%s %S %b %f %a %c %d %n' -- \"${m[@]}\" 2>/dev/null\n"
    "    m=()\n"
    "  fi\n"
    "  printf '@@END\\n'\n"
    "done\n";

// sh: runs the bash version when there is a bash, else the same loop with `read` (see above
// for what that costs). `set -f` keeps the unquoted, newline-split list of mountpoints from
// globbing.
constexpr std::string_view kShScript =
    "b=$1; shift\n"
    "if [ -n \"$b\" ] && command -v bash >/dev/null 2>&1; then\n"
    "  exec bash -c \"$b\" bash \"$@\"\n"
    "fi\n"
    "set -f\n"
    "nl='\n'\n"
    "m=\n"
    "while IFS= read -r c; do\n"
    "  case $c in S*) m=\"$m${c#S}$nl\"; continue;; esac\n"
    "  for f in \"$@\"; do\n"
    "    if [ -r \"$f\" ]; then\n"
    "      printf '@@%s\\n' \"$f\"\n"
    "      while IFS= read -r l || [ -n \"$l\" ]; do printf '%s\\n' \"$l\"; done < \"$f\"\n"
    "    else\n"
    "      printf '@@!%s\\n' \"$f\"\n"
    "    fi\n"
    "  done\n"
    "  if [ -n \"$m\" ]; then\n"
    "    printf '@@STATFS\\n'\n"
    "    o=$IFS; IFS=$nl\n"
    "    stat -f -c '%s %S %b %f %a %c %d %n' -- $m 2>/dev/null\n"
    "    IFS=$o; m=\n"
    "  fi\n"
    "  printf '@@END\\n'\n"
    "done\n";

}  // namespace

std::string Command(const std::vector<std::string>& files, bool prefer_bash) {
  std::string cmd = "exec sh -c " + ShellQuote(kShScript) + " sh " +
                    ShellQuote(prefer_bash ? kBashScript : std::string_view());
  for (const std::string& f : files) {
    cmd.push_back(' ');
    cmd += ShellQuote(f);
  }
  return cmd;
}

void AppendRequest(std::string* out, const std::vector<std::string>& statfs_paths) {
  for (const std::string& p : statfs_paths) {
    // A newline in a mountpoint would split the request; such a mountpoint is skipped.
    if (p.find('\n') != std::string::npos) continue;
    out->push_back('S');
    out->append(p);
    out->push_back('\n');
  }
  out->push_back('\n');
}

bool ParseStatfsLine(std::string_view line, StatfsLine* out) {
  uint64_t* fields[] = {&out->bsize, &out->frsize, &out->blocks, &out->bfree,
                        &out->bavail, &out->files, &out->ffree};
  for (uint64_t* f : fields) {
    size_t sp = line.find(' ');
    if (sp == std::string_view::npos || sp == 0) return false;
    auto [p, ec] = std::from_chars(line.data(), line.data() + sp, *f);
    if (ec != std::errc() || p != line.data() + sp) return false;
    line.remove_prefix(sp + 1);
  }
  if (line.empty()) return false;
  out->mountpoint.assign(line);
  return true;
}

void Parser::StartReply() {
  in_reply_ = true;
  seen_.clear();
  unreadable_.clear();
  statfs_.clear();
  junk_.clear();
  had_statfs_ = false;
  in_statfs_ = false;
  current_ = nullptr;
}

void Parser::Line(std::string_view line) {
  if (!in_reply_) StartReply();
  if (line.size() >= 2 && line[0] == '@' && line[1] == '@') {
    std::string_view tag = line.substr(2);
    current_ = nullptr;
    in_statfs_ = false;
    if (tag == "STATFS") {
      in_statfs_ = true;
      had_statfs_ = true;
    } else if (!tag.empty() && tag[0] == '!') {
      unreadable_.emplace_back(tag.substr(1));
    } else {
      key_.assign(tag);  // the map is not transparent; key_ keeps its capacity
      auto it = files_.find(key_);
      if (it == files_.end()) it = files_.emplace(key_, std::string()).first;
      it->second.clear();
      current_ = &it->second;
      seen_.push_back(&it->first);
    }
    return;
  }
  if (current_ != nullptr) {
    current_->append(line);
    current_->push_back('\n');
  } else if (in_statfs_) {
    StatfsLine s;
    if (ParseStatfsLine(line, &s)) {
      statfs_.push_back(std::move(s));
    } else {
      junk_.emplace_back(line.substr(0, 200));
    }
  } else {
    junk_.emplace_back(line.substr(0, 200));
  }
}

bool Parser::Feed(std::string_view bytes) {
  pending_.append(bytes);
  size_t pos = 0;
  bool ended = false;
  while (pos < pending_.size()) {
    size_t nl = pending_.find('\n', pos);
    if (nl == std::string::npos) break;
    std::string_view line(pending_.data() + pos, nl - pos);
    pos = nl + 1;
    if (line == "@@END") {
      if (!in_reply_) StartReply();
      // Files of earlier replies that this one did not list are gone.
      for (auto it = files_.begin(); it != files_.end();) {
        bool seen = false;
        for (const std::string* s : seen_) seen = seen || s == &it->first;
        it = seen ? std::next(it) : files_.erase(it);
      }
      in_reply_ = false;
      current_ = nullptr;
      in_statfs_ = false;
      ended = true;
      break;
    }
    Line(line);
  }
  pending_.erase(0, pos);
  return ended;
}

}  // namespace stream

}  // namespace trapline::ssh
