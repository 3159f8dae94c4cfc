// `trapline coordinator --config FILE [--check-config]`: the control plane (issue 5). One
// leader at a time across all coordinators of a registry; the others stand by.

#include <csignal>
#include <cstdio>

#include "cli/commands.h"
#include "common/log.h"
#include "common/uv.h"
#include "coordinator/coordinator.h"

namespace trapline::cli {

namespace {

struct CoordinatorFlags {
  std::string config;
  bool check_config = false;
  std::string log_level;
};

int RunCoordinator(const CoordinatorFlags& f) {
  auto options = coordinator::CoordinatorOptions::FromConfigFile(f.config);
  if (!options.ok()) {
    std::fprintf(stderr, "trapline coordinator: %s\n", options.status().message().c_str());
    return 1;
  }
  if (f.check_config) {
    // The registry URI is not printed: it may hold a password.
    std::printf("%s: OK, coordinator %s, heartbeat_timeout %gs, overload_lag_ms %g%s%s\n",
                f.config.c_str(), options->name.c_str(), options->heartbeat_timeout_s,
                options->overload_lag_ms, options->http.ui_dir.empty() ? "" : ", admin panel from ",
                options->http.ui_dir.c_str());
    return 0;
  }
  std::string level = f.log_level.empty() ? options->log_level : f.log_level;
  if (Status st = InitLogging(level); !st.ok()) {
    std::fprintf(stderr, "trapline coordinator: %s\n", st.message().c_str());
    return 1;
  }
  int rc = 0;
  Loop loop;
  {
    coordinator::Coordinator coord(loop.get(), std::move(options).value());
    coord.SetFatalCallback([&](const Status&) {
      rc = 1;
      loop.Stop();
    });
    auto stop = [&] {
      spdlog::info("[coordinator] stopping");
      coord.Stop();
      loop.Stop();
    };
    SignalWatcher on_term(loop.get(), SIGTERM, stop);
    SignalWatcher on_int(loop.get(), SIGINT, stop);
    coord.Start();
    loop.Run();
  }
  spdlog::info("[coordinator] stopped");
  return rc;
}

}  // namespace

Runner AddCoordinatorCommand(CLI::App& app) {
  auto f = std::make_shared<CoordinatorFlags>();
  CLI::App* cmd = app.add_subcommand(
      "coordinator",
      "Run a coordinator: registry schema, leader election, weighted task assignment to "
      "collectors (one leader per registry; the others stand by)");
  cmd->add_option("-c,--config", f->config, "TOML config: [coordinator]")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_flag("--check-config", f->check_config, "Read and check the config file, then exit");
  cmd->add_option("--log-level", f->log_level, "trace, debug, info, warn, error (overrides the config)");
  return [f] { return RunCoordinator(*f); };
}

}  // namespace trapline::cli
