// ssh:// URIs, known_hosts names and lines, fingerprints' base64, shell quoting
// (collector/ssh_wire.h).

#include <doctest/doctest.h>

#include "collector/ssh_wire.h"

namespace trapline::ssh {
namespace {

SshUri Parsed(std::string_view uri) {
  auto r = ParseSshUri(uri);
  REQUIRE_MESSAGE(r.ok(), r.status().message());
  return r.value();
}

std::string Error(std::string_view uri) {
  auto r = ParseSshUri(uri);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == StatusCode::kInvalidArgument);
  return r.status().message();
}

TEST_CASE("ssh URIs: user, host, port") {
  CHECK(Parsed("ssh://mon@db1.example.com") == SshUri{"mon", "db1.example.com", 22});
  CHECK(Parsed("ssh://mon@db1.example.com:2222") == SshUri{"mon", "db1.example.com", 2222});
  CHECK(Parsed("ssh://mon@127.0.0.1:40022/") == SshUri{"mon", "127.0.0.1", 40022});
  CHECK(Parsed("ssh://root@[::1]:2222") == SshUri{"root", "::1", 2222});
  CHECK(Parsed("ssh://root@[fe80::1%eth0]") == SshUri{"root", "fe80::1%eth0", 22});
  CHECK(Parsed("ssh://a%40b@host") == SshUri{"a@b", "host", 22});  // '@' escaped in the user
  CHECK(Parsed("ssh://me@my_host-1") == SshUri{"me", "my_host-1", 22});
}

TEST_CASE("ssh URIs: what is refused, and the message says why") {
  CHECK(Error("redis://u@h").find("not ssh://") != std::string::npos);
  CHECK(Error("ssh://host").find("no user") != std::string::npos);
  CHECK(Error("ssh://@host").find("no user") != std::string::npos);
  CHECK(Error("ssh://u:pw@host").find("password") != std::string::npos);
  CHECK(Error("ssh://u@").find("no host") != std::string::npos);
  CHECK(Error("ssh://u@host:").find("empty port") != std::string::npos);
  CHECK(Error("ssh://u@host:0").find("1-65535") != std::string::npos);
  CHECK(Error("ssh://u@host:65536").find("1-65535") != std::string::npos);
  CHECK(Error("ssh://u@host:22x").find("1-65535") != std::string::npos);
  CHECK(Error("ssh://u@::1").find("IPv6 goes in brackets") != std::string::npos);
  CHECK(Error("ssh://u@[::1").find("']'") != std::string::npos);
  CHECK(Error("ssh://u@[host]").find("IPv6") != std::string::npos);
  CHECK(Error("ssh://u@[::1]x").find("junk") != std::string::npos);
  CHECK(Error("ssh://u@host/path").find("path") != std::string::npos);
  CHECK(Error("ssh://u@host?x=1").find("query") != std::string::npos);
  CHECK(Error("ssh://u%4@host").find("%-escape") != std::string::npos);
  CHECK(Error("ssh://u%zz@host").find("%-escape") != std::string::npos);
  // The URI is quoted in the message.
  CHECK(Error("ssh://host").find("\"ssh://host\"") != std::string::npos);
}

TEST_CASE("known_hosts names as OpenSSH writes them") {
  CHECK(KnownHostsName("example.com", 22) == "example.com");
  CHECK(KnownHostsName("127.0.0.1", 2222) == "[127.0.0.1]:2222");
  CHECK(KnownHostsName("::1", 2222) == "[::1]:2222");
  CHECK(KnownHostsName("::1", 22) == "::1");
}

TEST_CASE("known_hosts: the line holding a key") {
  std::string text =
      "# comment\n"
      "\n"
      "[127.0.0.1]:2222 ssh-ed25519 AAAAkeyone\n"
      "|1|c2FsdA==|aGFzaA== ssh-ed25519 AAAAkeytwo comment here\n"
      "@cert-authority *.example.com ssh-rsa AAAAca\n"
      "host1,host2\tssh-rsa\tAAAAkeythree\r\n";
  CHECK(KnownHostsLineOfKey(text, "AAAAkeyone") == 3);
  CHECK(KnownHostsLineOfKey(text, "AAAAkeytwo") == 4);
  CHECK(KnownHostsLineOfKey(text, "AAAAca") == 5);
  CHECK(KnownHostsLineOfKey(text, "AAAAkeythree") == 6);
  CHECK(KnownHostsLineOfKey(text, "AAAAkey") == 0);
  CHECK(KnownHostsLineOfKey("", "x") == 0);
}

TEST_CASE("base64 without padding (RFC 4648 vectors), as in SHA256: fingerprints") {
  CHECK(Base64NoPad("") == "");
  CHECK(Base64NoPad("f") == "Zg");
  CHECK(Base64NoPad("fo") == "Zm8");
  CHECK(Base64NoPad("foo") == "Zm9v");
  CHECK(Base64NoPad("foob") == "Zm9vYg");
  CHECK(Base64NoPad("fooba") == "Zm9vYmE");
  CHECK(Base64NoPad("foobar") == "Zm9vYmFy");
  CHECK(Base64NoPad(std::string("\xff\xfe\x00", 3)) == "//4A");
  // A 32-byte digest gives 43 characters, as in "SHA256:" + 43 characters.
  CHECK(Base64NoPad(std::string(32, '\x01')).size() == 43);
}

TEST_CASE("shell quoting") {
  CHECK(ShellQuote("/proc/stat") == "'/proc/stat'");
  CHECK(ShellQuote("it's") == "'it'\\''s'");
  CHECK(ShellQuote("") == "''");
  CHECK(ShellQuote("$HOME `x` \"y\"") == "'$HOME `x` \"y\"'");
}

}  // namespace
}  // namespace trapline::ssh
