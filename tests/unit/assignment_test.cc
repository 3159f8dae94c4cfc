#include "coordinator/assignment.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <vector>

namespace trapline::coordinator {
namespace {

std::vector<TaskInfo> RandomTasks(int n, uint64_t seed, double min_cost = 1, double max_cost = 10) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> cost(min_cost, max_cost);
  std::vector<TaskInfo> tasks;
  for (int i = 0; i < n; ++i) tasks.push_back({1000 + i, cost(rng), std::nullopt});
  return tasks;
}

std::vector<CollectorInfo> Weighted(const std::vector<double>& weights) {
  std::vector<CollectorInfo> cols;
  for (size_t i = 0; i < weights.size(); ++i) {
    cols.push_back({static_cast<CollectorId>(i + 1), weights[i], CollectorState::kActive, 0});
  }
  return cols;
}

Assignment MustAssign(const std::vector<CollectorInfo>& cols, const std::vector<TaskInfo>& tasks) {
  Result<Assignment> r = ComputeAssignment(cols, tasks);
  REQUIRE_MESSAGE(r.ok(), r.status().ToString());
  return std::move(r).value();
}

// The tasks as the registry would hold them after applying `a`.
std::vector<TaskInfo> Apply(std::vector<TaskInfo> tasks, const Assignment& a) {
  std::map<TaskId, std::optional<CollectorId>> where;
  for (const TaskPlacement& p : a.placements) where[p.task] = p.collector;
  for (TaskInfo& t : tasks) t.current = where.at(t.id);
  return tasks;
}

double TotalCost(const std::vector<TaskInfo>& tasks) {
  double total = 0;
  for (const TaskInfo& t : tasks) total += t.cost;
  return total;
}

// Checks the loads against weight shares from scratch rather than trusting `loads`.
void CheckShares(const std::vector<CollectorInfo>& cols, const std::vector<TaskInfo>& tasks,
                 const Assignment& a, double tolerance = 0.10) {
  std::map<CollectorId, double> load;
  std::map<TaskId, double> cost;
  for (const TaskInfo& t : tasks) cost[t.id] = t.cost;
  for (const TaskPlacement& p : a.placements) {
    REQUIRE(p.collector.has_value());
    load[*p.collector] += cost.at(p.task);
  }
  double weights = 0;
  for (const CollectorInfo& c : cols) {
    if (c.state == CollectorState::kActive) weights += c.weight;
  }
  const double total = TotalCost(tasks);
  for (const CollectorInfo& c : cols) {
    if (c.state != CollectorState::kActive) continue;
    const double share = total * c.weight / weights;
    CHECK_MESSAGE(std::abs(load[c.id] - share) <= tolerance * share,
                  "collector " << c.id << " load " << load[c.id] << " share " << share);
  }
}

TEST_CASE("weights 1, 2, 3: each load within 10% of its weight share") {
  const auto cols = Weighted({1, 2, 3});
  const auto tasks = RandomTasks(600, 1);
  const Assignment a = MustAssign(cols, tasks);
  CheckShares(cols, tasks, a);
  CHECK(a.max_abs_deviation <= 0.10);
  CHECK(a.moves.size() == tasks.size());  // every task is new
  CHECK(a.unassigned.empty());
  REQUIRE(a.loads.size() == 3);
  CHECK(a.loads[0].id == 1);
  CHECK(a.loads[2].load > a.loads[1].load);
  CHECK(a.loads[1].load > a.loads[0].load);
}

TEST_CASE("a collector that leaves: exactly its tasks move, to the others") {
  auto cols = Weighted({1, 2, 3, 4, 5, 1, 2, 3, 4, 5});
  auto tasks = Apply(RandomTasks(5000, 2), MustAssign(cols, RandomTasks(5000, 2)));
  std::vector<TaskId> on_leaver;
  for (const TaskInfo& t : tasks) {
    if (t.current == 4) on_leaver.push_back(t.id);
  }
  REQUIRE_FALSE(on_leaver.empty());

  SUBCASE("draining") {
    cols[3].state = CollectorState::kDraining;
    const Assignment a = MustAssign(cols, tasks);
    REQUIRE(a.moves.size() == on_leaver.size());
    for (size_t i = 0; i < a.moves.size(); ++i) {
      CHECK(a.moves[i].task == on_leaver[i]);
      CHECK(a.moves[i].from == 4);
      REQUIRE(a.moves[i].to.has_value());
      CHECK(*a.moves[i].to != 4);
    }
    CHECK(a.loads[3].load == 0);
    CheckShares(cols, tasks, a);
  }
  SUBCASE("gone from the list: its tasks are orphaned and placed like new ones") {
    cols.erase(cols.begin() + 3);
    const Assignment a = MustAssign(cols, tasks);
    CHECK(a.orphaned == on_leaver);
    REQUIRE(a.moves.size() == on_leaver.size());
    for (const TaskMove& m : a.moves) {
      CHECK_FALSE(m.from.has_value());
      CHECK(m.to.has_value());
    }
    CheckShares(cols, tasks, a);
  }
}

TEST_CASE("a collector that joins takes its share and no more than 5% above it") {
  auto cols = Weighted({1, 2, 3, 4, 5, 1, 2, 3, 4, 5});
  auto tasks = Apply(RandomTasks(5000, 3), MustAssign(cols, RandomTasks(5000, 3)));
  cols.push_back({11, 3, CollectorState::kActive, 0});
  const Assignment a = MustAssign(cols, tasks);
  const double weights = 33;
  const double share_tasks = 5000 * 3 / weights;
  const double share_cost = TotalCost(tasks) * 3 / weights;
  double moved_cost = 0;
  std::map<TaskId, double> cost;
  for (const TaskInfo& t : tasks) cost[t.id] = t.cost;
  for (const TaskMove& m : a.moves) {
    CHECK(m.to == 11);
    moved_cost += cost.at(m.task);
  }
  CHECK(static_cast<double>(a.moves.size()) <= share_tasks * 1.05);
  CHECK(moved_cost <= share_cost * 1.05);
  CHECK(moved_cost >= share_cost * 0.90);
  CheckShares(cols, tasks, a);
}

TEST_CASE("an overloaded collector sheds its fraction to the least loaded") {
  SUBCASE("the fraction, largest tasks first, nothing new to it") {
    auto cols = Weighted({2, 2, 2, 2});
    auto tasks = Apply(RandomTasks(2000, 4), MustAssign(cols, RandomTasks(2000, 4)));
    cols[1].state = CollectorState::kOverloaded;
    cols[1].shed_fraction = 0.25;
    double before = 0;
    std::map<TaskId, double> cost;
    for (const TaskInfo& t : tasks) {
      cost[t.id] = t.cost;
      if (t.current == 2) before += t.cost;
    }
    const Assignment a = MustAssign(cols, tasks);
    double shed = 0;
    for (const TaskMove& m : a.moves) {
      CHECK(m.from == 2);
      CHECK(m.to != 2);
      shed += cost.at(m.task);
    }
    CHECK(shed <= before * 0.25 + 1e-9);
    CHECK(shed >= before * 0.25 - 10);  // within one task of the fraction
    CHECK(a.loads[1].load == doctest::Approx(before - shed));
    CHECK(a.loads[1].state == CollectorState::kOverloaded);
  }
  SUBCASE("shed tasks go where there is most headroom") {
    const std::vector<CollectorInfo> cols = {{1, 1, CollectorState::kOverloaded, 0.2},
                                             {2, 1, CollectorState::kActive, 0},
                                             {3, 1, CollectorState::kActive, 0}};
    std::vector<TaskInfo> tasks;
    for (int i = 0; i < 10; ++i) tasks.push_back({i, 1, 1});
    for (int i = 10; i < 13; ++i) tasks.push_back({i, 1, 2});
    const Assignment a = MustAssign(cols, tasks);
    REQUIRE(a.moves.size() == 2);
    for (const TaskMove& m : a.moves) {
      CHECK(m.from == 1);
      CHECK(m.to == 3);
    }
  }
  SUBCASE("a fraction smaller than any task still sheds one task") {
    const std::vector<CollectorInfo> cols = {{1, 1, CollectorState::kOverloaded, 0.01},
                                             {2, 1, CollectorState::kActive, 0}};
    const std::vector<TaskInfo> tasks = {{1, 5, 1}, {2, 3, 1}};
    const Assignment a = MustAssign(cols, tasks);
    REQUIRE(a.moves.size() == 1);
    CHECK(a.moves[0].task == 2);  // the smallest
    CHECK(a.moves[0].to == 2);
  }
}

TEST_CASE("same input in any order gives the same output") {
  auto cols = Weighted({3, 1, 4, 1, 5, 9, 2, 6});
  auto tasks = RandomTasks(3000, 5);
  // A realistic mix: most placed, some new, some on a collector that is gone or draining.
  std::mt19937_64 rng(55);
  for (TaskInfo& t : tasks) {
    const uint64_t r = rng() % 12;
    if (r < 10) t.current = static_cast<CollectorId>(r % 9 + 1);  // 9 is unknown
  }
  cols[2].state = CollectorState::kDraining;
  cols[5].state = CollectorState::kOverloaded;
  cols[5].shed_fraction = 0.1;
  const Assignment a = MustAssign(cols, tasks);
  for (int round = 0; round < 5; ++round) {
    std::shuffle(cols.begin(), cols.end(), rng);
    std::shuffle(tasks.begin(), tasks.end(), rng);
    const Assignment b = MustAssign(cols, tasks);
    REQUIRE(b.placements.size() == a.placements.size());
    for (size_t i = 0; i < a.placements.size(); ++i) {
      CHECK(a.placements[i].task == b.placements[i].task);
      CHECK(a.placements[i].collector == b.placements[i].collector);
    }
    REQUIRE(b.moves.size() == a.moves.size());
    for (size_t i = 0; i < a.moves.size(); ++i) {
      CHECK(a.moves[i].task == b.moves[i].task);
      CHECK(a.moves[i].from == b.moves[i].from);
      CHECK(a.moves[i].to == b.moves[i].to);
    }
    CHECK(a.orphaned == b.orphaned);
  }
}

TEST_CASE("re-running on its own output moves nothing") {
  auto cols = Weighted({1, 2, 3, 5, 8});
  auto tasks = RandomTasks(2000, 6);
  auto placed = Apply(tasks, MustAssign(cols, tasks));
  CHECK(MustAssign(cols, placed).moves.empty());
  // Also after a leave and after a join.
  cols[0].state = CollectorState::kDraining;
  placed = Apply(placed, MustAssign(cols, placed));
  CHECK(MustAssign(cols, placed).moves.empty());
  cols.push_back({6, 4, CollectorState::kActive, 0});
  placed = Apply(placed, MustAssign(cols, placed));
  CHECK(MustAssign(cols, placed).moves.empty());
}

TEST_CASE("property: random weights and costs keep the promises") {
  std::mt19937_64 rng(20240605);
  for (int trial = 0; trial < 40; ++trial) {
    CAPTURE(trial);
    const int n_cols = 2 + static_cast<int>(rng() % 30);
    std::vector<double> weights;
    std::uniform_real_distribution<double> weight(0.5, 5);
    for (int i = 0; i < n_cols; ++i) weights.push_back(weight(rng));
    auto cols = Weighted(weights);
    const double max_cost = 1 + static_cast<double>(rng() % 20);
    // Enough tasks that granularity allows the band: the smallest share holds >= ~40 tasks.
    const double min_w = *std::min_element(weights.begin(), weights.end());
    double sum_w = 0;
    for (double w : weights) sum_w += w;
    const int n_tasks = static_cast<int>(40 * sum_w / min_w) + static_cast<int>(rng() % 500);
    auto tasks = RandomTasks(n_tasks, rng(), 0.1, max_cost);

    const Assignment first = MustAssign(cols, tasks);
    CheckShares(cols, tasks, first);
    auto placed = Apply(tasks, first);
    CHECK(MustAssign(cols, placed).moves.empty());

    // Leave: exactly the leaver's tasks move.
    const int leaver = static_cast<int>(rng() % n_cols);
    size_t on_leaver = 0;
    for (const TaskInfo& t : placed) on_leaver += t.current == cols[leaver].id;
    auto left = cols;
    left[leaver].state = CollectorState::kDraining;
    const Assignment after_leave = MustAssign(left, placed);
    CHECK(after_leave.moves.size() == on_leaver);
    for (const TaskMove& m : after_leave.moves) CHECK(m.from == cols[leaver].id);
    CheckShares(left, placed, after_leave);

    // Join: at most 5% above the joiner's share, by count and by cost.
    auto joined = cols;
    const double w = weight(rng);
    joined.push_back({1000, w, CollectorState::kActive, 0});
    const Assignment after_join = MustAssign(joined, placed);
    const double share = w / (sum_w + w);
    CHECK(static_cast<double>(after_join.moves.size()) <= 1.05 * share * n_tasks + 1);
    for (const TaskMove& m : after_join.moves) CHECK(m.to == 1000);
    CheckShares(joined, placed, after_join);
    CHECK(MustAssign(joined, Apply(placed, after_join)).moves.empty());
  }
}

TEST_CASE("changed weights: only the difference moves") {
  auto cols = Weighted({5, 1, 3, 3, 3, 3});
  auto tasks = Apply(RandomTasks(4000, 8), MustAssign(cols, RandomTasks(4000, 8)));
  const double total = TotalCost(tasks);
  cols[0].weight = 1;  // 5/18 -> 1/18 of the total: 4/18 must move off it...
  cols[1].weight = 5;  // ...and 4/18 onto this one
  const Assignment a = MustAssign(cols, tasks);
  std::map<TaskId, double> cost;
  for (const TaskInfo& t : tasks) cost[t.id] = t.cost;
  double moved = 0;
  for (const TaskMove& m : a.moves) moved += cost.at(m.task);
  CHECK(moved <= total * 4 / 18 * 1.05);
  CheckShares(cols, tasks, a);
  CHECK(MustAssign(cols, Apply(tasks, a)).moves.empty());
}

TEST_CASE("everything on one collector, the others arrive: spread in one call") {
  auto cols = Weighted({1, 2, 3, 4, 5, 6, 7, 8});
  auto tasks = RandomTasks(8000, 9);
  for (TaskInfo& t : tasks) t.current = 1;
  const Assignment a = MustAssign(cols, tasks);
  CheckShares(cols, tasks, a);
  for (const TaskMove& m : a.moves) CHECK(m.from == 1);
  CHECK(MustAssign(cols, Apply(tasks, a)).moves.empty());
}

TEST_CASE("property: coarse tasks, any sequence of changes, the result is a fixed point") {
  // With few, uneven tasks the band cannot always be met; the result must still be final:
  // calling again on it moves nothing.
  std::mt19937_64 rng(99);
  for (int trial = 0; trial < 300; ++trial) {
    CAPTURE(trial);
    std::vector<double> weights;
    const int n_cols = 2 + static_cast<int>(rng() % 8);
    for (int i = 0; i < n_cols; ++i) weights.push_back(static_cast<double>(1 + rng() % 5));
    auto cols = Weighted(weights);
    auto tasks = RandomTasks(1 + static_cast<int>(rng() % 60), rng(), 0.1, 10);
    for (int step = 0; step < 4; ++step) {
      CAPTURE(step);
      const size_t i = rng() % cols.size();
      switch (rng() % 3) {
        case 0:
          cols[i].weight = static_cast<double>(1 + rng() % 5);
          break;
        case 1:
          cols.push_back(
              {100 + step, static_cast<double>(1 + rng() % 5), CollectorState::kActive, 0});
          break;
        default:
          if (cols.size() > 1) cols.erase(cols.begin() + static_cast<long>(i));
          break;
      }
      const Assignment a = MustAssign(cols, tasks);
      CHECK(a.unassigned.empty());
      tasks = Apply(tasks, a);
      CHECK(MustAssign(cols, tasks).moves.empty());
    }
  }
}

TEST_CASE("no active collector: everything unassigned and reported") {
  const auto tasks = RandomTasks(10, 7);
  SUBCASE("no collectors at all") {
    const Assignment a = MustAssign({}, tasks);
    CHECK(a.unassigned.size() == 10);
    CHECK(a.moves.empty());  // nothing ran anywhere, nothing to hand over
    for (const TaskPlacement& p : a.placements) CHECK_FALSE(p.collector.has_value());
  }
  SUBCASE("only a draining collector: its tasks are taken from it") {
    const std::vector<CollectorInfo> cols = {{1, 1, CollectorState::kDraining, 0}};
    std::vector<TaskInfo> on_it = tasks;
    for (TaskInfo& t : on_it) t.current = 1;
    const Assignment a = MustAssign(cols, on_it);
    CHECK(a.unassigned.size() == 10);
    REQUIRE(a.moves.size() == 10);
    CHECK(a.moves[0].from == 1);
    CHECK_FALSE(a.moves[0].to.has_value());
  }
  SUBCASE("only an overloaded collector: it keeps its tasks, new ones wait") {
    const std::vector<CollectorInfo> cols = {{1, 1, CollectorState::kOverloaded, 0.5}};
    std::vector<TaskInfo> some = tasks;
    for (size_t i = 0; i < 6; ++i) some[i].current = 1;
    const Assignment a = MustAssign(cols, some);
    CHECK(a.shed_skipped);
    CHECK(a.moves.empty());
    CHECK(a.unassigned.size() == 4);
    CHECK(a.loads[0].tasks == 6);
  }
}

TEST_CASE("bad weights, costs and options are rejected naming the item") {
  const std::vector<TaskInfo> tasks = {{1, 1, std::nullopt}, {2, 2, std::nullopt}};
  auto expect = [](const Result<Assignment>& r, const std::string& text) {
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == StatusCode::kInvalidArgument);
    CHECK_MESSAGE(r.status().message().find(text) != std::string::npos, r.status().message());
  };
  expect(ComputeAssignment(std::vector<CollectorInfo>{{7, 0, CollectorState::kActive, 0}}, tasks),
         "collector 7: weight 0");
  expect(
      ComputeAssignment(std::vector<CollectorInfo>{{7, -2, CollectorState::kDraining, 0}}, tasks),
      "collector 7: weight -2");
  expect(ComputeAssignment(std::vector<CollectorInfo>{{8, NAN, CollectorState::kActive, 0}}, tasks),
         "collector 8: weight");
  expect(
      ComputeAssignment(std::vector<CollectorInfo>{{9, 1, CollectorState::kOverloaded, 0}}, tasks),
      "collector 9: shed fraction 0");
  expect(ComputeAssignment(std::vector<CollectorInfo>{{9, 1, CollectorState::kOverloaded, 1.5}},
                           tasks),
         "collector 9: shed fraction 1.5");
  expect(ComputeAssignment(Weighted({1, 1}), std::vector<TaskInfo>{{3, 0, std::nullopt}}),
         "task 3: cost 0");
  expect(ComputeAssignment(Weighted({1}), std::vector<TaskInfo>{{4, -1, 1}}), "task 4: cost -1");
  expect(ComputeAssignment(Weighted({1}), std::vector<TaskInfo>{{5, 1, 1}, {5, 2, 1}}),
         "task 5 is listed twice");
  expect(ComputeAssignment(std::vector<CollectorInfo>{{2, 1, CollectorState::kActive, 0},
                                                      {2, 1, CollectorState::kActive, 0}},
                           tasks),
         "collector 2 is listed twice");
  expect(ComputeAssignment(Weighted({1}), tasks, AssignmentOptions{0}), "tolerance 0");
}

TEST_CASE("a task assigned to an unknown collector is placed like a new one") {
  const auto cols = Weighted({1, 1});
  const std::vector<TaskInfo> tasks = {{1, 1, 1}, {2, 1, 2}, {3, 1, 42}};
  const Assignment a = MustAssign(cols, tasks);
  CHECK(a.orphaned == std::vector<TaskId>{3});
  REQUIRE(a.moves.size() == 1);
  CHECK(a.moves[0].task == 3);
  CHECK_FALSE(a.moves[0].from.has_value());
  CHECK(a.moves[0].to.has_value());
}

TEST_CASE("a task bigger than a share is placed whole, reported, and left alone after") {
  const auto cols = Weighted({1, 1, 1});
  const std::vector<TaskInfo> tasks = {
      {1, 100, std::nullopt}, {2, 1, std::nullopt}, {3, 1, std::nullopt}, {4, 1, std::nullopt}};
  const Assignment a = MustAssign(cols, tasks);
  CHECK(a.unassigned.empty());
  CHECK(a.max_abs_deviation > 1);  // granularity does not allow the band; it says so
  std::optional<CollectorId> big;
  std::map<CollectorId, int> small;
  for (const TaskPlacement& p : a.placements) {
    if (p.task == 1) {
      big = p.collector;
    } else {
      ++small[*p.collector];
    }
  }
  CHECK(small.count(*big) == 0);  // the small tasks share the other two collectors
  CHECK(MustAssign(cols, Apply(tasks, a)).moves.empty());
}

}  // namespace
}  // namespace trapline::coordinator
