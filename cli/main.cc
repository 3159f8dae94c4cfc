// trapline: agentless pull-based collector cluster for Zabbix. Thin entry point: each
// subcommand is a library call behind a few flags.

#include <CLI/CLI.hpp>

#include <cstdio>
#include <map>
#include <string>

#include "cli/commands.h"
#include "trapline/version.h"

int main(int argc, char** argv) {
  CLI::App app{"trapline: agentless, pull-based collector cluster for Zabbix"};
  app.set_version_flag("--version", std::string("trapline ") + trapline::kVersion);
  app.require_subcommand(1);
  app.fallthrough(false);

  // The explicit list of subcommands.
  std::map<CLI::App*, trapline::cli::Runner> runners;
  auto add = [&](trapline::cli::Runner r) { runners[app.get_subcommands({}).back()] = std::move(r); };
  add(trapline::cli::AddCompressCommand(app));
  add(trapline::cli::AddSendCommand(app));
  add(trapline::cli::AddCollectorCommand(app));
  add(trapline::cli::AddProbeCommand(app));
  add(trapline::cli::AddSyncCommand(app));
  add(trapline::cli::AddMaintenanceCommand(app));
  add(trapline::cli::AddCoordinatorCommand(app));
  add(trapline::cli::AddUserCommand(app));

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "trapline: %s (see trapline --help)\n", e.what());
    return 2;
  }
  for (auto& [sub, run] : runners) {
    if (sub->parsed()) return run();
  }
  return 2;
}
