// The redis plugin's ParseInfo() over captured INFO replies (tests/fixtures/redis/): prints
// nanoseconds per parse (the thread's CPU time, median of several runs) and per byte. It prints
// figures; it asserts nothing.
//
//   bench_redis_parse [info-file ...] [--iterations N] [--runs N]

#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "plugins/redis/redis.h"

namespace {

std::string FixtureDir() {
  std::string self = __FILE__;  // .../bench/redis_parse_bench.cc
  return self.substr(0, self.rfind('/')) + "/../tests/fixtures/redis/";
}

double ThreadCpuNs() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> paths;
  int iterations = 20000;
  int runs = 7;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--iterations") == 0 && i + 1 < argc) {
      iterations = std::atoi(argv[++i]);
    } else if (std::strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
      runs = std::atoi(argv[++i]);
    } else {
      paths.push_back(argv[i]);
    }
  }
  if (paths.empty()) {
    for (const char* name : {"info_7.0_keys.txt", "info_7.0_replica.txt", "info_5.0_style.txt"}) {
      paths.push_back(FixtureDir() + name);
    }
  }
  size_t sink = 0;
  for (const std::string& path : paths) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "bench_redis_parse: cannot read %s\n", path.c_str());
      return 1;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string info = ss.str();
    std::vector<double> ns;
    for (int r = 0; r < runs; ++r) {
      const double t0 = ThreadCpuNs();
      for (int i = 0; i < iterations; ++i) {
        sink += trapline::plugins::redis::ParseInfo(info).readings.size();
      }
      ns.push_back((ThreadCpuNs() - t0) / iterations);
    }
    std::sort(ns.begin(), ns.end());
    const double median = ns[ns.size() / 2];
    auto once = trapline::plugins::redis::ParseInfo(info);
    std::printf("%s: %zu bytes -> %zu readings: %.0f ns per parse (%.2f ns/byte), median of %d x %d\n",
                path.substr(path.rfind('/') + 1).c_str(), info.size(), once.readings.size(), median,
                median / static_cast<double>(info.size()), runs, iterations);
  }
  return sink == 0 ? 1 : 0;
}
