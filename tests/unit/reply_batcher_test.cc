// ReplyBatcher and the tick counts it watches, with a target kind whose "server" is a timer.
#include <doctest/doctest.h>

#include <memory>
#include <vector>

#include "collector/collector.h"
#include "collector/target.h"
#include "common/uv.h"

namespace trapline {
namespace {

// Connects at once; each tick is answered `reply_ms` later (never if reply_ms < 0).
class TimerTarget : public TargetBase {
 public:
  TimerTarget(uv_loop_t* loop, int reply_ms, int* delivered)
      : TargetBase(loop, Config(), nullptr), reply_(loop), reply_ms_(reply_ms), delivered_(delivered) {}

 protected:
  void Connect() override { Connected(); }
  void Tick() override {
    if (reply_ms_ < 0) return;
    reply_.Start(static_cast<uint64_t>(reply_ms_), 0, [this] {
      ++*delivered_;
      Deliver({});
    });
  }
  void Disconnect() override { reply_.Stop(); }

 private:
  static TargetConfig Config() {
    TargetConfig c;
    c.host = "t";
    c.plugin = "test";
    c.period_s = 0.2;
    return c;
  }
  Timer reply_;
  int reply_ms_;
  int* delivered_;
};

struct Run {
  uint64_t pauses = 0;
  int delivered = 0;
  uint64_t in_flight_at_end = 0;
};

// `answering` targets answer after 1-5 ms, `silent` ones never; runs the loop for `ms`.
Run RunTargets(double window_ms, int answering, int silent, uint64_t ms) {
  Loop loop;
  Run run;
  uint64_t in_flight_before = TargetBase::ThreadTickCounts().in_flight;
  {
    ReplyBatcher batcher(loop.get(), window_ms);
    std::vector<std::unique_ptr<TimerTarget>> targets;
    for (int i = 0; i < answering + silent; ++i) {
      targets.push_back(std::make_unique<TimerTarget>(loop.get(), i < answering ? 1 + i % 5 : -1,
                                                      &run.delivered));
      targets.back()->Start();
    }
    Timer stop(loop.get());
    stop.Start(ms, 0, [&] {
      run.in_flight_at_end = TargetBase::ThreadTickCounts().in_flight - in_flight_before;
      targets.clear();
      loop.Stop();
    });
    loop.Run();
    run.pauses = batcher.pauses();
  }
  loop.Run();  // the closed handles' callbacks
  return run;
}

TEST_CASE("ReplyBatcher pauses between replies of a slot, never when off") {
  Run on = RunTargets(2, 20, 0, 1000);
  CHECK(on.delivered > 20);
  CHECK(on.pauses > 0);
  Run off = RunTargets(0, 20, 0, 1000);
  CHECK(off.delivered > 20);
  CHECK(off.pauses == 0);
}

TEST_CASE("ReplyBatcher: targets that never answer do not make the loop pause again and again") {
  // After the answering targets' replies, only silent ticks are in flight: no progress, no pause.
  Run r = RunTargets(2, 1, 10, 1000);
  CHECK(r.in_flight_at_end >= 10);
  // At most a pause per answered reply (~5 ticks of the one answering target per second).
  CHECK(r.pauses <= static_cast<uint64_t>(r.delivered));
}

TEST_CASE("tick counts: a destroyed target's tick in flight ends") {
  uint64_t in_flight = TargetBase::ThreadTickCounts().in_flight;
  RunTargets(0, 0, 5, 500);  // every tick is in flight when the targets are destroyed
  CHECK(TargetBase::ThreadTickCounts().in_flight == in_flight);
}

}  // namespace
}  // namespace trapline
