#pragma once
// Discovery reports (issue 6, point 2): what `trapline-discover` posts to the coordinator's
// POST /api/v1/discovery, checked before anything reaches the registry. Pure: no I/O, no
// loop, no exceptions; fuzzed (tests/fuzz/discovery_fuzz.cc).
//
// The wire format (README, "Discovery"):
//   {"version": 1, "script": "trapline-discover 1.0",
//    "host": {"name": "db01", "fqdn": "db01.example.com", "os": "Debian GNU/Linux 12",
//             "kernel": "6.1.0-26-amd64", "addresses": ["10.0.0.5", "fe80::1"],
//             "cpus": 8, "memory_bytes": 33554432000},
//    "services": [{"kind": "ssh", "port": 22},
//                 {"kind": "postgresql", "port": 5432, "version": "15.8",
//                  "data_directory": "/var/lib/postgresql/15/main"},
//                 {"kind": "redis", "port": 6379, "version": "7.0.15"},
//                 {"kind": "generic", "name": "nginx", "port": 80}]}
//
// Rules: the report is untrusted. Known fields only at every level; every string has a
// charset and a length cap; numbers are integers in range; nesting deeper than the format
// needs is refused before the JSON parser sees it. Each refusal is InvalidArgument with a
// reason that names the field ("services[3].port must be an integer from 1 to 65535, not
// 70000"). Two services with the same plugin and port are folded into one (the first wins;
// `folded` counts the others): a script that sees one socket twice (IPv4 and IPv6) is not
// wrong enough to refuse.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/status.h"

namespace trapline::coordinator {

inline constexpr size_t kMaxDiscoveryBodyBytes = 256 << 10;
inline constexpr size_t kMaxDiscoveredServices = 256;
inline constexpr size_t kMaxDiscoveredAddresses = 64;

struct DiscoveredService {
  std::string kind;            // ssh, postgresql, redis, generic
  std::string name;            // generic only: [a-z0-9._-]{1,64}
  int port = 0;                // 1..65535
  std::string version;         // optional, "" when absent
  std::string data_directory;  // optional (postgresql), an absolute path

  // The registry's services.plugin: ssh -> "linux", postgresql, redis, and
  // "generic:<name>" (stored, never a task).
  std::string plugin() const;
};

struct DiscoveryReport {
  int version = 1;
  std::string script;  // "trapline-discover 1.0"
  std::string host;    // the Zabbix host name (ValidateName's rule)
  std::string fqdn;
  std::string os;
  std::string kernel;
  std::vector<std::string> addresses;  // IPv4 / IPv6 literals (an IPv6 may carry %zone)
  std::optional<int64_t> cpus;
  std::optional<int64_t> memory_bytes;
  std::vector<DiscoveredService> services;  // at most kMaxDiscoveredServices, no duplicates
  size_t folded = 0;                        // duplicates dropped
};

// The body of a report, checked (see the rules above).
Result<DiscoveryReport> ParseDiscoveryReport(std::string_view body);

// The registry's hosts.facts for a report: {"fqdn", "os", "kernel", "addresses", "cpus",
// "memory_bytes", "script"} (absent numbers are null).
std::string FactsJson(const DiscoveryReport& report);
// The services as a JSON array for the registry statement: [{"plugin", "port", "kind",
// "details": {"version"?, "data_directory"?, "name"?}}].
std::string ServicesJson(const DiscoveryReport& report);

// The address a collector should connect to when the registry has none for the host: the
// first global IPv4 address, else the first global IPv6 one (loopback and link-local ones are
// skipped: they do not reach the host from a collector), else the FQDN, else the host name.
std::string PreferredAddress(const DiscoveryReport& report);

// The plugins that run as tasks (plugins/builtin.cc); services of any other plugin
// ("generic:nginx") are stored but never become tasks. Defined in discovery_api.cc (it needs
// the plugin list; this file stays free of it for the fuzzer). TaskPluginsArray: the same as
// a PostgreSQL text[] literal ("{linux,postgresql,redis}").
std::vector<std::string> TaskPlugins();
std::string TaskPluginsArray();

// POST /api/v1/hosts/{name}/clone {"to": ["h2", "h3"]}: 1..100 host names (ValidateName),
// duplicates folded.
Result<std::vector<std::string>> ParseCloneBody(std::string_view body);

// POST /api/v1/hosts/{name}/services: a service added by hand. The plugin's URI scheme is
// checked by the route (it knows the plugins).
struct NewService {
  std::string plugin;                             // a plugin name: [a-z0-9_-]{1,32}
  int port = 0;                                   // 0..65535 (0: the plugin's default)
  std::string uri;                                // optional; at most 1024 bytes
  std::optional<std::string> credential_profile;  // a profile name
  bool enabled = false;
};
// Refused (400) when the URI carries a secret (UriHasSecret): answers and the audit log show
// URIs, and credentials belong in a credential profile.
Result<NewService> ParseNewService(std::string_view body);

// Whether a connection URI carries a secret: a password in its userinfo ("user:pw@host", the
// userinfo taken up to the last '@', so a password with '/' or '@' counts) or a password=,
// passfile= or sslpassword= query parameter (the key percent-decoded, any case).
bool UriHasSecret(std::string_view uri);

// [discovery] in the coordinator's config.
struct DiscoveryOptions {
  std::string enrolment_secret;  // first line of enrolment_secret_file; empty: no enrolment
  int gone_after_reports = 3;    // a discovered service missing from this many reports: gone
  double rate_per_minute = 6;    // reports per source address (and per host token)
  double burst = 3;              // bucket size
};

// A token bucket per key (a peer address, a token's hash), refilled at `rate_per_s` up to
// `burst`. Take() says how long to wait when the bucket is empty. Bounded: past max_keys,
// full buckets are forgotten (a full bucket is the same as a new one). Not thread-safe.
class RateLimiter {
 public:
  RateLimiter(double rate_per_s, double burst, size_t max_keys = 100000);
  // 0 when a token was taken, otherwise the seconds until one is available (> 0).
  double Take(const std::string& key, double now_s);
  size_t keys() const { return buckets_.size(); }

 private:
  struct Bucket {
    double tokens;
    double at_s;
  };
  void Prune(double now_s);
  double rate_per_s_;
  double burst_;
  size_t max_keys_;
  std::unordered_map<std::string, Bucket> buckets_;
};

// Per-host tokens: 32 random bytes as 64 lower-case hex digits; the registry stores only
// their SHA-256 (hex, host_tokens.token_hash), so a leaked database does not hand out report
// rights. Not auth::TokenHash (BLAKE2b, for sessions): the two hashes are not interchangeable.
std::string NewHostToken();
std::string HostTokenHash(std::string_view token);

}  // namespace trapline::coordinator
