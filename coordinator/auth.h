#pragma once
// Users and sessions of the admin panel and API (issue 7, point 3): the pure, I/O-free parts.
// The routes that use them are in session_api.cc; the check of every request in
// HttpApi::Add (http_api.cc).
//
//  - Passwords: libsodium's Argon2id (crypto_pwhash_str, PHC string "$argon2id$v=19$m=...").
//    Hashing and verifying cost ~0.1 s and 64 MiB each (INTERACTIVE limits): callers run them
//    off the event loop (uv_queue_work).
//  - Session tokens: 32 random bytes (base64url) in the cookie; the registry keeps only their
//    BLAKE2b-256 hash, so a copy of the sessions table does not sign anyone in.
//  - CSRF tokens: 32 random bytes per session, given to the client at login, compared in
//    constant time (ConstantTimeEquals, http_api.h) with the X-CSRF-Token header of each
//    state change.
//  - Login rate limiting: LoginLimiter, per source address and per user name (see there).
//  - Thread: everything here may be called from any thread, except LoginLimiter (one owner).
//    Init() first (sodium_init; idempotent and thread-safe).

#include <cstddef>
#include <cstdint>
#include <list>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/status.h"

namespace trapline::coordinator::auth {

// Initialises libsodium. Internal error when it cannot (no entropy source).
Status Init();

// ---- roles ----------------------------------------------------------------------------------

// Ordered: each role can do what the ones below it can.
enum class Role { kViewer = 0, kOperator = 1, kAdmin = 2 };
std::string_view RoleName(Role role);  // "viewer", "operator", "admin"
Result<Role> ParseRole(std::string_view text);
inline bool RoleAtLeast(Role have, Role need) {
  return static_cast<int>(have) >= static_cast<int>(need);
}

// ---- users and passwords --------------------------------------------------------------------

inline constexpr size_t kMinPasswordBytes = 10;
inline constexpr size_t kMaxPasswordBytes = 1024;
inline constexpr size_t kMaxUserNameBytes = 64;

// User names: 1..64 bytes of letters, digits, '.', '_', '-', '@'.
Status ValidateUserName(std::string_view name);
// For a user being created: as ValidateUserName, and not a name the audit log uses for
// others as actor ("api", the API token's holder; "discovery"; "cli:<login>";
// "coordinator:<name>"), so that an audit row's actor is never ambiguous. Existing users are
// looked up with ValidateUserName (a name made before this rule can still be deleted).
Status ValidateNewUserName(std::string_view name);
// 10..1024 bytes, no NUL byte. The error never repeats the password.
Status CheckPasswordPolicy(std::string_view password);

struct HashCost {
  unsigned long long opslimit;
  size_t memlimit;
};
// crypto_pwhash_OPSLIMIT_INTERACTIVE / MEMLIMIT_INTERACTIVE (2 passes, 64 MiB).
HashCost DefaultHashCost();

// The PHC string of `password` ("$argon2id$..."). ResourceExhausted-like Internal error
// when the memory cannot be had. REQUIRES: Init().
Result<std::string> HashPassword(std::string_view password, HashCost cost = DefaultHashCost());
// False for a wrong password and for anything that is not an Argon2id PHC string.
bool VerifyPassword(std::string_view hash, std::string_view password);
// True when `hash` was made with other parameters than `cost` (rehash at the next login).
bool NeedsRehash(std::string_view hash, HashCost cost = DefaultHashCost());
// The hash of a random password, made once: a login for an unknown user is verified against
// it, so that the answer's time does not tell which user names exist.
const std::string& DummyHash();

// ---- tokens ---------------------------------------------------------------------------------

// 32 random bytes, base64url without padding (43 characters).
std::string RandomToken();
// What the registry stores for a session token: BLAKE2b-256 of it, 64 hex digits.
std::string TokenHash(std::string_view token);
// A session token as the cookie carries it: 43 base64url characters (anything else is not
// looked up).
bool LooksLikeToken(std::string_view token);

// ---- cookies and request headers ------------------------------------------------------------

inline constexpr std::string_view kSessionCookie = "trapline_session";

// "trapline_session=<token>; Path=/; Max-Age=<s>; HttpOnly; SameSite=Strict[; Secure]".
std::string SessionCookie(std::string_view token, int64_t max_age_s, bool secure);
// The same cookie emptied with Max-Age=0 (logout).
std::string ClearedSessionCookie(bool secure);
// The value of cookie `name` in a Cookie header ("a=1; trapline_session=x"), "" when absent.
std::string_view CookieValue(std::string_view cookie_header, std::string_view name);
// The Origin header ("https://panel.example:8443") names the same host[:port] as the Host
// header. "null", a missing scheme or a different host: false.
bool OriginMatchesHost(std::string_view origin, std::string_view host);
// The address of "127.0.0.1:5432" or "[::1]:5432" without the port.
std::string SourceAddress(std::string_view peer);

// ---- request bodies (checked for shape, known fields only) ----------------------------------

struct LoginRequest {
  std::string user;
  std::string password;  // at most 1024 bytes, no NUL (the policy's length minimum is not
                         // checked here: old passwords still log in)
};
Result<LoginRequest> ParseLogin(std::string_view body);

struct NewUser {
  std::string name;
  Role role = Role::kViewer;
  std::string password;  // meets CheckPasswordPolicy
};
Result<NewUser> ParseNewUser(std::string_view body);

struct UserPatch {
  std::optional<Role> role;
  std::optional<std::string> password;  // meets CheckPasswordPolicy
  std::optional<bool> disabled;
};
Result<UserPatch> ParseUserPatch(std::string_view body);

// A User-Agent header as stored with a session: printable ASCII, at most 256 bytes.
std::string CleanUserAgent(std::string_view ua);

// ---- login rate limiting --------------------------------------------------------------------

// Counts failed logins per source address and per user name. A key with max_failures
// failures within window_s is blocked for block_s, doubled for each block in a row (up to
// max_block_s). A blocked source may not try anyone. A blocked user name stops only the
// sources that themselves failed for it (within window_s, or since the block began): a wrong
// password from anywhere cannot lock the user out of a clean address, and a distributed guess
// still costs each source its own attempts (each gets one per block of the user name, and
// at most max_failures per window in all). Memory is bounded: at most max_entries keys
// (sources, user names, source-user pairs), the least recently touched dropped first. Times
// are seconds on any monotonic clock.
class LoginLimiter {
 public:
  struct Options {
    int max_failures = 5;
    double window_s = 60;
    double block_s = 60;
    double max_block_s = 3600;
    size_t max_entries = 10000;
  };
  LoginLimiter() : LoginLimiter(Options()) {}
  explicit LoginLimiter(Options options) : options_(options) {}

  // Seconds to wait before this source may try this user again; 0: go ahead.
  double RetryAfter(std::string_view source, std::string_view user, double now);
  void Failure(std::string_view source, std::string_view user, double now);
  // Forgets the user's failures and this source's for the user (not the source's own: one
  // right password from an address that guesses many users does not clear it).
  void Success(std::string_view source, std::string_view user);
  size_t size() const { return index_.size(); }

 private:
  struct Entry {
    std::string key;
    int failures = 0;
    double window_start = 0;
    double blocked_until = 0;
    int blocks = 0;  // blocks in a row (the back-off's exponent)
    double block_start = 0;    // when the last block began
    double last_failure = -1;  // source-user pairs: the last failure, -1 none
  };
  Entry* Find(const std::string& key);
  Entry& Touch(const std::string& key);
  double Wait(const std::string& key, double now);
  void Fail(const std::string& key, double now);

  Options options_;
  std::list<Entry> lru_;  // most recently touched first
  std::unordered_map<std::string, std::list<Entry>::iterator> index_;
};

}  // namespace trapline::coordinator::auth
