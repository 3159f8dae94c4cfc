#include "common/log.h"

#include <spdlog/sinks/stdout_sinks.h>

namespace trapline {

Status InitLogging(std::string_view level) {
  auto lvl = spdlog::level::from_str(std::string(level));
  if (lvl == spdlog::level::off && level != "off") {
    return Status::InvalidArgument("unknown log level '" + std::string(level) +
                                   "' (use trace, debug, info, warn, error or off)");
  }
  auto logger = spdlog::stderr_logger_st("trapline");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %-5l %v", spdlog::pattern_time_type::utc);
  spdlog::set_level(lvl);
  return Status::OK();
}

bool Complainer::ShouldLog(std::chrono::steady_clock::time_point now, int* suppressed) {
  ++failures_;
  if (failures_ == 1 || now - last_ >= interval_) {
    *suppressed = suppressed_;
    suppressed_ = 0;
    last_ = now;
    return true;
  }
  ++suppressed_;
  return false;
}

bool Complainer::Recovered() {
  bool was_failing = failures_ > 0;
  failures_ = 0;
  suppressed_ = 0;
  return was_failing;
}

}  // namespace trapline
