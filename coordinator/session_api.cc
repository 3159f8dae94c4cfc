// Users and sessions (issue 7, point 3): who a request comes from (Authenticate, used by
// HttpApi::Add for every route), login and logout, and the admin's users API. The pure parts
// (hashes, tokens, cookies, the rate limiter, request bodies) are in auth.h.
//
// Logs: "[auth] ..." lines; a password, a session token or a CSRF token never appears in a log,
// an answer (except the CSRF token to its own session) or the audit log.

#include <uv.h>

#include <cmath>
#include <memory>
#include <optional>

#include "common/log.h"
#include "coordinator/auth.h"
#include "coordinator/http_api.h"
#include "coordinator/http_api_internal.h"

namespace trapline::coordinator {

using namespace api;  // NOLINT: the API's shared helpers (http_api_internal.h)

namespace {

// Password checks running at once, in all and per source address: each costs 64 MiB and a
// core for ~0.1 s, and a flood of parallel attempts must not get ahead of the rate limiter
// (it counts a failure only once its check is done).
constexpr int kMaxLoginsRunning = 8;
constexpr int kMaxLoginsRunningPerSource = 2;
// A session's last_seen is written at most this often (not on every request).
constexpr int kTouchEverySeconds = 30;
// Sessions kept per user; older ones end when a new one starts.
constexpr int kMaxSessionsPerUser = 50;

// Runs `work` on libuv's thread pool and `done` with its result on the loop's thread.
template <typename T>
void OffLoop(uv_loop_t* loop, std::function<T()> work, std::function<void(std::optional<T>)> done) {
  struct Job {
    uv_work_t req;
    std::function<T()> work;
    std::function<void(std::optional<T>)> done;
    std::optional<T> out;
  };
  auto* job = new Job{};
  job->work = std::move(work);
  job->done = std::move(done);
  job->req.data = job;
  int rc = uv_queue_work(
      loop, &job->req, [](uv_work_t* w) { auto* j = static_cast<Job*>(w->data); j->out = j->work(); },
      [](uv_work_t* w, int) {
        std::unique_ptr<Job> j(static_cast<Job*>(w->data));
        j->done(std::move(j->out));
      });
  if (rc != 0) {
    std::unique_ptr<Job> j(job);
    j->done(std::nullopt);
  }
}

HttpResponse TooManyAttempts(double wait_s) {
  int64_t secs = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(wait_s)));
  HttpResponse res = HttpResponse::Error(
      429, "too many failed logins; try again in " + std::to_string(secs) + " s");
  res.headers.emplace_back("retry-after", std::to_string(secs));
  return res;
}

// The concurrency cap above, not a rate limit: nothing failed, the client just retries.
HttpResponse LoginsBusy() {
  HttpResponse res =
      HttpResponse::Error(503, "busy: too many sign-ins in progress, retry in a second");
  res.headers.emplace_back("retry-after", "1");
  return res;
}

HttpResponse Unauthenticated(std::string_view why) {
  HttpResponse res = HttpResponse::Error(401, why);
  res.headers.emplace_back("www-authenticate", "Bearer realm=\"trapline\"");
  return res;
}

bool ChangesState(const std::string& method) {
  return method != "GET" && method != "HEAD" && method != "OPTIONS";
}

auth::Role NeededRole(int access) {
  // HttpApi::Access: kOpen 0, kRead 1, kWrite 2, kAdmin 3.
  if (access >= 3) return auth::Role::kAdmin;
  if (access == 2) return auth::Role::kOperator;
  return auth::Role::kViewer;
}

std::string SessionObject(const std::string& user, auth::Role role, const std::string& csrf) {
  json j = {{"user", user}, {"role", std::string(auth::RoleName(role))}};
  if (csrf.empty()) {
    j["csrf_token"] = nullptr;
  } else {
    j["csrf_token"] = csrf;
  }
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

// json_build_object of users row u (never the password hash).
std::string UserObject(const std::string& u) {
  return "json_build_object('name', " + u + ".name, 'role', " + u + ".role, 'disabled', " + u +
         ".disabled, 'created_at', " + u + ".created_at, 'updated_at', " + u +
         ".updated_at, 'last_login', " + u + ".last_login, 'last_login_source', " + u +
         ".last_login_source, 'sessions', (SELECT count(*) FROM sessions x WHERE x.user_id = " + u +
         ".id AND x.expires_at > now()))";
}

void NoStore(HttpResponse* res) { res->headers.emplace_back("cache-control", "no-store"); }

}  // namespace

// ---- who is asking ----------------------------------------------------------------------------

void HttpApi::LookupSession(const HttpRequest& r,
                            std::function<void(Result<std::optional<Principal>>)> done,
                            bool touch) {
  std::string token(auth::CookieValue(r.Header("cookie"), auth::kSessionCookie));
  if (!auth::LooksLikeToken(token)) return done(std::optional<Principal>());
  registry_->Query(
      "api session",
      "WITH s AS (SELECT s.id, u.name, u.role, s.csrf_token, s.last_seen FROM sessions s JOIN "
      "  users u ON u.id = s.user_id WHERE s.token_hash = $1 AND NOT u.disabled AND "
      "  s.expires_at > now() AND s.last_seen > now() - make_interval(secs => $2::float8)), "
      "t AS (UPDATE sessions SET last_seen = now() FROM s WHERE sessions.id = s.id AND "
      "  s.last_seen < now() - make_interval(secs => $3::int)) "
      "SELECT name, role, csrf_token FROM s",
      {auth::TokenHash(token), FormatDouble(options_.session_idle_s),
       // Not touched: last_seen is never older than 63 years (2e9 s, within $3::int).
       std::to_string(touch ? kTouchEverySeconds : 2000000000)},
      [done = std::move(done), alive = alive_](Result<pg::Rows> rows) {
        if (!*alive) return;
        if (!rows.ok()) return done(rows.status());
        if (rows->rows.empty() || rows->rows[0].size() < 3) return done(std::optional<Principal>());
        const pg::Row& row = rows->rows[0];
        auto role = auth::ParseRole(row[1].value_or(""));
        if (!role.ok()) return done(std::optional<Principal>());
        Principal p;
        p.name = row[0].value_or("");
        p.role = *role;
        p.session = true;
        p.csrf_token = row[2].value_or("");
        done(std::optional<Principal>(std::move(p)));
      });
}

void HttpApi::Authenticate(std::shared_ptr<const HttpRequest> r, Access access, AuthDone done) {
  Principal token_holder{options_.actor, auth::Role::kAdmin, false, {}};
  if (access == Access::kOpen) return done(token_holder, {});
  bool open_read = access == Access::kRead && options_.open_reads && !ChangesState(r->method);
  // The API token: as before users existed, full rights, no CSRF (it is not sent by a browser
  // on its own).
  if (!r->Header("authorization").empty()) {
    BearerCheck b = CheckBearer(r->Header("authorization"), options_.api_token);
    if (b == BearerCheck::kOk) return done(token_holder, {});
    if (open_read) return done(Principal{options_.actor, auth::Role::kViewer, false, {}}, {});
    spdlog::warn("[api] {} {} {}: invalid token", r->peer, r->method, r->path);
    return done(std::nullopt, Unauthenticated("invalid token"));
  }
  if (auth::CookieValue(r->Header("cookie"), auth::kSessionCookie).empty()) {
    if (open_read) return done(Principal{options_.actor, auth::Role::kViewer, false, {}}, {});
    return done(std::nullopt,
                Unauthenticated("authorization required (sign in, or a Bearer token)"));
  }
  int needed = static_cast<int>(access);
  LookupSession(*r, [this, r, needed, open_read, done = std::move(done)](
                        Result<std::optional<Principal>> who) {
    if (!who.ok()) return done(std::nullopt, RegistryError(who.status()));
    if (!*who) {
      if (open_read) return done(Principal{options_.actor, auth::Role::kViewer, false, {}}, {});
      HttpResponse res = Unauthenticated("the session has ended or is unknown; sign in again");
      res.headers.emplace_back("set-cookie", auth::ClearedSessionCookie(options_.secure_cookies));
      return done(std::nullopt, std::move(res));
    }
    Principal& p = **who;
    auth::Role need = NeededRole(needed);
    if (!auth::RoleAtLeast(p.role, need)) {
      return done(std::nullopt,
                  HttpResponse::Error(403, "user '" + p.name + "' has role " +
                                               std::string(auth::RoleName(p.role)) + "; " +
                                               r->method + " " + r->path + " needs " +
                                               std::string(auth::RoleName(need))));
    }
    if (ChangesState(r->method)) {
      if (p.csrf_token.empty() || !ConstantTimeEquals(p.csrf_token, r->Header("x-csrf-token"))) {
        spdlog::warn("[auth] {} {} {}: user {}: missing or wrong CSRF token", r->peer, r->method,
                     r->path, p.name);
        return done(std::nullopt, HttpResponse::Error(403, "missing or wrong CSRF token"));
      }
      // Defence in depth (SameSite=Strict and the CSRF token come first): a browser's Origin
      // must be this server.
      std::string_view origin = r->Header("origin");
      std::string_view host = r->Header("host");
      if (!origin.empty() && !host.empty() && !auth::OriginMatchesHost(origin, host)) {
        spdlog::warn("[auth] {} {} {}: user {}: Origin does not match Host", r->peer, r->method,
                     r->path, p.name);
        return done(std::nullopt, HttpResponse::Error(403, "the Origin header is not this server"));
      }
    }
    done(std::move(p), {});
  });
}

// ---- routes -----------------------------------------------------------------------------------

void HttpApi::RegisterSessions() {
  // The hash that logins for unknown users are checked against, made now rather than by the
  // first such login (which would then take twice as long as the others).
  OffLoop<bool>(loop_, [] { return !auth::DummyHash().empty(); }, [](std::optional<bool>) {});
  auto bind = [this](void (HttpApi::*fn)(const HttpRequest&, Call)) {
    return [this, fn](const HttpRequest& r, Call call) { (this->*fn)(r, std::move(call)); };
  };
  // The session routes authenticate for themselves (login has nothing to show yet).
  Add("POST", "/api/v1/session", Access::kOpen, bind(&HttpApi::SessionRoute));
  Add("GET", "/api/v1/session", Access::kOpen, bind(&HttpApi::SessionRoute));
  Add("DELETE", "/api/v1/session", Access::kOpen, bind(&HttpApi::SessionRoute));
  for (const char* method : {"GET", "POST", "PATCH", "DELETE"}) {
    Add(method, "/api/v1/users", Access::kAdmin, bind(&HttpApi::UserRoute));
  }
}

void HttpApi::SessionRoute(const HttpRequest& r, Call call) {
  if (!r.rest.empty()) return call.Send(Status::NotFound("no such resource: " + r.path));
  if (r.method == "POST") return Login(r, std::move(call));
  if (r.method == "DELETE") return Logout(r, std::move(call));
  SessionInfo(r, std::move(call));
}

void HttpApi::Login(const HttpRequest& r, Call call) {
  auto login = auth::ParseLogin(r.body);
  if (!login.ok()) return call.Send(login.status());
  std::string source = auth::SourceAddress(r.peer);
  double now = static_cast<double>(uv_now(loop_)) / 1000.0;
  if (double wait = login_limiter_.RetryAfter(source, login->user, now); wait > 0) {
    spdlog::warn("[auth] login for {} from {}: rate limited ({:.0f} s)", login->user, source, wait);
    return call.Send(TooManyAttempts(wait));
  }
  int total = 0;
  for (const auto& [_, n] : logins_running_) total += n;
  if (total >= kMaxLoginsRunning || logins_running_[source] >= kMaxLoginsRunningPerSource) {
    if (logins_running_[source] == 0) logins_running_.erase(source);
    spdlog::warn("[auth] login for {} from {}: busy ({} password checks running)", login->user,
                 source, total);
    return call.Send(LoginsBusy());
  }
  ++logins_running_[source];
  auto finished = [this, source, alive = alive_] {
    if (!*alive) return;
    if (--logins_running_[source] <= 0) logins_running_.erase(source);
  };
  std::string user_agent = auth::CleanUserAgent(r.Header("user-agent"));
  auto req = std::make_shared<auth::LoginRequest>(std::move(login).value());
  registry_->Query(
      "api login user", "SELECT id, role, password_hash, disabled FROM users WHERE name = $1",
      {req->user},
      [this, call, req, source, user_agent, finished, alive = alive_](Result<pg::Rows> rows) {
        if (!*alive) return;
        if (!rows.ok()) {
          finished();
          return call.Send(RegistryError(rows.status()));
        }
        bool found = !rows->rows.empty() && rows->rows[0].size() >= 4;
        std::string id, role, hash;
        bool disabled = false;
        if (found) {
          id = rows->rows[0][0].value_or("");
          role = rows->rows[0][1].value_or("");
          hash = rows->rows[0][2].value_or("");
          disabled = rows->rows[0][3].value_or("f") == "t";
        }
        struct Checked {
          bool ok = false;
          std::optional<std::string> rehash;
        };
        OffLoop<Checked>(
            loop_,
            [req, found, hash]() {
              Checked c;
              // An unknown user costs the same time as a known one.
              c.ok = auth::VerifyPassword(found ? hash : auth::DummyHash(), req->password) && found;
              if (c.ok && auth::NeedsRehash(hash)) {
                auto h = auth::HashPassword(req->password);
                if (h.ok()) c.rehash = *h;
              }
              return c;
            },
            [this, call, req, source, user_agent, finished, found, disabled, id, role,
             alive = alive_](std::optional<Checked> checked) {
              finished();
              if (!*alive) return;
              if (!checked) return call.Send(Status::Internal("the password check did not run"));
              bool ok = checked->ok && !disabled;
              if (!ok) {
                std::string reason = !found ? "unknown user" : !checked->ok ? "wrong password"
                                                                           : "disabled";
                login_limiter_.Failure(source, req->user, static_cast<double>(uv_now(loop_)) / 1000.0);
                spdlog::warn("[auth] login for {} from {} refused: {}", req->user, source, reason);
                // Audited before answering, so that the row exists when the client hears back.
                registry_->Query(
                    "api login failed",
                    std::string(kAudit) +
                        "VALUES ($1, 'session.login_failed', 'user', $1, NULL, "
                        "jsonb_build_object('source', $2::text, 'reason', $3::text, 'user_agent', $4::text))",
                    {req->user, source, reason, user_agent},
                    // A disabled user's right password gets the same answer as a wrong one:
                    // the answer does not tell a guesser that the password was right.
                    [call](Result<pg::Rows>) {
                      call.Send(HttpResponse::Error(401, "wrong user name or password"));
                    });
                return;
              }
              login_limiter_.Success(source, req->user);
              if (checked->rehash) {
                // Its own statement: a new hash ends the user's other sessions (trigger), and
                // must not end the one made below.
                registry_->Query("api login rehash",
                                 "UPDATE users SET password_hash = $2 WHERE id = $1::bigint",
                                 {id, *checked->rehash}, [](Result<pg::Rows>) {});
              }
              std::string token = auth::RandomToken();
              std::string csrf = auth::RandomToken();
              Sql(call, "api login",
                  "WITH u AS (UPDATE users SET last_login = now(), last_login_source = $3 "
                  "  WHERE id = $1::bigint AND NOT disabled RETURNING id, name, role), "
                  "gc AS (DELETE FROM sessions WHERE expires_at < now() OR last_seen < now() - "
                  "  make_interval(secs => $6::float8) OR (user_id = $1::bigint AND id NOT IN "
                  "  (SELECT id FROM sessions WHERE user_id = $1::bigint ORDER BY last_seen DESC "
                  "  LIMIT $8::int))), "
                  "s AS (INSERT INTO sessions (token_hash, user_id, csrf_token, expires_at, source, "
                  "  user_agent) SELECT $2, u.id, $4, now() + make_interval(secs => $5::float8), "
                  "  $3, $7 FROM u RETURNING id), "
                  "a AS (" + std::string(kAudit) +
                      "SELECT u.name, 'session.login', 'user', u.name, NULL, jsonb_build_object("
                      "  'source', $3::text, 'user_agent', $7::text) FROM u JOIN s ON true) "
                      "SELECT u.name, u.role FROM u",
                  {id, auth::TokenHash(token), source, csrf, FormatDouble(options_.session_max_s),
                   FormatDouble(options_.session_idle_s), user_agent,
                   std::to_string(kMaxSessionsPerUser - 1)},
                  [this, token, csrf, source](const pg::Rows& made) -> Result<HttpResponse> {
                    if (made.rows.empty()) {
                      return HttpResponse::Error(401, "wrong user name or password");
                    }
                    std::string name = made.rows[0][0].value_or("");
                    auto user_role = auth::ParseRole(made.rows[0][1].value_or(""));
                    if (!user_role.ok()) return Status::Internal("user '" + name + "' has no valid role");
                    spdlog::info("[auth] {} signed in from {}", name, source);
                    HttpResponse res = HttpResponse::Json(SessionObject(name, *user_role, csrf));
                    res.headers.emplace_back(
                        "set-cookie",
                        auth::SessionCookie(token, static_cast<int64_t>(options_.session_max_s),
                                            options_.secure_cookies));
                    NoStore(&res);
                    return res;
                  });
            });
      });
}

void HttpApi::SessionInfo(const HttpRequest& r, Call call) {
  if (!r.Header("authorization").empty()) {
    if (CheckBearer(r.Header("authorization"), options_.api_token) != BearerCheck::kOk) {
      return call.Send(Unauthenticated("invalid token"));
    }
    return call.Send(HttpResponse::Json(SessionObject(options_.actor, auth::Role::kAdmin, "")));
  }
  LookupSession(r, [this, call](Result<std::optional<Principal>> who) {
    if (!who.ok()) return call.Send(RegistryError(who.status()));
    if (!*who) {
      HttpResponse res = HttpResponse::Error(401, "not signed in");
      res.headers.emplace_back("set-cookie", auth::ClearedSessionCookie(options_.secure_cookies));
      return call.Send(std::move(res));
    }
    HttpResponse res = HttpResponse::Json(SessionObject((*who)->name, (*who)->role, (*who)->csrf_token));
    NoStore(&res);
    call.Send(std::move(res));
  });
}

void HttpApi::Logout(const HttpRequest& r, Call call) {
  if (!r.Header("authorization").empty()) {
    return call.Send(Status::InvalidArgument("the API token has no session to end"));
  }
  auto req = std::make_shared<HttpRequest>(r);
  Authenticate(req, Access::kRead, [this, call, req](std::optional<Principal> who, HttpResponse refusal) {
    if (!who || !who->session) {
      if (who) refusal = HttpResponse::Error(401, "not signed in");
      return call.Send(std::move(refusal));
    }
    std::string token(auth::CookieValue(req->Header("cookie"), auth::kSessionCookie));
    Sql(call, "api logout",
        "WITH d AS (DELETE FROM sessions WHERE token_hash = $1 RETURNING id), "
        "a AS (" + std::string(kAudit) +
            "SELECT $2, 'session.logout', 'user', $2, NULL, jsonb_build_object('source', $3::text) "
            "FROM d) SELECT count(*) FROM d",
        {auth::TokenHash(token), who->name, auth::SourceAddress(req->peer)},
        [this, name = who->name](const pg::Rows&) -> Result<HttpResponse> {
          spdlog::info("[auth] {} signed out", name);
          HttpResponse res = HttpResponse::Json("{\"signed_out\": " + JsonQuote(name) + "}");
          res.headers.emplace_back("set-cookie", auth::ClearedSessionCookie(options_.secure_cookies));
          return res;
        });
  });
}

// ---- users (admin) ----------------------------------------------------------------------------

void HttpApi::UserRoute(const HttpRequest& r, Call call) {
  const std::string& name = r.rest;
  if (!name.empty()) {
    if (Status st = auth::ValidateUserName(name); !st.ok()) return call.Send(st);
  }
  if (r.method == "POST") {
    if (!name.empty()) return call.Send(HttpResponse::Error(405, "POST is for /api/v1/users"));
    return PostUser(r, std::move(call));
  }
  if (r.method == "PATCH" || r.method == "DELETE") {
    if (name.empty()) {
      return call.Send(Status::NotFound(r.method + " /api/v1/users/{name}"));
    }
    if (r.method == "PATCH") return PatchUser(name, r, std::move(call));
    return DeleteUser(name, std::move(call));
  }
  if (name.empty()) {
    return Sql(call, "api users",
               "SELECT json_build_object('users', coalesce((SELECT json_agg(" + UserObject("u") +
                   " ORDER BY u.name) FROM users u), '[]'::json))::text",
               {}, [](const pg::Rows& rows) { return JsonOf(rows); });
  }
  Sql(call, "api user", "SELECT " + UserObject("u") + "::text FROM users u WHERE u.name = $1",
      {name}, [name](const pg::Rows& rows) { return JsonOf(rows, 200, "no user '" + name + "'"); });
}

void HttpApi::PostUser(const HttpRequest& r, Call call) {
  auto u = auth::ParseNewUser(r.body);
  if (!u.ok()) return call.Send(u.status());
  auto nu = std::make_shared<auth::NewUser>(std::move(u).value());
  OffLoop<Result<std::string>>(
      loop_, [nu] { return auth::HashPassword(nu->password); },
      [this, call, nu, alive = alive_](std::optional<Result<std::string>> hash) {
        if (!*alive) return;
        if (!hash || !hash->ok()) return call.Send(Status::Internal("the password could not be hashed"));
        std::string name = nu->name;
        Sql(call, "api add user",
            "WITH ins AS (INSERT INTO users (name, role, password_hash) VALUES ($1, $2, $3) "
            "  ON CONFLICT (name) DO NOTHING RETURNING *), "
            "a AS (" + std::string(kAudit) +
                "SELECT $4, 'user.create', 'user', ins.name, NULL, jsonb_build_object('name', "
                "  ins.name, 'role', ins.role, 'disabled', ins.disabled) FROM ins) "
                "SELECT " + UserObject("ins") + "::text FROM ins",
            {nu->name, std::string(auth::RoleName(nu->role)), **hash, call.actor()},
            [name](const pg::Rows& rows) -> Result<HttpResponse> {
              if (rows.rows.empty()) return HttpResponse::Error(409, "user '" + name + "' exists");
              spdlog::info("[auth] user {} created", name);
              return JsonOf(rows, 201);
            });
      });
}

namespace {
// Changes to users that may end the last admin take one transaction-level advisory lock
// (the same number in cli/user_cmd.cc) before any row lock: two admins demoting each other at
// once are serialised as a whole, where row locks alone (each locks its own row, then waits
// for the other's) end in a deadlock (40P01). A one-time filter, evaluated before the scan
// under it locks a row.
constexpr const char* kAdminsLock = "(SELECT true FROM (SELECT pg_advisory_xact_lock(7265376101)) l)";
// `old`: the user $1, locked.
std::string OldUser() {
  return std::string("WITH old AS (SELECT * FROM users WHERE name = $1 AND ") + kAdminsLock +
         " FOR UPDATE), ";
}
// Whether the change leaves at least one enabled admin: true unless `old` is the last enabled
// admin and the change (the expression that follows) makes it something else. The other admins
// are locked (FOR UPDATE, after the advisory lock), so the second of two changes sees the
// first's, and one admin stays.
std::string KeepsAnAdmin() {
  return std::string(
             "ok AS (SELECT NOT EXISTS (SELECT 1 FROM old WHERE old.role = 'admin' AND NOT "
             "  old.disabled) OR EXISTS (SELECT 1 FROM (SELECT x.id FROM users x WHERE x.role = "
             "  'admin' AND NOT x.disabled AND ") +
         kAdminsLock + " FOR UPDATE) x, old WHERE x.id <> old.id) OR ";
}
}  // namespace

void HttpApi::PatchUser(const std::string& name, const HttpRequest& r, Call call) {
  auto p = auth::ParseUserPatch(r.body);
  if (!p.ok()) return call.Send(p.status());
  auto patch = std::make_shared<auth::UserPatch>(std::move(p).value());
  auto apply = [this, call, name, patch](pg::Value hash) {
    Sql(call, "api update user",
        OldUser() + KeepsAnAdmin() +
            "(coalesce($2, 'admin') = 'admin' AND NOT coalesce($4::boolean, false)) AS v), "
            "u AS (UPDATE users SET role = coalesce($2, users.role), password_hash = "
            "  coalesce($3, users.password_hash), disabled = coalesce($4::boolean, users.disabled), "
            "  updated_at = now() FROM old, ok WHERE users.id = old.id AND ok.v RETURNING users.*), "
            "a AS (" + kAudit +
            "SELECT $5, 'user.update', 'user', u.name, jsonb_build_object('role', old.role, "
            "  'disabled', old.disabled), jsonb_build_object('role', u.role, 'disabled', "
            "  u.disabled, 'password_changed', $3::text IS NOT NULL) FROM u JOIN old ON "
            "  old.id = u.id) "
            "SELECT (SELECT count(*) FROM old), (SELECT v FROM ok), (SELECT " + UserObject("u") +
            "::text FROM u)",
        {name, patch->role ? pg::Value(std::string(auth::RoleName(*patch->role))) : pg::Value(),
         hash, OptBool(patch->disabled), call.actor()},
        [name](const pg::Rows& rows) -> Result<HttpResponse> {
          if (Cell(rows, 0).value_or("0") == "0") return Status::NotFound("no user '" + name + "'");
          if (Cell(rows, 1).value_or("f") != "t") {
            return HttpResponse::Error(409, "'" + name +
                                                "' is the last enabled admin: make another admin first");
          }
          if (!Cell(rows, 2)) return Status::Internal("user not updated");
          spdlog::info("[auth] user {} updated", name);
          // The user's sessions ended in the registry if it was disabled or got a new password.
          return HttpResponse::Json(*Cell(rows, 2));
        });
  };
  if (!patch->password) return apply(pg::Value());
  OffLoop<Result<std::string>>(
      loop_, [patch] { return auth::HashPassword(*patch->password); },
      [call, apply, alive = alive_](std::optional<Result<std::string>> hash) {
        if (!*alive) return;
        if (!hash || !hash->ok()) return call.Send(Status::Internal("the password could not be hashed"));
        apply(**hash);
      });
}

void HttpApi::DeleteUser(const std::string& name, Call call) {
  Sql(call, "api delete user",
      OldUser() + KeepsAnAdmin() +
          "false AS v), "
          "d AS (DELETE FROM users USING old, ok WHERE users.id = old.id AND ok.v RETURNING "
          "  users.id), "
          "a AS (" + kAudit +
          "SELECT $2, 'user.delete', 'user', old.name, jsonb_build_object('name', old.name, "
          "  'role', old.role, 'disabled', old.disabled), NULL FROM old JOIN d ON d.id = old.id) "
          "SELECT (SELECT count(*) FROM old), (SELECT v FROM ok), (SELECT count(*) FROM d)",
      {name, call.actor()}, [name](const pg::Rows& rows) -> Result<HttpResponse> {
        if (Cell(rows, 0).value_or("0") == "0") return Status::NotFound("no user '" + name + "'");
        if (Cell(rows, 1).value_or("f") != "t") {
          return HttpResponse::Error(409, "'" + name +
                                              "' is the last enabled admin: make another admin first");
        }
        spdlog::info("[auth] user {} deleted", name);
        return HttpResponse::Json("{\"deleted\": " + JsonQuote(name) + "}");
      });
}

}  // namespace trapline::coordinator
