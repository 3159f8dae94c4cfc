#pragma once
// The on-disk spool: a FIFO of SenderValues that survives a restart, used when Zabbix cannot
// take values as fast as they come (unreachable, or slow) and memory is full.
//
// Layout: a folder of segment files "<20-digit number>.spool", each holding one JSON object
// per line (the sender's own encoding), plus "head" (the first undelivered position, written
// atomically). Reading hands out positions; Commit(pos) marks everything before pos delivered.
// Delivery is at-least-once: values handed out but not committed before a crash are read
// again; they keep their clock/ns, and Zabbix's history primary key (itemid, clock, ns) makes
// the repeat a no-op.
//
// When the folder would grow past max_bytes, the oldest segments are dropped whole and the
// values in them counted as dropped. Single-threaded: one loop owns a Spool.

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "collector/zbx_protocol.h"
#include "common/status.h"

namespace trapline {

struct SpoolOptions {
  std::string dir;
  uint64_t max_bytes = 1ull << 30;
  uint64_t segment_bytes = 4ull << 20;
  bool fsync = true;  // fsync after each append and commit
};

struct SpoolPosition {
  uint64_t segment = 0;
  uint64_t offset = 0;  // byte offset in the segment
  uint64_t index = 0;   // values before `offset` in the segment
  friend auto operator<=>(const SpoolPosition&, const SpoolPosition&) = default;
};

class Spool {
 public:
  // Creates the folder if needed, locks it (one process per spool folder) and recovers what
  // an earlier process left: the head, the values after it, a torn last line (truncated).
  // Errors name the path.
  static Result<std::unique_ptr<Spool>> Open(SpoolOptions options);
  ~Spool();

  // Appends at the tail, in order.
  Status Append(std::span<const SenderValue> values);
  // Puts values before everything else (a new segment ahead of the head): for values that
  // were taken from memory and must be replayed before the spool's older content.
  Status Prepend(std::span<const SenderValue> values);

  // Reads up to `max` values after the read cursor into *out and advances the cursor; *end is
  // the position after them. Returns the number read (0: nothing unread).
  Result<size_t> Read(size_t max, std::vector<SenderValue>* out, SpoolPosition* end);
  // Everything before `end` is delivered. Positions at or before the head are ignored.
  Status Commit(SpoolPosition end);
  // Moves the read cursor back to the head: what was read but not committed is read again.
  void Rewind();

  uint64_t pending_values() const { return ValuesFrom(head_); }  // not yet committed
  uint64_t unread_values() const { return ValuesFrom(cursor_); }  // not yet handed out
  uint64_t bytes() const { return bytes_; }
  uint64_t dropped_values() const { return dropped_values_; }
  uint64_t corrupt_lines() const { return corrupt_lines_; }
  const std::string& dir() const { return options_.dir; }

 private:
  explicit Spool(SpoolOptions options);
  struct Segment {
    uint64_t bytes = 0;
    uint64_t values = 0;
  };
  std::string SegmentPath(uint64_t n) const;
  Status Recover();
  Status WriteHead();
  Status WriteSegment(uint64_t n, const std::string& data, bool append);
  Status EnforceCap();
  Status DropSegment(uint64_t n);
  uint64_t ValuesFrom(SpoolPosition pos) const;

  SpoolOptions options_;
  std::map<uint64_t, Segment> segments_;  // the live segments, oldest first
  SpoolPosition head_;    // first undelivered value
  SpoolPosition cursor_;  // next value to hand out
  uint64_t bytes_ = 0;
  int lock_fd_ = -1;
  uint64_t dropped_values_ = 0;
  uint64_t corrupt_lines_ = 0;
};

}  // namespace trapline
