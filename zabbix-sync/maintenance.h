#pragma once
// Maintenance of one host *with data collection* (maintenance_type 0): values keep flowing
// into history, problems are suppressed so alerts stop. trapline owns the maintenance named
// "trapline: <host>" and nothing else.
//
// Zabbix rounds maintenance times to the minute, and hosts show the state up to a minute
// later (the timer process): State() reports both what is configured and what the host shows.

#include <cstdint>
#include <optional>
#include <string>

#include "common/status.h"
#include "zabbix-sync/api_client.h"

namespace trapline::zabbix {

struct MaintenanceState {
  bool configured = false;      // trapline's maintenance exists
  std::string maintenanceid;
  int64_t active_since = 0;     // unix seconds
  int64_t active_till = 0;
  bool host_in_maintenance = false;  // the host's maintenance_status as Zabbix shows it now
  // "in maintenance since 2026-11-21 06:00 UTC until 2026-11-21 08:00 UTC (host shows it)"
  std::string ToText(int64_t now) const;
};

// The name of trapline's maintenance for a host.
std::string MaintenanceName(const std::string& host);

// The request bodies, pure, for unit tests of the 6.0 / 7.0 shapes. `until` 0 = open-ended.
nlohmann::json MaintenanceObject(const std::string& host, const std::string& hostid,
                                 int64_t now, int64_t until, const ApiVersion& version);

// Puts `host` into maintenance from now until `until` (unix seconds; 0: open-ended, ends when
// taken out). An existing trapline maintenance is updated (a new end time). NotFound when
// the host does not exist; InvalidArgument when `until` is not in the future.
Status MaintenanceOn(Api* api, const std::string& host, int64_t now, int64_t until);
// Takes `host` out of trapline's maintenance (deletes it); OK when there is none.
Status MaintenanceOff(Api* api, const std::string& host);
Result<MaintenanceState> GetMaintenance(Api* api, const std::string& host);

// "2026-11-21 08:00", "2026-11-21T08:00:00Z", "+2h", "+90m", "+1d" or unix seconds ->
// unix seconds (UTC). InvalidArgument naming what it expected otherwise.
Result<int64_t> ParseUntil(const std::string& text, int64_t now);

}  // namespace trapline::zabbix
