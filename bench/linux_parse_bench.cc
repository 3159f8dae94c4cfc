// The linux plugin's Parse() over one captured tick (tests/fixtures/linux/real/t0): prints
// nanoseconds per full Parse() (every /proc file of a tick plus the statvfs results), median of
// several runs, and the same for FilesystemsToStat() and each per-file parser. Times are the
// thread's CPU time (CLOCK_THREAD_CPUTIME_ID), so a busy machine that preempts the bench does
// not inflate them. It prints figures; it asserts nothing (the aim is a few microseconds per
// tick).
//
//   bench_linux_parse [tick-folder] [iterations] [runs]

#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "plugins/linux/linux.h"

namespace {

using namespace trapline::plugins;
using namespace trapline::plugins::linuxhost;

std::string DefaultDir() {
  std::string self = __FILE__;  // .../bench/linux_parse_bench.cc
  return self.substr(0, self.rfind('/')) + "/../tests/fixtures/linux/real/t0";
}

bool ReadFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::stringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return true;
}

double ThreadCpuNs() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec);
}

double MedianNs(int iterations, int runs, const std::function<void()>& fn) {
  std::vector<double> ns;
  for (int r = 0; r < runs; ++r) {
    const double t0 = ThreadCpuNs();
    for (int i = 0; i < iterations; ++i) fn();
    ns.push_back((ThreadCpuNs() - t0) / iterations);
  }
  std::sort(ns.begin(), ns.end());
  return ns[ns.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const std::string dir = argc > 1 ? argv[1] : DefaultDir();
  const int iterations = argc > 2 ? std::atoi(argv[2]) : 20000;
  const int runs = argc > 3 ? std::atoi(argv[3]) : 7;

  std::map<std::string, std::string> files;
  size_t bytes = 0;
  for (const std::string& path : TickFiles()) {
    std::string content;
    if (ReadFile(dir + path, &content)) {
      bytes += content.size();
      files[path] = std::move(content);
    }
  }
  if (files.empty()) {
    std::fprintf(stderr, "no tick files under %s\n", dir.c_str());
    return 1;
  }
  const Filters filters;
  const std::string& mounts_text = files[std::string(kMountsFile)];
  std::vector<FsStat> fs;
  {
    std::string statvfs;
    ReadFile(dir + "/statvfs.txt", &statvfs);
    std::istringstream in(statvfs);
    std::string line;
    std::vector<Mount> wanted = FilesystemsToStat(mounts_text, filters);
    while (std::getline(in, line)) {
      std::istringstream ls(line);
      FsStat s;
      ls >> s.mountpoint >> s.bsize >> s.frsize >> s.blocks >> s.bfree >> s.bavail >> s.files >>
          s.ffree >> s.favail;
      for (const Mount& m : wanted) {
        if (m.mountpoint == s.mountpoint) fs.push_back(s);
      }
    }
  }

  ParseResult once = Parse(files, fs, filters);
  std::printf(
      "tick: %zu files, %zu bytes, %zu filesystems -> %zu readings, %zu entities, "
      "%zu warnings\n",
      files.size(), bytes, fs.size(), once.readings.size(), once.entities.size(),
      once.warnings.size());

  size_t sink = 0;
  const double full = MedianNs(iterations, runs, [&] {
    ParseResult r = Parse(files, fs, filters);
    sink += r.readings.size();
  });
  std::printf("Parse (full tick): %.0f ns (median of %d runs x %d)\n", full, runs, iterations);

  auto one = [&](const char* name, const std::function<void(ParseResult*)>& fn) {
    const double ns = MedianNs(iterations, runs, [&] {
      ParseResult r;
      fn(&r);
      sink += r.readings.size();
    });
    std::printf("  %-22s %7.0f ns\n", name, ns);
  };
  auto text = [&](const char* path) -> const std::string& { return files[path]; };
  one("ParseStat", [&](ParseResult* r) { ParseStat(text("/proc/stat"), filters, r); });
  one("ParseDiskstats",
      [&](ParseResult* r) { ParseDiskstats(text("/proc/diskstats"), filters, r); });
  one("ParseNetDev", [&](ParseResult* r) { ParseNetDev(text("/proc/net/dev"), filters, r); });
  one("ParseMeminfo", [&](ParseResult* r) { ParseMeminfo(text("/proc/meminfo"), r); });
  one("ParseVmstat", [&](ParseResult* r) { ParseVmstat(text("/proc/vmstat"), r); });
  one("ParseNetSnmp", [&](ParseResult* r) { ParseNetSnmp(text("/proc/net/snmp"), r); });
  one("ParsePressure (cpu)",
      [&](ParseResult* r) { ParsePressure("cpu", text("/proc/pressure/cpu"), r); });
  one("FilesystemsToStat", [&](ParseResult* r) {
    sink += FilesystemsToStat(mounts_text, filters).size() + r->readings.size();
  });
  return sink == 0 ? 1 : 0;
}
