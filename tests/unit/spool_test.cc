#include "collector/spool.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace trapline {
namespace {

namespace fs = std::filesystem;

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/trapline-spool-XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path); }
};

std::vector<SenderValue> Values(int from, int n) {
  std::vector<SenderValue> out;
  for (int i = from; i < from + n; ++i) {
    out.push_back({"h", "k" + std::to_string(i % 3), std::to_string(i), 1700000000 + i, i, 0});
  }
  return out;
}

std::vector<std::string> ReadAll(Spool* s, size_t batch, bool commit) {
  std::vector<std::string> got;
  while (true) {
    std::vector<SenderValue> out;
    SpoolPosition end;
    auto n = s->Read(batch, &out, &end);
    REQUIRE(n.ok());
    if (*n == 0) break;
    for (auto& v : out) got.push_back(v.value);
    if (commit) REQUIRE(s->Commit(end).ok());
  }
  return got;
}

TEST_CASE("spool: FIFO across segments, commit, and the folder empties") {
  TempDir dir;
  auto spool = Spool::Open({dir.path, 1 << 30, 300, false});
  REQUIRE(spool.ok());
  Spool* s = spool->get();
  REQUIRE(s->Append(Values(0, 50)).ok());
  REQUIRE(s->Append(Values(50, 50)).ok());
  CHECK(s->pending_values() == 100);
  auto got = ReadAll(s, 7, true);
  REQUIRE(got.size() == 100);
  for (int i = 0; i < 100; ++i) CHECK(got[static_cast<size_t>(i)] == std::to_string(i));
  CHECK(s->pending_values() == 0);
  CHECK(s->bytes() == 0);
}

TEST_CASE("spool: survives a restart; uncommitted values come back, committed ones do not") {
  TempDir dir;
  {
    auto s = Spool::Open({dir.path, 1 << 30, 500, true});
    REQUIRE(s.ok());
    REQUIRE((*s)->Append(Values(0, 40)).ok());
    std::vector<SenderValue> out;
    SpoolPosition end;
    REQUIRE((*s)->Read(10, &out, &end).ok());
    REQUIRE((*s)->Commit(end).ok());       // 0..9 delivered
    REQUIRE((*s)->Read(10, &out, &end).ok());  // 10..19 handed out, not committed
  }
  auto s = Spool::Open({dir.path, 1 << 30, 500, true});
  REQUIRE(s.ok());
  CHECK((*s)->pending_values() == 30);
  auto got = ReadAll(s->get(), 100, true);
  REQUIRE(got.size() == 30);
  CHECK(got.front() == "10");
  CHECK(got.back() == "39");
}

TEST_CASE("spool: a torn last line from a crash is dropped, the rest kept") {
  TempDir dir;
  {
    auto s = Spool::Open({dir.path, 1 << 30, 1 << 20, false});
    REQUIRE((*s)->Append(Values(0, 5)).ok());
  }
  std::string seg;
  for (auto& e : fs::directory_iterator(dir.path)) {
    if (e.path().extension() == ".spool") seg = e.path();
  }
  REQUIRE(!seg.empty());
  std::ofstream(seg, std::ios::app) << "{\"host\":\"h\",\"key\":\"k\",\"val";
  auto s = Spool::Open({dir.path, 1 << 30, 1 << 20, false});
  REQUIRE(s.ok());
  CHECK((*s)->pending_values() == 5);
  CHECK(ReadAll(s->get(), 100, true).size() == 5);
}

TEST_CASE("spool: over its cap the oldest segments are dropped and counted") {
  TempDir dir;
  auto s = Spool::Open({dir.path, 2000, 400, false});
  REQUIRE(s.ok());
  REQUIRE((*s)->Append(Values(0, 100)).ok());
  CHECK((*s)->bytes() <= 2000 + 400);
  CHECK((*s)->dropped_values() > 0);
  CHECK((*s)->dropped_values() + (*s)->pending_values() == 100);
  auto got = ReadAll(s->get(), 1000, true);
  REQUIRE(!got.empty());
  CHECK(got.back() == "99");  // the newest survive
  CHECK(std::stoi(got.front()) == static_cast<int>((*s)->dropped_values()));
}

TEST_CASE("spool: Prepend puts values ahead of older content, even after a restart") {
  TempDir dir;
  {
    auto s = Spool::Open({dir.path, 1 << 30, 1 << 20, false});
    REQUIRE((*s)->Append(Values(10, 10)).ok());
    std::vector<SenderValue> out;
    SpoolPosition end;
    REQUIRE((*s)->Read(3, &out, &end).ok());
    REQUIRE((*s)->Commit(end).ok());  // 10, 11, 12 delivered
    REQUIRE((*s)->Prepend(Values(0, 5)).ok());
  }
  auto s = Spool::Open({dir.path, 1 << 30, 1 << 20, false});
  auto got = ReadAll(s->get(), 4, true);
  std::vector<std::string> want = {"0", "1", "2", "3", "4", "13", "14", "15", "16", "17", "18", "19"};
  CHECK(got == want);
}

TEST_CASE("spool: a corrupt record is skipped and counted, not fatal") {
  TempDir dir;
  {
    auto s = Spool::Open({dir.path, 1 << 30, 1 << 20, false});
    REQUIRE((*s)->Append(Values(0, 2)).ok());
  }
  std::string seg;
  for (auto& e : fs::directory_iterator(dir.path)) {
    if (e.path().extension() == ".spool") seg = e.path();
  }
  std::ofstream(seg, std::ios::app) << "not json\n";
  auto s = Spool::Open({dir.path, 1 << 30, 1 << 20, false});
  REQUIRE((*s)->Append(Values(2, 1)).ok());
  auto got = ReadAll(s->get(), 100, true);
  CHECK(got == std::vector<std::string>{"0", "1", "2"});
  CHECK((*s)->corrupt_lines() == 1);
}

TEST_CASE("spool: a folder in use by another spool is refused") {
  TempDir dir;
  auto first = Spool::Open({dir.path, 1 << 30, 1 << 20, false});
  REQUIRE(first.ok());
  auto second = Spool::Open({dir.path, 1 << 30, 1 << 20, false});
  REQUIRE_FALSE(second.ok());
  CHECK(second.status().message().find("in use by another process") != std::string::npos);
  first->reset();
  CHECK(Spool::Open({dir.path, 1 << 30, 1 << 20, false}).ok());
}

TEST_CASE("spool: an unwritable folder is a clear error") {
  auto s = Spool::Open({"/proc/trapline-spool", 1 << 30, 1 << 20, false});
  REQUIRE_FALSE(s.ok());
  CHECK(s.status().message().find("/proc/trapline-spool") != std::string::npos);
}

}  // namespace
}  // namespace trapline
