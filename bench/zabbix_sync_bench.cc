// zabbix-sync against a real Zabbix API: the first sync of N hosts with about M trapper items
// each (plus their graphs, triggers and dashboard), then a re-sync with nothing changed. Prints
// wall times (total, and per host median / p90), API calls per host and write calls; asserts
// nothing about speed. bench/zabbix_sync.py starts a private Zabbix 6.0 and runs this.
//
//   bench_zabbix_sync --url URL [--hosts 100] [--items 200] [--prefix bench]
//   (user and password from TRAPLINE_ZABBIX_USER / TRAPLINE_ZABBIX_PASSWORD)

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "plugins/builtin.h"
#include "zabbix-sync/api_client.h"
#include "zabbix-sync/sync.h"

namespace {

using trapline::zabbix::BlockingApi;
using trapline::zabbix::SyncOptions;
using trapline::zabbix::Syncer;
using trapline::zabbix::SyncReport;
using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5)];
}

// Entities of a plausible server, grown by disks, filesystems and interfaces in turn until the
// host has `items`.
std::vector<trapline::plugins::Entity> EntitiesFor(const trapline::plugins::PluginInfo& linux,
                                                   size_t items, size_t* got) {
  std::vector<trapline::plugins::Entity> e = {
      {"cpu", "cpu0", {}}, {"cpu", "cpu1", {}}, {"disk", "sda", {}}, {"filesystem", "/", {}}};
  for (int i = 0;; ++i) {
    auto d = trapline::zabbix::BuildDesired(linux, "x", e, SyncOptions{}, 24);
    if (!d.ok() || d->items.size() >= items || i > 1000) {
      *got = d.ok() ? d->items.size() : 0;
      return e;
    }
    std::string n = std::to_string(i);
    switch (i % 3) {
      case 0: e.push_back({"interface", "eth" + n, {}}); break;
      case 1: e.push_back({"disk", "nvme" + n + "n1", {}}); break;
      default: e.push_back({"filesystem", "/srv/data" + n, {}}); break;
    }
  }
}

struct Pass {
  double total_s = 0;
  std::vector<double> per_host_s;
  int64_t calls = 0, writes = 0, max_calls_per_host = 0;
  size_t changes = 0;
  int failures = 0;
};

Pass Run(BlockingApi* api, const std::string& prefix, int hosts,
         const std::vector<trapline::plugins::Entity>& entities) {
  const auto& linux = *trapline::plugins::FindPlugin("linux");
  Syncer syncer(api, SyncOptions{});
  Pass p;
  auto start = Clock::now();
  for (int h = 0; h < hosts; ++h) {
    char name[64];
    std::snprintf(name, sizeof(name), "%s-%03d", prefix.c_str(), h);
    auto t0 = Clock::now();
    SyncReport r = syncer.SyncHost(linux, name, entities, false);
    p.per_host_s.push_back(Seconds(Clock::now() - t0));
    if (!r.status.ok()) {
      ++p.failures;
      std::fprintf(stderr, "bench_zabbix_sync: %s: %s\n", name, r.status.message().c_str());
    }
    p.calls += r.api_calls;
    p.writes += r.write_calls;
    p.changes += r.changes.size();
    // The one usermacro.get per Syncer is counted with the first host.
    p.max_calls_per_host = std::max(p.max_calls_per_host, r.api_calls - (h == 0 ? 1 : 0));
  }
  p.total_s = Seconds(Clock::now() - start);
  return p;
}

void Print(const char* what, const Pass& p, int hosts) {
  std::printf("%-10s %3d hosts: %7.2f s total, per host median %.3f s, p90 %.3f s; "
              "%lld API calls (%.1f per host, at most %lld), %lld writes, %zu changes, %d failed\n",
              what, hosts, p.total_s, Percentile(p.per_host_s, 0.5), Percentile(p.per_host_s, 0.9),
              static_cast<long long>(p.calls), static_cast<double>(p.calls) / hosts,
              static_cast<long long>(p.max_calls_per_host), static_cast<long long>(p.writes),
              p.changes, p.failures);
}

}  // namespace

int main(int argc, char** argv) {
  std::string url, prefix = "bench";
  int hosts = 100;
  size_t items = 200;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bench_zabbix_sync: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--url") url = next();
    else if (a == "--hosts") hosts = std::atoi(next().c_str());
    else if (a == "--items") items = static_cast<size_t>(std::atoi(next().c_str()));
    else if (a == "--prefix") prefix = next();
    else {
      std::fprintf(stderr, "usage: bench_zabbix_sync --url URL [--hosts N] [--items M] [--prefix P]\n");
      return a == "--help" ? 0 : 2;
    }
  }
  const char* user = std::getenv("TRAPLINE_ZABBIX_USER");
  const char* password = std::getenv("TRAPLINE_ZABBIX_PASSWORD");
  if (url.empty() || user == nullptr || password == nullptr || hosts <= 0) {
    std::fprintf(stderr, "bench_zabbix_sync: give --url and set TRAPLINE_ZABBIX_USER/_PASSWORD\n");
    return 2;
  }
  trapline::zabbix::ApiConfig config;
  config.url = url;
  config.user = user;
  config.password = password;
  config.timeout_s = 300;
  BlockingApi api(config);
  if (auto st = api.Connect(); !st.ok()) {
    std::fprintf(stderr, "bench_zabbix_sync: %s\n", st.message().c_str());
    return 1;
  }
  size_t got = 0;
  auto entities = EntitiesFor(*trapline::plugins::FindPlugin("linux"), items, &got);
  auto probe = trapline::zabbix::BuildDesired(*trapline::plugins::FindPlugin("linux"), "x", entities,
                                              SyncOptions{}, 24);
  std::printf("Zabbix %s; each host: %zu items, %zu graphs, %zu triggers, %zu dashboard pages "
              "(linux plugin, %zu entities)\n",
              api.version().ToString().c_str(), got, probe->graphs.size(), probe->triggers.size(),
              probe->dashboard.pages.size(), entities.size());
  Pass first = Run(&api, prefix, hosts, entities);
  Print("first sync", first, hosts);
  Pass again = Run(&api, prefix, hosts, entities);
  Print("re-sync", again, hosts);
  return first.failures + again.failures == 0 ? 0 : 1;
}
