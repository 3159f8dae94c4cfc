#include "collector/value_set.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <limits>

namespace trapline {
namespace {

constexpr int64_t kNsPerSecond = 1'000'000'000;
constexpr int64_t kNone = std::numeric_limits<int64_t>::min();
// How far (as a fraction of the range) clamping the fill may move the mean when a rounded t
// sits just below 1/k; well under the promised 1e-9 and far above the rounding of t itself
// (a few 1e-16), so a t that is 1/3 on paper still gives 3 values.
constexpr double kCountTolerance = 1e-10;

int64_t ToNs(ZbxTime t) { return t.clock * kNsPerSecond + t.ns; }

int64_t FloorDiv(int64_t a, int64_t b) {
  const int64_t q = a / b;
  return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

ZbxTime FromNs(int64_t ns) {
  const int64_t clock = FloorDiv(ns, kNsPerSecond);
  return {clock, static_cast<int32_t>(ns - clock * kNsPerSecond)};
}

// The mean's distance from the min and the range, both precise even when the values are far
// from zero: mean - min is exact there (Sterbenz) and mean_lo restores what `mean` rounded off.
struct Shape {
  double above_min;  // mean - min, in [0, range]
  double range;      // max - min
};

Shape ShapeOf(const IntervalStats& s) {
  const double range = s.max - s.min;
  return {std::clamp((s.mean - s.min) + s.mean_lo, 0.0, range), range};
}

// Whether k values (min, max and k-2 equal fills) reach the mean once the fill is clamped to
// [min, max], the clamp moving the mean by at most kCountTolerance * range. The fill's offset
// from the min is (k*d - r) / (k - 2) for the nearer end's distance d, so the condition is
// k*d >= r*(1 - k*tol); monotone in k.
bool Reaches(int64_t k, double nearer, double range) {
  return static_cast<double>(k) * (nearer + kCountTolerance * range) >= range;
}

int64_t CountFor(const Shape& sh, int64_t n) {
  if (!(sh.range > 0)) return 1;
  if (n <= 2) return n;
  const double nearer = std::min(sh.above_min, sh.range - sh.above_min);
  // nearer + tol*range > 0, so the estimate is finite; ceil can be off by one either way.
  const double estimate = sh.range / (nearer + kCountTolerance * sh.range);
  if (!(estimate < static_cast<double>(n))) return n;
  int64_t k = std::max<int64_t>(2, static_cast<int64_t>(std::ceil(estimate)));
  while (k > 2 && Reaches(k - 1, nearer, sh.range)) --k;
  while (k < n && !Reaches(k, nearer, sh.range)) ++k;
  return k;
}

void AppendValueSet(const IntervalStats& s, int64_t interval_start, int64_t interval_s,
                    std::vector<TimedValue>* out) {
  const Shape sh = ShapeOf(s);
  const int64_t k = CountFor(sh, s.count);
  const int64_t min_ns = ToNs(s.min_time);
  if (k == 1) {
    out->push_back({s.min_time, s.min});
    return;
  }
  const int64_t start_ns = interval_start * kNsPerSecond;
  const int64_t last_ns = start_ns + interval_s * kNsPerSecond - 1;  // the interval's last ns
  int64_t max_ns = ToNs(s.max_time);
  if (max_ns == min_ns) max_ns = max_ns < last_ns ? max_ns + 1 : max_ns - 1;

  const size_t first = out->size();
  out->push_back({FromNs(min_ns), s.min});
  out->push_back({FromNs(max_ns), s.max});
  const int64_t fills = k - 2;
  if (fills > 0) {
    // Values: the fills share target = k * (mean - min) - range above the min, computed from
    // the double-double mean so that it is exact whenever it can be (integer samples give
    // fills like 2 or 1.5, not 2.0000000000000004). Each fill is the average, rounded to the
    // nearest double, and j of them are one ulp up or down so that their sum lands within
    // half an ulp of the target. (f0 - min) is exact where that matters (min and f0 close:
    // Sterbenz); elsewhere the ulps involved are those of the range and negligible.
    const double fills_d = static_cast<double>(fills);
    const double k_d = static_cast<double>(k);
    const double target = std::clamp(std::fma(k_d, s.mean - s.min, -sh.range) + k_d * s.mean_lo,
                                     0.0, fills_d * sh.range);
    const double f0 = std::clamp(s.min + target / fills_d, s.min, s.max);
    const double residual = std::fma(-fills_d, f0 - s.min, target);
    double nudged = f0;
    int64_t j = 0;
    if (residual != 0) {
      nudged = std::nextafter(f0, residual > 0 ? s.max : s.min);
      const double step = nudged - f0;
      if (step != 0) {
        j = std::clamp<int64_t>(std::llround(residual / step), 0, fills);
      }
    }
    // Times: evenly spread between the first and the last sample, or over the whole interval
    // when the samples span too few nanoseconds; each is pushed past the previous fill and
    // off the min's and max's times, at most 2 ns, which the spacing (>= 3 ns) absorbs.
    int64_t a = ToNs(s.first_time);
    int64_t b = ToNs(s.last_time);
    if (a < start_ns || b > last_ns || b - a < 3 * (fills + 1)) {
      a = start_ns;
      b = last_ns;
    }
    // Spacing 0 only for absurd counts (over ~3e8 values per second of interval): the fills
    // then take consecutive free nanoseconds from the interval's start.
    const int64_t spacing = (b - a) / (fills + 1) >= 3 ? (b - a) / (fills + 1) : 0;
    int64_t prev = kNone;
    for (int64_t i = 0; i < fills; ++i) {
      int64_t t = a + (i + 1) * spacing;
      if (prev != kNone && t <= prev) t = prev + 1;
      while (t == min_ns || t == max_ns) ++t;
      prev = t;
      out->push_back({FromNs(t), i < j ? nudged : f0});
    }
  }
  std::sort(out->begin() + static_cast<std::ptrdiff_t>(first), out->end(),
            [](const TimedValue& x, const TimedValue& y) { return x.time < y.time; });
}

}  // namespace

int MinimalValueCount(const IntervalStats& s) {
  return static_cast<int>(std::min<int64_t>(CountFor(ShapeOf(s), s.count), INT_MAX));
}

std::vector<TimedValue> BuildValueSet(const IntervalStats& s, int64_t interval_start,
                                      int64_t interval_s) {
  std::vector<TimedValue> out;
  AppendValueSet(s, interval_start, interval_s, &out);
  return out;
}

IntervalAccumulator::IntervalAccumulator(int64_t interval_s)
    : interval_s_(interval_s),
      interval_ns_(interval_s * kNsPerSecond),
      open_end_ns_(kNone),
      closed_end_ns_(kNone),
      last_ns_(kNone) {}

bool IntervalAccumulator::Add(ZbxTime t, double v, std::vector<TimedValue>* out) {
  const int64_t ns = t.clock * kNsPerSecond + t.ns;
  // With an interval open, last_ns_ >= open_start_ns_; with none, open_end_ns_ is kNone.
  if (ns >= last_ns_ && ns < open_end_ns_ && std::fabs(v) <= kMaxAbsValue) {
    last_ns_ = ns;
    ++count_;
    const double y = v - ref_;
    const double sum = sum_ + y;
    comp_ += std::fabs(sum_) >= std::fabs(y) ? (sum_ - sum) + y : (y - sum) + sum_;
    sum_ = sum;
    if (v < min_) {
      min_ = v;
      min_ns_ = ns;
    }
    if (v > max_) {
      max_ = v;
      max_ns_ = ns;
    }
    return true;
  }
  return AddSlow(ns, v, out);
}

bool IntervalAccumulator::AddSlow(int64_t t_ns, double v, std::vector<TimedValue>* out) {
  if (!(std::fabs(v) <= kMaxAbsValue)) return false;
  if (t_ns < last_ns_ || t_ns < closed_end_ns_) return false;
  if (open_end_ns_ != kNone) Close(out);  // t_ns is at or past its end
  open_start_ns_ = FloorDiv(t_ns, interval_ns_) * interval_ns_;
  open_end_ns_ = open_start_ns_ + interval_ns_;
  first_ns_ = last_ns_ = min_ns_ = max_ns_ = t_ns;
  count_ = 1;
  ref_ = min_ = max_ = v;
  sum_ = comp_ = 0;
  return true;
}

void IntervalAccumulator::Close(std::vector<TimedValue>* out) {
  IntervalStats s;
  s.count = count_;
  s.min = min_;
  s.max = max_;
  // mean = ref_ + (sum_ + comp_) / count_, as the double-double mean + mean_lo: the quotient
  // with its remainder (exact through fma), then ref_ + quotient split error-free (TwoSum).
  const double n = static_cast<double>(count_);
  const double total = sum_ + comp_;
  const double off = total / n;
  const double off_lo = std::fma(-off, n, total) / n;
  s.mean = ref_ + off;
  const double bv = s.mean - ref_;
  s.mean_lo = ((ref_ - (s.mean - bv)) + (off - bv)) + off_lo;
  s.min_time = FromNs(min_ns_);
  s.max_time = FromNs(max_ns_);
  s.first_time = FromNs(first_ns_);
  s.last_time = FromNs(last_ns_);
  AppendValueSet(s, open_start_ns_ / kNsPerSecond, interval_s_, out);
  closed_end_ns_ = open_end_ns_;
  open_end_ns_ = kNone;
  count_ = 0;
}

void IntervalAccumulator::FlushIfDue(ZbxTime now, std::vector<TimedValue>* out) {
  if (open_end_ns_ != kNone && ToNs(now) >= open_end_ns_) Close(out);
}

void IntervalAccumulator::Flush(std::vector<TimedValue>* out) {
  if (open_end_ns_ != kNone) Close(out);
}

CounterRate::CounterRate(int wrap_bits)
    : wrap_(wrap_bits == 32 || wrap_bits == 64 ? std::ldexp(1.0, wrap_bits) : 0) {}

bool CounterRate::Update(ZbxTime t, double counter, double* rate) {
  if (!std::isfinite(counter)) {
    Reset();
    return false;
  }
  const int64_t ns = ToNs(t);
  const bool had_prev = have_prev_;
  const int64_t prev_ns = prev_ns_;
  const double prev = prev_;
  have_prev_ = true;
  prev_ns_ = ns;
  prev_ = counter;
  if (!had_prev || ns <= prev_ns) return false;
  const double dt = static_cast<double>(ns - prev_ns) / static_cast<double>(kNsPerSecond);
  double delta = counter - prev;
  if (delta < 0) {
    // A wrap only when the counter was near the top of its width and is now near the bottom;
    // any other decrease is a reset (restart, overflow of an unknown width).
    const bool wrapped =
        wrap_ > 0 && prev < wrap_ && prev >= 0.75 * wrap_ && counter >= 0 && counter < 0.25 * wrap_;
    if (!wrapped) return false;
    delta = (wrap_ - prev) + counter;
  }
  *rate = delta / dt;
  return true;
}

void CounterRate::Reset() { have_prev_ = false; }

}  // namespace trapline
