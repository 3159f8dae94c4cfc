// The SFTP v3 codec and the fallback stream's framing (collector/ssh_wire.h). The stream's
// shell script is also run through the local /bin/sh, as the target's login shell would.

#include <doctest/doctest.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#include "collector/ssh_wire.h"

namespace trapline::ssh {
namespace {

using std::string_literals::operator""s;

std::string U32(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
          static_cast<char>(v)};
}
std::string Str(std::string_view s) {
  return U32(static_cast<uint32_t>(s.size())) + std::string(s);
}
std::string Packet(uint8_t type, std::string body) {
  return U32(static_cast<uint32_t>(body.size() + 1)) + std::string(1, static_cast<char>(type)) +
         body;
}

TEST_CASE("sftp requests, byte for byte") {
  std::string out;
  sftp::AppendInit(&out);
  CHECK(out == Packet(1, U32(3)));

  out.clear();
  sftp::AppendOpenRead(&out, 7, "/proc/stat");
  CHECK(out == Packet(3, U32(7) + Str("/proc/stat") + U32(1) + U32(0)));

  out.clear();
  sftp::AppendRead(&out, 9, "h1", 0x100000002ull, 65536);
  CHECK(out == Packet(5, U32(9) + Str("h1") + U32(1) + U32(2) + U32(65536)));

  out.clear();
  sftp::AppendClose(&out, 10, "h1");
  CHECK(out == Packet(4, U32(10) + Str("h1")));

  out.clear();
  sftp::AppendStatvfs(&out, 11, "/");
  CHECK(out == Packet(200, U32(11) + Str("statvfs@openssh.com") + Str("/")));

  // Appending keeps what was there: a whole tick's requests go out in one write.
  sftp::AppendRead(&out, 12, "h", 0, 1);
  CHECK(out.size() == Packet(200, U32(11) + Str("statvfs@openssh.com") + Str("/")).size() +
                          Packet(5, U32(12) + Str("h") + U32(0) + U32(0) + U32(1)).size());
}

TEST_CASE("sftp framing: byte by byte, several packets per chunk, packets split anywhere") {
  std::string stream = Packet(2, U32(3) + Str("statvfs@openssh.com") + Str("2")) +
                       Packet(102, U32(5) + Str("HANDLE")) +
                       Packet(103, U32(6) + Str("MemTotal: 1 kB\n")) +
                       Packet(101, U32(6) + U32(1) + Str("End of file") + Str(""));
  for (size_t chunk : {size_t{1}, size_t{3}, size_t{7}, stream.size()}) {
    CAPTURE(chunk);
    sftp::Framer f;
    std::vector<std::pair<int, std::string>> got;
    for (size_t pos = 0; pos < stream.size(); pos += chunk) {
      f.Append(std::string_view(stream).substr(pos, chunk));
      sftp::Packet p;
      Status err;
      while (f.Next(&p, &err)) got.emplace_back(p.type, std::string(p.payload));
      REQUIRE(err.ok());
    }
    REQUIRE(got.size() == 4);
    CHECK(got[0].first == sftp::kVersion);
    uint32_t version = 0;
    std::vector<std::string> ext;
    REQUIRE(sftp::ParseVersion(got[0].second, &version, &ext));
    CHECK(version == 3);
    CHECK(ext == std::vector<std::string>{"statvfs@openssh.com"});
    std::string_view handle;
    REQUIRE(sftp::ParseHandle(got[1].second, &handle));
    CHECK(handle == "HANDLE");
    std::string_view data;
    REQUIRE(sftp::ParseData(got[2].second, &data));
    CHECK(data == "MemTotal: 1 kB\n");
    sftp::StatusReply st;
    REQUIRE(sftp::ParseStatus(got[3].second, &st));
    CHECK(st.code == sftp::kEof);
    CHECK(st.message == "End of file");
    CHECK(f.buffered() == 0);
  }
}

TEST_CASE("sftp framing: ids, and a reused buffer that stops growing") {
  sftp::Framer f;
  std::string one = Packet(103, U32(42) + Str(std::string(3000, 'x')));
  size_t cap = 0;
  for (int round = 0; round < 50; ++round) {
    char* p = f.Reserve(16384);
    std::memcpy(p, one.data(), one.size());
    f.Commit(one.size());
    sftp::Packet pk;
    Status err;
    REQUIRE(f.Next(&pk, &err));
    CHECK(pk.id == 42);
    CHECK(pk.payload.size() == 4 + 3000);
    CHECK_FALSE(f.Next(&pk, &err));
    if (round == 1) cap = f.capacity();
    if (round > 1) CHECK(f.capacity() == cap);
  }
}

TEST_CASE("sftp framing: bad lengths are protocol errors") {
  for (std::string bad : {U32(0) + "x"s, U32(sftp::kMaxPacket + 1) + "x"s,
                          U32(3) + "\x65\x00\x00"s /* STATUS without a whole id */}) {
    sftp::Framer f;
    f.Append(bad);
    sftp::Packet p;
    Status err;
    CHECK_FALSE(f.Next(&p, &err));
    CHECK(err.code() == StatusCode::kProtocolError);
  }
}

TEST_CASE("sftp payloads: malformed ones are refused") {
  std::string_view sv;
  sftp::StatusReply st;
  CHECK_FALSE(sftp::ParseStatus("\x00\x00"s, &st));
  REQUIRE(sftp::ParseStatus(U32(2), &st));  // no message: still a status
  CHECK(st.code == sftp::kNoSuchFile);
  CHECK(st.message.empty());
  CHECK_FALSE(sftp::ParseHandle(U32(0), &sv));         // empty handle
  CHECK_FALSE(sftp::ParseHandle(U32(10) + "abc", &sv));  // longer than the packet
  CHECK_FALSE(sftp::ParseData(U32(5) + "abc", &sv));
  CHECK(sftp::ParseData(U32(0), &sv));
  CHECK(sv.empty());
  uint32_t version;
  std::vector<std::string> ext;
  CHECK_FALSE(sftp::ParseVersion(U32(3) + Str("name-without-data"), &version, &ext));

  std::string statvfs;
  for (uint64_t v = 1; v <= 11; ++v) statvfs += U32(0) + U32(static_cast<uint32_t>(v * 1000));
  sftp::Statvfs s;
  REQUIRE(sftp::ParseStatvfs(statvfs, &s));
  CHECK(s.bsize == 1000);
  CHECK(s.frsize == 2000);
  CHECK(s.blocks == 3000);
  CHECK(s.bfree == 4000);
  CHECK(s.bavail == 5000);
  CHECK(s.files == 6000);
  CHECK(s.ffree == 7000);
  CHECK(s.favail == 8000);
  CHECK(s.namemax == 11000);
  CHECK_FALSE(sftp::ParseStatvfs(statvfs.substr(0, 87), &s));
  std::string big = U32(1) + U32(2);  // 64-bit fields
  CHECK(sftp::ParseStatvfs(big + statvfs.substr(8), &s));
  CHECK(s.bsize == 0x100000002ull);
  CHECK(sftp::StatusName(sftp::kPermissionDenied) == "permission denied");
}

TEST_CASE("stream parser: replies in pieces, unreadable files, statfs, stale files") {
  stream::Parser p;
  std::string reply1 =
      "@@/proc/meminfo\nMemTotal: 10 kB\nMemFree: 5 kB\n"
      "@@!/proc/pressure/cpu\n"
      "@@/proc/loadavg\n0.1 0.2 0.3 1/100 42\n"
      "@@STATFS\n4096 4096 100 50 40 1000 900 /\n4096 4096 10 5 4 100 90 /mnt/with space\n"
      "bad statfs line\n"
      "@@END\n";
  // Byte by byte: no reply ends early.
  for (size_t i = 0; i + 1 < reply1.size(); ++i) CHECK_FALSE(p.Feed(reply1.substr(i, 1)));
  REQUIRE(p.Feed(reply1.substr(reply1.size() - 1)));
  CHECK(p.files().size() == 2);
  CHECK(p.files().at("/proc/meminfo") == "MemTotal: 10 kB\nMemFree: 5 kB\n");
  CHECK(p.files().at("/proc/loadavg") == "0.1 0.2 0.3 1/100 42\n");
  CHECK(p.unreadable() == std::vector<std::string>{"/proc/pressure/cpu"});
  CHECK(p.had_statfs());
  REQUIRE(p.statfs().size() == 2);
  CHECK(p.statfs()[0].mountpoint == "/");
  CHECK(p.statfs()[0].blocks == 100);
  CHECK(p.statfs()[0].bavail == 40);
  CHECK(p.statfs()[1].mountpoint == "/mnt/with space");
  CHECK(p.statfs()[1].ffree == 90);
  CHECK(p.junk() == std::vector<std::string>{"bad statfs line"});

  // The next reply, in one piece with the start of a third: the loadavg file went away, the
  // rest stays buffered.
  std::string reply2 = "@@/proc/meminfo\nMemTotal: 11 kB\n@@END\n@@/proc/meminfo\nMem";
  REQUIRE(p.Feed(reply2));
  CHECK(p.files().size() == 1);
  CHECK(p.files().at("/proc/meminfo") == "MemTotal: 11 kB\n");
  CHECK(p.unreadable().empty());
  CHECK_FALSE(p.had_statfs());
  CHECK(p.statfs().empty());
  CHECK(p.buffered() == std::string("@@/proc/meminfo\nMem").size());
  CHECK(p.Feed("Total: 12 kB\n@@END\n"));
  CHECK(p.files().at("/proc/meminfo") == "MemTotal: 12 kB\n");
}

TEST_CASE("stream parser: statfs lines") {
  stream::StatfsLine l;
  REQUIRE(stream::ParseStatfsLine("4096 1024 7 6 5 4 3 /a b", &l));
  CHECK(l.bsize == 4096);
  CHECK(l.frsize == 1024);
  CHECK(l.mountpoint == "/a b");
  CHECK_FALSE(stream::ParseStatfsLine("4096 1024 7 6 5 4 3", &l));
  CHECK_FALSE(stream::ParseStatfsLine("4096 1024 7 6 x 4 3 /", &l));
  CHECK_FALSE(stream::ParseStatfsLine("", &l));
  std::string req;
  stream::AppendRequest(&req, {"/", "/with space", "/bad\nname"});
  CHECK(req == "S/\nS/with space\n\n");
}

// Runs the fallback command through the local /bin/sh with two requests on stdin, in both
// versions (bash with mapfile, sh with read).
void RunStreamScript(bool prefer_bash) {
  CAPTURE(prefer_bash);
  char dir_template[] = "/tmp/trapline-stream-test-XXXXXX";
  REQUIRE(mkdtemp(dir_template) != nullptr);
  std::string dir = dir_template;
  std::string a = dir + "/a file", b = dir + "/b", missing = dir + "/missing";
  { std::ofstream(a) << "line 1\n  indented \\ backslash $x\t*\n\nafter empty\n"; }
  { std::ofstream(b) << "no newline at the end"; }
  std::string cmd =
      stream::Command({a, missing, b, "/proc/loadavg", "/proc/sys/fs/file-nr"}, prefer_bash);
  std::string requests;
  stream::AppendRequest(&requests, {dir, "/"});
  stream::AppendRequest(&requests, {});
  std::string script_path = dir + "/run.sh";
  {
    std::ofstream s(script_path);
    s << "printf '%s' " << ShellQuote(requests) << " | " << cmd << "\n";
  }
  FILE* f = popen(("/bin/sh " + ShellQuote(script_path)).c_str(), "r");
  REQUIRE(f != nullptr);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  CHECK(pclose(f) == 0);

  stream::Parser p;
  REQUIRE(p.Feed(out));
  CHECK(p.files().at(a) == "line 1\n  indented \\ backslash $x\t*\n\nafter empty\n");
  CHECK(p.files().at(b) == "no newline at the end\n");
  CHECK(p.files().at("/proc/loadavg").find('/') != std::string::npos);
  // sysctl files answer EOF to reads at a non-zero offset: only bash's mapfile, which reads
  // 4 KiB at a time, gets the whole line; sh's byte-wise read gets its first byte.
  const std::string& file_nr = p.files().at("/proc/sys/fs/file-nr");
  if (prefer_bash) {
    CHECK(std::count(file_nr.begin(), file_nr.end(), '\t') == 2);
  } else {
    CHECK(file_nr.size() == 2);
  }
  CHECK(p.unreadable() == std::vector<std::string>{missing});
  CHECK(p.had_statfs());
  REQUIRE(p.statfs().size() == 2);
  CHECK(p.statfs()[0].mountpoint == dir);
  CHECK(p.statfs()[1].mountpoint == "/");
  CHECK(p.statfs()[1].blocks > 0);
  CHECK(p.junk().empty());
  // The second request: no statfs this time.
  REQUIRE(p.Feed(""));
  CHECK_FALSE(p.had_statfs());
  CHECK(p.files().size() == 4);
  CHECK(p.buffered() == 0);

  unlink(a.c_str());
  unlink(b.c_str());
  unlink(script_path.c_str());
  rmdir(dir.c_str());
}

TEST_CASE("stream command: the bash version, run by a real sh and bash") {
  RunStreamScript(true);
}

TEST_CASE("stream command: the POSIX sh version") { RunStreamScript(false); }

}  // namespace
}  // namespace trapline::ssh
