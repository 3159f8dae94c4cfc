#include "coordinator/assignment.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <queue>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>

// How it works, in order (every step iterates in id order, so the result is deterministic):
//   1. Tasks stay where they are, except those of draining or unknown collectors and new
//      ones: they go to a pool.
//   2. Each overloaded collector puts `shed_fraction` of its cost into the pool, largest tasks
//      that fit first (at least one task).
//   3. Targets: the cost the overloaded collectors keep is theirs; the rest is shared among
//      active collectors by weight.
//   4. The pool is placed largest task first, each on the collector with the most headroom
//      (target - load): longest-processing-time first, which ends within one task of target.
//   5. Only if an active collector is still outside its band (a collector joined, a weight
//      changed, coarse tasks): each one below its band is filled up to its target from the
//      excess of those above their target, largest fitting tasks first, so that a joiner
//      takes its share and no more, and donors stay at or above their targets. Then each one
//      above its band gives its excess, the same way, to those below their targets.
//   6. Only if one is still outside its band: single moves between the worst collector and a
//      partner, each lowering P = sum((load - target)^2 / target), until every collector is
//      back within half the band or no such move exists. P strictly falls, so this ends; and
//      since a move of step 5 would also lower P, the result is a fixed point: a second call
//      on it has nothing left to do.

namespace trapline::coordinator {
namespace {

constexpr int kNone = -1;

struct Col {
  CollectorId id;
  double weight;
  CollectorState state;
  double shed_fraction;
  double load = 0;
  double target = 0;
  // Its task indices, cost descending then id ascending: in step 2 for an overloaded
  // collector, and for all of them again before step 5.
  std::vector<int> by_cost;
  // Step 5 only: next[i] leads to the first entry at or after i still to be given away
  // (union-find with path halving, so taking tasks out of the middle stays cheap).
  std::vector<int> next;
};

struct Task {
  TaskId id;
  double cost;
  int origin;  // collector index it ran on before, kNone if none or unknown
  int owner;   // collector index now, kNone while in the pool
  bool orphaned;
};

bool ValidPositive(double x) { return std::isfinite(x) && x > 0; }

std::string Num(double x) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", x);
  return buf;
}

double Deviation(const Col& c) { return c.target > 0 ? (c.load - c.target) / c.target : 0; }

class Assigner {
 public:
  Assigner(std::vector<Col> cols, std::vector<Task> tasks, double tolerance)
      : cols_(std::move(cols)), tasks_(std::move(tasks)), tol_(tolerance) {}

  Assignment Run() {
    Assignment out;
    double total = 0;
    for (const Task& t : tasks_) total += t.cost;
    eps_ = 1e-9 * std::max(1.0, total);

    LoadCurrent();
    const bool any_active = std::any_of(cols_.begin(), cols_.end(), [](const Col& c) {
      return c.state == CollectorState::kActive;
    });
    if (any_active) {
      Shed();
    } else {
      for (const Col& c : cols_) {
        if (c.state == CollectorState::kOverloaded && !c.by_cost.empty()) out.shed_skipped = true;
      }
    }
    SetTargets(total);
    if (any_active) {
      PlacePool();
      if (AnyOutOfBand()) {
        RebuildLists();
        FillFromExcess();
        DrainExcess();
        if (AnyOutOfBand()) {
          BuildSets();
          ImproveWhileOutOfBand();
        }
      }
    }
    Finish(&out);
    return out;
  }

 private:
  bool Active(int c) const { return cols_[c].state == CollectorState::kActive; }

  void Unassign(int t) {
    Task& task = tasks_[t];
    cols_[task.owner].load -= task.cost;
    task.owner = kNone;
  }

  // Task indices sorted by cost descending, then index (= id) ascending. Sorts (cost, index)
  // pairs rather than indices: comparing through tasks_ costs a cache miss per comparison.
  std::vector<int> SortedByCost(const std::vector<int>& ts) const {
    std::vector<std::pair<double, int>> keyed;
    keyed.reserve(ts.size());
    for (int t : ts) keyed.emplace_back(-tasks_[t].cost, t);
    std::sort(keyed.begin(), keyed.end());
    std::vector<int> out;
    out.reserve(ts.size());
    for (const auto& [neg_cost, t] : keyed) out.push_back(t);
    return out;
  }

  // Step 1.
  void LoadCurrent() {
    for (size_t t = 0; t < tasks_.size(); ++t) {
      Task& task = tasks_[t];
      if (task.origin == kNone || cols_[task.origin].state == CollectorState::kDraining) {
        continue;  // in the pool (owner kNone)
      }
      task.owner = task.origin;
      cols_[task.owner].load += task.cost;
      if (cols_[task.owner].state == CollectorState::kOverloaded) {
        cols_[task.owner].by_cost.push_back(static_cast<int>(t));
      }
    }
  }

  // Step 2.
  void Shed() {
    for (Col& c : cols_) {
      if (c.state != CollectorState::kOverloaded || c.by_cost.empty()) continue;
      c.by_cost = SortedByCost(c.by_cost);
      double remaining = c.shed_fraction * c.load;
      bool shed_any = false;
      for (int t : c.by_cost) {
        if (tasks_[t].cost <= remaining + eps_) {
          remaining -= tasks_[t].cost;
          Unassign(t);
          shed_any = true;
        }
      }
      if (!shed_any) Unassign(c.by_cost.back());  // the fraction is smaller than any task
    }
  }

  // Step 3.
  void SetTargets(double total) {
    double kept = 0;
    double weights = 0;
    for (Col& c : cols_) {
      if (c.state == CollectorState::kOverloaded) {
        c.target = c.load;
        kept += c.load;
      } else if (c.state == CollectorState::kActive) {
        weights += c.weight;
      }
    }
    const double shared = std::max(0.0, total - kept);
    for (Col& c : cols_) {
      if (c.state == CollectorState::kActive) c.target = shared * c.weight / weights;
    }
  }

  bool AboveBand(const Col& c) const { return c.load > c.target * (1 + tol_) + eps_; }
  bool BelowBand(const Col& c) const { return c.load < c.target * (1 - tol_) - eps_; }

  // Step 4.
  void PlacePool() {
    // Most headroom first; equal headroom: lowest collector id.
    using Entry = std::pair<double, int>;
    auto worse = [](const Entry& a, const Entry& b) {
      if (a.first != b.first) return a.first < b.first;
      return a.second > b.second;
    };
    std::priority_queue<Entry, std::vector<Entry>, decltype(worse)> heap(worse);
    for (size_t ci = 0; ci < cols_.size(); ++ci) {
      if (Active(static_cast<int>(ci))) {
        heap.emplace(cols_[ci].target - cols_[ci].load, static_cast<int>(ci));
      }
    }
    std::vector<int> pool;
    for (size_t t = 0; t < tasks_.size(); ++t) {
      if (tasks_[t].owner == kNone) pool.push_back(static_cast<int>(t));
    }
    for (int t : SortedByCost(pool)) {
      const int c = heap.top().second;
      heap.pop();
      tasks_[t].owner = c;
      cols_[c].load += tasks_[t].cost;
      heap.emplace(cols_[c].target - cols_[c].load, c);
    }
  }

  bool AnyOutOfBand() const {
    return std::any_of(cols_.begin(), cols_.end(), [&](const Col& c) {
      return c.state == CollectorState::kActive && (AboveBand(c) || BelowBand(c));
    });
  }

  void RebuildLists() {
    for (Col& c : cols_) c.by_cost.clear();
    for (size_t t = 0; t < tasks_.size(); ++t) {
      if (tasks_[t].owner != kNone) cols_[tasks_[t].owner].by_cost.push_back(static_cast<int>(t));
    }
    for (Col& c : cols_) {
      c.by_cost = SortedByCost(c.by_cost);
      c.next.resize(c.by_cost.size() + 1);
      for (size_t i = 0; i < c.next.size(); ++i) c.next[i] = static_cast<int>(i);
    }
  }

  // Takes from collector c's list the task with the largest cost <= limit (lowest id among
  // equals) and returns it, or kNone. Valid while c only loses tasks after RebuildLists(): in
  // step 5 a donor is above its target and a receiver ends at or below its own, so no
  // collector is both.
  int TakeLargestAtMost(int c, double limit) {
    Col& col = cols_[c];
    const auto first = std::partition_point(col.by_cost.begin(), col.by_cost.end(),
                                            [&](int t) { return tasks_[t].cost > limit + eps_; });
    int i = static_cast<int>(first - col.by_cost.begin());
    while (col.next[i] != i) {
      col.next[i] = col.next[col.next[i]];
      i = col.next[i];
    }
    if (i == static_cast<int>(col.by_cost.size())) return kNone;
    col.next[i] = i + 1;
    return col.by_cost[i];
  }

  // Moves tasks from d to r, largest that fit first, while both stay on their side of their
  // targets. Each such move lowers P (see step 6).
  void GiveWhileFits(int d, int r) {
    while (true) {
      const double need =
          std::min(cols_[r].target - cols_[r].load, cols_[d].load - cols_[d].target);
      if (need <= eps_) return;
      const int t = TakeLargestAtMost(d, need);
      if (t == kNone) return;
      Move(t, r);
    }
  }

  // Active collectors matching `pick`, by deviation (ascending, or descending), then index.
  template <typename Pick>
  std::vector<int> ActiveWhere(Pick pick, bool ascending) const {
    std::vector<int> out;
    for (size_t ci = 0; ci < cols_.size(); ++ci) {
      if (Active(static_cast<int>(ci)) && pick(cols_[ci])) out.push_back(static_cast<int>(ci));
    }
    std::sort(out.begin(), out.end(), [&](int a, int b) {
      const double da = Deviation(cols_[a]), db = Deviation(cols_[b]);
      if (da != db) return ascending ? da < db : da > db;
      return a < b;
    });
    return out;
  }

  // Step 5, for those below their band (a joiner): filled from the most loaded first.
  void FillFromExcess() {
    for (int r : ActiveWhere([&](const Col& c) { return BelowBand(c); }, true)) {
      for (int d : ActiveWhere([&](const Col& c) { return c.load > c.target + eps_; }, false)) {
        GiveWhileFits(d, r);
        if (cols_[r].target - cols_[r].load <= eps_) break;
      }
    }
  }

  // Step 5, for those above their band (a lowered weight): drained to the least loaded first.
  void DrainExcess() {
    for (int d : ActiveWhere([&](const Col& c) { return AboveBand(c); }, false)) {
      for (int r : ActiveWhere([&](const Col& c) { return c.load < c.target - eps_; }, true)) {
        GiveWhileFits(d, r);
        if (cols_[d].load - cols_[d].target <= eps_) break;
      }
    }
  }

  // Ordered by (cost, task index): lookups by cost in O(log n) while tasks move both ways.
  using CostSet = std::set<std::pair<double, int>>;

  void BuildSets() {
    sets_.assign(cols_.size(), CostSet());
    for (size_t t = 0; t < tasks_.size(); ++t) {
      const int c = tasks_[t].owner;
      if (c != kNone && Active(c)) sets_[c].emplace(tasks_[t].cost, static_cast<int>(t));
    }
  }

  void Move(int t, int to) {
    Task& task = tasks_[t];
    const int from = task.owner;
    if (!sets_.empty()) {
      sets_[from].erase({task.cost, t});
      sets_[to].emplace(task.cost, t);
    }
    cols_[from].load -= task.cost;
    cols_[to].load += task.cost;
    task.owner = to;
  }

  // Step 6. Moving cost x from d to r changes P by x * (x * k - 2 * gap), with
  // k = 1/t_r + 1/t_d and gap = dev_d - dev_r: it falls for 0 < x < 2 * gap / k, most at
  // x = gap / k. So with a given partner, some task lowers P iff one of the two tasks closest
  // to gap / k (the largest below, the smallest above) does: trying those two is exhaustive.
  void ImproveWhileOutOfBand() {
    // Out of band starts the work on a collector; back within half the band ends it, so that
    // it does not sit at the edge of its band; a collector with no move that lowers P is stuck
    // until some other move changes the picture.
    std::vector<bool> engaged(cols_.size(), false);
    std::vector<bool> stuck(cols_.size(), false);
    std::vector<int> partners;
    const size_t max_moves = 2 * tasks_.size() + cols_.size();  // a safety net only
    for (size_t moves = 0; moves < max_moves;) {
      int worst = kNone;
      double worst_dev = 0;
      for (size_t ci = 0; ci < cols_.size(); ++ci) {
        const Col& c = cols_[ci];
        if (c.state != CollectorState::kActive || stuck[ci] || c.target <= 0) continue;
        const double dev = std::abs(Deviation(c));
        const bool out = AboveBand(c) || BelowBand(c);
        if (!out && !(engaged[ci] && dev > tol_ / 2)) continue;
        if (worst == kNone || dev > worst_dev) {
          worst = static_cast<int>(ci);
          worst_dev = dev;
        }
      }
      if (worst == kNone) return;
      engaged[worst] = true;
      const bool giving = Deviation(cols_[worst]) > 0;
      // Partners: the least loaded first when giving, the most loaded first when receiving.
      partners.clear();
      for (size_t ci = 0; ci < cols_.size(); ++ci) {
        const int c = static_cast<int>(ci);
        if (c == worst || !Active(c) || cols_[c].target <= 0) continue;
        if (!giving && sets_[c].empty()) continue;
        partners.push_back(c);
      }
      std::sort(partners.begin(), partners.end(), [&](int a, int b) {
        const double da = Deviation(cols_[a]), db = Deviation(cols_[b]);
        if (da != db) return giving ? da < db : da > db;
        return a < b;
      });
      bool moved = false;
      for (int partner : partners) {
        const int d = giving ? worst : partner;
        const int r = giving ? partner : worst;
        const double gap = Deviation(cols_[d]) - Deviation(cols_[r]);
        if (gap <= 0) break;  // partners are sorted: no later one has a larger gap
        const double k = 1 / cols_[r].target + 1 / cols_[d].target;
        const double best = gap / k;
        const CostSet& s = sets_[d];
        auto it = s.lower_bound({best, 0});
        int t = kNone;
        if (it != s.end()) t = it->second;
        if (it != s.begin()) {
          const int below = std::prev(it)->second;
          if (t == kNone || best - tasks_[below].cost <= tasks_[t].cost - best) t = below;
        }
        if (t == kNone) continue;
        const double x = tasks_[t].cost;
        if (x * k < 2 * gap * (1 - 1e-9)) {
          Move(t, r);
          moved = true;
          break;
        }
      }
      if (moved) {
        ++moves;
        std::fill(stuck.begin(), stuck.end(), false);
      } else {
        stuck[worst] = true;
      }
    }
  }

  void Finish(Assignment* out) {
    std::vector<size_t> counts(cols_.size(), 0);
    out->placements.reserve(tasks_.size());
    for (const Task& t : tasks_) {
      // Pool leftovers (no active collector) stay unassigned.
      std::optional<CollectorId> to;
      if (t.owner != kNone) {
        to = cols_[t.owner].id;
        ++counts[t.owner];
      } else {
        out->unassigned.push_back(t.id);
      }
      out->placements.push_back({t.id, to});
      if (t.orphaned) out->orphaned.push_back(t.id);
      if (t.owner != t.origin) {
        std::optional<CollectorId> from;
        if (t.origin != kNone) from = cols_[t.origin].id;
        out->moves.push_back({t.id, from, to});
      }
    }
    out->loads.reserve(cols_.size());
    for (size_t ci = 0; ci < cols_.size(); ++ci) {
      const Col& c = cols_[ci];
      const double dev = Deviation(c);
      out->loads.push_back({c.id, c.state, c.weight, c.load, c.target, dev, counts[ci]});
      if (c.state == CollectorState::kActive) {
        out->max_abs_deviation = std::max(out->max_abs_deviation, std::abs(dev));
      }
    }
  }

  std::vector<Col> cols_;
  std::vector<Task> tasks_;
  double tol_;
  double eps_ = 0;
  std::vector<CostSet> sets_;
};

}  // namespace

Result<Assignment> ComputeAssignment(std::span<const CollectorInfo> collectors,
                                     std::span<const TaskInfo> tasks,
                                     const AssignmentOptions& options) {
  if (!(options.tolerance > 0 && options.tolerance < 1)) {
    return Status::InvalidArgument("assignment tolerance " + Num(options.tolerance) +
                                   " must be in (0, 1)");
  }
  // Sorted first, so that which error is reported does not depend on the input order either.
  std::vector<CollectorInfo> sorted_cols(collectors.begin(), collectors.end());
  std::sort(sorted_cols.begin(), sorted_cols.end(),
            [](const CollectorInfo& a, const CollectorInfo& b) { return a.id < b.id; });
  std::vector<Col> cols;
  cols.reserve(sorted_cols.size());
  std::unordered_map<CollectorId, int> index;
  index.reserve(sorted_cols.size());
  for (size_t i = 0; i < sorted_cols.size(); ++i) {
    const CollectorInfo& c = sorted_cols[i];
    const std::string name = "collector " + std::to_string(c.id);
    if (i > 0 && sorted_cols[i - 1].id == c.id) {
      return Status::InvalidArgument(name + " is listed twice");
    }
    if (!ValidPositive(c.weight)) {
      return Status::InvalidArgument(name + ": weight " + Num(c.weight) + " must be > 0");
    }
    if (c.state == CollectorState::kOverloaded && !(c.shed_fraction > 0 && c.shed_fraction <= 1)) {
      return Status::InvalidArgument(name + ": shed fraction " + Num(c.shed_fraction) +
                                     " must be in (0, 1]");
    }
    index.emplace(c.id, static_cast<int>(i));
    cols.push_back({c.id, c.weight, c.state, c.shed_fraction, 0, 0, {}, {}});
  }

  std::vector<std::pair<TaskId, size_t>> sorted_tasks;  // (id, position in `tasks`)
  sorted_tasks.reserve(tasks.size());
  for (size_t i = 0; i < tasks.size(); ++i) sorted_tasks.emplace_back(tasks[i].id, i);
  std::sort(sorted_tasks.begin(), sorted_tasks.end());
  std::vector<Task> ts;
  ts.reserve(sorted_tasks.size());
  for (size_t i = 0; i < sorted_tasks.size(); ++i) {
    const TaskInfo& t = tasks[sorted_tasks[i].second];
    if (i > 0 && sorted_tasks[i - 1].first == t.id) {
      return Status::InvalidArgument("task " + std::to_string(t.id) + " is listed twice");
    }
    if (!ValidPositive(t.cost)) {
      return Status::InvalidArgument("task " + std::to_string(t.id) + ": cost " + Num(t.cost) +
                                     " must be > 0");
    }
    int origin = kNone;
    bool orphaned = false;
    if (t.current) {
      auto it = index.find(*t.current);
      if (it != index.end()) {
        origin = it->second;
      } else {
        orphaned = true;
      }
    }
    ts.push_back({t.id, t.cost, origin, kNone, orphaned});
  }

  return Assigner(std::move(cols), std::move(ts), options.tolerance).Run();
}

}  // namespace trapline::coordinator
