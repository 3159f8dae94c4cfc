// The Zabbix template of the redis plugin: macros, triggers and graphs (plugins/template.h).
// The triggers and macros are documented in README.md ("Zabbix template"); keep both in step.
//
// Values arrive as value sets (every interval_s, 60 s, the per-second samples of the interval):
// min(x,5m) means "above the threshold the whole 5 minutes", max(x,5m) "at least once".

#include "plugins/redis/redis.h"

#include <string>
#include <utility>
#include <vector>

namespace trapline::plugins::redis {
namespace {

constexpr const char* kMemHigh =
    "Memory used is close to maxmemory (over {$TRAPLINE.REDIS.MEM.PUSED.HIGH}%)";
constexpr const char* kLinkDown = "Replication link to the master is down for 3m";
constexpr const char* kReplicaOffline = "Replica {#ENTITY}: not online for 3m";

ZabbixTemplate Build() {
  ZabbixTemplate t;
  t.macros = {
      Macro("{$TRAPLINE.REDIS.NODATA.PERIOD}", "5m",
            "No value from trapline for this long raises \"No data from trapline\"."),
      Macro("{$TRAPLINE.REDIS.MEM.PUSED.WARN}", "90",
            "Memory used, % of maxmemory, for 5m, above which to warn (only with maxmemory "
            "set)."),
      Macro("{$TRAPLINE.REDIS.MEM.PUSED.HIGH}", "98",
            "Memory used, % of maxmemory, at which eviction (or, with noeviction, refused "
            "writes) starts."),
      Macro("{$TRAPLINE.REDIS.EVICTIONS.MAX}", "0",
            "Evictions per second tolerated (mean over 5m); raise it for a cache that is meant "
            "to evict."),
      Macro("{$TRAPLINE.REDIS.MEM.FRAG.MAX}", "1.5",
            "Memory fragmentation ratio (RSS / used) above which to warn, for 15m."),
      Macro("{$TRAPLINE.REDIS.MEM.FRAG.MIN.USED}", "100M",
            "The fragmentation triggers only count above this much used memory (the ratio of a "
            "small dataset means nothing)."),
      Macro("{$TRAPLINE.REDIS.RDB.SAVE.AGE.MAX}", "1d",
            "Time since the last successful RDB save, with changes pending, above which to "
            "warn."),
      Macro("{$TRAPLINE.REDIS.REPLICAS.MIN}", "0",
            "Replicas that must be connected to this master (0: no check); set it per host."),
      Macro("{$TRAPLINE.REDIS.REPLICA.LAG.BYTES.WARN}", "10M",
            "Replication stream not yet acknowledged by a replica, for 5m; context: the "
            "replica (<ip>:<port>)."),
  };

  const std::string kHost;
  t.triggers = {
      Trigger(kHost, Severity::kAverage, "No data from trapline for {$TRAPLINE.REDIS.NODATA.PERIOD}",
              "nodata({{uptime}},{$TRAPLINE.REDIS.NODATA.PERIOD})=1",
              "trapline sent no uptime for this server (always reported): Redis is down or "
              "refuses trapline's connection, or trapline itself is down (see trapline's "
              "status). Other triggers of the server cannot fire meanwhile."),
      Trigger(kHost, Severity::kWarning, "Redis has been restarted (uptime under 10m)",
              "last({{uptime}})<10m",
              "The server started less than 10 minutes ago: without persistence its data is "
              "gone, with it the dataset was reloaded."),
      Trigger(kHost, Severity::kInformation, "Redis version has changed",
              "last({{version}},#1)<>last({{version}},#2) and length(last({{version}}))>0",
              "redis_version differs from the previous value: the server was upgraded or "
              "replaced. Resolves on the next value; the event stays in the history."),
      Trigger(kHost, Severity::kWarning, "Replication role has changed",
              "last({{replication.role}},#1)<>last({{replication.role}},#2) and "
              "length(last({{replication.role}}))>0",
              "The server turned from master into replica or back (failover, REPLICAOF). "
              "Resolves on the next value; the event stays in the history."),
      Trigger(kHost, Severity::kHigh, kMemHigh,
              "min({{memory.used_pct}},5m)>{$TRAPLINE.REDIS.MEM.PUSED.HIGH}",
              "used_memory stayed at maxmemory for 5 minutes: keys are evicted by the policy, "
              "or, with noeviction, writes fail with OOM errors.",
              "max({{memory.used_pct}},5m)<{$TRAPLINE.REDIS.MEM.PUSED.HIGH}"),
      Trigger(kHost, Severity::kWarning,
              "Memory used is high (over {$TRAPLINE.REDIS.MEM.PUSED.WARN}% of maxmemory for 5m)",
              "min({{memory.used_pct}},5m)>{$TRAPLINE.REDIS.MEM.PUSED.WARN}",
              "used_memory stayed above the warning share of maxmemory for 5 minutes.",
              "max({{memory.used_pct}},5m)<{$TRAPLINE.REDIS.MEM.PUSED.WARN}", {kMemHigh}),
      Trigger(kHost, Severity::kWarning,
              "Keys are being evicted (over {$TRAPLINE.REDIS.EVICTIONS.MAX}/s for 5m)",
              "avg({{keys.evicted}},5m)>{$TRAPLINE.REDIS.EVICTIONS.MAX}",
              "Keys are removed to stay under maxmemory. Expected for a cache with an LRU/LFU "
              "policy (raise the macro then), data loss for a store.",
              "max({{keys.evicted}},10m)<={$TRAPLINE.REDIS.EVICTIONS.MAX}"),
      Trigger(kHost, Severity::kAverage, "Connections are rejected",
              "max({{connections.rejected}},5m)>0",
              "Connections were refused within the last 5 minutes because maxclients was "
              "reached: clients get errors. Look for a connection leak or raise maxclients."),
      Trigger(kHost, Severity::kWarning,
              "Memory fragmentation is high (ratio over {$TRAPLINE.REDIS.MEM.FRAG.MAX} for 15m)",
              "min({{memory.fragmentation_ratio}},15m)>{$TRAPLINE.REDIS.MEM.FRAG.MAX} and "
              "last({{memory.used}})>{$TRAPLINE.REDIS.MEM.FRAG.MIN.USED}",
              "The process holds much more RSS than the data needs. activedefrag (jemalloc) or "
              "a restart gives it back.",
              "max({{memory.fragmentation_ratio}},15m)<{$TRAPLINE.REDIS.MEM.FRAG.MAX} or "
              "last({{memory.used}})<{$TRAPLINE.REDIS.MEM.FRAG.MIN.USED}"),
      Trigger(kHost, Severity::kWarning, "Memory is swapped out (fragmentation ratio under 1 for 15m)",
              "max({{memory.fragmentation_ratio}},15m)<1 and "
              "last({{memory.used}})>{$TRAPLINE.REDIS.MEM.FRAG.MIN.USED}",
              "RSS is smaller than the memory Redis allocated: the OS swapped part of it out, "
              "and every access to it is a disk read."),
      Trigger(kHost, Severity::kWarning, "Last RDB save failed",
              "last({{persistence.rdb_last_bgsave_ok}})=0",
              "The last BGSAVE failed (disk full, permissions, fork failure: see the Redis "
              "log). With the default stop-writes-on-bgsave-error, writes are refused."),
      Trigger(kHost, Severity::kWarning,
              "No RDB save for {$TRAPLINE.REDIS.RDB.SAVE.AGE.MAX} with changes pending",
              "last({{persistence.rdb_last_save_age}})>{$TRAPLINE.REDIS.RDB.SAVE.AGE.MAX} and "
              "last({{persistence.rdb_changes_since_last_save}})>0",
              "Changes are waiting and the last successful snapshot is older than the "
              "threshold: a restart would lose them (Redis >= 6.2). Raise the macro when RDB is "
              "deliberately off."),
      Trigger(kHost, Severity::kAverage, "Last AOF write failed",
              "last({{persistence.aof_last_write_ok}})=0 and last({{persistence.aof_enabled}})=1",
              "Redis could not write the append-only file (disk full?): writes are refused "
              "until it can."),
      Trigger(kHost, Severity::kWarning, "Last AOF rewrite failed",
              "last({{persistence.aof_last_bgrewrite_ok}})=0 and "
              "last({{persistence.aof_enabled}})=1",
              "BGREWRITEAOF failed: the AOF keeps growing. See the Redis log."),
      Trigger(kHost, Severity::kAverage, kLinkDown,
              "max({{replication.master_link_up}},3m)=0",
              "This replica has had no working link to its master for 3 minutes: it serves "
              "stale data. master_link_down_since tells for how long."),
      Trigger(kHost, Severity::kAverage,
              "Fewer replicas than expected (under {$TRAPLINE.REDIS.REPLICAS.MIN})",
              "max({{replication.replicas}},3m)<{$TRAPLINE.REDIS.REPLICAS.MIN}",
              "Fewer replicas were connected than the macro says for 3 minutes. Off until the "
              "macro is set (per host)."),

      Trigger("replica", Severity::kAverage, kReplicaOffline,
              "max({{replica.online}},3m)=0",
              "The master lists the replica, but not in state online (wait_bgsave, send_bulk: "
              "a full resynchronisation) for 3 minutes."),
      Trigger("replica", Severity::kWarning,
              R"(Replica {#ENTITY}: lag is high (over {$TRAPLINE.REDIS.REPLICA.LAG.BYTES.WARN:"{#ENTITY}"} for 5m))",
              R"(min({{replica.lag_bytes}},5m)>{$TRAPLINE.REDIS.REPLICA.LAG.BYTES.WARN:"{#ENTITY}"})",
              "The replica acknowledged less of the replication stream than the master produced "
              "by more than the threshold, for 5 minutes.",
              R"(max({{replica.lag_bytes}},5m)<{$TRAPLINE.REDIS.REPLICA.LAG.BYTES.WARN:"{#ENTITY}"})",
              {kReplicaOffline}),
      Trigger("replica", Severity::kWarning, "Replica {#ENTITY}: no acknowledgement for 30s",
              "min({{replica.lag}},3m)>30",
              "Replicas acknowledge every second; this one has been silent for more than 30 s "
              "throughout 3 minutes (network or a stuck replica).",
              "", {kReplicaOffline}),
  };

  t.graphs = {
      Graph(kHost, "Memory", {"memory.used", "memory.rss", "memory.peak", "memory.max"}),
      Graph(kHost, "Memory used, % of maxmemory", {"memory.used_pct"}),
      Graph(kHost, "Memory fragmentation ratio", {"memory.fragmentation_ratio"}),
      Graph(kHost, "Clients", {"clients.connected", "clients.blocked"}),
      Graph(kHost, "Connections accepted and rejected",
            {"connections.received", "connections.rejected"}),
      Graph(kHost, "Commands", {"ops"}),
      Graph(kHost, "Network", {"net.in", "net.out"}),
      Graph(kHost, "CPU", {"cpu.user", "cpu.sys"}, true),
      Graph(kHost, "Keyspace lookups", {"keyspace.hits", "keyspace.misses"}, true),
      Graph(kHost, "Keyspace hit ratio", {"keyspace.hit_ratio"}),
      Graph(kHost, "Keys", {"keys.total", "keys.expires"}),
      Graph(kHost, "Keys expired and evicted", {"keys.expired", "keys.evicted"}),
      Graph(kHost, "Replication stream", {"replication.offset"}),
      Graph(kHost, "Connected replicas", {"replication.replicas"}),
      Graph(kHost, "Changes since the last RDB save",
            {"persistence.rdb_changes_since_last_save"}),
      Graph(kHost, "Time since the last RDB save", {"persistence.rdb_last_save_age"}),

      Graph("keyspace", "Keys in {#ENTITY}", {"db.keys", "db.expires"}),
      Graph("keyspace", "Average TTL in {#ENTITY}", {"db.avg_ttl"}),

      Graph("replica", "Replica {#ENTITY}: lag", {"replica.lag_bytes"}),
      Graph("replica", "Replica {#ENTITY}: seconds since its last ACK", {"replica.lag"}),

      Summary("keyspace", "Keys of every database", "db.keys"),
      Summary("replica", "Lag of every replica", "replica.lag_bytes"),
  };
  return t;
}

}  // namespace

const ZabbixTemplate& Template() {
  static const ZabbixTemplate kTemplate = Build();
  return kTemplate;
}

}  // namespace trapline::plugins::redis
