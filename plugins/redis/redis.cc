#include "plugins/redis/redis.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace trapline::plugins::redis {
namespace {

// ---------------------------------------------------------------------------------------------
// Metric declarations

// Redis declares no per-entity counters: the scale is the fifth argument.
MetricSpec Counter(std::string name, std::string title, std::string units, std::string description,
                   double rate_scale = 1.0) {
  return CounterSpec(std::move(name), std::move(title), std::move(units), std::move(description),
                     "", rate_scale);
}

std::vector<MetricSpec> BuildMetrics() {
  return {
      // Server
      TextSpec("version", "Redis version", "redis_version of the server."),
      GaugeSpec("uptime", "Uptime", "uptime",
                "Seconds since the server started (uptime_in_seconds)."),
      // Clients
      GaugeSpec("clients.connected", "Connected clients", "",
                "Client connections, replicas excluded (connected_clients)."),
      GaugeSpec("clients.blocked", "Blocked clients", "",
                "Clients waiting in a blocking command such as BLPOP (blocked_clients)."),
      Counter("connections.received", "Connections accepted per second", "/s",
              "Rate of total_connections_received."),
      Counter("connections.rejected", "Connections rejected per second", "/s",
              "Rate of rejected_connections: connections refused because of maxclients."),
      // Memory
      GaugeSpec("memory.used", "Memory used", "B",
                "Bytes allocated by Redis through its allocator (used_memory)."),
      GaugeSpec("memory.rss", "Memory RSS", "B",
                "Resident set size of the server process as the OS sees it (used_memory_rss)."),
      GaugeSpec("memory.peak", "Memory peak", "B",
                "Highest used_memory since the start or the last MEMORY RESET (used_memory_peak)."),
      GaugeSpec("memory.fragmentation_ratio", "Memory fragmentation ratio", "",
                "used_memory_rss / used_memory (mem_fragmentation_ratio)."),
      GaugeSpec("memory.max", "Memory limit", "B",
                "The maxmemory setting; 0 means no limit (maxmemory)."),
      GaugeSpec("memory.used_pct", "Memory used, % of the limit", "%",
                "used_memory / maxmemory * 100; only reported when maxmemory is set."),
      // Commands and network
      Counter("ops", "Commands per second", "/s",
              "Rate of total_commands_processed, exact over each tick (includes the INFO of "
              "the collector itself, one per tick)."),
      Counter("net.in", "Network in", "Bps", "Rate of total_net_input_bytes."),
      Counter("net.out", "Network out", "Bps", "Rate of total_net_output_bytes."),
      Counter("cpu.sys", "CPU system time", "%",
              "Rate of used_cpu_sys: % of one CPU spent in the kernel for the server.", 100.0),
      Counter("cpu.user", "CPU user time", "%",
              "Rate of used_cpu_user: % of one CPU spent in user space by the server.", 100.0),
      // Keyspace
      Counter("keyspace.hits", "Keyspace hits per second", "/s",
              "Rate of keyspace_hits: successful key lookups."),
      Counter("keyspace.misses", "Keyspace misses per second", "/s",
              "Rate of keyspace_misses: lookups of keys that do not exist."),
      GaugeSpec("keyspace.hit_ratio", "Keyspace hit ratio", "%",
                "keyspace_hits / (keyspace_hits + keyspace_misses) * 100 since the start or the "
                "last CONFIG RESETSTAT; not reported before the first lookup."),
      Counter("keys.evicted", "Keys evicted per second", "/s",
              "Rate of evicted_keys: keys removed because of maxmemory."),
      Counter("keys.expired", "Keys expired per second", "/s", "Rate of expired_keys."),
      GaugeSpec("keys.total", "Keys", "", "Keys in all databases (sum of the Keyspace section)."),
      GaugeSpec("keys.expires", "Keys with a TTL", "",
                "Keys with an expiry in all databases (sum of the Keyspace section)."),
      // Per database (entity kind "keyspace", name "db<N>")
      GaugeSpec("db.keys", "Keys in {#ENTITY}", "", "Keys in the database.", "keyspace"),
      GaugeSpec("db.expires", "Keys with a TTL in {#ENTITY}", "",
                "Keys with an expiry in the database.", "keyspace"),
      GaugeSpec("db.avg_ttl", "Average TTL in {#ENTITY}", "s",
                "Redis' estimate of the average remaining TTL of the keys with an expiry (avg_ttl, "
                "converted from ms).",
                "keyspace"),
      // Replication
      TextSpec("replication.role", "Replication role",
               "role as Redis reports it: master or slave (a replica)."),
      GaugeSpec("replication.replicas", "Connected replicas", "", "connected_slaves."),
      Counter("replication.offset", "Replication stream", "Bps",
              "Rate of master_repl_offset: bytes of replication stream produced (master) or "
              "received (replica) per second."),
      GaugeSpec("replication.master_link_up", "Link to the master is up", "",
                "On a replica: 1 when master_link_status is up, 0 when down."),
      GaugeSpec("replication.master_last_io", "Seconds since the last I/O with the master", "s",
                "On a replica: master_last_io_seconds_ago (not reported while never connected)."),
      GaugeSpec("replication.master_link_down_since", "Link to the master down for", "s",
                "On a replica whose link is down: master_link_down_since_seconds."),
      // Per replica, as its master sees it (entity kind "replica", name "<ip>:<port>")
      GaugeSpec("replica.online", "Replica {#ENTITY} online", "",
                "1 when the master lists the replica in state online, else 0.", "replica"),
      GaugeSpec("replica.lag_bytes", "Replica {#ENTITY} lag", "B",
                "master_repl_offset minus the offset the replica acknowledged.", "replica"),
      GaugeSpec("replica.lag", "Replica {#ENTITY} seconds since its last ACK", "s",
                "Seconds since the replica last acknowledged (lag; replicas ACK every second).",
                "replica"),
      // Persistence
      GaugeSpec("persistence.rdb_last_bgsave_ok", "Last RDB save succeeded", "",
                "1 when rdb_last_bgsave_status is ok, 0 otherwise."),
      GaugeSpec(
          "persistence.rdb_last_save_age", "Seconds since the last RDB save", "s",
          "server_time_usec - rdb_last_save_time, both from the server (needs Redis >= 6.2)."),
      GaugeSpec("persistence.rdb_changes_since_last_save", "Changes since the last RDB save", "",
                "rdb_changes_since_last_save."),
      GaugeSpec("persistence.aof_enabled", "AOF enabled", "", "aof_enabled: 1 when appendonly."),
      GaugeSpec("persistence.aof_last_write_ok", "Last AOF write succeeded", "",
                "1 when aof_last_write_status is ok, 0 otherwise."),
      GaugeSpec("persistence.aof_last_bgrewrite_ok", "Last AOF rewrite succeeded", "",
                "1 when aof_last_bgrewrite_status is ok, 0 otherwise."),
  };
}

// ---------------------------------------------------------------------------------------------
// INFO fields read by the parser

enum Field : std::size_t {
  kAofEnabled,
  kAofLastBgrewriteStatus,
  kAofLastWriteStatus,
  kBlockedClients,
  kConnectedClients,
  kConnectedSlaves,
  kEvictedKeys,
  kExpiredKeys,
  kKeyspaceHits,
  kKeyspaceMisses,
  kMasterLastIoSecondsAgo,
  kMasterLinkDownSinceSeconds,
  kMasterLinkStatus,
  kMasterReplOffset,
  kMaxmemory,
  kMemFragmentationRatio,
  kRdbChangesSinceLastSave,
  kRdbLastBgsaveStatus,
  kRdbLastSaveTime,
  kRedisVersion,
  kRejectedConnections,
  kRole,
  kServerTimeUsec,
  kTotalCommandsProcessed,
  kTotalConnectionsReceived,
  kTotalNetInputBytes,
  kTotalNetOutputBytes,
  kUptimeInSeconds,
  kUsedCpuSys,
  kUsedCpuUser,
  kUsedMemory,
  kUsedMemoryPeak,
  kUsedMemoryRss,
  kFieldCount,
};

struct FieldName {
  std::string_view name;
  Field field;
  bool every_redis;  // reported by every Redis >= 5.0 (in INFO default): warn when missing
};

// Sorted by name and indexed by Field (checked below).
constexpr std::array<FieldName, kFieldCount> kFieldNames = {{
    {"aof_enabled", kAofEnabled, true},
    {"aof_last_bgrewrite_status", kAofLastBgrewriteStatus, true},
    {"aof_last_write_status", kAofLastWriteStatus, true},
    {"blocked_clients", kBlockedClients, true},
    {"connected_clients", kConnectedClients, true},
    {"connected_slaves", kConnectedSlaves, true},
    {"evicted_keys", kEvictedKeys, true},
    {"expired_keys", kExpiredKeys, true},
    {"keyspace_hits", kKeyspaceHits, true},
    {"keyspace_misses", kKeyspaceMisses, true},
    {"master_last_io_seconds_ago", kMasterLastIoSecondsAgo, false},          // replicas only
    {"master_link_down_since_seconds", kMasterLinkDownSinceSeconds, false},  // link down only
    {"master_link_status", kMasterLinkStatus, false},                        // replicas only
    {"master_repl_offset", kMasterReplOffset, true},
    {"maxmemory", kMaxmemory, true},
    {"mem_fragmentation_ratio", kMemFragmentationRatio, true},
    {"rdb_changes_since_last_save", kRdbChangesSinceLastSave, true},
    {"rdb_last_bgsave_status", kRdbLastBgsaveStatus, true},
    {"rdb_last_save_time", kRdbLastSaveTime, true},
    {"redis_version", kRedisVersion, true},
    {"rejected_connections", kRejectedConnections, true},
    {"role", kRole, true},
    {"server_time_usec", kServerTimeUsec, false},  // Redis >= 6.2
    {"total_commands_processed", kTotalCommandsProcessed, true},
    {"total_connections_received", kTotalConnectionsReceived, true},
    {"total_net_input_bytes", kTotalNetInputBytes, true},
    {"total_net_output_bytes", kTotalNetOutputBytes, true},
    {"uptime_in_seconds", kUptimeInSeconds, true},
    {"used_cpu_sys", kUsedCpuSys, true},
    {"used_cpu_user", kUsedCpuUser, true},
    {"used_memory", kUsedMemory, true},
    {"used_memory_peak", kUsedMemoryPeak, true},
    {"used_memory_rss", kUsedMemoryRss, true},
}};

constexpr bool FieldNamesSorted() {
  for (std::size_t i = 0; i < kFieldNames.size(); ++i) {
    if (kFieldNames[i].field != i) return false;
    if (i > 0 && !(kFieldNames[i - 1].name < kFieldNames[i].name)) return false;
  }
  return true;
}
static_assert(FieldNamesSorted(), "kFieldNames: sorted by name, indexed by Field");

// The fields in a small hash table: an INFO reply has ~150-400 lines and names only a few
// dozen fields, so nearly every line must be settled without a string compare. A bucket is
// chosen by the name's length and three of its characters (a length alone left several
// candidates per line, a binary search over the names ~5 compares per line); the names in a
// bucket are then compared in full.
constexpr std::size_t kMaxFieldName = 40;
constexpr std::size_t kBuckets = 256;
constexpr std::size_t Bucket(std::string_view name) {
  const auto c = [&](std::size_t i) {
    return static_cast<std::size_t>(static_cast<unsigned char>(name[i]));
  };
  return (name.size() * 131 + c(0) * 7 + c(name.size() / 2) * 31 + c(name.size() - 1)) % kBuckets;
}
struct FieldTable {
  std::array<std::uint8_t, kBuckets + 1> begin{};  // [begin[b], begin[b + 1]): bucket b
  std::array<std::uint8_t, kFieldCount> field{};
};
constexpr FieldTable BuildFieldTable() {
  FieldTable t;
  std::size_t next = 0;
  for (std::size_t b = 0; b < kBuckets; ++b) {
    t.begin[b] = static_cast<std::uint8_t>(next);
    for (const FieldName& f : kFieldNames) {
      if (Bucket(f.name) == b) t.field[next++] = static_cast<std::uint8_t>(f.field);
    }
  }
  t.begin[kBuckets] = static_cast<std::uint8_t>(next);
  return t;
}
constexpr FieldTable kFieldTable = BuildFieldTable();
static_assert(kFieldTable.begin[kBuckets] == kFieldCount, "every field is in the table");
constexpr bool FieldNamesShort() {
  for (const FieldName& f : kFieldNames) {
    if (f.name.empty() || f.name.size() > kMaxFieldName) return false;
  }
  return true;
}
static_assert(FieldNamesShort(), "every field name is 1 to kMaxFieldName long");

// The field named `name`, or kFieldCount.
Field LookupField(std::string_view name) {
  if (name.empty() || name.size() > kMaxFieldName) return kFieldCount;
  const std::size_t b = Bucket(name);
  for (std::size_t i = kFieldTable.begin[b]; i < kFieldTable.begin[b + 1]; ++i) {
    const FieldName& f = kFieldNames[kFieldTable.field[i]];
    if (f.name.size() == name.size() &&
        std::memcmp(f.name.data(), name.data(), name.size()) == 0) {
      return f.field;
    }
  }
  return kFieldCount;
}

// "<prefix><digits>", e.g. "db0", "slave12".
bool IsNumbered(std::string_view key, std::string_view prefix) {
  if (key.size() <= prefix.size() || std::memcmp(key.data(), prefix.data(), prefix.size()) != 0) {
    return false;
  }
  for (std::size_t i = prefix.size(); i < key.size(); ++i) {
    if (key[i] < '0' || key[i] > '9') return false;
  }
  return true;
}

// Fields whose value maps 1:1 to a reading.
struct Direct {
  Field field;
  std::string_view metric;
};
constexpr Direct kDirect[] = {
    {kUptimeInSeconds, "uptime"},
    {kConnectedClients, "clients.connected"},
    {kBlockedClients, "clients.blocked"},
    {kTotalConnectionsReceived, "connections.received"},
    {kRejectedConnections, "connections.rejected"},
    {kUsedMemory, "memory.used"},
    {kUsedMemoryRss, "memory.rss"},
    {kUsedMemoryPeak, "memory.peak"},
    {kMemFragmentationRatio, "memory.fragmentation_ratio"},
    {kMaxmemory, "memory.max"},
    {kTotalCommandsProcessed, "ops"},
    {kTotalNetInputBytes, "net.in"},
    {kTotalNetOutputBytes, "net.out"},
    {kUsedCpuSys, "cpu.sys"},
    {kUsedCpuUser, "cpu.user"},
    {kKeyspaceHits, "keyspace.hits"},
    {kKeyspaceMisses, "keyspace.misses"},
    {kEvictedKeys, "keys.evicted"},
    {kExpiredKeys, "keys.expired"},
    {kConnectedSlaves, "replication.replicas"},
    {kMasterReplOffset, "replication.offset"},
    {kMasterLinkDownSinceSeconds, "replication.master_link_down_since"},
    {kRdbChangesSinceLastSave, "persistence.rdb_changes_since_last_save"},
    {kAofEnabled, "persistence.aof_enabled"},
};

// "ok"/"err" style fields: 1 for the good word, 0 for anything else.
struct Status {
  Field field;
  std::string_view good;
  std::string_view metric;
};
constexpr Status kStatus[] = {
    {kRdbLastBgsaveStatus, "ok", "persistence.rdb_last_bgsave_ok"},
    {kAofLastWriteStatus, "ok", "persistence.aof_last_write_ok"},
    {kAofLastBgrewriteStatus, "ok", "persistence.aof_last_bgrewrite_ok"},
    {kMasterLinkStatus, "up", "replication.master_link_up"},
};

// ---------------------------------------------------------------------------------------------
// Parsing helpers

// A whole string_view as a finite double ("12", "-1", "13.71"); nothing else.
bool ParseNumber(std::string_view s, double* out) { return ParseFiniteNumber(s, out); }

// A value quoted for a warning: bounded and printable.
std::string Shown(std::string_view s) {
  constexpr std::size_t kMax = 40;
  std::string out = "'";
  for (std::size_t i = 0; i < s.size() && i < kMax; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    out.push_back(c >= 0x20 && c < 0x7f ? static_cast<char>(c) : '?');
  }
  if (s.size() > kMax) out += "...";
  out += "'";
  return out;
}

// Calls f(key, value) for each "k=v" item of a comma-separated list (a keyspace or a replica
// line); items without '=' are passed with an empty value.
template <typename F>
void ForEachItem(std::string_view list, F&& f) {
  while (!list.empty()) {
    std::size_t comma = list.find(',');
    std::string_view item = list.substr(0, comma);
    list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
    std::size_t eq = item.find('=');
    if (eq == std::string_view::npos) {
      f(item, std::string_view());
    } else {
      f(item.substr(0, eq), item.substr(eq + 1));
    }
  }
}

class Parser {
 public:
  ParseResult Run(std::string_view info);

 private:
  // One line, without its '\n'.
  void Line(const char* begin, const char* end);
  void Keyspace(std::string_view db, std::string_view list);
  void Replica(std::string_view slave, std::string_view list);
  void Add(std::string_view metric, double value, std::string_view entity = {}) {
    Reading& r = out_.readings.emplace_back();
    r.metric = metric;  // static: see Reading
    if (!entity.empty()) r.entity.assign(entity);
    r.value = value;
  }
  void AddText(std::string_view metric, std::string_view text) {
    Reading& r = out_.readings.emplace_back();
    r.metric = metric;
    r.text.assign(text);
  }
  void Warn(std::string w) { out_.warnings.push_back(std::move(w)); }
  // The field as a number, or nullopt (with a warning when present but unreadable).
  std::optional<double> Number(Field f);

  ParseResult out_;
  std::array<std::optional<std::string_view>, kFieldCount> fields_;
  std::array<bool, kFieldCount> number_warned_{};
  bool keyspace_section_ = false;
  std::vector<std::pair<std::string_view, std::string_view>> dbs_;       // ("db0", "keys=...")
  std::vector<std::pair<std::string_view, std::string_view>> replicas_;  // ("slave0", "ip=...")
};

std::optional<double> Parser::Number(Field f) {
  if (!fields_[f]) return std::nullopt;
  double v = 0;
  if (ParseNumber(*fields_[f], &v)) return v;
  if (!number_warned_[f]) {
    number_warned_[f] = true;
    Warn(std::string(kFieldNames[f].name) + ": not a number: " + Shown(*fields_[f]));
  }
  return std::nullopt;
}

void Parser::Line(const char* begin, const char* end) {
  // Called ~150 times per reply, for a few dozen fields: pointers, no bounds-checked substr.
  if (end != begin && end[-1] == '\r') --end;
  if (end == begin) return;
  if (*begin == '#') {
    std::string_view name(begin + 1, static_cast<std::size_t>(end - begin - 1));
    while (!name.empty() && name.front() == ' ') name.remove_prefix(1);
    if (name == "Keyspace") keyspace_section_ = true;
    return;
  }
  const auto* colon =
      static_cast<const char*>(std::memchr(begin, ':', static_cast<std::size_t>(end - begin)));
  if (colon == nullptr || colon == begin) return;  // not a field: ignored
  std::string_view key(begin, static_cast<std::size_t>(colon - begin));
  std::string_view value(colon + 1, static_cast<std::size_t>(end - colon - 1));
  if (Field f = LookupField(key); f != kFieldCount) {
    fields_[f] = value;  // a repeated field: the last one counts
  } else if (key[0] == 'd' && IsNumbered(key, "db")) {
    dbs_.emplace_back(key, value);
  } else if (key[0] == 's' && IsNumbered(key, "slave")) {
    replicas_.emplace_back(key, value);
  }
}

void Parser::Keyspace(std::string_view db, std::string_view list) {
  std::optional<double> keys;
  std::optional<double> expires;
  std::optional<double> avg_ttl_ms;
  ForEachItem(list, [&](std::string_view k, std::string_view v) {
    std::optional<double>* slot = k == "keys"      ? &keys
                                  : k == "expires" ? &expires
                                  : k == "avg_ttl" ? &avg_ttl_ms
                                                   : nullptr;
    if (slot == nullptr) return;  // subexpiry= (7.2) and anything newer
    double x = 0;
    if (ParseNumber(v, &x)) {
      *slot = x;
    } else {
      Warn(std::string(db) + ": " + std::string(k) + " not a number: " + Shown(v));
    }
  });
  std::string missing;
  if (keys) Add("db.keys", *keys, db);
  if (expires) Add("db.expires", *expires, db);
  if (avg_ttl_ms) Add("db.avg_ttl", *avg_ttl_ms / 1000.0, db);
  if (list.find("keys=") == std::string_view::npos) missing += " keys";
  if (list.find("expires=") == std::string_view::npos) missing += " expires";
  if (list.find("avg_ttl=") == std::string_view::npos) missing += " avg_ttl";
  if (!missing.empty()) Warn(std::string(db) + ": missing" + missing);
  out_.entities.push_back(Entity{"keyspace", std::string(db), {}});
}

void Parser::Replica(std::string_view slave, std::string_view list) {
  std::string_view ip;
  std::string_view port;
  std::string_view state;
  std::optional<std::string_view> offset;
  std::optional<std::string_view> lag;
  ForEachItem(list, [&](std::string_view k, std::string_view v) {
    if (k == "ip") ip = v;
    if (k == "port") port = v;
    if (k == "state") state = v;
    if (k == "offset") offset = v;
    if (k == "lag") lag = v;
  });
  if (ip.empty() || port.empty()) {
    Warn(std::string(slave) + ": no ip or port: " + Shown(list));
    return;
  }
  std::string name;
  if (ip.find(':') != std::string_view::npos) {
    name = "[" + std::string(ip) + "]:" + std::string(port);
  } else {
    name = std::string(ip) + ":" + std::string(port);
  }
  Add("replica.online", state == "online" ? 1 : 0, name);
  double x = 0;
  if (offset) {
    std::optional<double> master = Number(kMasterReplOffset);
    if (!ParseNumber(*offset, &x)) {
      Warn(std::string(slave) + ": offset not a number: " + Shown(*offset));
    } else if (master) {
      Add("replica.lag_bytes", std::max(0.0, *master - x), name);
    }
  }
  if (lag) {
    if (ParseNumber(*lag, &x)) {
      Add("replica.lag", x, name);
    } else {
      Warn(std::string(slave) + ": lag not a number: " + Shown(*lag));
    }
  }
  out_.entities.push_back(
      Entity{"replica", name, {{"ip", std::string(ip)}, {"port", std::string(port)}}});
}

ParseResult Parser::Run(std::string_view info) {
  if (info.empty()) {
    Warn("empty INFO reply");
    return std::move(out_);
  }
  const char* p = info.data();
  const char* const end = p + info.size();
  while (p != end) {
    const auto* nl =
        static_cast<const char*>(std::memchr(p, '\n', static_cast<std::size_t>(end - p)));
    if (nl == nullptr) {
      Warn("INFO reply does not end with a line end (truncated?): last line ignored: " +
           Shown(std::string_view(p, static_cast<std::size_t>(end - p))));
      break;
    }
    Line(p, nl);
    p = nl + 1;
  }

  // Fields every Redis >= 5.0 has (and, on a replica, the link fields).
  const bool replica = fields_[kRole] && *fields_[kRole] == "slave";
  std::string missing;
  for (const FieldName& f : kFieldNames) {
    bool expected =
        f.every_redis ||
        (replica && (f.field == kMasterLinkStatus || f.field == kMasterLastIoSecondsAgo));
    if (expected && !fields_[f.field]) {
      missing += missing.empty() ? " " : ", ";
      missing += f.name;
    }
  }
  if (!missing.empty()) Warn("missing INFO fields (every Redis >= 5 has them):" + missing);

  // Every reading at most once, plus three per database and per replica: one allocation.
  out_.readings.reserve(std::size(kDirect) + std::size(kStatus) + 10 +
                        3 * (dbs_.size() + replicas_.size()));
  if (fields_[kRedisVersion]) AddText("version", *fields_[kRedisVersion]);
  if (fields_[kRole]) AddText("replication.role", *fields_[kRole]);
  for (const Direct& d : kDirect) {
    if (auto v = Number(d.field)) Add(d.metric, *v);
  }
  for (const Status& s : kStatus) {
    if (!fields_[s.field]) continue;
    if (fields_[s.field]->empty()) {
      Warn(std::string(kFieldNames[s.field].name) + ": empty");
      continue;
    }
    Add(s.metric, *fields_[s.field] == s.good ? 1 : 0);
  }
  if (auto io = Number(kMasterLastIoSecondsAgo); io && *io >= 0) {
    Add("replication.master_last_io", *io);  // -1: never connected
  }

  auto used = Number(kUsedMemory);
  auto max = Number(kMaxmemory);
  if (used && max && *max > 0) Add("memory.used_pct", *used / *max * 100.0);

  auto hits = Number(kKeyspaceHits);
  auto misses = Number(kKeyspaceMisses);
  if (hits && misses && *hits >= 0 && *misses >= 0 && *hits + *misses > 0) {
    Add("keyspace.hit_ratio", *hits / (*hits + *misses) * 100.0);
  }

  // The age of the last save from the server's own clock, never the collector's.
  if (auto last_save = Number(kRdbLastSaveTime)) {
    if (!fields_[kServerTimeUsec]) {
      Warn("server_time_usec missing (Redis < 6.2): no persistence.rdb_last_save_age");
    } else if (auto now_us = Number(kServerTimeUsec)) {
      if (*now_us > 0) {
        Add("persistence.rdb_last_save_age", std::max(0.0, *now_us / 1e6 - *last_save));
      } else {
        Warn("server_time_usec: not a time: " + Shown(*fields_[kServerTimeUsec]));
      }
    }
  }

  double total_keys = 0;
  double total_expires = 0;
  for (const auto& [db, list] : dbs_) {
    std::size_t before = out_.readings.size();
    Keyspace(db, list);
    for (std::size_t i = before; i < out_.readings.size(); ++i) {
      if (out_.readings[i].metric == "db.keys") total_keys += out_.readings[i].value;
      if (out_.readings[i].metric == "db.expires") total_expires += out_.readings[i].value;
    }
  }
  // Databases without keys are not listed: the totals are 0 then, but only when the reply
  // has a Keyspace section at all.
  if (keyspace_section_ || !dbs_.empty()) {
    Add("keys.total", total_keys);
    Add("keys.expires", total_expires);
  }
  for (const auto& [slave, list] : replicas_) Replica(slave, list);
  return std::move(out_);
}

}  // namespace

const std::vector<MetricSpec>& Metrics() {
  static const std::vector<MetricSpec> metrics = BuildMetrics();
  return metrics;
}

std::vector<std::string> TickCommand() { return {"INFO"}; }

ParseResult ParseInfo(std::string_view info) { return Parser().Run(info); }

}  // namespace trapline::plugins::redis
