// What a collector makes of a task row from the registry: the target's URI, options and the
// secret files (mode 0600 in a 0700 folder).

#include <doctest/doctest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "collector/cluster_member.h"

namespace trapline {
namespace {

std::string TempDir() {
  char tmpl[] = "/tmp/trapline-cluster-test-XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  return std::string(tmpl) + "/secrets";
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int Mode(const std::string& path) {
  struct stat st {};
  REQUIRE(stat(path.c_str(), &st) == 0);
  return static_cast<int>(st.st_mode & 0777);
}

TEST_CASE("a task without a URI gets one from address, port and user, per plugin") {
  std::string dir = TempDir();
  AssignedTask t;
  t.id = 7;
  t.host = "db1";
  t.address = "10.0.0.5";
  t.username = "monitor";
  t.plugin = "postgresql";
  auto tc = TargetForTask(t, dir);
  REQUIRE(tc.ok());
  CHECK(tc->uri == "postgresql://monitor@10.0.0.5:5432/postgres");
  CHECK(tc->host == "db1");
  t.plugin = "linux";
  t.port = 2222;
  CHECK(TargetForTask(t, dir)->uri == "ssh://monitor@10.0.0.5:2222");
  t.plugin = "redis";
  t.port = 0;
  t.username = "";
  t.address = "fd00::5";
  CHECK(TargetForTask(t, dir)->uri == "redis://[fd00::5]:6379");
  t.uri = "redis://cache1:6380";
  CHECK(TargetForTask(t, dir)->uri == "redis://cache1:6380");  // the service's own URI wins
}

TEST_CASE("secrets become private files; options are read") {
  std::string dir = TempDir();
  AssignedTask t;
  t.id = 42;
  t.host = "web1";
  t.plugin = "linux";
  t.uri = "ssh://mon@web1:22";
  t.secret_json = R"({"private_key": "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n", "passphrase": "pp"})";
  t.options_json = R"({"known_hosts": "/etc/trapline/known_hosts", "interval": 30, "plugin": {"fs_exclude": "^/snap"}})";
  auto tc = TargetForTask(t, dir);
  REQUIRE_MESSAGE(tc.ok(), tc.status().ToString());
  CHECK(tc->identity == dir + "/task-42.key");
  CHECK(Slurp(tc->identity) == "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n");
  CHECK(Mode(tc->identity) == 0600);
  CHECK(Mode(dir) == 0700);
  CHECK(tc->identity_passphrase == "pp");
  CHECK(tc->known_hosts == "/etc/trapline/known_hosts");
  CHECK(tc->interval_s == 30);
  CHECK(tc->options.at("fs_exclude") == "^/snap");

  t.plugin = "redis";
  t.uri = "redis://cache1:6379";
  t.secret_json = R"({"password": "s3cret"})";
  t.options_json = "{}";
  tc = TargetForTask(t, dir);
  REQUIRE(tc.ok());
  CHECK(Slurp(tc->password_file) == "s3cret\n");
  CHECK(Mode(tc->password_file) == 0600);
}

TEST_CASE("bad rows are refused with the task named") {
  std::string dir = TempDir();
  AssignedTask t;
  t.id = 9;
  t.host = "h";
  t.plugin = "redis";
  t.secret_json = "not json";
  t.address = "h";
  auto tc = TargetForTask(t, dir);
  REQUIRE(!tc.ok());
  CHECK(tc.status().message().find("task 9 (h/redis)") != std::string::npos);
  t.secret_json = "{}";
  t.address = "";
  CHECK(!TargetForTask(t, dir).ok());  // neither URI nor address
  t.address = "h";
  t.plugin = "nosuch";
  CHECK(!TargetForTask(t, dir).ok());
  t.plugin = "redis";
  t.secret_json = R"({"password": "x"})";
  CHECK(!TargetForTask(t, "").ok());  // nowhere to put the secret
}

}  // namespace
}  // namespace trapline
