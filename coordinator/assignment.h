#pragma once
// The pure core of task assignment: which collector runs which task. No I/O, no clock, no
// randomness: the coordinator reads collectors and tasks from the registry, calls
// ComputeAssignment(), writes the placements back and hands the moved tasks over.
//
// What it promises (issue 5):
//   * Proportional: each active collector's load (sum of its tasks' costs) ends within
//     `tolerance` (±10%) of its weight share, when task granularity allows.
//   * Sticky: a task moves only when it must (its collector left, is unknown or sheds load) or
//     when a collector is outside the band. When a collector leaves, exactly its tasks move;
//     when one joins, it is filled up to its share from the others' excess and no further.
//   * Shedding: an overloaded collector gives away `shed_fraction` of its cost, largest tasks
//     first, to the collectors with the most headroom; it receives nothing new.
//   * Deterministic: the output depends only on the set of collectors and tasks, not on the
//     order they are passed in (everything is sorted by id; ties break on ids).
//   * Stable: running again on its own output moves nothing, when every active collector ended
//     within the band and none is overloaded (an overloaded collector sheds on every call: the
//     caller decides how often a collector counts as overloaded).
//
// Cost: O(n log n) in the number of tasks. 100,000 tasks on 100 collectors: about 30 ms for
// the initial assignment, under 15 ms for a rebalance (bench/assignment_bench.cc).

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "common/status.h"

namespace trapline::coordinator {

using CollectorId = int64_t;
using TaskId = int64_t;

enum class CollectorState {
  kActive,      // takes its weight share
  kDraining,    // leaving (or left): all its tasks move, it receives none
  kOverloaded,  // event-loop lag too high: keeps most tasks, sheds `shed_fraction`, gets none
};

struct CollectorInfo {
  CollectorId id = 0;
  double weight = 1;  // REQUIRES: finite and > 0 (also for draining collectors)
  CollectorState state = CollectorState::kActive;
  // Only read when state == kOverloaded. REQUIRES then: 0 < shed_fraction <= 1.
  double shed_fraction = 0;
};

struct TaskInfo {
  TaskId id = 0;
  double cost = 1;  // REQUIRES: finite and > 0
  // Where the task runs now; nullopt for a new task. A collector that is not among the
  // collectors passed in counts as none (the task is "orphaned" and placed like a new one).
  std::optional<CollectorId> current;
};

struct AssignmentOptions {
  // Half-width of the band around each active collector's share, as a fraction of the share.
  // REQUIRES: 0 < tolerance < 1.
  double tolerance = 0.10;
};

struct TaskPlacement {
  TaskId task = 0;
  std::optional<CollectorId> collector;  // nullopt: unassigned (no active collector)
};

// One hand-over the coordinator has to carry out: `from` stops the task, then `to` starts it.
struct TaskMove {
  TaskId task = 0;
  std::optional<CollectorId> from;  // nullopt: new, or its collector is unknown (orphaned)
  std::optional<CollectorId> to;    // nullopt: nobody can take it (no active collector)
};

struct CollectorLoad {
  CollectorId id = 0;
  CollectorState state = CollectorState::kActive;
  double weight = 0;
  double load = 0;       // sum of the costs of its tasks after this assignment
  double target = 0;     // its share: weight-proportional for active, kept load for overloaded
  double deviation = 0;  // (load - target) / target; 0 when target is 0
  size_t tasks = 0;
};

struct Assignment {
  std::vector<TaskPlacement> placements;  // one per task, sorted by task id
  std::vector<TaskMove> moves;            // tasks whose collector changed, sorted by task id
  std::vector<TaskId> unassigned;         // tasks with no collector afterwards, sorted
  std::vector<TaskId> orphaned;           // tasks whose `current` was unknown, sorted
  std::vector<CollectorLoad> loads;       // one per collector, sorted by collector id
  double max_abs_deviation = 0;           // over active collectors
  // Overloaded collectors kept all their tasks because no active collector could take any.
  bool shed_skipped = false;
};

// Computes where every task should run, moving as little as the promises above allow.
// Returns InvalidArgument naming the item for: a weight or cost that is not finite and > 0, a
// shed_fraction outside (0, 1] on an overloaded collector, a tolerance outside (0, 1), or a
// duplicate collector or task id. No active collector is not an error: tasks of draining or
// unknown collectors and new tasks end unassigned (listed in `unassigned`), and overloaded
// collectors keep theirs. A task bigger than a share is placed whole; the deviation says so.
// Thread-safe: a pure function of its arguments.
Result<Assignment> ComputeAssignment(std::span<const CollectorInfo> collectors,
                                     std::span<const TaskInfo> tasks,
                                     const AssignmentOptions& options = {});

}  // namespace trapline::coordinator
