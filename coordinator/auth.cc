#include "coordinator/auth.h"

#include <sodium.h>

#include <algorithm>
#include <cmath>
#include <mutex>

#include "coordinator/http_api_internal.h"

namespace trapline::coordinator::auth {

namespace {
constexpr size_t kTokenBytes = 32;

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-' || c == '@';
}

bool IsBase64UrlChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_';
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

char Lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool EqualsNoCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (Lower(a[i]) != Lower(b[i])) return false;
  }
  return true;
}
}  // namespace

Status Init() {
  // sodium_init is thread-safe and returns 1 when already initialised.
  if (sodium_init() < 0) return Status::Internal("libsodium cannot be initialised");
  return Status::OK();
}

// ---- roles ------------------------------------------------------------------------------------

std::string_view RoleName(Role role) {
  switch (role) {
    case Role::kViewer:
      return "viewer";
    case Role::kOperator:
      return "operator";
    case Role::kAdmin:
      return "admin";
  }
  return "viewer";
}

Result<Role> ParseRole(std::string_view text) {
  if (text == "viewer") return Role::kViewer;
  if (text == "operator") return Role::kOperator;
  if (text == "admin") return Role::kAdmin;
  return Status::InvalidArgument("role must be viewer, operator or admin");
}

// ---- users and passwords ----------------------------------------------------------------------

Status ValidateUserName(std::string_view name) {
  if (name.empty() || name.size() > kMaxUserNameBytes) {
    return Status::InvalidArgument("user name must be 1 to 64 bytes");
  }
  if (!std::all_of(name.begin(), name.end(), IsNameChar)) {
    return Status::InvalidArgument(
        "user name may contain only letters, digits, '.', '_', '-' and '@'");
  }
  return Status::OK();
}

Status ValidateNewUserName(std::string_view name) {
  // The audit log's actor column names users and these alike.
  if (name == "api" || name == "discovery" || name.rfind("cli:", 0) == 0 ||
      name.rfind("coordinator:", 0) == 0) {
    return Status::InvalidArgument("user name '" + std::string(name.substr(0, kMaxUserNameBytes)) +
                                   "' is reserved (the audit log's actors \"api\", \"discovery\", "
                                   "\"cli:...\" and \"coordinator:...\"); choose another");
  }
  return ValidateUserName(name);
}

Status CheckPasswordPolicy(std::string_view password) {
  if (password.size() < kMinPasswordBytes) {
    return Status::InvalidArgument("password must be at least 10 characters");
  }
  if (password.size() > kMaxPasswordBytes) {
    return Status::InvalidArgument("password must be at most 1024 bytes");
  }
  if (password.find('\0') != std::string_view::npos) {
    return Status::InvalidArgument("password must not contain a NUL byte");
  }
  return Status::OK();
}

HashCost DefaultHashCost() {
  return {crypto_pwhash_OPSLIMIT_INTERACTIVE, crypto_pwhash_MEMLIMIT_INTERACTIVE};
}

Result<std::string> HashPassword(std::string_view password, HashCost cost) {
  char out[crypto_pwhash_STRBYTES];
  if (crypto_pwhash_str_alg(out, password.data(), password.size(), cost.opslimit, cost.memlimit,
                            crypto_pwhash_ALG_ARGON2ID13) != 0) {
    return Status::Internal("password hashing failed (out of memory?)");
  }
  return std::string(out);
}

bool VerifyPassword(std::string_view hash, std::string_view password) {
  // crypto_pwhash_str_verify wants a NUL-terminated string; only Argon2id hashes are accepted
  // (an argon2i or garbage string edited into the table never verifies).
  if (hash.size() >= crypto_pwhash_STRBYTES || hash.rfind("$argon2id$", 0) != 0) return false;
  std::string h(hash);
  return crypto_pwhash_str_verify(h.c_str(), password.data(), password.size()) == 0;
}

bool NeedsRehash(std::string_view hash, HashCost cost) {
  std::string h(hash);
  return crypto_pwhash_str_needs_rehash(h.c_str(), cost.opslimit, cost.memlimit) != 0;
}

const std::string& DummyHash() {
  static std::once_flag once;
  static std::string hash;
  std::call_once(once, [] {
    auto h = HashPassword(RandomToken());
    hash = h.ok() ? *h : std::string();
  });
  return hash;
}

// ---- tokens -----------------------------------------------------------------------------------

std::string RandomToken() {
  unsigned char bytes[kTokenBytes];
  randombytes_buf(bytes, sizeof bytes);
  char out[sodium_base64_ENCODED_LEN(kTokenBytes, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
  sodium_bin2base64(out, sizeof out, bytes, sizeof bytes, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  sodium_memzero(bytes, sizeof bytes);
  return std::string(out);
}

std::string TokenHash(std::string_view token) {
  unsigned char digest[crypto_generichash_BYTES];
  crypto_generichash(digest, sizeof digest, reinterpret_cast<const unsigned char*>(token.data()),
                     token.size(), nullptr, 0);
  char hex[crypto_generichash_BYTES * 2 + 1];
  sodium_bin2hex(hex, sizeof hex, digest, sizeof digest);
  return std::string(hex);
}

bool LooksLikeToken(std::string_view token) {
  return token.size() == 43 && std::all_of(token.begin(), token.end(), IsBase64UrlChar);
}

// ---- cookies and request headers --------------------------------------------------------------

std::string SessionCookie(std::string_view token, int64_t max_age_s, bool secure) {
  std::string c(kSessionCookie);
  c += "=";
  c += token;
  c += "; Path=/; Max-Age=" + std::to_string(std::max<int64_t>(max_age_s, 0)) +
       "; HttpOnly; SameSite=Strict";
  if (secure) c += "; Secure";
  return c;
}

std::string ClearedSessionCookie(bool secure) { return SessionCookie("", 0, secure); }

std::string_view CookieValue(std::string_view header, std::string_view name) {
  while (!header.empty()) {
    size_t semi = header.find(';');
    std::string_view pair = Trim(header.substr(0, semi));
    header = semi == std::string_view::npos ? std::string_view() : header.substr(semi + 1);
    size_t eq = pair.find('=');
    if (eq == std::string_view::npos) continue;
    if (Trim(pair.substr(0, eq)) != name) continue;
    std::string_view value = Trim(pair.substr(eq + 1));
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
      value = value.substr(1, value.size() - 2);
    }
    return value;
  }
  return {};
}

bool OriginMatchesHost(std::string_view origin, std::string_view host) {
  origin = Trim(origin);
  host = Trim(host);
  size_t scheme_end = origin.find("://");
  if (scheme_end == std::string_view::npos || host.empty()) return false;
  std::string_view scheme = origin.substr(0, scheme_end);
  if (!EqualsNoCase(scheme, "http") && !EqualsNoCase(scheme, "https")) return false;
  std::string_view authority = origin.substr(scheme_end + 3);
  if (authority.empty() || authority.find('/') != std::string_view::npos) return false;
  // A default port may be written in one and left out in the other.
  auto strip_default = [&](std::string_view a) {
    std::string_view port = EqualsNoCase(scheme, "https") ? ":443" : ":80";
    if (a.size() > port.size() && a.substr(a.size() - port.size()) == port) {
      a.remove_suffix(port.size());
    }
    return a;
  };
  return EqualsNoCase(strip_default(authority), strip_default(host));
}

std::string SourceAddress(std::string_view peer) {
  if (!peer.empty() && peer.front() == '[') {
    size_t close = peer.find(']');
    if (close != std::string_view::npos) return std::string(peer.substr(1, close - 1));
    return std::string(peer);
  }
  size_t colon = peer.rfind(':');
  if (colon != std::string_view::npos && peer.find(':') == colon) {
    return std::string(peer.substr(0, colon));
  }
  return std::string(peer);
}

// ---- request bodies ---------------------------------------------------------------------------

namespace {
Result<std::string> GetString(const api::json& j, const char* key) {
  if (!j.contains(key) || !j[key].is_string()) {
    return Status::InvalidArgument(std::string("'") + key + "' (a string) is required");
  }
  return j[key].get<std::string>();
}

Result<Role> GetRole(const api::json& j) {
  if (!j["role"].is_string()) return Status::InvalidArgument("'role' must be viewer, operator or admin");
  return ParseRole(j["role"].get<std::string>());
}
}  // namespace

Result<LoginRequest> ParseLogin(std::string_view body) {
  TRAPLINE_ASSIGN_OR_RETURN(api::json j, api::ParseObject(body, {"user", "password"}));
  LoginRequest l;
  TRAPLINE_ASSIGN_OR_RETURN(l.user, GetString(j, "user"));
  TRAPLINE_ASSIGN_OR_RETURN(l.password, GetString(j, "password"));
  TRAPLINE_RETURN_IF_ERROR(ValidateUserName(l.user));
  if (l.password.empty() || l.password.size() > kMaxPasswordBytes ||
      l.password.find('\0') != std::string::npos) {
    return Status::InvalidArgument("'password' must be 1 to 1024 bytes without NUL");
  }
  return l;
}

Result<NewUser> ParseNewUser(std::string_view body) {
  TRAPLINE_ASSIGN_OR_RETURN(api::json j, api::ParseObject(body, {"name", "role", "password"}));
  NewUser u;
  TRAPLINE_ASSIGN_OR_RETURN(u.name, GetString(j, "name"));
  TRAPLINE_RETURN_IF_ERROR(ValidateNewUserName(u.name));
  if (!j.contains("role")) return Status::InvalidArgument("'role' is required");
  TRAPLINE_ASSIGN_OR_RETURN(u.role, GetRole(j));
  TRAPLINE_ASSIGN_OR_RETURN(u.password, GetString(j, "password"));
  TRAPLINE_RETURN_IF_ERROR(CheckPasswordPolicy(u.password));
  return u;
}

Result<UserPatch> ParseUserPatch(std::string_view body) {
  TRAPLINE_ASSIGN_OR_RETURN(api::json j, api::ParseObject(body, {"role", "password", "disabled"}));
  if (j.empty()) return Status::InvalidArgument("nothing to change");
  UserPatch p;
  if (j.contains("role")) {
    TRAPLINE_ASSIGN_OR_RETURN(p.role, GetRole(j));
  }
  if (j.contains("password")) {
    TRAPLINE_ASSIGN_OR_RETURN(p.password, GetString(j, "password"));
    TRAPLINE_RETURN_IF_ERROR(CheckPasswordPolicy(*p.password));
  }
  if (j.contains("disabled")) {
    TRAPLINE_ASSIGN_OR_RETURN(p.disabled, api::GetBool(j, "disabled"));
  }
  return p;
}

std::string CleanUserAgent(std::string_view ua) {
  std::string out;
  for (char c : ua.substr(0, 256)) {
    out += (c >= 0x20 && c < 0x7f) ? c : '?';
  }
  return out;
}

// ---- login rate limiting ----------------------------------------------------------------------

LoginLimiter::Entry* LoginLimiter::Find(const std::string& key) {
  auto it = index_.find(key);
  return it == index_.end() ? nullptr : &*it->second;
}

LoginLimiter::Entry& LoginLimiter::Touch(const std::string& key) {
  auto it = index_.find(key);
  if (it != index_.end()) {
    lru_.splice(lru_.begin(), lru_, it->second);
    return lru_.front();
  }
  while (!lru_.empty() && index_.size() >= std::max<size_t>(options_.max_entries, 1)) {
    index_.erase(lru_.back().key);
    lru_.pop_back();
  }
  lru_.push_front(Entry{key});
  index_.emplace(key, lru_.begin());
  return lru_.front();
}

double LoginLimiter::Wait(const std::string& key, double now) {
  const Entry* e = Find(key);
  if (e == nullptr || e->blocked_until <= now) return 0;
  return e->blocked_until - now;
}

void LoginLimiter::Fail(const std::string& key, double now) {
  Entry& e = Touch(key);
  if (e.blocked_until > now) return;  // already blocked; attempts then are not let through
  // A quiet spell as long as the longest block forgives earlier blocks.
  if (e.blocks > 0 && now - std::max(e.blocked_until, e.window_start) > options_.max_block_s) {
    e.blocks = 0;
  }
  if (e.failures == 0 || now - e.window_start > options_.window_s) {
    e.failures = 0;
    e.window_start = now;
  }
  if (++e.failures >= options_.max_failures) {
    double block = options_.block_s * std::pow(2.0, std::min(e.blocks, 30));
    e.block_start = now;
    e.blocked_until = now + std::min(block, options_.max_block_s);
    ++e.blocks;
    e.failures = 0;
  }
}

namespace {
std::string SourceKey(std::string_view source) { return "a:" + std::string(source); }
std::string UserKey(std::string_view user) { return "u:" + std::string(user); }
// '\n' cannot be in a user name (ValidateUserName) nor in an address.
std::string PairKey(std::string_view source, std::string_view user) {
  return "p:" + std::string(source) + "\n" + std::string(user);
}
}  // namespace

double LoginLimiter::RetryAfter(std::string_view source, std::string_view user, double now) {
  double wait = Wait(SourceKey(source), now);
  double user_wait = Wait(UserKey(user), now);
  if (user_wait > 0) {
    // The user name's block stops only sources that failed for it themselves: within the
    // window, or since the block began. Anyone else (the user at their own desk) goes on.
    const Entry* u = Find(UserKey(user));
    const Entry* pair = Find(PairKey(source, user));
    if (pair != nullptr && pair->last_failure >= 0 &&
        (now - pair->last_failure <= options_.window_s || pair->last_failure >= u->block_start)) {
      wait = std::max(wait, user_wait);
    }
  }
  return wait;
}

void LoginLimiter::Failure(std::string_view source, std::string_view user, double now) {
  Fail(SourceKey(source), now);
  Fail(UserKey(user), now);
  Touch(PairKey(source, user)).last_failure = now;
}

void LoginLimiter::Success(std::string_view source, std::string_view user) {
  for (const std::string& key : {UserKey(user), PairKey(source, user)}) {
    auto it = index_.find(key);
    if (it == index_.end()) continue;
    lru_.erase(it->second);
    index_.erase(it);
  }
}

}  // namespace trapline::coordinator::auth
