#pragma once
// What a plugin is: it says what to ask a target and parses what comes back; the collector
// does the I/O (STYLE.md). A plugin declares its metrics (with units, value type, gauge or
// counter, compression interval) so that zabbix-sync can build the Zabbix side, and its
// parsers turn captured text into readings. Parsers are pure functions: no I/O, no clocks.
//
// Naming: a metric belongs to an entity kind ("" for the host itself, or "cpu", "disk",
// "filesystem", "interface", "database", "standby", "keyspace", ...). The Zabbix item key of
// a reading is  <plugin>.<metric>  for host-level metrics and  <plugin>.<metric>[<entity>]
// for per-entity ones, e.g. linux.cpu.user[cpu0], postgresql.db.size[postgres].

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace trapline::plugins {

enum class MetricKind {
  kGauge,    // sampled as is
  kCounter,  // monotonic; the collector turns it into a per-second rate before compression
};

enum class ValueType {
  kFloat,     // Zabbix value_type 0
  kUnsigned,  // Zabbix value_type 3
  kText,      // Zabbix value_type 4 (sent as is, not compressed)
};

struct MetricSpec {
  std::string name;         // within the plugin, e.g. "cpu.user"; the key is derived from it
  std::string entity_kind;  // "" for host-level metrics
  std::string title;        // Zabbix item name, e.g. "CPU user time"; "{#ENTITY}" is replaced
  std::string units;        // Zabbix units: "%", "B", "Bps", "/s", "s", ...
  MetricKind kind = MetricKind::kGauge;
  ValueType value_type = ValueType::kFloat;
  int interval_s = 60;      // value-set compression interval
  std::string description;  // one sentence for the Zabbix item description
  // For counters: the per-second rate is multiplied by this (e.g. 512 for sectors -> bytes,
  // 1.0 for jiffies at USER_HZ=100, whose rate already is % of one CPU).
  double rate_scale = 1.0;
};

// Declaration helpers shared by the plugins' metric tables.
MetricSpec GaugeSpec(std::string name, std::string title, std::string units,
                     std::string description, std::string entity_kind = "");
MetricSpec CounterSpec(std::string name, std::string title, std::string units,
                       std::string description, std::string entity_kind = "",
                       double rate_scale = 1.0);
MetricSpec TextSpec(std::string name, std::string title, std::string description,
                    std::string entity_kind = "");

// One observation from a parser. `metric` is MetricSpec::name, viewing storage that lives as
// long as the program (a string literal or a static table of the plugin, never a string built
// while parsing): a tick gives tens to hundreds of readings, and a view costs no allocation.
// `entity` is "" for host-level metrics. For counters `value` is the raw counter; the
// collector computes rates.
struct Reading {
  std::string_view metric;
  std::string entity;
  double value = 0;
  std::string text;  // for ValueType::kText only
};

// An entity a plugin found (a CPU, a disk, a database...): zabbix-sync creates its items.
struct Entity {
  std::string kind;
  std::string name;
  std::vector<std::pair<std::string, std::string>> labels;  // e.g. {"mountpoint", "/"}
};

struct ParseResult {
  std::vector<Reading> readings;
  std::vector<Entity> entities;
  std::vector<std::string> warnings;  // parts that could not be read (field missing, ...)
};

// A whole string as a finite double ("12", "-1", "13.71", "1.5e-05"), as std::from_chars
// reads it; false for anything else (empty, trailing text, inf, nan, out of range). Parsers
// call it for every value of every tick: integers of up to 15 digits, most values, take a
// digit loop (exact in a double, a few times cheaper than from_chars).
bool ParseFiniteNumber(std::string_view s, double* out);

// The item key of a reading: "<plugin>.<metric>" or "<plugin>.<metric>[<entity>]"; an entity
// with characters special to Zabbix keys (',', ']', '"', spaces...) is quoted.
std::string ItemKey(std::string_view plugin, std::string_view metric, std::string_view entity);

}  // namespace trapline::plugins
