// `trapline sync URI --host NAME`: connects to the target as `probe` does, discovers its
// entities and makes the Zabbix host match (items, graphs, triggers, dashboard);
// `--dry-run` prints the planned changes without making them.

#include <cstdio>
#include <fstream>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/target_flags.h"
#include "cli/zabbix_flags.h"
#include "common/log.h"
#include "zabbix-sync/sync.h"

namespace trapline::cli {

namespace {

struct SyncFlags {
  TargetFlags target;
  ZabbixFlags zabbix;
  std::string host;
  std::string entities_file;
  double seconds = 5;
  bool dry_run = false;
  std::string format = "text";
  std::vector<std::string> groups;
  std::string visible_name;
  std::string history = "14d";
  std::string trends = "365d";
  std::string trapper_hosts;
  bool delete_vanished = false;
  std::string log_level = "error";  // the reason is printed once; retries at warn
};

// Entities from `trapline probe --format json` output: lines with "entity" and "name".
Result<std::vector<plugins::Entity>> ReadEntities(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::IoError("cannot read " + path);
  std::vector<plugins::Entity> out;
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.empty()) continue;
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      return Status::InvalidArgument(path + ":" + std::to_string(n) + ": not a JSON object");
    }
    if (!j.contains("entity")) continue;  // a sample line
    if (!j["entity"].is_string() || !j.value("name", nlohmann::json()).is_string()) {
      return Status::InvalidArgument(path + ":" + std::to_string(n) + ": \"entity\" and \"name\" must be strings");
    }
    out.push_back({j["entity"].get<std::string>(), j["name"].get<std::string>(), {}});
  }
  return out;
}

int Fail(const std::string& why) {
  std::fprintf(stderr, "trapline sync: %s\n", why.c_str());
  return 1;
}

int RunSync(const SyncFlags& f) {
  if (Status st = InitLogging(f.log_level); !st.ok()) return Fail(st.message());
  // A plugin without a target (trapline: a collector's own health) has no entities to find.
  const plugins::PluginInfo* targetless = f.target.uri.empty() && !f.target.plugin.empty()
                                              ? plugins::FindPlugin(f.target.plugin)
                                              : nullptr;
  if (targetless != nullptr && !targetless->schemes.empty()) targetless = nullptr;
  if (f.target.uri.empty() && f.entities_file.empty() && targetless == nullptr) {
    return Fail("give the target's URI, or --entities-file with --plugin");
  }
  auto api_config = ToApiConfig(f.zabbix);
  if (!api_config.ok()) return Fail(api_config.status().message());
  auto plugin = ResolvePlugin(f.target);
  if (!plugin.ok()) return Fail(plugin.status().message());
  std::string host = f.host.empty() ? UriHost(f.target.uri) : f.host;
  if (host.empty()) return Fail("no host name: give --host");

  // Entities first: no point logging in to Zabbix when the target cannot be reached.
  Result<std::vector<plugins::Entity>> entities = std::vector<plugins::Entity>{};
  if (targetless != nullptr) {
    // none
  } else if (!f.entities_file.empty()) {
    entities = ReadEntities(f.entities_file);
  } else {
    auto tc = ToTargetConfig(f.target, **plugin, host, 1.0);
    if (!tc.ok()) return Fail(tc.status().message());
    entities = DiscoverEntities(*tc, f.seconds);
  }
  if (!entities.ok()) return Fail(entities.status().message());

  zabbix::BlockingApi api(*api_config);
  if (Status st = api.Connect(); !st.ok()) return Fail(st.message());
  zabbix::SyncOptions options;
  if (!f.groups.empty()) options.host_groups = f.groups;
  options.visible_name = f.visible_name;
  options.history = f.history;
  options.trends = f.trends;
  options.trapper_hosts = f.trapper_hosts;
  options.delete_vanished = f.delete_vanished;
  zabbix::Syncer syncer(&api, options);
  zabbix::SyncReport report = syncer.SyncHost(**plugin, host, *entities, f.dry_run);

  if (f.format == "json") {
    nlohmann::json j = {{"host", report.host},
                        {"plugin", report.plugin},
                        {"dry_run", report.dry_run},
                        {"ok", report.status.ok()},
                        {"error", report.status.ok() ? "" : report.status.message()},
                        {"entities", entities->size()},
                        {"api_calls", report.api_calls},
                        {"write_calls", report.write_calls},
                        {"warnings", report.warnings},
                        {"counts", report.Counts()}};
    nlohmann::json changes = nlohmann::json::array();
    for (const auto& c : report.changes) {
      changes.push_back({{"action", c.action}, {"object", c.object}, {"name", c.name}, {"detail", c.detail}});
    }
    j["changes"] = changes;
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::fputs(report.ToText().c_str(), stdout);
  }
  std::fflush(stdout);
  if (!report.status.ok()) return Fail(report.status.message());
  return 0;
}

}  // namespace

Runner AddSyncCommand(CLI::App& app) {
  auto f = std::make_shared<SyncFlags>();
  CLI::App* cmd = app.add_subcommand(
      "sync",
      "Discover a target's entities (as `probe` does) and make its Zabbix host match: host, "
      "trapper items, graphs, triggers, dashboard; --dry-run prints the plan only");
  AddTargetFlags(cmd, &f->target, /*uri_optional=*/true);
  AddZabbixFlags(cmd, &f->zabbix);
  cmd->add_option("--host", f->host, "Zabbix host name (technical name; default: the URI's host)");
  cmd->add_option("--entities-file", f->entities_file,
                  "Take the entities from this `trapline probe --format json` output instead of connecting");
  cmd->add_option("--seconds", f->seconds, "How long to sample the target for its entities")
      ->check(CLI::Range(0.5, 600.0))
      ->capture_default_str();
  cmd->add_flag("--dry-run", f->dry_run, "Print the planned changes; change nothing");
  cmd->add_option("--format", f->format, "text or json")->check(CLI::IsMember({"text", "json"}))->capture_default_str();
  cmd->add_option("--group", f->groups, "Host group (repeatable; default: trapline)");
  cmd->add_option("--visible-name", f->visible_name, "Visible host name");
  cmd->add_option("--history", f->history, "Item history retention")->capture_default_str();
  cmd->add_option("--trends", f->trends, "Item trends retention")->capture_default_str();
  cmd->add_option("--trapper-hosts", f->trapper_hosts,
                  "Addresses allowed to send values (the collectors'), comma-separated; default: any");
  cmd->add_flag("--delete-vanished", f->delete_vanished,
                "Delete the items of entities that vanished (default: disable them, keeping history)");
  cmd->add_option("--log-level", f->log_level, "trace, debug, info, warn, error")->capture_default_str();
  return [f] { return RunSync(*f); };
}

}  // namespace trapline::cli
