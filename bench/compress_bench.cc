// Value-set compression throughput: one thread (one core) feeds 1000 metrics sampled every
// second into 60 s intervals, as a collector does, and prints samples per second (median of 5
// runs) and how many values go out per sample that comes in. It prints figures; it asserts
// nothing (the target in the issue is >= 20 million samples per second per core).
//
//   bench_compress [metrics] [seconds] [runs]

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "collector/value_set.h"

namespace {

using trapline::CounterRate;
using trapline::IntervalAccumulator;
using trapline::TimedValue;
using trapline::ZbxTime;

constexpr int64_t kIntervalS = 60;
constexpr int64_t kStart = 1'700'000'000;  // not aligned to 60 s: the first interval is partial
constexpr int kTableSeconds = 600;         // values repeat after this many seconds

// What the metrics look like: a fleet has many flat metrics (sizes, limits, states), slowly
// moving gauges (memory, connections), noisy ones (CPU, latency) and counters (bytes, queries).
enum class Kind { kConstant, kSlowGauge, kNoisyGauge, kCounter };

struct Workload {
  int metrics;
  std::vector<Kind> kinds;
  std::vector<int32_t> phase_ns;  // each metric is sampled at its own offset in the second
  std::vector<double> table;      // [second % kTableSeconds][metric]
};

Workload MakeWorkload(int metrics) {
  Workload w;
  w.metrics = metrics;
  std::mt19937_64 rng(42);
  std::normal_distribution<double> gauss(0, 1);
  w.kinds.resize(metrics);
  w.phase_ns.resize(metrics);
  w.table.resize(static_cast<size_t>(kTableSeconds) * metrics);
  for (int m = 0; m < metrics; ++m) {
    const int r = m % 10;
    w.kinds[m] = r < 4   ? Kind::kConstant
                 : r < 7 ? Kind::kSlowGauge
                 : r < 9 ? Kind::kNoisyGauge
                         : Kind::kCounter;
    w.phase_ns[m] = static_cast<int32_t>(rng() % 1'000'000'000);
    double level = 1e3 * (1 + m);
    double counter = 1e12 + 1e6 * m;
    for (int s = 0; s < kTableSeconds; ++s) {
      double v = 0;
      switch (w.kinds[m]) {
        case Kind::kConstant:
          v = 8'589'934'592.0;
          break;
        case Kind::kSlowGauge:
          if (rng() % 8 == 0) level += std::round(gauss(rng) * 10);
          v = level;
          break;
        case Kind::kNoisyGauge:
          v = std::max(0.0, 40 + 15 * gauss(rng));
          break;
        case Kind::kCounter:
          counter += std::floor(1e5 * (1 + 0.3 * gauss(rng)) + 0.5);
          v = counter;
          break;
      }
      w.table[static_cast<size_t>(s) * metrics + m] = v;
    }
  }
  return w;
}

struct RunResult {
  double seconds;
  int64_t samples;
  int64_t values;
  double checksum;
};

// One pass over `seconds` seconds of samples for every metric; counters go through
// CounterRate first. Times the whole collector-side path: Add, interval closes, value sets.
RunResult Run(const Workload& w, int64_t seconds) {
  std::vector<IntervalAccumulator> accs(w.metrics, IntervalAccumulator(kIntervalS));
  std::vector<CounterRate> rates(w.metrics, CounterRate(64));
  std::vector<TimedValue> out;
  out.reserve(1 << 16);
  RunResult r{0, 0, 0, 0};
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t s = 0; s < seconds; ++s) {
    const double* row = &w.table[static_cast<size_t>(s % kTableSeconds) * w.metrics];
    for (int m = 0; m < w.metrics; ++m) {
      const ZbxTime t{kStart + s, w.phase_ns[m]};
      double v = row[m];
      if (w.kinds[m] == Kind::kCounter) {
        // The table repeats: a counter then looks reset once per kTableSeconds, as in life.
        if (!rates[m].Update(t, v, &v)) continue;
      }
      accs[m].Add(t, v, &out);
      ++r.samples;
    }
    r.values += static_cast<int64_t>(out.size());
    for (const TimedValue& tv : out) r.checksum += tv.value;
    out.clear();
  }
  for (IntervalAccumulator& acc : accs) acc.Flush(&out);
  r.values += static_cast<int64_t>(out.size());
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

// Only the hot path: a single metric's samples, all in open intervals but the closes.
RunResult RunHotPath(int64_t samples) {
  IntervalAccumulator acc(kIntervalS);
  std::vector<TimedValue> out;
  out.reserve(1 << 10);
  RunResult r{0, 0, 0, 0};
  const auto t0 = std::chrono::steady_clock::now();
  double v = 1;
  for (int64_t i = 0; i < samples; ++i) {
    // 1000 samples per second of sample time: 60000 per interval.
    const ZbxTime t{kStart + i / 1000, static_cast<int32_t>((i % 1000) * 1'000'000)};
    v = v * 1.0000001 + 1e-3;
    acc.Add(t, v, &out);
  }
  acc.Flush(&out);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.samples = samples;
  r.values = static_cast<int64_t>(out.size());
  for (const TimedValue& tv : out) r.checksum += tv.value;
  return r;
}

double Median(std::vector<double> xs) {
  std::sort(xs.begin(), xs.end());
  const size_t n = xs.size();
  return n % 2 ? xs[n / 2] : (xs[n / 2 - 1] + xs[n / 2]) / 2;
}

}  // namespace

int main(int argc, char** argv) {
  const int metrics = argc > 1 ? std::atoi(argv[1]) : 1000;
  const int64_t seconds = argc > 2 ? std::atoll(argv[2]) : 3600;
  const int runs = argc > 3 ? std::atoi(argv[3]) : 5;
  if (metrics < 1 || seconds < 1 || runs < 1) {
    std::fprintf(stderr, "usage: bench_compress [metrics >= 1] [seconds >= 1] [runs >= 1]\n");
    return 2;
  }
  const Workload w = MakeWorkload(metrics);

  std::printf(
      "compress: %d metrics (40%% constant, 30%% slow gauges, 20%% noisy gauges, "
      "10%% counters as rates), 1 s sampling, %lld s intervals, %lld s of samples, "
      "%d runs, 1 thread\n",
      metrics, static_cast<long long>(kIntervalS), static_cast<long long>(seconds), runs);
  std::vector<double> rates_per_s;
  RunResult last{};
  for (int i = 0; i < runs; ++i) {
    last = Run(w, seconds);
    rates_per_s.push_back(static_cast<double>(last.samples) / last.seconds);
    std::printf("  run %d: %lld samples in %.4f s = %.1f M samples/s\n", i + 1,
                static_cast<long long>(last.samples), last.seconds, rates_per_s.back() / 1e6);
  }
  const double median = Median(rates_per_s);
  std::printf("fleet:    median %.1f M samples/s per core (%.1f ns/sample), min %.1f, max %.1f\n",
              median / 1e6, 1e9 / median,
              *std::min_element(rates_per_s.begin(), rates_per_s.end()) / 1e6,
              *std::max_element(rates_per_s.begin(), rates_per_s.end()) / 1e6);
  std::printf("          values out / samples in = %lld / %lld = %.4f (checksum %.6g)\n",
              static_cast<long long>(last.values), static_cast<long long>(last.samples),
              static_cast<double>(last.values) / static_cast<double>(last.samples), last.checksum);

  std::vector<double> hot;
  RunResult hot_last{};
  for (int i = 0; i < runs; ++i) {
    hot_last = RunHotPath(static_cast<int64_t>(metrics) * seconds);
    hot.push_back(static_cast<double>(hot_last.samples) / hot_last.seconds);
  }
  const double hot_median = Median(hot);
  std::printf(
      "hot path: median %.1f M samples/s per core (%.1f ns/sample), one metric, "
      "%lld values out (checksum %.6g)\n",
      hot_median / 1e6, 1e9 / hot_median, static_cast<long long>(hot_last.values),
      hot_last.checksum);
  return 0;
}
