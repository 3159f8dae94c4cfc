#include "collector/value_set.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

namespace trapline {
namespace {

constexpr int64_t kNs = 1'000'000'000;

struct Sample {
  ZbxTime t;
  double v;
};

int64_t ToNs(ZbxTime t) { return t.clock * kNs + t.ns; }
ZbxTime At(int64_t clock, int32_t ns = 0) { return {clock, ns}; }

double Ulp(double x) {
  x = std::fabs(x);
  return std::nextafter(x, std::numeric_limits<double>::infinity()) - x;
}

// Sum of (x - base) in long double with Neumaier compensation: a reference far more precise
// than the 1e-9 * range the tests ask for, also for 1e12 + noise.
long double OffsetSum(const std::vector<double>& xs, double base) {
  long double sum = 0, comp = 0;
  for (double x : xs) {
    const long double y = static_cast<long double>(x) - base;
    const long double s = sum + y;
    comp += std::fabs(sum) >= std::fabs(y) ? (sum - s) + y : (y - s) + sum;
    sum = s;
  }
  return sum + comp;
}

// The interval's statistics computed independently of the accumulator.
IntervalStats ReferenceStats(const std::vector<Sample>& samples) {
  IntervalStats s;
  std::vector<double> xs;
  for (const Sample& x : samples) xs.push_back(x.v);
  s.count = static_cast<int64_t>(xs.size());
  s.min = *std::min_element(xs.begin(), xs.end());
  s.max = *std::max_element(xs.begin(), xs.end());
  const long double off = OffsetSum(xs, s.min) / static_cast<long double>(xs.size());
  s.mean = static_cast<double>(s.min + off);
  s.mean_lo = static_cast<double>(off - (static_cast<long double>(s.mean) - s.min));
  for (const Sample& x : samples) {
    if (x.v == s.min) {
      s.min_time = x.t;
      break;
    }
  }
  for (const Sample& x : samples) {
    if (x.v == s.max) {
      s.max_time = x.t;
      break;
    }
  }
  s.first_time = samples.front().t;
  s.last_time = samples.back().t;
  return s;
}

// Feeds one interval's samples (sorted by time, all inside [start, start + interval_s)) and
// returns what is sent once the interval is flushed.
std::vector<TimedValue> Compress(const std::vector<Sample>& samples, int64_t interval_s) {
  IntervalAccumulator acc(interval_s);
  std::vector<TimedValue> out;
  for (const Sample& x : samples) REQUIRE(acc.Add(x.t, x.v, &out));
  REQUIRE(out.empty());
  acc.Flush(&out);
  return out;
}

// Every promise of the contract for one interval's value set.
void CheckValueSet(const std::vector<Sample>& samples, int64_t start, int64_t interval_s,
                   const std::vector<TimedValue>& out) {
  const IntervalStats ref = ReferenceStats(samples);
  const double range = ref.max - ref.min;
  const auto k = static_cast<int64_t>(out.size());
  CAPTURE(ref.count);
  CAPTURE(ref.min);
  CAPTURE(ref.max);
  CAPTURE(ref.mean);
  CAPTURE(k);
  REQUIRE(k >= 1);
  CHECK(k <= ref.count);
  CHECK(k == MinimalValueCount(ref));

  // Times: sorted, distinct, inside the interval.
  for (int64_t i = 0; i < k; ++i) {
    const int64_t ns = ToNs(out[i].time);
    CHECK(out[i].time.ns >= 0);
    CHECK(out[i].time.ns < kNs);
    CHECK(ns >= start * kNs);
    CHECK(ns < (start + interval_s) * kNs);
    if (i > 0) CHECK(ToNs(out[i - 1].time) < ns);
  }

  // Min and max: the sampled doubles, at the moments they were sampled.
  std::vector<double> vs;
  for (const TimedValue& tv : out) vs.push_back(tv.value);
  CHECK(*std::min_element(vs.begin(), vs.end()) == ref.min);
  CHECK(*std::max_element(vs.begin(), vs.end()) == ref.max);
  auto value_at = [&](int64_t ns) {
    for (const TimedValue& tv : out) {
      if (ToNs(tv.time) == ns) return tv.value;
    }
    return std::numeric_limits<double>::quiet_NaN();
  };
  CHECK(value_at(ToNs(ref.min_time)) == ref.min);
  int64_t max_ns = ToNs(ref.max_time);
  if (k > 1 && max_ns == ToNs(ref.min_time)) {
    max_ns = max_ns + 1 < (start + interval_s) * kNs ? max_ns + 1 : max_ns - 1;
  }
  CHECK(value_at(max_ns) == ref.max);

  // Mean: within 1e-9 of the range, plus what doubles cannot avoid (see value_set.h).
  std::vector<double> xs;
  for (const Sample& x : samples) xs.push_back(x.v);
  // Both means as offsets from the min.
  const long double in_mean = OffsetSum(xs, ref.min) / static_cast<long double>(ref.count);
  const long double out_mean = OffsetSum(vs, ref.min) / static_cast<long double>(k);
  const double tolerance =
      1e-9 * range + std::max(Ulp(ref.min), Ulp(ref.max)) / static_cast<double>(k);
  CHECK(static_cast<double>(std::fabs(out_mean - in_mean)) <= tolerance);

  // Minimality against the exact t: k - 1 values cannot reach the mean, k can (up to the
  // documented 1e-10 tolerance), or k is the number of samples.
  if (range > 0 && k > 2) {
    const long double t = in_mean / static_cast<long double>(range);
    const long double nearer = std::min(t, 1 - t);
    CHECK(static_cast<long double>(k - 1) * nearer < 1);
    if (k < ref.count) CHECK(static_cast<long double>(k) * nearer >= 1 - 2e-10L * k);
  }
}

// ---------------------------------------------------------------------------------------------
// MinimalValueCount and BuildValueSet

IntervalStats StatsOf(std::initializer_list<double> values) {
  std::vector<Sample> samples;
  int64_t clock = 0;
  for (double v : values) samples.push_back({At(clock++), v});
  return ReferenceStats(samples);
}

TEST_CASE("MinimalValueCount follows k = max(2, ceil(1 / min(t, 1 - t)))") {
  CHECK(MinimalValueCount(StatsOf({5})) == 1);
  CHECK(MinimalValueCount(StatsOf({5, 5, 5, 5})) == 1);
  CHECK(MinimalValueCount(StatsOf({0, 1})) == 2);
  CHECK(MinimalValueCount(StatsOf({0, 1, 2})) == 2);     // t = 1/2
  CHECK(MinimalValueCount(StatsOf({0, 0, 1, 1})) == 2);  // t = 1/2
  CHECK(MinimalValueCount(StatsOf({0, 0, 1})) == 3);     // t = 1/3
  CHECK(MinimalValueCount(StatsOf({0, 1, 1})) == 3);     // t = 2/3
  CHECK(MinimalValueCount(StatsOf({0, 0, 0, 1})) == 4);  // t = 1/4
  CHECK(MinimalValueCount(StatsOf({0, 0, 1, 3})) == 3);  // t = 1/3
  // t = 9/10
  CHECK(MinimalValueCount(StatsOf({0, 1, 1, 1, 1, 1, 1, 1, 1, 1})) == 10);
}

TEST_CASE("a spike among many samples needs as many values as samples, never more") {
  std::vector<Sample> samples;
  for (int i = 0; i < 600; ++i) {
    samples.push_back({At(1'700'000'400 + i / 10, (i % 10) * 100'000'000), 0});
  }
  samples[321].v = 1;
  const auto out = Compress(samples, 60);
  CHECK(out.size() == 600);
  CheckValueSet(samples, 1'700'000'400, 60, out);
}

TEST_CASE("a t that is 1/k on paper but rounds either way still gives k values") {
  // {a, a, b} has t = 1/3 and {a, a, a, b} t = 1/4 exactly in the reals; computed t lands a
  // hair either side, which a plain ceil(1/t) turns into one value too many.
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> u(-1, 1);
  const double scales[] = {1e-7, 0.1, 1, 1e3, 1e9, 1e12};
  int checked = 0;
  for (double scale : scales) {
    for (int i = 0; i < 2000; ++i) {
      const double a = u(rng) * scale;
      const double b = a + std::fabs(u(rng)) * scale + Ulp(a) * 64;
      for (int reps = 1; reps <= 4; ++reps) {
        std::vector<Sample> lo_heavy, hi_heavy;
        int64_t clock = 600;
        for (int r = 0; r < reps; ++r) lo_heavy.push_back({At(clock++), a});
        lo_heavy.push_back({At(clock++), b});
        clock = 600;
        hi_heavy.push_back({At(clock++), a});
        for (int r = 0; r < reps; ++r) hi_heavy.push_back({At(clock++), b});
        const int expected = reps == 1 ? 2 : reps + 1;
        CAPTURE(a);
        CAPTURE(b);
        const auto out_lo = Compress(lo_heavy, 60);
        const auto out_hi = Compress(hi_heavy, 60);
        CHECK(static_cast<int>(out_lo.size()) == expected);
        CHECK(static_cast<int>(out_hi.size()) == expected);
        CheckValueSet(lo_heavy, 600, 60, out_lo);
        CheckValueSet(hi_heavy, 600, 60, out_hi);
        ++checked;
      }
    }
  }
  CHECK(checked == 6 * 2000 * 4);
}

TEST_CASE("decimal samples whose t is 1/4 on paper give 4 values") {
  // As doubles, t is 0.25 - 3e-17: 5 values in exact arithmetic, 4 within the tolerance
  // (the mean moves by ~1e-16 of the range), which is what the user meant.
  std::vector<Sample> samples;
  const double xs[] = {0.001, 0.001, 2.001, 0.001, 0.001, 1.001};
  int64_t clock = 120;
  for (double x : xs) samples.push_back({At(clock++), x});
  const auto out = Compress(samples, 60);
  CHECK(out.size() == 4);
  CheckValueSet(samples, 120, 60, out);
}

TEST_CASE("integer samples give exact fill values") {
  // The fills come from the double-double mean, so where the exact fill is a double it is
  // that double, not one an ulp off (2.0000000000000004 for 2).
  auto sorted_values = [](const std::vector<double>& in) {
    std::vector<Sample> samples;
    int64_t clock = 60;
    for (double x : in) samples.push_back({At(clock++), x});
    const auto out = Compress(samples, 60);
    CheckValueSet(samples, 60, 60, out);
    std::vector<double> vs;
    for (const TimedValue& tv : out) vs.push_back(tv.value);
    std::sort(vs.begin(), vs.end());
    return vs;
  };
  using V = std::vector<double>;
  CHECK(sorted_values({1, 5, 2}) == V{1, 2, 5});            // t = 5/12: fill 3 * 8/3 - 6
  CHECK(sorted_values({1, 5, 2, 2}) == V{1, 1.5, 5});       // t = 3/8: fill 3 * 2.5 - 6
  CHECK(sorted_values({7, 9, 9}) == V{7, 9, 9});            // t = 2/3
  CHECK(sorted_values({0, 4, 1, 1}) == V{0, 0.5, 4});       // t = 3/8
  CHECK(sorted_values({-3, 3, -1, -1}) == V{-3, -1.5, 3});  // t = 5/12
  CHECK(sorted_values({0, 8, 0, 0, 0, 0, 0, 0}) == V{0, 0, 0, 0, 0, 0, 0, 8});  // t = 1/8
}

// Brute force: integer samples in [-3, 3], every multiset of 1 to 5 of them. A set of k values
// with the samples' min m, max M and mean exists in the reals iff one exists on the grid of
// step 1/(12 n): replacing the k - 2 fills of a real solution by their average keeps the sum
// and stays in [m, M], and that average is (k S / n - m - M) / (k - 2), a multiple of
// 1/(n (k - 2)), and every k - 2 <= 3 divides 12. On that grid (values scaled by D = 12 n, exact
// integers) we enumerate every multiset of k values in [m, M] that has m and M in it: the
// k - 3 smallest fills freely in non-decreasing order, the last one solved from the sum.
bool GridSolutionExists(int64_t k, int64_t m, int64_t big_m, int64_t sum, int64_t n) {
  const int64_t d = 12 * n;
  const int64_t lo = m * d, hi = big_m * d;
  // Condition on the k scaled values g: min lo, max hi, n * sum(g) == k * sum * d.
  if (k == 1) return lo == hi && n * lo == sum * d;
  // k >= 2 values with min == max would be a constant set, which is 1 value.
  if (lo == hi) return false;
  const int64_t target_num = k * sum * d;  // n * (sum of all k scaled values)
  if (target_num % n != 0) return false;
  const int64_t fills_sum = target_num / n - lo - hi;
  const int64_t fills = k - 2;
  if (fills == 0) return fills_sum == 0;
  // Recursive enumeration of non-decreasing fills in [lo, hi] summing to fills_sum.
  auto rec = [&](auto&& self, int64_t left, int64_t from, int64_t remaining) -> bool {
    if (left == 1) return remaining >= from && remaining <= hi;
    for (int64_t g = from; g <= hi; ++g) {
      if (self(self, left - 1, g, remaining - g)) return true;
    }
    return false;
  };
  return rec(rec, fills, lo, fills_sum);
}

TEST_CASE("minimal against brute force on small integer inputs") {
  int sets = 0;
  for (int n = 1; n <= 5; ++n) {
    std::vector<int> v(n, -3);
    while (true) {
      std::vector<Sample> samples;
      int64_t sum = 0;
      for (int i = 0; i < n; ++i) {
        samples.push_back({At(1'000'020 + 7 * i, 125'000'000 * i), static_cast<double>(v[i])});
        sum += v[i];
      }
      // Shuffle the order deterministically so that the min and max are not always first/last.
      std::rotate(samples.begin(), samples.begin() + (sets % n), samples.end());
      for (int i = 0; i < n; ++i) samples[i].t = At(1'000'020 + 7 * i, 125'000'000 * i);
      const auto out = Compress(samples, 60);
      const int64_t m = *std::min_element(v.begin(), v.end());
      const int64_t big_m = *std::max_element(v.begin(), v.end());
      const auto k = static_cast<int64_t>(out.size());
      CAPTURE(n);
      CAPTURE(sum);
      CAPTURE(m);
      CAPTURE(big_m);
      CHECK(GridSolutionExists(k, m, big_m, sum, n));
      for (int64_t smaller = 1; smaller < k; ++smaller) {
        CHECK_FALSE(GridSolutionExists(smaller, m, big_m, sum, n));
      }
      CheckValueSet(samples, 1'000'020, 60, out);
      ++sets;
      // Next non-decreasing sequence over [-3, 3].
      int i = n - 1;
      while (i >= 0 && v[i] == 3) --i;
      if (i < 0) break;
      ++v[i];
      for (int j = i + 1; j < n; ++j) v[j] = v[i];
    }
  }
  CHECK(sets == 7 + 28 + 84 + 210 + 462);
}

TEST_CASE("property: random intervals keep min, max, mean, count and times") {
  std::mt19937_64 rng(20240601);
  const double bases[] = {0, 1, -1, 1e3, -1e6, 1e-9, 1e12, -1e12, 3.7e15, -2e250};
  const double noises[] = {1e-6, 1e-3, 1, 1e3, 1e9};
  const int64_t intervals[] = {1, 10, 60, 300};
  std::uniform_real_distribution<double> u01(0, 1);
  for (int iter = 0; iter < 20000; ++iter) {
    const double base = bases[rng() % std::size(bases)];
    const double noise = noises[rng() % std::size(noises)] * (base == -2e250 ? 1e245 : 1);
    const int64_t s = intervals[rng() % std::size(intervals)];
    const int64_t start = (1'700'000'000 / s + static_cast<int64_t>(rng() % 1000)) * s;
    int n;
    switch (rng() % 4) {
      case 0:
        n = 1;
        break;
      case 1:
        n = 2;
        break;
      case 2:
        n = 1 + static_cast<int>(rng() % 10);
        break;
      default:
        n = 1 + static_cast<int>(rng() % 300);
        break;
    }
    const int shape = static_cast<int>(rng() % 5);
    std::vector<double> values;
    for (int i = 0; i < n; ++i) {
      double x;
      switch (shape) {
        case 0:  // uniform
          x = base + noise * (u01(rng) - 0.5);
          break;
        case 1:  // a few levels
          x = base + noise * static_cast<double>(rng() % 4);
          break;
        case 2:  // rare spikes
          x = base + (u01(rng) < 0.05 ? noise : 0);
          break;
        case 3:  // rare dips
          x = base - (u01(rng) < 0.05 ? noise : 0);
          break;
        default:  // sevenths: t often a simple fraction
          x = base + noise * std::floor(u01(rng) * 1000) / 7;
          break;
      }
      values.push_back(x);
    }
    // Times: regular 1 s sampling with jitter, or random (also equal) nanoseconds.
    std::vector<int64_t> times;
    const int64_t span = s * kNs;
    if (rng() % 2 == 0) {
      for (int i = 0; i < n; ++i) times.push_back(static_cast<int64_t>(rng() % span));
    } else {
      const int64_t offset = static_cast<int64_t>(rng() % kNs);
      for (int i = 0; i < n; ++i) times.push_back((offset + i * (span / n)) % span);
    }
    if (rng() % 8 == 0) std::fill(times.begin(), times.end(), times[0]);  // all at once
    std::sort(times.begin(), times.end());
    std::vector<Sample> samples;
    for (int i = 0; i < n; ++i) {
      const int64_t ns = start * kNs + times[i];
      samples.push_back({At(ns / kNs, static_cast<int32_t>(ns % kNs)), values[i]});
    }
    CAPTURE(iter);
    CAPTURE(base);
    CAPTURE(noise);
    CAPTURE(shape);
    const auto out = Compress(samples, s);
    CheckValueSet(samples, start, s, out);
    // The same through BuildValueSet with the reference statistics.
    const auto direct = BuildValueSet(ReferenceStats(samples), start, s);
    CHECK(direct.size() == out.size());
  }
}

TEST_CASE("1e12 plus small noise keeps the mean to 1e-9 of the range") {
  // A range of 1e6 spans ~8e9 ulps of 1e12, so doubles can hold the mean to 1e-9 of it (with
  // a range of 1000 they cannot: see value_set.h); a naive sum of the raw values (6e13, ulp
  // 0.0078 per addition) would lose it.
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<double> u(0, 1e6);
  std::vector<Sample> samples;
  for (int i = 0; i < 60; ++i) samples.push_back({At(1'700'000'040 + i), 1e12 + u(rng)});
  const auto out = Compress(samples, 60);
  CheckValueSet(samples, 1'700'000'040, 60, out);
  const IntervalStats ref = ReferenceStats(samples);
  long double mean = 0;
  for (const TimedValue& tv : out) mean += static_cast<long double>(tv.value) - 1e12L;
  mean /= static_cast<long double>(out.size());
  const long double want = static_cast<long double>(ref.mean) - 1e12L + ref.mean_lo;
  CHECK(static_cast<double>(std::fabs(mean - want)) <= 1e-9 * (ref.max - ref.min));
}

TEST_CASE("times: min and max where sampled, fills between the first and the last sample") {
  // A metric that appeared at 45 s into the interval: no value before that.
  std::vector<Sample> samples;
  const int64_t start = 1'700'000'040;
  for (int i = 45; i < 60; ++i) samples.push_back({At(start + i), i == 50 ? 9.0 : 1.0});
  samples.push_back({At(start + 59, 500'000'000), 1.0});
  const auto out = Compress(samples, 60);
  CheckValueSet(samples, start, 60, out);
  REQUIRE(out.size() == 16);  // t = 1/16
  for (const TimedValue& tv : out) {
    CHECK(tv.time >= At(start + 45));
    CHECK(tv.time <= At(start + 59, 500'000'000));
  }
  CHECK(out[0].time == At(start + 45));  // the first min
  CHECK(out[0].value == 1.0);
}

TEST_CASE("times: min and max sampled at the same instant get distinct times") {
  const int64_t start = 60;
  std::vector<Sample> a = {{At(start + 10), 1}, {At(start + 10), 3}, {At(start + 10), 1}};
  auto out = Compress(a, 60);
  CheckValueSet(a, start, 60, out);
  REQUIRE(out.size() == 3);
  CHECK(out[0].time == At(start + 10));
  CHECK(out[0].value == 1);
  CHECK(out[1].time == At(start + 10, 1));
  CHECK(out[1].value == 3);
  // At the interval's last nanosecond the max goes one back.
  std::vector<Sample> b = {{At(start + 59, 999'999'999), 2}, {At(start + 59, 999'999'999), 4}};
  out = Compress(b, 60);
  CheckValueSet(b, start, 60, out);
  REQUIRE(out.size() == 2);
  CHECK(out[0].time == At(start + 59, 999'999'998));
  CHECK(out[0].value == 4);
  CHECK(out[1].time == At(start + 59, 999'999'999));
  CHECK(out[1].value == 2);
}

TEST_CASE("BuildValueSet without first/last times spreads fills over the whole interval") {
  IntervalStats s;
  s.count = 4;
  s.min = 0;
  s.max = 4;
  s.mean = 1;  // t = 1/4: 4 values, both fills (4 * 1 - 4) / 2 = 0
  s.min_time = At(120 + 30);
  s.max_time = At(120 + 40);
  const auto out = BuildValueSet(s, 120, 60);
  REQUIRE(out.size() == 4);
  // [120 s, 180 s - 1 ns] in thirds, floored to the nanosecond.
  CHECK(out[0].time == At(139, 999'999'999));
  CHECK(out[0].value == 0);
  CHECK(out[1].time == At(150));
  CHECK(out[1].value == 0);
  CHECK(out[2].time == At(159, 999'999'998));
  CHECK(out[2].value == 0);
  CHECK(out[3].time == At(160));
  CHECK(out[3].value == 4);
}

TEST_CASE("fills that would meet the min's or max's time move by a nanosecond") {
  IntervalStats s;
  s.count = 3;
  s.min = 0;
  s.max = 3;
  s.mean = 1;  // t = 1/3: one fill, at the middle of [first, last]
  s.first_time = At(100);
  s.last_time = At(110);
  s.min_time = At(105);  // exactly where the fill would go
  s.max_time = At(105, 1);
  const auto out = BuildValueSet(s, 60, 60);
  REQUIRE(out.size() == 3);
  CHECK(out[0].time == At(105));
  CHECK(out[0].value == 0);
  CHECK(out[1].time == At(105, 1));
  CHECK(out[1].value == 3);
  CHECK(out[2].time == At(105, 2));
  CHECK(out[2].value == 0);
}

TEST_CASE("fill values: several fills are nudged by an ulp so their sum is nearest") {
  // 1e12 + {0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1e-4-ish}: fills sit between grid points.
  std::vector<Sample> samples;
  const double b = 1e12;
  const double g = Ulp(b);  // 1.22e-4
  const double xs[] = {0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 3};
  int64_t clock = 1'700'000'040;
  for (double x : xs) samples.push_back({At(clock++), b + x});
  samples.push_back({At(clock++), b + 5 * g});
  const auto out = Compress(samples, 60);
  CheckValueSet(samples, 1'700'000'040, 60, out);
}

// ---------------------------------------------------------------------------------------------
// IntervalAccumulator

TEST_CASE("accumulator: a constant interval gives one value at its first sample") {
  IntervalAccumulator acc(60);
  std::vector<TimedValue> out;
  for (int i = 0; i < 60; ++i) CHECK(acc.Add(At(1'700'000'040 + i, 250), 7.5, &out));
  CHECK(out.empty());
  CHECK(acc.Add(At(1'700'000'100), 1, &out));  // closes [..040, ..100)
  REQUIRE(out.size() == 1);
  CHECK(out[0].time == At(1'700'000'040, 250));
  CHECK(out[0].value == 7.5);
}

TEST_CASE("accumulator: a single sample gives itself") {
  IntervalAccumulator acc(10);
  std::vector<TimedValue> out;
  CHECK(acc.Add(At(1003, 5), -2.25, &out));
  acc.Flush(&out);
  REQUIRE(out.size() == 1);
  CHECK(out[0].time == At(1003, 5));
  CHECK(out[0].value == -2.25);
}

TEST_CASE("accumulator: empty intervals send nothing, intervals are aligned to k*S") {
  IntervalAccumulator acc(60);
  std::vector<TimedValue> out;
  acc.FlushIfDue(At(1'000'000), &out);
  acc.Flush(&out);
  CHECK(out.empty());
  CHECK(acc.Add(At(59, 999'999'999), 1, &out));  // [0, 60)
  CHECK(acc.Add(At(60), 2, &out));               // [60, 120): closes [0, 60)
  REQUIRE(out.size() == 1);
  CHECK(out[0].value == 1);
  CHECK(acc.Add(At(300), 3, &out));  // [120, 300) had nothing after [60, 120): one value each
  REQUIRE(out.size() == 2);
  CHECK(out[1].time == At(60));
  CHECK(out[1].value == 2);
  acc.FlushIfDue(At(359, 999'999'999), &out);  // not yet due
  CHECK(out.size() == 2);
  acc.FlushIfDue(At(360), &out);
  REQUIRE(out.size() == 3);
  CHECK(out[2].time == At(300));
  acc.FlushIfDue(At(1000), &out);  // nothing open
  acc.Flush(&out);
  CHECK(out.size() == 3);
}

TEST_CASE("accumulator: older samples and samples in closed intervals are ignored") {
  IntervalAccumulator acc(60);
  std::vector<TimedValue> out;
  CHECK(acc.Add(At(100), 1, &out));
  CHECK(acc.Add(At(100), 2, &out));  // equal time is fine
  CHECK_FALSE(acc.Add(At(99, 999'999'999), 3, &out));
  acc.FlushIfDue(At(121), &out);
  REQUIRE(out.size() == 2);
  CHECK_FALSE(acc.Add(At(110), 5, &out));  // after its last sample but in a closed interval
  CHECK(out.size() == 2);
  CHECK(acc.Add(At(130), 5, &out));
  acc.Flush(&out);  // early (shutdown): [120, 180) is closed now
  REQUIRE(out.size() == 3);
  CHECK_FALSE(acc.Add(At(170), 6, &out));
  CHECK(acc.Add(At(180), 6, &out));
}

TEST_CASE("accumulator: values that are not finite or too large are ignored") {
  IntervalAccumulator acc(60);
  std::vector<TimedValue> out;
  CHECK_FALSE(acc.Add(At(1), std::numeric_limits<double>::quiet_NaN(), &out));
  CHECK_FALSE(acc.Add(At(1), std::numeric_limits<double>::infinity(), &out));
  CHECK(acc.Add(At(2), 1, &out));
  CHECK_FALSE(acc.Add(At(3), -std::numeric_limits<double>::infinity(), &out));
  CHECK_FALSE(acc.Add(At(3), std::numeric_limits<double>::quiet_NaN(), &out));
  CHECK_FALSE(acc.Add(At(3), 1e301, &out));
  CHECK(acc.Add(At(4), kMaxAbsValue, &out));
  CHECK(acc.Add(At(5), -kMaxAbsValue, &out));
  acc.Flush(&out);
  REQUIRE(out.size() == 2);  // mean 1/3, t = 1/2 to within far less than 1e-9
  CHECK(out[0].value == kMaxAbsValue);
  CHECK(out[1].value == -kMaxAbsValue);
}

TEST_CASE("accumulator: times before 1970 fall in floor-aligned intervals") {
  IntervalAccumulator acc(60);
  std::vector<TimedValue> out;
  CHECK(acc.Add(At(-61, 500), 1, &out));  // [-120, -60)
  CHECK(acc.Add(At(-60), 2, &out));       // [-60, 0)
  CHECK(acc.Add(At(-1, 999'999'999), 4, &out));
  CHECK(acc.Add(At(0), 3, &out));  // [0, 60)
  acc.Flush(&out);
  REQUIRE(out.size() == 4);
  CHECK(out[0].time == At(-61, 500));
  CHECK(out[1].time == At(-60));
  CHECK(out[2].time == At(-1, 999'999'999));
  CHECK(out[3].time == At(0));
}

TEST_CASE("accumulator: many intervals in a stream each satisfy the contract") {
  std::mt19937_64 rng(11);
  std::normal_distribution<double> gauss(50, 10);
  IntervalAccumulator acc(60);
  std::vector<TimedValue> out;
  std::vector<Sample> interval;
  int64_t current = -1;
  int intervals = 0;
  int checked = 0;
  for (int64_t t = 1'700'000'000; t < 1'700'000'000 + 3600; ++t) {
    if (rng() % 10 == 0) continue;                          // a missed sample
    if (t >= 1'700'001'000 && t < 1'700'001'200) continue;  // an outage: intervals with nothing
    const int64_t idx = t / 60;
    const Sample x{At(t, static_cast<int32_t>(rng() % 1000)), gauss(rng)};
    out.clear();
    CHECK(acc.Add(x.t, x.v, &out));
    if (idx != current) {
      ++intervals;
      if (!interval.empty()) {
        CheckValueSet(interval, current * 60, 60, out);
        ++checked;
      }
      interval.clear();
    } else {
      CHECK(out.empty());
    }
    current = idx;
    interval.push_back(x);
  }
  out.clear();
  acc.Flush(&out);
  CheckValueSet(interval, current * 60, 60, out);
  CHECK(checked == intervals - 1);
  // 3600 s from 20 s into an interval touch 61 intervals; the outage empties [1020, 1200).
  CHECK(intervals == 61 - 3);
}

// ---------------------------------------------------------------------------------------------
// CounterRate

TEST_CASE("counter: rates are delta / dt; the first sample gives none") {
  CounterRate c;
  double rate = -1;
  CHECK_FALSE(c.Update(At(100), 1000, &rate));
  CHECK(rate == -1);
  CHECK(c.Update(At(101), 1100, &rate));
  CHECK(rate == 100);
  CHECK(c.Update(At(103, 500'000'000), 1100, &rate));
  CHECK(rate == 0);
  CHECK(c.Update(At(104), 1150, &rate));
  CHECK(rate == 100);
}

TEST_CASE("counter: dt <= 0 gives no rate and the sample becomes the reference") {
  CounterRate c;
  double rate = -1;
  CHECK_FALSE(c.Update(At(100), 10, &rate));
  CHECK_FALSE(c.Update(At(100), 20, &rate));
  CHECK_FALSE(c.Update(At(90), 30, &rate));  // clock stepped back
  CHECK(c.Update(At(92), 40, &rate));
  CHECK(rate == 5);
}

TEST_CASE("counter: a decrease is a reset, not a spike") {
  CounterRate c;
  double rate = -1;
  CHECK_FALSE(c.Update(At(1), 5000, &rate));
  CHECK(c.Update(At(2), 6000, &rate));
  CHECK_FALSE(c.Update(At(3), 10, &rate));  // restarted
  CHECK(c.Update(At(4), 30, &rate));
  CHECK(rate == 20);
  // Without a known width even a decrease from near 2^32 is a reset.
  CHECK(c.Update(At(5), 4294967000.0, &rate));
  CHECK_FALSE(c.Update(At(6), 100, &rate));
}

TEST_CASE("counter: 32- and 64-bit wraps give the wrapped delta when plausible") {
  double rate = -1;
  CounterRate c32(32);
  CHECK_FALSE(c32.Update(At(1), 4294967000.0, &rate));
  CHECK(c32.Update(At(3), 100, &rate));
  CHECK(rate == (4294967296.0 - 4294967000.0 + 100) / 2);
  // Not plausible: from the middle of the range to the bottom is a reset.
  CHECK(c32.Update(At(4), 3e9, &rate));
  CHECK_FALSE(c32.Update(At(5), 5, &rate));
  // Not plausible: the new value is not in the bottom quarter.
  CHECK(c32.Update(At(6), 4294967000.0, &rate));
  CHECK_FALSE(c32.Update(At(7), 2e9, &rate));
  // Beyond the width: not a 32-bit counter, a reset.
  CHECK(c32.Update(At(8), 5e9, &rate));
  CHECK_FALSE(c32.Update(At(9), 5, &rate));

  CounterRate c64(64);
  const double top = 18446744073709549568.0;  // 2^64 - 2048, a double just below 2^64
  CHECK_FALSE(c64.Update(At(1), top, &rate));
  CHECK(c64.Update(At(2), 952, &rate));
  CHECK(rate == 3000);
  // A 32-bit-sized wrap on a 64-bit counter is a reset.
  CHECK(c64.Update(At(3), 4294967000.0, &rate));
  CHECK_FALSE(c64.Update(At(4), 10, &rate));

  CounterRate odd(16);  // unknown width
  CHECK_FALSE(odd.Update(At(1), 65000, &rate));
  CHECK_FALSE(odd.Update(At(2), 10, &rate));
}

TEST_CASE("counter: Reset and non-finite values start afresh") {
  CounterRate c;
  double rate = -1;
  CHECK_FALSE(c.Update(At(1), 10, &rate));
  CHECK(c.Update(At(2), 20, &rate));
  c.Reset();  // reconnect
  CHECK_FALSE(c.Update(At(10), 1000, &rate));
  CHECK(c.Update(At(11), 1010, &rate));
  CHECK(rate == 10);
  CHECK_FALSE(c.Update(At(12), std::numeric_limits<double>::quiet_NaN(), &rate));
  CHECK_FALSE(c.Update(At(13), 1030, &rate));
  CHECK(c.Update(At(14), 1040, &rate));
  CHECK(rate == 10);
}

TEST_CASE("counter rates through the accumulator: a reset gives no false spike") {
  CounterRate c;
  IntervalAccumulator acc(60);
  std::vector<TimedValue> out;
  double counter = 1e6;
  for (int i = 0; i < 60; ++i) {
    counter = i == 30 ? 7 : counter + 100;  // restart at 30 s
    double rate;
    if (c.Update(At(600 + i), counter, &rate)) CHECK(acc.Add(At(600 + i), rate, &out));
  }
  acc.Flush(&out);
  REQUIRE(out.size() == 1);
  CHECK(out[0].value == 100);
  CHECK(out[0].time == At(601));
}

}  // namespace
}  // namespace trapline
