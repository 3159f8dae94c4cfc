#pragma once
// The admin panel's routes (issue 7), the pure parts: request parsing and checking, the live
// events' coalescing, the probe's output. The routes themselves are HttpApi member functions
// in panel_api.cc (declared in http_api.h); this header is for them and for the unit tests
// (tests/unit/panel_api_test.cc). Nothing here does I/O.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/http_server.h"
#include "common/status.h"
#include "coordinator/http_api.h"

namespace trapline::coordinator::panel {

// The NOTIFY channel the v5 triggers raise (coordinator/migrations.cc).
inline constexpr const char* kEventsChannel = "trapline_events";

// ---- GET /api/v1/hosts ------------------------------------------------------------------------

struct HostFilter {
  std::optional<bool> enabled;      // ?enabled=
  std::optional<bool> maintenance;  // ?maintenance= (desired maintenance, whatever the status)
  std::string status;               // ?status=ok|error|unknown|disabled|maintenance, "" = any
  std::string plugin;               // ?plugin= a service of this plugin
  std::string group;                // ?group= this group or one nested under it ("a" has "a/b")
  std::string q;                    // ?q= substring of name or address, case-insensitive
  Paging paging;
};
Result<HostFilter> ParseHostFilter(const HttpRequest& request);

// ---- GET /api/v1/complete ---------------------------------------------------------------------

struct CompleteRequest {
  std::string field;   // host, group, plugin
  std::string prefix;  // may be empty
};
inline constexpr size_t kMaxSuggestions = 20;
Result<CompleteRequest> ParseCompleteRequest(const HttpRequest& request);

// ---- POST /api/v1/hosts/bulk ------------------------------------------------------------------

enum class BulkAction { kEnable, kDisable, kMaintenanceOn, kMaintenanceOff, kMoveGroup, kDelete };
inline constexpr size_t kMaxBulkHosts = 5000;

struct BulkRequest {
  std::vector<std::string> hosts;  // validated names, duplicates removed, order kept
  BulkAction action = BulkAction::kEnable;
  std::optional<double> until;  // maintenance_on: unix seconds; nullopt = open-ended
  std::string group;            // move_group
};
// {"hosts": [...], "action": "...", "until"?: RFC 3339 | null, "group"?: name}. "until" only
// with maintenance_on, "group" only (and required) with move_group.
Result<BulkRequest> ParseBulkRequest(std::string_view body);
// "host.enable", "host.disable", "maintenance.set", "maintenance.clear", "host.move_group",
// "host.delete": the audit rows' action.
std::string_view BulkAuditAction(BulkAction action);

// ---- GET /api/v1/audit ------------------------------------------------------------------------

struct AuditFilter {
  std::string actor, action, object_type, object;  // exact; action "host.*" = prefix "host."
  std::optional<double> since, until;              // unix seconds
  Paging paging;
};
Result<AuditFilter> ParseAuditFilter(const HttpRequest& request);

// ---- credential profiles ------------------------------------------------------------------------

// Known option keys per kind (what collector/cluster_member.cc reads):
//   ssh:        identity (path), known_hosts (path), trust_on_first_use (bool), use_agent (bool),
//               interval (1..3600), plugin (object of strings: the plugin's options)
//   postgresql: interval, plugin
//   redis:      interval, plugin
// Secret shape per kind: ssh {"private_key"?, "passphrase"?, "password"?};
//   postgresql {"password"}; redis {"password"}. Strings, at most 16 KiB each.
struct ProfileInput {
  std::string name;
  std::string kind;                         // ssh, postgresql, redis
  std::optional<std::string> username;      // nullopt: not given
  bool set_secret = false;                  // "secret" given: replaces the whole secret
  std::string secret_json = "{}";           // checked object, as JSON text
  std::optional<std::string> options_json;  // checked object, as JSON text
  // Which discovered services get this profile (migration 3, discovery_api.cc): those of
  // hosts in one of these groups, else the kind's default (one per kind).
  std::optional<std::vector<std::string>> host_groups;
  std::optional<bool> is_default;
};
// POST body: name and kind required.
Result<ProfileInput> ParseNewProfile(std::string_view body);
// PATCH body for a profile of `kind` (read from the registry first): username, secret,
// options; "kind" may be given only unchanged.
Result<ProfileInput> ParseProfilePatch(std::string_view body, std::string_view kind);

// ---- POST /api/v1/probe -----------------------------------------------------------------------

struct ProbeRequest {
  std::string uri;       // without a password (moved to `password`)
  std::string password;  // from the URI's user info, "" when none
  std::optional<std::string> credential_profile;
  std::string kind;  // ssh, postgresql, redis: from the scheme
};
inline constexpr size_t kMaxProbeUriBytes = 1024;
// {"uri": "ssh://u@h:22" | "postgresql://..." | "postgres://..." | "redis://...",
//  "credential_profile"?: name}. A password in the URI is taken out of it (it goes to the
// probe through a file, never its command line).
Result<ProbeRequest> ParseProbeRequest(std::string_view body);
// `uri` with "user@" put in front of its host when it names no user (and `user` is not "").
std::string UriWithUser(std::string_view uri, std::string_view user);

// The answer {"ok", "error"?, "entities": [...], "samples": N} from what `trapline probe
// --format json` wrote (one JSON object per line) and how it ended.
std::string ProbeAnswer(int64_t exit_status, bool timed_out, std::string_view out,
                        std::string_view err);

// ---- live events ----------------------------------------------------------------------------

// Turns NOTIFY payloads into the events a stream sends: at most one event per object
// (type + id) per `min_gap_ms` (the latest payload wins), a service/task/error event with a
// "host" also as a "host" event for it (the hosts page listens to "host" only), and past
// `burst` events of one type within a second, the rest of that second's events of the type
// as one {"type": T, "many": true} (the client refetches its list) at the second's end.
class EventCoalescer {
 public:
  struct Event {
    std::string type;  // the SSE event name
    std::string data;  // JSON
  };
  explicit EventCoalescer(uint64_t min_gap_ms = 200, size_t burst = 100)
      : min_gap_ms_(min_gap_ms), burst_(burst) {}

  // A payload that is not a JSON object with a string "type" is ignored (false).
  bool Add(uint64_t now_ms, std::string_view payload, std::vector<Event>* out);
  // What waited for its gap (or for its second) and may go now; forgets what is old.
  void Flush(uint64_t now_ms, std::vector<Event>* out);
  bool idle() const { return objects_.empty() && types_.empty(); }

 private:
  struct Object {
    uint64_t last_sent_ms = 0;
    std::optional<Event> pending;
  };
  struct TypeWindow {
    uint64_t start_ms = 0;
    size_t sent = 0;
    bool overflow = false;
  };
  void Offer(uint64_t now_ms, const std::string& key, Event e, std::vector<Event>* out);

  uint64_t min_gap_ms_;
  size_t burst_;
  std::map<std::string, Object> objects_;
  std::map<std::string, TypeWindow> types_;
};

}  // namespace trapline::coordinator::panel
