#include "coordinator/discovery.h"

#include <arpa/inet.h>
#include <sodium.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

#include "coordinator/http_api_internal.h"

namespace trapline::coordinator {

using nlohmann::json;

namespace {

// root { services [ { } ] }: deeper than that is not a report.
constexpr int kMaxReportDepth = 3;
constexpr size_t kMaxScriptBytes = 64;
constexpr size_t kMaxFqdnBytes = 255;
constexpr size_t kMaxTextBytes = 128;  // os, kernel
constexpr size_t kMaxVersionBytes = 64;
constexpr size_t kMaxPathBytes = 1024;
constexpr size_t kMaxGenericNameBytes = 64;
constexpr int64_t kMaxCpus = 1 << 16;
constexpr int64_t kMaxMemoryBytes = int64_t{1} << 50;  // 1 PiB

Status Bad(const std::string& field, const std::string& why) {
  return Status::InvalidArgument(field + " " + why);
}

Status CheckKeys(const json& j, const std::string& where,
                 std::initializer_list<std::string_view> known) {
  for (const auto& [key, value] : j.items()) {
    if (std::find(known.begin(), known.end(), key) != known.end()) continue;
    std::string list;
    for (std::string_view k : known) list += (list.empty() ? "" : ", ") + std::string(k);
    return Status::InvalidArgument("unknown field '" + api::Shown(key) + "' in " + where +
                                   " (known: " + list + ")");
  }
  return Status::OK();
}

// Printable text (no control characters), at most `max` bytes; "" allowed.
Result<std::string> Text(const json& j, const char* key, const std::string& where, size_t max) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::string();
  std::string field = where + key;
  if (!it->is_string()) return Bad(field, "must be a string");
  std::string s = it->get<std::string>();
  if (s.size() > max) return Bad(field, "is longer than " + std::to_string(max) + " bytes");
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) return Bad(field, "'" + api::Shown(s) + "' has a control character");
  }
  return s;
}

Result<int64_t> Integer(const json& v, const std::string& field, int64_t min, int64_t max) {
  auto range = [&] {
    std::string shown = v.is_string()
                            ? "\"" + api::Shown(v.get<std::string>()) + "\""
                            : api::Shown(v.dump(-1, ' ', false, json::error_handler_t::replace));
    return Bad(field, "must be an integer from " + std::to_string(min) + " to " +
                          std::to_string(max) + ", not " + shown);
  };
  if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(max)) return range();
    auto n = static_cast<int64_t>(u);
    if (n < min) return range();
    return n;
  }
  if (!v.is_number_integer()) return range();
  int64_t n = v.get<int64_t>();
  if (n < min || n > max) return range();
  return n;
}

Status CheckAddress(const std::string& a, const std::string& field) {
  if (a.empty() || a.size() > 64) return Bad(field, "must be an IPv4 or IPv6 address");
  std::array<unsigned char, 16> buf{};
  if (inet_pton(AF_INET, a.c_str(), buf.data()) == 1) return Status::OK();
  std::string ip = a;
  if (size_t pct = a.find('%'); pct != std::string::npos) {
    std::string zone = a.substr(pct + 1);
    if (zone.empty() || zone.size() > 32)
      return Bad(field, "'" + api::Shown(a) + "' has a bad zone");
    for (char c : zone) {
      if (!api::IsAlnum(c) && c != '.' && c != '_' && c != '-') {
        return Bad(field, "'" + api::Shown(a) + "' has a bad zone");
      }
    }
    ip = a.substr(0, pct);
  }
  if (inet_pton(AF_INET6, ip.c_str(), buf.data()) == 1) return Status::OK();
  return Bad(field, "'" + api::Shown(a) + "' is not an IPv4 or IPv6 address (no prefix length)");
}

Result<DiscoveredService> ParseService(const json& j, size_t i) {
  std::string where = "services[" + std::to_string(i) + "]";
  if (!j.is_object()) return Bad(where, "must be an object");
  TRAPLINE_RETURN_IF_ERROR(
      CheckKeys(j, where, {"kind", "port", "name", "version", "data_directory"}));
  DiscoveredService s;
  auto kind = j.find("kind");
  if (kind == j.end() || !kind->is_string()) {
    return Bad(where + ".kind", "is required: ssh, postgresql, redis or generic");
  }
  s.kind = kind->get<std::string>();
  if (s.kind != "ssh" && s.kind != "postgresql" && s.kind != "redis" && s.kind != "generic") {
    return Bad(where + ".kind",
               "'" + api::Shown(s.kind) + "' is not ssh, postgresql, redis or generic");
  }
  auto port = j.find("port");
  if (port == j.end()) return Bad(where + ".port", "is required");
  TRAPLINE_ASSIGN_OR_RETURN(int64_t p, Integer(*port, where + ".port", 1, 65535));
  s.port = static_cast<int>(p);
  auto name = j.find("name");
  if (s.kind == "generic") {
    if (name == j.end() || !name->is_string()) {
      return Bad(where + ".name", "is required for a generic service ([a-z0-9._-], 1 to 64 bytes)");
    }
    s.name = name->get<std::string>();
    bool ok = !s.name.empty() && s.name.size() <= kMaxGenericNameBytes;
    for (char c : s.name) {
      ok = ok &&
           ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-');
    }
    if (!ok)
      return Bad(where + ".name", "'" + api::Shown(s.name) + "' is not [a-z0-9._-], 1 to 64 bytes");
  } else if (name != j.end()) {
    return Bad(where + ".name", "is only for generic services");
  }
  TRAPLINE_ASSIGN_OR_RETURN(s.version, Text(j, "version", where + ".", kMaxVersionBytes));
  TRAPLINE_ASSIGN_OR_RETURN(s.data_directory,
                            Text(j, "data_directory", where + ".", kMaxPathBytes));
  if (!s.data_directory.empty() && s.data_directory.front() != '/') {
    return Bad(where + ".data_directory", "must be an absolute path");
  }
  return s;
}

Status ParseHost(const json& j, DiscoveryReport* r) {
  if (!j.is_object()) return Bad("host", "must be an object");
  TRAPLINE_RETURN_IF_ERROR(
      CheckKeys(j, "host", {"name", "fqdn", "os", "kernel", "addresses", "cpus", "memory_bytes"}));
  auto name = j.find("name");
  if (name == j.end() || !name->is_string()) return Bad("host.name", "is required (a string)");
  r->host = name->get<std::string>();
  // ValidateName's rule (http_api.cc): Zabbix's host name charset.
  TRAPLINE_RETURN_IF_ERROR(api::CheckChars(r->host, "host.name", api::kMaxNameBytes, "._-", true));
  TRAPLINE_ASSIGN_OR_RETURN(r->fqdn, Text(j, "fqdn", "host.", kMaxFqdnBytes));
  if (!r->fqdn.empty()) {
    TRAPLINE_RETURN_IF_ERROR(api::CheckChars(r->fqdn, "host.fqdn", kMaxFqdnBytes, ".-_", false));
  }
  TRAPLINE_ASSIGN_OR_RETURN(r->os, Text(j, "os", "host.", kMaxTextBytes));
  TRAPLINE_ASSIGN_OR_RETURN(r->kernel, Text(j, "kernel", "host.", kMaxTextBytes));
  if (auto a = j.find("addresses"); a != j.end() && !a->is_null()) {
    if (!a->is_array()) return Bad("host.addresses", "must be an array of IP addresses");
    if (a->size() > kMaxDiscoveredAddresses) {
      return Bad("host.addresses", "has " + std::to_string(a->size()) + " entries; at most " +
                                       std::to_string(kMaxDiscoveredAddresses));
    }
    std::set<std::string> seen;
    for (size_t i = 0; i < a->size(); ++i) {
      std::string field = "host.addresses[" + std::to_string(i) + "]";
      if (!(*a)[i].is_string()) return Bad(field, "must be a string");
      std::string addr = (*a)[i].get<std::string>();
      TRAPLINE_RETURN_IF_ERROR(CheckAddress(addr, field));
      if (seen.insert(addr).second) r->addresses.push_back(std::move(addr));
    }
  }
  if (auto c = j.find("cpus"); c != j.end() && !c->is_null()) {
    TRAPLINE_ASSIGN_OR_RETURN(r->cpus, Integer(*c, "host.cpus", 1, kMaxCpus));
  }
  if (auto m = j.find("memory_bytes"); m != j.end() && !m->is_null()) {
    TRAPLINE_ASSIGN_OR_RETURN(r->memory_bytes,
                              Integer(*m, "host.memory_bytes", 0, kMaxMemoryBytes));
  }
  return Status::OK();
}

bool IsGlobalV4(const std::string& a) {
  std::array<unsigned char, 4> b{};
  if (inet_pton(AF_INET, a.c_str(), b.data()) != 1) return false;
  return b[0] != 127 && b[0] != 0 && !(b[0] == 169 && b[1] == 254);
}

bool IsGlobalV6(const std::string& a) {
  if (a.find('%') != std::string::npos) return false;  // a zone: link-local
  std::array<unsigned char, 16> b{};
  if (inet_pton(AF_INET6, a.c_str(), b.data()) != 1) return false;
  bool zero_prefix = std::all_of(b.begin(), b.begin() + 15, [](unsigned char x) { return x == 0; });
  if (zero_prefix && b[15] <= 1) return false;              // :: and ::1
  if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) return false;  // fe80::/10
  return true;
}

}  // namespace

std::string DiscoveredService::plugin() const {
  if (kind == "ssh") return "linux";
  if (kind == "generic") return "generic:" + name;
  return kind;
}

Result<DiscoveryReport> ParseDiscoveryReport(std::string_view body) {
  if (body.size() > kMaxDiscoveryBodyBytes) {
    return Status::InvalidArgument("the report is larger than " +
                                   std::to_string(kMaxDiscoveryBodyBytes) + " bytes");
  }
  if (api::JsonDepth(body, kMaxReportDepth) > kMaxReportDepth) {
    return Status::InvalidArgument("the report is nested deeper than " +
                                   std::to_string(kMaxReportDepth) + " levels");
  }
  TRAPLINE_ASSIGN_OR_RETURN(json j,
                            api::ParseObject(body, {"version", "script", "host", "services"}));
  DiscoveryReport r;
  auto version = j.find("version");
  if (version == j.end()) return Bad("version", "is required (1)");
  if (!version->is_number_integer() || version->get<int64_t>() != 1) {
    return Bad("version", "must be 1 (this coordinator reads report version 1; upgrade it)");
  }
  TRAPLINE_ASSIGN_OR_RETURN(r.script, Text(j, "script", "", kMaxScriptBytes));
  auto host = j.find("host");
  if (host == j.end()) return Bad("host", "is required");
  TRAPLINE_RETURN_IF_ERROR(ParseHost(*host, &r));
  auto services = j.find("services");
  if (services == j.end() || !services->is_array()) {
    return Bad("services", "is required (an array, maybe empty)");
  }
  if (services->size() > kMaxDiscoveredServices) {
    return Bad("services", "has " + std::to_string(services->size()) + " entries; at most " +
                               std::to_string(kMaxDiscoveredServices));
  }
  std::set<std::pair<std::string, int>> seen;
  for (size_t i = 0; i < services->size(); ++i) {
    TRAPLINE_ASSIGN_OR_RETURN(DiscoveredService s, ParseService((*services)[i], i));
    if (!seen.emplace(s.plugin(), s.port).second) {
      ++r.folded;
      continue;
    }
    r.services.push_back(std::move(s));
  }
  return r;
}

std::string FactsJson(const DiscoveryReport& r) {
  json f = {{"fqdn", r.fqdn},           {"os", r.os},         {"kernel", r.kernel},
            {"addresses", r.addresses}, {"script", r.script}, {"cpus", nullptr},
            {"memory_bytes", nullptr}};
  if (r.cpus) f["cpus"] = *r.cpus;
  if (r.memory_bytes) f["memory_bytes"] = *r.memory_bytes;
  return f.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string ServicesJson(const DiscoveryReport& r) {
  json a = json::array();
  for (const auto& s : r.services) {
    json details = json::object();
    if (!s.version.empty()) details["version"] = s.version;
    if (!s.data_directory.empty()) details["data_directory"] = s.data_directory;
    if (!s.name.empty()) details["name"] = s.name;
    a.push_back({{"plugin", s.plugin()}, {"port", s.port}, {"kind", s.kind}, {"details", details}});
  }
  return a.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string PreferredAddress(const DiscoveryReport& r) {
  for (const auto& a : r.addresses) {
    if (IsGlobalV4(a)) return a;
  }
  for (const auto& a : r.addresses) {
    if (IsGlobalV6(a)) return a;
  }
  if (!r.fqdn.empty()) return r.fqdn;
  return r.host;
}

Result<std::vector<std::string>> ParseCloneBody(std::string_view body) {
  TRAPLINE_ASSIGN_OR_RETURN(json j, api::ParseObject(body, {"to"}));
  auto to = j.find("to");
  if (to == j.end() || !to->is_array() || to->empty()) {
    return Bad("to", "is required: an array of 1 to 100 host names");
  }
  if (to->size() > 100) return Bad("to", "has more than 100 host names");
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const json& n : *to) {
    if (!n.is_string()) return Bad("to", "must be an array of host names");
    std::string name = n.get<std::string>();
    TRAPLINE_RETURN_IF_ERROR(api::CheckChars(name, "host name", api::kMaxNameBytes, "._-", true));
    if (seen.insert(name).second) out.push_back(std::move(name));
  }
  return out;
}

bool UriHasSecret(std::string_view uri) {
  size_t scheme = uri.find("://");
  std::string_view rest = scheme == std::string_view::npos ? uri : uri.substr(scheme + 3);
  // The userinfo ends at the last '@': a password may hold '/', '?', '#' or '@' unencoded.
  // So an '@' in the path or query after "host:port" is taken for a password too (refused):
  // such an '@' is written %40.
  if (size_t at = rest.rfind('@');
      at != std::string_view::npos && rest.substr(0, at).find(':') != std::string_view::npos) {
    return true;
  }
  size_t q = rest.find('?');
  if (q == std::string_view::npos) return false;
  std::string_view query = rest.substr(q + 1);
  if (size_t hash = query.find('#'); hash != std::string_view::npos) query = query.substr(0, hash);
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view param = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    std::string_view raw = param.substr(0, param.find('='));
    // The key as a server reads it: percent-decoded, case-folded ("PassWord", "pass%77ord").
    std::string key;
    for (size_t i = 0; i < raw.size(); ++i) {
      unsigned char c = static_cast<unsigned char>(raw[i]);
      unsigned char decoded = 0;
      size_t n = 0;
      if (c == '%' && i + 2 < raw.size() &&
          sodium_hex2bin(&decoded, 1, raw.data() + i + 1, 2, nullptr, &n, nullptr) == 0 && n == 1) {
        c = decoded;
        i += 2;
      }
      key += static_cast<char>(std::tolower(c));
    }
    while (!key.empty() && key.back() == ' ') key.pop_back();
    if (key == "password" || key == "passfile" || key == "sslpassword") return true;
  }
  return false;
}

Result<NewService> ParseNewService(std::string_view body) {
  TRAPLINE_ASSIGN_OR_RETURN(
      json j, api::ParseObject(body, {"plugin", "port", "uri", "credential_profile", "enabled"}));
  NewService s;
  auto plugin = j.find("plugin");
  if (plugin == j.end() || !plugin->is_string())
    return Bad("plugin", "is required (a plugin name)");
  s.plugin = plugin->get<std::string>();
  bool ok = !s.plugin.empty() && s.plugin.size() <= 32;
  for (char c : s.plugin)
    ok = ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-');
  if (!ok) return Bad("plugin", "'" + api::Shown(s.plugin) + "' is not a plugin name");
  if (auto port = j.find("port"); port != j.end()) {
    TRAPLINE_ASSIGN_OR_RETURN(int64_t p, Integer(*port, "port", 0, 65535));
    s.port = static_cast<int>(p);
  }
  TRAPLINE_ASSIGN_OR_RETURN(s.uri, Text(j, "uri", "", kMaxPathBytes));
  if (s.uri.find(' ') != std::string::npos) return Bad("uri", "has a space");
  if (UriHasSecret(s.uri)) {
    return Bad("uri",
               "carries a password (user:password@ or a password=, passfile= or sslpassword= "
               "parameter): credentials belong in a credential profile "
               "(POST /api/v1/credential-profiles, then \"credential_profile\": name)");
  }
  if (auto cp = j.find("credential_profile"); cp != j.end() && !cp->is_null()) {
    if (!cp->is_string()) return Bad("credential_profile", "must be a profile name or null");
    s.credential_profile = cp->get<std::string>();
    TRAPLINE_RETURN_IF_ERROR(api::CheckChars(*s.credential_profile, "credential profile",
                                             api::kMaxNameBytes, "._-", true));
  }
  if (j.contains("enabled")) {
    TRAPLINE_ASSIGN_OR_RETURN(s.enabled, api::GetBool(j, "enabled"));
  }
  return s;
}

// ---- rate limiter -----------------------------------------------------------------------------

RateLimiter::RateLimiter(double rate_per_s, double burst, size_t max_keys)
    : rate_per_s_(rate_per_s), burst_(std::max(1.0, burst)), max_keys_(max_keys) {}

double RateLimiter::Take(const std::string& key, double now_s) {
  auto it = buckets_.find(key);
  if (it == buckets_.end()) {
    if (buckets_.size() >= max_keys_) Prune(now_s);
    // Still full: every bucket is in use. Forgetting them all lets a flood from that many
    // addresses through once; refusing new keys would lock out every honest newcomer.
    if (buckets_.size() >= max_keys_) buckets_.clear();
    it = buckets_.emplace(key, Bucket{burst_, now_s}).first;
  }
  Bucket& b = it->second;
  if (now_s > b.at_s) {
    b.tokens = std::min(burst_, b.tokens + (now_s - b.at_s) * rate_per_s_);
    b.at_s = now_s;
  }
  if (b.tokens >= 1) {
    b.tokens -= 1;
    return 0;
  }
  return rate_per_s_ > 0 ? (1 - b.tokens) / rate_per_s_ : 3600;
}

void RateLimiter::Prune(double now_s) {
  for (auto it = buckets_.begin(); it != buckets_.end();) {
    const Bucket& b = it->second;
    if (b.tokens + (now_s - b.at_s) * rate_per_s_ >= burst_) {
      it = buckets_.erase(it);
    } else {
      ++it;
    }
  }
}

// ---- tokens -----------------------------------------------------------------------------------

namespace {
std::string Hex(const unsigned char* bytes, size_t n) {
  std::string out(n * 2 + 1, '\0');
  sodium_bin2hex(out.data(), out.size(), bytes, n);
  out.pop_back();
  return out;
}
}  // namespace

std::string NewHostToken() {
  if (sodium_init() < 0) std::abort();  // no entropy source: nothing safe to hand out
  std::array<unsigned char, 32> bytes{};
  randombytes_buf(bytes.data(), bytes.size());
  return Hex(bytes.data(), bytes.size());
}

std::string HostTokenHash(std::string_view token) {
  std::array<unsigned char, crypto_hash_sha256_BYTES> h{};
  crypto_hash_sha256(h.data(), reinterpret_cast<const unsigned char*>(token.data()), token.size());
  return Hex(h.data(), h.size());
}

}  // namespace trapline::coordinator
