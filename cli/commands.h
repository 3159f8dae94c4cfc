#pragma once
// Each subcommand of `trapline` lives in its own file and is listed explicitly in main.cc.
// A command adds its CLI11 subcommand and returns the function that runs it once parsed.

#include <CLI/CLI.hpp>

#include <functional>

namespace trapline::cli {

// Returns the process exit code.
using Runner = std::function<int()>;

Runner AddCompressCommand(CLI::App& app);
Runner AddSendCommand(CLI::App& app);
Runner AddCollectorCommand(CLI::App& app);
Runner AddProbeCommand(CLI::App& app);
Runner AddSyncCommand(CLI::App& app);
Runner AddMaintenanceCommand(CLI::App& app);
Runner AddCoordinatorCommand(CLI::App& app);
Runner AddUserCommand(CLI::App& app);

}  // namespace trapline::cli
