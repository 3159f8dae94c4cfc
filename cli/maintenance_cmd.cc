// `trapline maintenance on|off|status HOST... [--until TIME]`: maintenance with data
// collection (values keep flowing, alerts stop) for hosts that trapline manages.

#include <cstdio>
#include <ctime>

#include "cli/commands.h"
#include "cli/zabbix_flags.h"
#include "common/log.h"
#include "zabbix-sync/maintenance.h"

namespace trapline::cli {

namespace {

struct MaintenanceFlags {
  ZabbixFlags zabbix;
  std::string action;
  std::vector<std::string> hosts;
  std::string until;
  std::string log_level = "error";  // the reason is printed once; retries at warn
};

int RunMaintenance(const MaintenanceFlags& f) {
  auto fail = [](const std::string& why) {
    std::fprintf(stderr, "trapline maintenance: %s\n", why.c_str());
    return 1;
  };
  if (Status st = InitLogging(f.log_level); !st.ok()) return fail(st.message());
  int64_t now = static_cast<int64_t>(std::time(nullptr));
  int64_t until = 0;
  if (!f.until.empty()) {
    if (f.action != "on") return fail("--until goes with 'on' only");
    auto parsed = zabbix::ParseUntil(f.until, now);
    if (!parsed.ok()) return fail(parsed.status().message());
    until = *parsed;
  }
  auto config = ToApiConfig(f.zabbix);
  if (!config.ok()) return fail(config.status().message());
  zabbix::BlockingApi api(*config);
  if (Status st = api.Connect(); !st.ok()) return fail(st.message());
  int failures = 0;
  for (const auto& host : f.hosts) {
    Status st;
    if (f.action == "on") {
      st = zabbix::MaintenanceOn(&api, host, now, until);
    } else if (f.action == "off") {
      st = zabbix::MaintenanceOff(&api, host);
    }
    if (st.ok()) {
      auto state = zabbix::GetMaintenance(&api, host);
      st = state.status();
      if (st.ok()) std::printf("%s: %s\n", host.c_str(), state->ToText(now).c_str());
    }
    if (!st.ok()) {
      std::fprintf(stderr, "trapline maintenance: %s: %s\n", host.c_str(), st.message().c_str());
      ++failures;
    }
  }
  std::fflush(stdout);
  return failures == 0 ? 0 : 1;
}

}  // namespace

Runner AddMaintenanceCommand(CLI::App& app) {
  auto f = std::make_shared<MaintenanceFlags>();
  CLI::App* cmd = app.add_subcommand(
      "maintenance",
      "Put hosts into Zabbix maintenance with data collection (values keep flowing, alerts "
      "stop), take them out, or show their state");
  cmd->add_option("action", f->action, "on, off or status")->required()->check(CLI::IsMember({"on", "off", "status"}));
  cmd->add_option("hosts", f->hosts, "Zabbix host names")->required();
  cmd->add_option("--until", f->until,
                  "End of the maintenance (with 'on'): 'YYYY-MM-DD HH:MM' UTC, +2h, +30m, +1d or unix "
                  "seconds; default: until taken out");
  AddZabbixFlags(cmd, &f->zabbix);
  cmd->add_option("--log-level", f->log_level, "trace, debug, info, warn, error")->capture_default_str();
  return [f] { return RunMaintenance(*f); };
}

}  // namespace trapline::cli
