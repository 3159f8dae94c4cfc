#pragma once
// Logging through spdlog. One line per event, greppable:
//   2026-11-21T03:20:53.123Z warn  [sender] zabbix 127.0.0.1:10051 unreachable: ...
// Components put their name in brackets first; key facts as key=value.

#include <spdlog/spdlog.h>

#include <chrono>
#include <string_view>

#include "common/status.h"

namespace trapline {

// Sets the process-wide format and level ("trace", "debug", "info", "warn", "error", "off").
// Logs go to stderr so that stdout stays free for data (`compress`, `--dry-run`).
Status InitLogging(std::string_view level);

// Rate-limits a repeated complaint (collectd's utils_complain): the first failure is logged
// at once, later ones at most once per interval with the count of suppressed ones, and the
// recovery once. Not thread-safe: one per loop.
class Complainer {
 public:
  explicit Complainer(std::chrono::seconds interval = std::chrono::seconds(60))
      : interval_(interval) {}

  // Returns true when this failure should be logged now; *suppressed is the number of
  // failures not logged since the last logged one.
  bool ShouldLog(std::chrono::steady_clock::time_point now, int* suppressed);
  // Returns true once after a series of failures: log the recovery.
  bool Recovered();

 private:
  std::chrono::seconds interval_;
  std::chrono::steady_clock::time_point last_;
  int failures_ = 0;
  int suppressed_ = 0;
};

}  // namespace trapline
