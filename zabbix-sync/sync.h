#pragma once
// Makes a Zabbix host match what a plugin declares for the entities found on its target:
// host groups, the host, trapper items, graphs, triggers, the dashboard and the global macros
// that hold trigger thresholds (desired.h says what is built and what trapline owns).
//
// Idempotent and minimal: it reads what exists (on a host that exists: host.get, item.get,
// graph.get, trigger.get, dashboard.get -- five calls -- plus one usermacro.get per Syncer),
// computes the difference and creates, updates, disables or deletes only that, in arrays.
// A re-sync with nothing changed makes read calls only. Objects trapline does not own are
// never modified: a collision (a host without the managed-by tag, an item with the same key
// but no plugin tag) is reported, not overwritten.
//
// Entities that vanished: their items are disabled (history kept) unless
// SyncOptions::delete_vanished; their graphs and triggers stay with the disabled items.
//
// Thread: a Syncer is used by one thread at a time (it holds the Api, which is blocking).

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "common/status.h"
#include "plugins/builtin.h"
#include "zabbix-sync/api_client.h"
#include "zabbix-sync/desired.h"

namespace trapline::zabbix {

struct Change {
  std::string action;  // "create", "update", "disable", "delete"
  std::string object;  // "hostgroup", "host", "item", "graph", "trigger", "dashboard", "macro"
  std::string name;    // natural key: group/host/graph/trigger/dashboard name, item key, macro
  std::string detail;  // for updates: the fields that differ
};

struct SyncReport {
  std::string host;
  std::string plugin;
  bool dry_run = false;
  // OK, or why the sync stopped. `changes` lists what was done (or, in a dry run, planned)
  // before that point, so a failed sync never leaves half-made objects unreported.
  Status status;
  std::vector<Change> changes;
  std::vector<std::string> warnings;  // collisions with objects trapline does not own, ...
  int64_t api_calls = 0;              // calls made by this sync (reads and writes)
  int64_t write_calls = 0;

  // "create item linux.cpu.user[cpu0]" lines, then a summary line.
  std::string ToText() const;
  // Counts per action and object, e.g. {"create item": 200}.
  std::map<std::string, int> Counts() const;
};

class Syncer {
 public:
  // REQUIRES: `api` is connected and outlives the Syncer.
  Syncer(Api* api, SyncOptions options);

  // Makes `host` match `plugin` with these entities. dry_run: reads only, reports the plan.
  SyncReport SyncHost(const plugins::PluginInfo& plugin, const std::string& host,
                      const std::vector<plugins::Entity>& entities, bool dry_run);

  const SyncOptions& options() const { return options_; }

 private:
  class Run;
  Api* api_;
  SyncOptions options_;
  std::set<std::string> macros_present_;  // global macros known to exist
  bool macros_read_ = false;
};

}  // namespace trapline::zabbix
