// postgres_target_driver: runs PostgresTarget(s) on a loop for the integration test (until
// `trapline probe` serves postgresql:// URIs) and measures memory per connection.
//
//   postgres_target_driver URI [--seconds N] [--period S] [--timeout S]
//       [--reconnect-base S] [--reconnect-max S] [--password P] [--password-file F]
//       [--log-level L]
//     One target for N seconds. stdout, JSON lines:
//       {"state": "connected"|"failed", "error", "retries", "connects", "t"}   on each change
//       {"entity": kind, "name": name}                                         first sighting
//       {"key", "metric", "entity", "value", "clock", "ns"}                    raw readings
//       {"warning": text}
//       {"tick": n, "readings": k, "warnings": w, "t": seconds since start}
//     Exit 0 when at least one tick was delivered, else 1 with the last error on stderr.
//
//   postgres_target_driver URI --connections N [--bare] [--seconds N] ...
//     N connections to URI; prints one JSON line {"memory": {...}} with VmRSS before (after one
//     warm-up connection) and after all N connected and answered two ticks. --bare: plain
//     blocking libpq connections that ran one tick's queries, the baseline of libpq's own
//     buffers.

#include <libpq-fe.h>
#include <malloc.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "collector/postgres_target.h"
#include "common/log.h"
#include "common/uv.h"
#include "plugins/postgresql/postgresql.h"

namespace {

using trapline::Loop;
using trapline::PostgresTarget;
using trapline::TargetBase;
using trapline::TargetConfig;
using trapline::Timer;
using trapline::ZbxTime;

long RssKb() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  }
  return -1;
}

// Bytes handed out by malloc (libpq's buffers included, touched or not).
long HeapBytes() { return static_cast<long>(mallinfo2().uordblks); }

void Print(const nlohmann::json& j) {
  std::printf("%s\n", j.dump().c_str());
  std::fflush(stdout);
}

int Usage() {
  std::fprintf(stderr,
               "usage: postgres_target_driver URI [--seconds N] [--period S] [--timeout S] "
               "[--reconnect-base S] [--reconnect-max S] [--password P] [--password-file F] "
               "[--option K=V] [--connections N [--bare]] [--log-level L]\n");
  return 2;
}

int RunBare(const TargetConfig& tc, int n) {
  auto pw = trapline::postgres::PasswordFor(tc);
  if (!pw.ok()) {
    std::fprintf(stderr, "%s\n", pw.status().message().c_str());
    return 1;
  }
  auto params = trapline::postgres::BuildConnParams(tc.uri, *pw, tc.timeout_s);
  if (!params.ok()) {
    std::fprintf(stderr, "%s\n", params.status().message().c_str());
    return 1;
  }
  auto k = params->keywords();
  auto v = params->values();
  std::vector<PGconn*> conns;
  auto open_one = [&]() -> bool {
    PGconn* c = PQconnectdbParams(k.data(), v.data(), 1);
    if (PQstatus(c) != CONNECTION_OK) {
      std::fprintf(stderr, "%s", PQerrorMessage(c));
      PQfinish(c);
      return false;
    }
    std::string sql = trapline::plugins::postgresql::TickQueries(PQserverVersion(c));
    PQsendQuery(c, sql.c_str());
    while (PGresult* r = PQgetResult(c)) PQclear(r);
    conns.push_back(c);
    return true;
  };
  if (!open_one()) return 1;  // warm-up: libraries initialised
  long before = RssKb();
  long heap_before = HeapBytes();
  for (int i = 0; i < n; ++i) {
    if (!open_one()) return 1;
  }
  long after = RssKb();
  long heap_after = HeapBytes();
  Print({{"memory",
          {{"mode", "bare"},
           {"connections", n},
           {"rss_before_kb", before},
           {"rss_after_kb", after},
           {"per_connection_bytes", (after - before) * 1024.0 / n},
           {"heap_per_connection_bytes", static_cast<double>(heap_after - heap_before) / n}}}});
  for (PGconn* c : conns) PQfinish(c);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  TargetConfig tc;
  tc.plugin = "postgresql";
  tc.host = "driver";
  tc.timeout_s = 10;
  tc.reconnect_base_s = 1;
  double seconds = 3;
  int connections = 0;
  bool bare = false;
  std::string log_level = "warn";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    const char* val = nullptr;
    if (a == "--bare") {
      bare = true;
    } else if (a.rfind("--", 0) == 0) {
      if ((val = next()) == nullptr) return Usage();
      if (a == "--seconds")
        seconds = std::atof(val);
      else if (a == "--period")
        tc.period_s = std::atof(val);
      else if (a == "--timeout")
        tc.timeout_s = std::atof(val);
      else if (a == "--reconnect-base")
        tc.reconnect_base_s = std::atof(val);
      else if (a == "--reconnect-max")
        tc.reconnect_max_s = std::atof(val);
      else if (a == "--password")
        tc.password = val;
      else if (a == "--password-file")
        tc.password_file = val;
      else if (const char* eq = std::strchr(val, '='); a == "--option" && eq != nullptr)
        tc.options[std::string(val, eq)] = eq + 1;  // a plugin option K=V
      else if (a == "--connections")
        connections = std::atoi(val);
      else if (a == "--log-level")
        log_level = val;
      else
        return Usage();
    } else if (tc.uri.empty()) {
      tc.uri = a;
    } else {
      return Usage();
    }
  }
  if (tc.uri.empty()) return Usage();
  if (trapline::Status v = PostgresTarget::Validate(tc); !v.ok()) {
    std::fprintf(stderr, "postgres_target_driver: %s\n", v.message().c_str());
    return 2;
  }
  if (!trapline::InitLogging(log_level).ok()) return Usage();
  if (connections > 0 && bare) return RunBare(tc, connections);

  Loop loop;
  uint64_t t0 = loop.Now();
  auto since = [&] { return static_cast<double>(loop.Now() - t0) / 1000.0; };

  if (connections > 0) {
    // Memory: one warm-up target, then N more; measure once every one answered two ticks.
    std::vector<std::unique_ptr<PostgresTarget>> targets;
    std::vector<int> ticks;
    long before = -1, after = -1, heap_before = 0, heap_after = 0;
    auto make = [&](size_t idx) {
      return std::make_unique<PostgresTarget>(
          loop.get(), tc, [&ticks, idx](ZbxTime, trapline::plugins::ParseResult) { ++ticks[idx]; });
    };
    auto all_ticked = [&] {
      for (int t : ticks) {
        if (t < 2) return false;
      }
      return true;
    };
    ticks.assign(1, 0);
    targets.push_back(make(0));
    targets[0]->Start();
    Timer check(loop.get());
    Timer deadline(loop.get());
    deadline.Start(static_cast<uint64_t>(seconds * 1000), 0, [&] { loop.Stop(); });
    check.Start(50, 50, [&] {
      if (!all_ticked()) return;
      if (before < 0) {
        before = RssKb();
        heap_before = HeapBytes();
        ticks.resize(static_cast<size_t>(connections) + 1, 0);
        for (int i = 1; i <= connections; ++i) {
          targets.push_back(make(static_cast<size_t>(i)));
          targets.back()->Start();
        }
        return;
      }
      after = RssKb();
      heap_after = HeapBytes();
      loop.Stop();
    });
    loop.Run();
    check.Stop();
    deadline.Stop();
    int connected = 0;
    for (const auto& t : targets) connected += t->state().connected ? 1 : 0;
    nlohmann::json j = {{"mode", "targets"},
                        {"connections", connections},
                        {"connected", connected},
                        {"rss_before_kb", before},
                        {"rss_after_kb", after}};
    if (before >= 0 && after >= 0) {
      j["per_connection_bytes"] = (after - before) * 1024.0 / connections;
      j["heap_per_connection_bytes"] = static_cast<double>(heap_after - heap_before) / connections;
    }
    Print({{"memory", j}});
    targets.clear();
    return after >= 0 ? 0 : 1;
  }

  std::set<std::string> entities_seen;
  uint64_t ticks = 0;
  std::string last_error;
  PostgresTarget target(loop.get(), tc, [&](ZbxTime t, trapline::plugins::ParseResult r) {
    ++ticks;
    for (const auto& e : r.entities) {
      if (entities_seen.insert(e.kind + '\0' + e.name).second) {
        Print({{"entity", e.kind}, {"name", e.name}});
      }
    }
    for (const auto& rd : r.readings) {
      Print({{"key", trapline::plugins::ItemKey("postgresql", rd.metric, rd.entity)},
             {"metric", rd.metric},
             {"entity", rd.entity},
             {"value", rd.value},
             {"clock", t.clock},
             {"ns", t.ns}});
    }
    for (const auto& w : r.warnings) Print({{"warning", w}});
    Print({{"tick", ticks},
           {"readings", r.readings.size()},
           {"warnings", r.warnings.size()},
           {"t", since()}});
  });
  target.set_on_state([&](const TargetBase& b) {
    const auto& s = b.state();
    if (!s.connected) last_error = s.last_error;
    Print({{"state", s.connected ? "connected" : "failed"},
           {"error", s.connected ? "" : s.last_error},
           {"retries", s.retries},
           {"connects", s.connects},
           {"t", since()}});
  });
  Timer stop(loop.get());
  stop.Start(static_cast<uint64_t>(seconds * 1000), 0, [&] { loop.Stop(); });
  trapline::SignalWatcher sigterm(loop.get(), SIGTERM, [&] { loop.Stop(); });
  trapline::SignalWatcher sigint(loop.get(), SIGINT, [&] { loop.Stop(); });
  target.Start();
  loop.Run();
  if (ticks == 0) {
    std::fprintf(stderr, "postgres_target_driver: no data: %s\n",
                 last_error.empty() ? "no tick answered in time" : last_error.c_str());
    return 1;
  }
  return 0;
}
