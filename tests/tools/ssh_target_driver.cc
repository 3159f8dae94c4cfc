// ssh_target_driver: runs SshTarget(s) for a while and prints what they deliver, one JSON object
// per line on stdout (the same shapes as `trapline probe --format json`, except that counters
// are printed raw, not as rates):
//
//   {"entity": "filesystem", "name": "/", "mountpoint": "/", ...}   each entity, once
//   {"key": "linux.memory.total", "value": 1.2e10, "clock": 1700000000, "ns": 123}
//   {"warning": "..."}                                               parse warnings, once each
//   {"event": "connected" | "failed", "error": "...", "clock": ...}  state changes
//   {"stats": {...}}                                                 at the end, per session
//   {"memory": {...}}                                                with --sessions
//
// Usage: ssh_target_driver URI --identity KEY --known-hosts FILE [--tofu] [--passphrase P]
//          [--agent] [--seconds N] [--period S] [--timeout S] [--reconnect-base S] [--keepalive S]
//          [--option k=v]... [--extra-file PATH]... [--keep-retrying] [--quiet]
//          [--sessions N [--hold]] [--log-level L]
//        ssh_target_driver --list-files      prints {"files": [linuxhost::TickFiles()...]}
//
// Exit status: 0 when data arrived (and, without --keep-retrying, nothing failed); 1 with the
// reason on stderr otherwise (without --keep-retrying the first failure ends the run, as
// `trapline probe` does); 2 on bad usage.
//
// --sessions N: memory per session. One session is started and sampled first (one-time costs
// such as libssh2 and OpenSSL initialisation), then N more; when all of them have delivered
// 3 ticks, the growth of VmRSS and of the malloc heap in use is divided by N. With --hold the
// memory line is printed then and the sessions go on sampling until --seconds have passed
// (bench/ssh_target_load.py measures CPU per target-second that way).

#include <malloc.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "collector/ssh_target.h"
#include "common/log.h"
#include "common/uv.h"

namespace {

using trapline::SshTarget;
using trapline::TargetBase;
using trapline::TargetConfig;

long VmRssKb() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  }
  return -1;
}

size_t HeapInUse() { return mallinfo2().uordblks; }

int Usage(const char* why) {
  std::fprintf(stderr, "ssh_target_driver: %s\n(see the comment at the top of "
                       "tests/tools/ssh_target_driver.cc)\n", why);
  return 2;
}

void Print(const nlohmann::json& j) {
  std::printf("%s\n", j.dump().c_str());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  TargetConfig tc;
  tc.plugin = "linux";
  tc.host = "driver";
  double seconds = 5;
  bool keep_retrying = false, quiet = false, hold = false;
  int sessions = 0;
  std::string log_level = "warn";
  std::vector<std::string> extra_files;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    const char* v = nullptr;
    if (a == "--identity" && (v = next())) {
      tc.identity = v;
    } else if (a == "--known-hosts" && (v = next())) {
      tc.known_hosts = v;
    } else if (a == "--tofu") {
      tc.trust_on_first_use = true;
    } else if (a == "--passphrase" && (v = next())) {
      tc.identity_passphrase = v;
    } else if (a == "--agent") {
      tc.use_agent = true;
    } else if (a == "--seconds" && (v = next())) {
      seconds = std::atof(v);
    } else if (a == "--period" && (v = next())) {
      tc.period_s = std::atof(v);
    } else if (a == "--timeout" && (v = next())) {
      tc.timeout_s = std::atof(v);
    } else if (a == "--keepalive" && (v = next())) {
      tc.keepalive_s = std::atof(v);
    } else if (a == "--reconnect-base" && (v = next())) {
      tc.reconnect_base_s = std::atof(v);
    } else if (a == "--option" && (v = next())) {
      std::string kv = v;
      size_t eq = kv.find('=');
      if (eq == std::string::npos) return Usage("--option wants key=value");
      tc.options[kv.substr(0, eq)] = kv.substr(eq + 1);
    } else if (a == "--extra-file" && (v = next())) {
      extra_files.emplace_back(v);
    } else if (a == "--keep-retrying") {
      keep_retrying = true;
    } else if (a == "--hold") {
      hold = true;
    } else if (a == "--quiet") {
      quiet = true;
    } else if (a == "--sessions" && (v = next())) {
      sessions = std::atoi(v);
    } else if (a == "--list-files") {
      Print({{"files", trapline::plugins::linuxhost::TickFiles()}});
      return 0;
    } else if (a == "--log-level" && (v = next())) {
      log_level = v;
    } else if (!a.empty() && a[0] != '-' && tc.uri.empty()) {
      tc.uri = a;
    } else {
      return Usage(("bad argument: " + a).c_str());
    }
  }
  if (tc.uri.empty()) return Usage("no URI");
  if (trapline::Status st = trapline::InitLogging(log_level); !st.ok()) {
    return Usage(st.message().c_str());
  }
  if (trapline::Status st = SshTarget::Validate(tc); !st.ok()) {
    std::fprintf(stderr, "ssh_target_driver: %s\n", st.message().c_str());
    return 1;
  }

  trapline::Loop loop;
  int exit_code = 0;
  std::string first_error;
  bool got_data = false;
  std::set<std::string> entities_seen, warnings_seen;
  std::vector<std::unique_ptr<SshTarget>> targets;
  bool memory_mode = sessions > 0;
  long rss_base = 0;
  size_t heap_base = 0;
  bool measured = false;
  nlohmann::json memory;
  trapline::Timer deadline(loop.get());
  trapline::Timer poll(loop.get());

  auto make = [&](bool print) {
    auto t = std::make_unique<SshTarget>(
        loop.get(), tc, [&, print](trapline::ZbxTime time, trapline::plugins::ParseResult r) {
          got_data = true;
          if (!print || quiet) return;
          for (const auto& e : r.entities) {
            if (!entities_seen.insert(e.kind + '\0' + e.name).second) continue;
            nlohmann::json j = {{"entity", e.kind}, {"name", e.name}};
            for (const auto& [k, val] : e.labels) j[k] = val;
            Print(j);
          }
          for (const auto& w : r.warnings) {
            if (warnings_seen.insert(w).second) Print({{"warning", w}});
          }
          for (const auto& reading : r.readings) {
            Print({{"key", trapline::plugins::ItemKey("linux", reading.metric, reading.entity)},
                   {"value", reading.value},
                   {"clock", time.clock},
                   {"ns", time.ns}});
          }
        });
    t->set_extra_files(extra_files);
    t->set_on_state([&, print](const TargetBase& target) {
      const auto& s = target.state();
      if (s.connected) {
        if (print) Print({{"event", "connected"}, {"clock", trapline::WallClockNow().clock}});
        return;
      }
      if (s.last_error.empty()) return;
      if (print) {
        Print({{"event", "failed"}, {"error", s.last_error},
               {"clock", trapline::WallClockNow().clock}});
      }
      if (first_error.empty()) first_error = s.last_error;
      if (!keep_retrying) {
        exit_code = 1;
        loop.Stop();
      }
    });
    return t;
  };

  targets.push_back(make(true));
  targets.back()->Start();
  if (memory_mode) {
    // Wait for the first session to settle, then start the others; measure when all have
    // delivered 3 ticks.
    poll.Start(100, 100, [&] {
      if (measured) return;
      if (targets.size() == 1) {
        if (targets[0]->ssh_stats().ticks < 3) return;
        malloc_trim(0);
        rss_base = VmRssKb();
        heap_base = HeapInUse();
        for (int i = 0; i < sessions; ++i) {
          targets.push_back(make(false));
          targets.back()->Start();
        }
        return;
      }
      for (const auto& t : targets) {
        if (t->ssh_stats().ticks < 3) return;
      }
      malloc_trim(0);
      long rss = VmRssKb();
      size_t heap = HeapInUse();
      memory = {{"sessions", sessions},
                {"rss_base_kb", rss_base},
                {"rss_kb", rss},
                {"rss_per_session_kb", static_cast<double>(rss - rss_base) / sessions},
                {"heap_per_session_kb",
                 (static_cast<double>(heap) - static_cast<double>(heap_base)) / 1024.0 / sessions}};
      measured = true;
      if (hold) {
        Print({{"memory", memory}});
      } else {
        loop.Stop();
      }
    });
  }
  deadline.Start(static_cast<uint64_t>(seconds * 1000), 0, [&] { loop.Stop(); });
  trapline::SignalWatcher on_int(loop.get(), SIGINT, [&] { loop.Stop(); });
  trapline::SignalWatcher on_term(loop.get(), SIGTERM, [&] { loop.Stop(); });
  loop.Run();

  for (size_t i = 0; i < targets.size(); ++i) {
    const auto& s = targets[i]->ssh_stats();
    const auto& st = targets[i]->state();
    if (i > 0 && !memory_mode) break;
    if (i == 0 || i + 1 == targets.size()) {
      Print({{"stats",
              {{"session", i},
               {"mode", s.sftp ? "sftp" : "stream"},
               {"absent", s.absent},
               {"round_trips", s.last_tick_round_trips},
               {"requests", s.last_tick_requests},
               {"bytes_in", s.last_tick_bytes_in},
               {"ticks", st.ticks},
               {"ticks_skipped", st.ticks_skipped},
               {"connects", st.connects},
               {"retries", st.retries}}}});
    }
  }
  if (memory_mode) {
    if (!measured) {
      std::fprintf(stderr, "ssh_target_driver: not every session delivered 3 ticks in time\n");
      exit_code = 1;
    } else if (!hold) {
      Print({{"memory", memory}});
    }
  }
  targets.clear();
  if (exit_code != 0 && !first_error.empty()) {
    std::fprintf(stderr, "ssh_target_driver: %s: %s\n", tc.uri.c_str(), first_error.c_str());
  } else if (!got_data) {
    std::fprintf(stderr, "ssh_target_driver: %s: no data within %.1f s%s%s\n", tc.uri.c_str(),
                 seconds, first_error.empty() ? "" : "; last error: ", first_error.c_str());
    exit_code = 1;
  }
  return exit_code;
}
