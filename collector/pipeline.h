#pragma once
// Turns one target's readings into the values the sender sends: counters become per-second
// rates (scaled as the metric declares), every series is compressed per interval into value
// sets, and each value gets its Zabbix host and item key. Text metrics are sent as they are,
// only when they change.
//
// Pure (no I/O): the caller passes the time of each tick. Thread: the owner's.

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "collector/value_set.h"
#include "collector/zbx_protocol.h"
#include "plugins/plugin.h"

namespace trapline {

class MetricPipeline {
 public:
  // `specs` must outlive the pipeline (plugins keep theirs in static storage).
  // `interval_s` > 0 replaces every metric's own compression interval.
  MetricPipeline(std::string host, std::string plugin,
                 const std::vector<plugins::MetricSpec>* specs, int interval_s = 0);

  // One tick's readings, taken at `t`. Appends the values of intervals that closed to *out.
  void AddTick(ZbxTime t, const std::vector<plugins::Reading>& readings,
               std::vector<SenderValue>* out);
  // Closes every interval that has ended by `now` (call once per tick, also without data, so
  // a target that went silent still sends its last interval).
  void FlushIfDue(ZbxTime now, std::vector<SenderValue>* out);
  // Closes everything now (shutdown).
  void Flush(std::vector<SenderValue>* out);
  // After a reconnect the counters start afresh: no rate across the gap.
  void ResetCounters();

  size_t series_count() const { return series_.size(); }
  // Readings whose metric the plugin does not declare (a plugin bug), counted not sent.
  uint64_t unknown_readings() const { return unknown_readings_; }

 private:
  // Hot fields first: a tick touches spec, rate and acc of every series, and the series of one
  // pipeline lie side by side in one vector (a tick walks them in order), so that a collector
  // with a thousand targets reads each target's state as a stream, not by chasing pointers.
  struct Series {
    const plugins::MetricSpec* spec;
    CounterRate rate;
    IntervalAccumulator acc;
    std::string entity;
    std::string key;  // the Zabbix item key
    std::string last_text;
    bool has_text = false;
  };
  static constexpr uint32_t kNoSeries = UINT32_MAX;
  // The series of the reading at `position` in its tick (see by_position_), or null for an
  // undeclared metric. Valid until the next series is made.
  Series* Find(const plugins::Reading& r, size_t position);
  uint32_t FindSlow(const plugins::Reading& r);
  void Emit(const Series& s, const std::vector<TimedValue>& values, std::vector<SenderValue>* out);

  std::string host_;
  std::string plugin_;
  int interval_s_;
  std::unordered_map<std::string_view, const plugins::MetricSpec*> specs_;  // views of names
  std::vector<Series> series_;                      // in order of appearance
  std::unordered_map<std::string, uint32_t> by_key_;  // metric + '\0' + entity -> series_ index
  // A parser reports the same readings in the same order tick after tick: the series of the
  // reading at each position of the last tick is tried first, two short compares instead of
  // building a key and hashing it. kNoSeries where no series matched.
  std::vector<uint32_t> by_position_;
  std::string scratch_key_;
  std::vector<TimedValue> scratch_values_;
  uint64_t unknown_readings_ = 0;
};

}  // namespace trapline
