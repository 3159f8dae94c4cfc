// `trapline collector --config FILE [--dry-run]`: the collector daemon. Standalone mode:
// targets from the config file; cluster mode ([cluster] registry = ...): tasks from the
// coordinator's registry, besides any targets of the config file.

#include <sys/resource.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <cstdio>

#include "cli/commands.h"
#include "collector/cluster_member.h"
#include "collector/collector.h"
#include "common/log.h"
#include "common/uv.h"

namespace trapline::cli {

namespace {

struct CollectorFlags {
  std::string config;
  bool dry_run = false;
  bool check_config = false;
  std::string log_level;
};

int RunCollector(const CollectorFlags& f) {
  auto options = CollectorOptions::FromConfigFile(f.config);
  if (!options.ok()) {
    std::fprintf(stderr, "trapline collector: %s\n", options.status().message().c_str());
    return 1;
  }
  if (f.check_config) {
    std::printf("%s: OK, %zu targets%s, sending to %s:%d\n", f.config.c_str(),
                options->targets.size(),
                options->cluster.registry.empty() ? "" : " + the tasks the registry assigns",
                options->sender.server.c_str(), options->sender.port);
    return 0;
  }
  std::string level = f.log_level.empty() ? options->log_level : f.log_level;
  if (Status st = InitLogging(level); !st.ok()) {
    std::fprintf(stderr, "trapline collector: %s\n", st.message().c_str());
    return 1;
  }
  if (options->targets.empty() && options->cluster.registry.empty()) {
    std::fprintf(stderr,
                 "trapline collector: %s has no [[target]] and no [cluster] registry: nothing to collect\n",
                 f.config.c_str());
    return 1;
  }
  // One socket per target: raise the soft limit on open files to the hard one, or a
  // collector with a thousand targets would fail at the default of 1024.
  rlimit nofile{};
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    rlim_t wanted = nofile.rlim_max;
    nofile.rlim_cur = wanted;
    if (setrlimit(RLIMIT_NOFILE, &nofile) != 0) {
      spdlog::warn("[collector] cannot raise the open-file limit to {}: {}", wanted, std::strerror(errno));
    }
  }
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < options->targets.size() + 64) {
    spdlog::warn("[collector] open-file limit {} is low for {} targets (one socket each); raise "
                 "LimitNOFILE", nofile.rlim_cur, options->targets.size());
  }
  Loop loop;
  ClusterOptions cluster = options->cluster;
  std::string name = options->name;
  Collector collector(loop.get(), std::move(options).value(), f.dry_run, stdout);
  if (Status st = collector.Start(); !st.ok()) {
    std::fprintf(stderr, "trapline collector: %s\n", st.message().c_str());
    return 1;
  }
  std::unique_ptr<ClusterMember> member;
  if (!cluster.registry.empty()) {
    member = std::make_unique<ClusterMember>(loop.get(), &collector, name, cluster);
    member->Start();
  }
  Timer give_up(loop.get());
  bool stopping = false;
  auto stop = [&] {
    if (stopping) return;
    stopping = true;
    spdlog::info("[collector] stopping: closing intervals and handing values to the sender");
    // Targets stop first, then the registry hears that this collector leaves: its tasks are
    // never sampled here and elsewhere at once.
    collector.Stop();
    if (!member) {
      loop.Stop();
      return;
    }
    give_up.Start(2000, 0, [&] { loop.Stop(); });  // a registry that does not answer
    member->Stop([&] { loop.Stop(); });
  };
  SignalWatcher on_term(loop.get(), SIGTERM, stop);
  SignalWatcher on_int(loop.get(), SIGINT, stop);
  loop.Run();
  spdlog::info("[collector] stopped");
  return 0;
}

}  // namespace

Runner AddCollectorCommand(CLI::App& app) {
  auto f = std::make_shared<CollectorFlags>();
  CLI::App* cmd = app.add_subcommand(
      "collector",
      "Run a collector: one long-lived connection per target, sampled every second, value sets "
      "pushed to Zabbix through the sender");
  cmd->add_option("-c,--config", f->config, "TOML config: [collector], [sender], [[target]]")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_flag("--dry-run", f->dry_run,
                "Print values to stdout in zabbix_sender input format instead of sending them");
  cmd->add_flag("--check-config", f->check_config, "Read and check the config file, then exit");
  cmd->add_option("--log-level", f->log_level, "trace, debug, info, warn, error (overrides the config)");
  return [f] { return RunCollector(*f); };
}

}  // namespace trapline::cli
