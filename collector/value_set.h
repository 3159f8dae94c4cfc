#pragma once
// Value-set compression: the samples of one metric in one interval [k*S, (k+1)*S) become the
// fewest values whose min, max and mean equal the interval's. Zabbix keeps min/avg/max per graph
// pixel and per trend hour, so those three numbers are what must survive; everything else is
// noise we need not store.
//
// Minimality: with m = min, M = max, mu = mean and t = (mu - m) / (M - m),
//   m == M          -> 1 value,
//   otherwise k values {m, M, k-2 fill values in [m, M]} exist iff 1/k <= t <= 1 - 1/k,
//   so k = max(2, ceil(1 / min(t, 1 - t))), never more than the number of samples (the samples
//   themselves are such a set).
// Rounding: t is computed, not exact, so the count is the smallest k whose fill value lies in
// [m, M] to within a tolerance that moves the mean by at most 1e-10 * (M - m) once the fill is
// clamped. A t that is 1/3 on paper gives 3 values, not 4; in exact arithmetic over the
// samples' doubles the count can thus be one less than the formula's when t is within ~1e-10
// of 1/k (samples 0.001 x4, 1.001, 2.001 give 4 values, not 5), never more.
//
// Exactness: min and max are the sampled doubles, bit for bit. The mean of the values equals
// the interval's to within
//   1e-9 * (M - m) + ulp(max(|m|, |M|)) / count
// The second term is what doubles allow at all: when the range spans fewer than ~1e9 ulps of
// the values' magnitude (1e12 + noise of 1000: ulp 1.2e-4), no set of doubles has a mean
// within 1e-9 of the range; the fills are rounded up or down so that their sum is the nearest
// one can get.
//
// Pure and single-threaded: no I/O, no clocks; the caller passes sample times.

#include <cstdint>
#include <vector>

namespace trapline {

// A point in time as Zabbix stores it: seconds and nanoseconds.
struct ZbxTime {
  int64_t clock = 0;
  int32_t ns = 0;  // [0, 1e9)
  friend bool operator==(const ZbxTime&, const ZbxTime&) = default;
  friend auto operator<=>(const ZbxTime&, const ZbxTime&) = default;
};

struct TimedValue {
  ZbxTime time;
  double value = 0;
};

// Largest magnitude a sample may have. Sums relative to the first sample then stay finite for
// any realistic sample count, and max - min never overflows.
inline constexpr double kMaxAbsValue = 1e300;

// What an interval's samples reduce to (exact statistics of the samples).
struct IntervalStats {
  int64_t count = 0;
  double min = 0;
  double max = 0;
  double mean = 0;
  // Low part of the mean: the exact mean is mean + mean_lo (a double-double). A double alone
  // cannot hold the mean of 1e12 + noise to 1e-9 of a range of 1; leave 0 when unknown.
  double mean_lo = 0;
  ZbxTime min_time;  // when the (first) minimum was sampled
  ZbxTime max_time;  // when the (first) maximum was sampled
  // When the first and the last sample were taken: fill values are spread between them, so no
  // value is shown where the interval had no samples. If they do not lie inside the interval
  // (e.g. left at their defaults), the fills are spread over the whole interval.
  ZbxTime first_time;
  ZbxTime last_time;
};

// The smallest number of values that reproduces `s` (see the header comment).
// REQUIRES: s.count >= 1, s.min <= s.mean <= s.max, |s.min|, |s.max| <= kMaxAbsValue.
int MinimalValueCount(const IntervalStats& s);

// Builds the value set of one interval: MinimalValueCount(s) values, sorted by time, with
// distinct times inside [interval_start, interval_start + interval_s), the min and the max at
// the moments they were sampled and the k - 2 fill values evenly spread between the first and
// the last sample (over the whole interval when first_time/last_time are not inside it or too
// close together), each nudged by a nanosecond or two where it would meet the min's or the
// max's time. Should the min and the max have been sampled at the very same moment (equal
// sample times are allowed), the max goes to the next nanosecond (to the previous one at the
// interval's last nanosecond).
// REQUIRES: as MinimalValueCount; interval_s >= 1; min_time/max_time inside the interval.
std::vector<TimedValue> BuildValueSet(const IntervalStats& s, int64_t interval_start,
                                      int64_t interval_s);

// Accumulates one metric's samples and emits a value set each time an interval closes.
// Add() on a sample in the open interval is the hot path: a few compares, a compensated
// (Neumaier) addition relative to the interval's first sample, and the min/max updates.
class IntervalAccumulator {
 public:
  // REQUIRES: interval_s >= 1.
  explicit IntervalAccumulator(int64_t interval_s);

  // Adds a sample. A sample in a later interval first closes the current one and appends its
  // value set to *out. Samples must come in non-decreasing time order (equal times are fine).
  // Ignored, returning false: a sample older than the last one added, a sample in an interval
  // that is already closed (by a later sample, FlushIfDue or Flush), and a value that is not
  // finite or exceeds kMaxAbsValue in magnitude.
  // REQUIRES: t.ns in [0, 1e9), |t.clock| < 9e9 (times are kept as int64 nanoseconds).
  bool Add(ZbxTime t, double v, std::vector<TimedValue>* out);
  // Closes the current interval if `now` is at or past its end (appending its value set);
  // an interval with no samples sends nothing.
  void FlushIfDue(ZbxTime now, std::vector<TimedValue>* out);
  // Closes the current interval now, whatever the time (shutdown). Later samples that fall in
  // the interval just closed are ignored.
  void Flush(std::vector<TimedValue>* out);

  int64_t interval_s() const { return interval_s_; }

 private:
  bool AddSlow(int64_t t_ns, double v, std::vector<TimedValue>* out);
  void Close(std::vector<TimedValue>* out);

  int64_t interval_s_;
  int64_t interval_ns_;
  // The open interval is [open_start_ns_, open_end_ns_); with none open, open_end_ns_ is
  // INT64_MIN so that the hot path's range check fails and Add() takes the slow path.
  int64_t open_start_ns_ = 0;
  int64_t open_end_ns_;
  int64_t closed_end_ns_;  // samples before this fall in closed intervals
  int64_t last_ns_;        // the last sample accepted
  int64_t first_ns_ = 0;   // the open interval's first sample
  int64_t count_ = 0;
  double ref_ = 0;   // the open interval's first sample: sums are relative to it
  double sum_ = 0;   // sum of (v - ref_) ...
  double comp_ = 0;  // ... and its Neumaier compensation
  double min_ = 0;
  double max_ = 0;
  int64_t min_ns_ = 0;
  int64_t max_ns_ = 0;
};

// Turns a monotonic counter into per-second rates. A decrease is a reset (or a wrap that
// cannot be told from one): it gives no rate, so no false spike. `wrap_bits` (32 or 64; 0 =
// unknown) lets a decrease near the width's end count as a wrap: the previous value in the top
// quarter of [0, 2^bits) and the new one in the bottom quarter. The first sample after
// construction or Reset() gives no rate, and so does a sample whose time is not after the
// previous one's (dt <= 0); every sample, rated or not, is the reference for the next one.
// A counter value that is not finite gives no rate and acts as Reset().
class CounterRate {
 public:
  // Any wrap_bits other than 32 or 64 means unknown.
  explicit CounterRate(int wrap_bits = 0);
  // Returns true and sets *rate when a rate can be computed.
  bool Update(ZbxTime t, double counter, double* rate);
  // A reconnect: the next sample starts afresh.
  void Reset();

 private:
  double wrap_ = 0;  // 2^wrap_bits, 0 when unknown
  bool have_prev_ = false;
  int64_t prev_ns_ = 0;
  double prev_ = 0;
};

}  // namespace trapline
