#pragma once
// The postgresql plugin: the SQL the collector sends once per tick (several statements, one
// round trip) and the pure parser of the result sets that come back, in order. The
// collector owns the libpq connection; nothing here does I/O or reads a clock (ages are
// computed by the server, from now(), in the queries).
//
// Privileges: every statement runs for any role without error; what a role may not see comes
// back as NULL (or as fewer rows) and gives no reading, with a warning. Grant the monitoring
// role pg_monitor (PostgreSQL >= 10) to see everything: other sessions' state and times in
// pg_stat_activity, the standbys' positions in pg_stat_replication, and the size of databases
// it has no CONNECT privilege on (pg_read_all_stats, a member role of pg_monitor).
//
// Sending: the text may go in one PQsendQuery (one implicit transaction on the server: an
// error in one statement, say a database dropped under pg_database_size or a
// statement_timeout, ends the query and the later statements give no result), or be split at
// each ";\n" and pipelined one statement per Sync (each its own transaction: a failure stays
// in its statement). Either way every statement computes its ages from its own now(), and the
// likeliest to fail, `databases`, comes last; ParseTick reads whatever results there are and
// warns about the rest.
//
// Entities: kind "database" (each database that accepts connections and is not a template;
// template0/template1 are left out, like the Zabbix template does: they serve no sessions, and
// their transaction-ID age, the one thing that matters about them, is covered by the instance
// metric xid.oldest_age) and kind "standby" (each WAL sender in pg_stat_replication except
// base backups; named by application_name, or client address, see README.md).

#include <array>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "plugins/plugin.h"
#include "plugins/template.h"

namespace trapline::plugins::postgresql {

inline constexpr std::string_view kPluginName = "postgresql";

// The oldest server_version (as PQserverVersion reports it) the queries are written for.
inline constexpr int kMinServerVersion = 120000;

// The statements of TickQueries, in the order their results come back (every version).
inline constexpr std::array<std::string_view, 6> kStatementNames = {
    "instance", "activity", "locks", "bgwriter", "replication", "databases",
};

// Every metric the plugin can report, in a fixed order. The reference stays valid for the
// life of the program.
const std::vector<MetricSpec>& Metrics();

// Triggers, graphs and macros for zabbix-sync (template.cc; see README.md "Zabbix template").
const ZabbixTemplate& Template();

// A target's [postgresql] options (TargetConfig::options, as text).
struct Options {
  // Seconds between two reads of the database sizes. pg_database_size() stats every file of
  // every database: on a fresh cluster it is three quarters of the server's CPU for a tick
  // (0.69 of 0.90 ms), on a database with thousands of relations far more, while a size moves
  // slowly. The ticks in between ask no size (db.size has no value then). 0: every tick.
  double size_interval_s = 60;
};

// Reads a target's options into *out (defaults for those not given). Returns "" on success,
// else a one-line error naming the option (an unknown option is an error, so a typo does not
// go unnoticed).
std::string ParseOptions(const std::map<std::string, std::string>& options, Options* out);

// Why a server version cannot be monitored, or "" when it can (>= 12; versions newer than the
// newest known, 17, get the newest queries).
std::string UnsupportedVersionReason(int server_version);

// The SQL text sent each tick for this server_version: kStatementNames.size() statements, each
// ending in ";\n" (no other ';' in the text, so splitting at ";\n" is safe), every value cast
// to text-friendly types (bigint, float8, text) and every column named, so that parsing needs
// no type information. Empty when
// UnsupportedVersionReason(server_version) is not empty.
// `with_sizes` false: the databases statement returns NULL sizes without calling
// pg_database_size() (Options::size_interval_s); everything else is the same.
std::string TickQueries(int server_version, bool with_sizes = true);

// One statement's result as libpq returns it (PQfname, PQgetisnull/PQgetvalue as text), or
// the statement's error (PQresultErrorMessage) when it failed: then `error` is not empty and
// columns/rows are ignored.
struct ResultSet {
  std::vector<std::string> columns;
  std::vector<std::vector<std::optional<std::string>>> rows;  // nullopt: SQL NULL
  std::string error;
};

// The fast path: the six statements of TickQueries as one statement returning one row with one
// text column, `tick`: per statement in kStatementNames order, its rows as PostgreSQL's record
// text output ("(1,2,,\"a b\")": NULL is nothing, a value with spaces, commas, quotes,
// parentheses or backslashes is quoted with quotes and backslashes doubled), then ';'. libpq
// then builds one PGresult of one value per tick (six, of about 60 values, otherwise), which
// ParseTickText reads in place. One statement is one transaction: an error anywhere (a revoked
// view, a statement_timeout) fails all of it; the collector then runs TickQueries' statements
// one by one, which keeps each failure in its statement. Empty when the version is not
// supported.
std::string TickQueryText(int server_version, bool with_sizes = true);

// Parses TickQueryText's value: the same readings, entities and warnings as ParseTick over the
// six statements' result sets. A malformed text gives warnings, never a failure. Never throws.
ParseResult ParseTickText(int server_version, std::string_view text);

// The columns of statement `statement` (an index into kStatementNames), in order, as the
// statement names them (the same for every version).
const std::vector<std::string_view>& StatementColumns(std::size_t statement);

// Parses the results of TickQueries(server_version), in order. Fewer results than statements
// (the query ended early), failed statements, missing or extra columns, NULLs and unreadable
// values each give warnings and no readings for what they concern, never a failure of the
// rest. Columns are found by name, so their order does not matter. Never throws.
ParseResult ParseTick(int server_version, const std::vector<ResultSet>& results);

}  // namespace trapline::plugins::postgresql
