#pragma once
// The redis plugin: what to ask a Redis server each tick (one INFO) and the pure parser of the
// reply. The collector owns the hiredis connection; nothing here does I/O or reads a clock.
//
// Absent fields (the "reset every field that may be absent" rule of STYLE.md, settled): the
// parser is a pure function of one reply and keeps no state between replies, so there is
// nothing to reset. A field the reply does not carry gives no reading at all (never a stale
// or a zero one). A warning is added only when a field that every Redis >= 5.0 reports is
// missing (one warning listing them all), when a value cannot be read, or when a derived
// reading cannot be made for a reason worth knowing (no server_time_usec before Redis 6.2:
// no persistence.rdb_last_save_age).
//
// Entities: kind "keyspace", name "db<N>" for each database INFO lists (Redis lists only the
// databases that hold keys: a database that empties stops reporting), and kind "replica",
// name "<ip>:<port>" ("[<ipv6>]:<port>") for each replica a master lists.

#include <string>
#include <string_view>
#include <vector>

#include "plugins/plugin.h"
#include "plugins/template.h"

namespace trapline::plugins::redis {

inline constexpr std::string_view kPluginName = "redis";

// Every metric the plugin can report, in a fixed order. The reference stays valid for the
// life of the program.
const std::vector<MetricSpec>& Metrics();

// Triggers, graphs and macros for zabbix-sync (template.cc; see README.md "Zabbix template").
const ZabbixTemplate& Template();

// The command sent each tick, as argv: {"INFO"}, the default sections. Measured on Redis 7.0
// (Debian 12): INFO 4.9 kB, INFO everything 5.2 kB on an idle server and growing by ~150 bytes
// per command ever used (commandstats, latencystats), INFO with the seven sections needed
// 4.7 kB. Naming several sections needs Redis >= 7.0 (older servers answer a syntax error),
// so the plain INFO, which every version answers with all the sections used, is the smallest
// reply that works everywhere.
std::vector<std::string> TickCommand();

// Parses the text of an INFO bulk reply (CRLF or LF line ends; '#' section headers; unknown
// fields and sections ignored). A last line without its line end is taken for a truncated
// reply: it is ignored, with a warning, since its value may be cut short.
// Never throws; any input gives a ParseResult.
ParseResult ParseInfo(std::string_view info);

}  // namespace trapline::plugins::redis
