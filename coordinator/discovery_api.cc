// Discovery reports and hosts by hand (issue 6, points 2 to 4): POST /api/v1/discovery,
// DELETE /api/v1/discovery/tokens/{host}, POST /api/v1/hosts/{name}/clone and
// POST /api/v1/hosts/{name}/services.
//
// A report is untrusted until proven otherwise, in this order, each step before any I/O:
//   1. rate limit per source address (429 + Retry-After): the cheapest refusal first;
//   2. a bearer token at all (401);
//   3. the report's shape (discovery.h: 400 naming the field);
//   4. rate limit per host token (per host name when enrolling);
//   5. one statement that checks the token against the registry and, only when it matches,
//      writes the host, its services and the audit rows (so one transaction): unknown token
//      401, another host's token 403, enrolment of a host that has a token 409.
//
// Auto-enrolment: a report from an enabled host enables each new service that maps to a
// plugin (ssh -> linux, postgresql, redis), with the credential profile of its kind whose
// host_groups meet the host's groups, else the kind's default; a service that was enabled
// before comes back enabled when it reappears. A service whose audit log shows an operator's
// decision (any actor but "discovery") keeps that decision. Generic services are stored and
// never enabled. The leader's ReconcileTasks turns enabled services into tasks and drops the
// tasks of gone ones.
//
// hosts.address is set from the report only while it is empty (PreferredAddress: the first
// global IPv4, else IPv6, else the FQDN, else the name); an operator's address is kept.

#include <cmath>
#include <nlohmann/json.hpp>

#include "common/log.h"
#include "coordinator/auth.h"
#include "coordinator/coordinator.h"
#include "coordinator/discovery.h"
#include "coordinator/http_api.h"
#include "coordinator/http_api_internal.h"
#include "plugins/builtin.h"

namespace trapline::coordinator {

using nlohmann::json;
using namespace api;  // NOLINT: the API's shared helpers (http_api_internal.h)

std::vector<std::string> TaskPlugins() {
  std::vector<std::string> out;
  for (const auto& p : plugins::BuiltinPlugins()) {
    if (!p.schemes.empty()) out.emplace_back(p.name);  // "trapline" has no target to run
  }
  return out;
}

// Plugin names are plain ([a-z0-9_-]): nothing to quote.
std::string TaskPluginsArray() {
  std::string out = "{";
  for (const auto& p : TaskPlugins()) out += (out.size() > 1 ? "," : "") + p;
  return out + "}";
}

namespace {

HttpResponse TooMany(double wait_s, const std::string& what) {
  auto secs = static_cast<long>(std::ceil(std::max(1.0, wait_s)));
  HttpResponse res = HttpResponse::Error(
      429, "too many reports " + what + "; retry in " + std::to_string(secs) + " s");
  res.headers.emplace_back("retry-after", std::to_string(secs));
  return res;
}

double NowSeconds(uv_loop_t* loop) { return static_cast<double>(uv_now(loop)) / 1000.0; }

// The report's statement. $1 host, $2 facts, $3 services, $4 gone threshold, $5 address when
// the host has none, $6 token hash (the new one when enrolling), $7 enrolling, $8 task plugins,
// $9 the assignment channel (kAssignChannel).
// Columns: ok, the token's host, the host has a token, then counts: reported, new, gone,
// back, auto-enabled, collectors told (a task's credential profile changed: generation + 1).
// A service's credential profile is the report's choice only when the row is new or when
// auto-enrolment enables it (no operator decision in the audit log, as for `enabled`); an
// operator's choice, including "no profile", is never overridden. A change is audited and
// restarts the service's task. `told` is a plain SELECT: PostgreSQL evaluates it only when the
// final SELECT reads it (data-modifying CTEs always run), hence the last column.
constexpr const char* kReportSql = R"sql(
WITH tok AS (SELECT h.name FROM host_tokens t JOIN hosts h ON h.id = t.host_id
             WHERE t.token_hash = $6),
has AS (SELECT EXISTS (SELECT 1 FROM host_tokens t JOIN hosts h ON h.id = t.host_id
                       WHERE h.name = $1) AS v),
ok AS (SELECT CASE WHEN $7::boolean THEN NOT (SELECT v FROM has)
                   ELSE coalesce((SELECT name = $1 FROM tok), false) END AS v),
oldh AS (SELECT * FROM hosts WHERE name = $1),
h AS (INSERT INTO hosts (name, address, facts, discovered, last_report, last_seen)
      SELECT $1, $5, $2::jsonb, true, now(), now() FROM ok WHERE ok.v
      ON CONFLICT (name) DO UPDATE SET facts = EXCLUDED.facts, discovered = true,
        last_report = now(), last_seen = now(),
        address = CASE WHEN hosts.address = '' THEN EXCLUDED.address ELSE hosts.address END
      RETURNING hosts.*),
newtok AS (INSERT INTO host_tokens (host_id, token_hash) SELECT h.id, $6 FROM h WHERE $7::boolean
           RETURNING host_id),
used AS (UPDATE host_tokens SET last_used = now() FROM h
         WHERE NOT $7::boolean AND host_tokens.host_id = h.id RETURNING 1),
rep AS (SELECT * FROM jsonb_to_recordset($3::jsonb) AS r(plugin text, kind text, port int,
                                                          details jsonb)),
olds AS (SELECT s.* FROM services s JOIN h ON s.host_id = h.id),
up AS (INSERT INTO services AS s (host_id, plugin, port, details, discovered, missed_reports,
                                  gone, enabled, credential_profile_id)
       SELECT h.id, r.plugin, r.port, r.details, true, 0, false,
              h.enabled AND r.plugin = ANY ($8::text[]),
              (SELECT cp.id FROM credential_profiles cp
               WHERE r.plugin = ANY ($8::text[])
                 AND cp.kind = CASE r.plugin WHEN 'linux' THEN 'ssh' ELSE r.plugin END
                 AND (cp.host_groups && h.groups OR cp.is_default)
               ORDER BY cp.host_groups && h.groups DESC, cp.name LIMIT 1)
       FROM h, rep r
       ON CONFLICT (host_id, plugin, port) DO UPDATE SET details = EXCLUDED.details,
         discovered = true, missed_reports = 0, gone = false, last_seen = now(),
         credential_profile_id = CASE WHEN NOT s.enabled AND EXCLUDED.enabled AND NOT EXISTS (
             SELECT 1 FROM audit_log a WHERE a.object_type = 'service'
               AND a.object_id = s.id::text AND a.actor <> 'discovery')
           THEN coalesce(EXCLUDED.credential_profile_id, s.credential_profile_id)
           ELSE s.credential_profile_id END,
         enabled = s.enabled OR (EXCLUDED.enabled AND NOT EXISTS (
           SELECT 1 FROM audit_log a WHERE a.object_type = 'service' AND a.object_id = s.id::text
             AND a.actor <> 'discovery'))
       RETURNING s.id, s.plugin, s.port, s.enabled, s.credential_profile_id, (s.xmax = 0) AS inserted),
prof AS (SELECT u.id FROM up u JOIN olds o ON o.id = u.id
         WHERE u.credential_profile_id IS DISTINCT FROM o.credential_profile_id),
tb AS (UPDATE tasks SET generation = tasks.generation + 1 FROM prof
       WHERE tasks.service_id = prof.id AND tasks.collector_id IS NOT NULL
       RETURNING tasks.collector_id),
told AS (SELECT pg_notify($9, c.name) FROM collectors c
         WHERE c.id IN (SELECT collector_id FROM tb)),
miss AS (UPDATE services s SET missed_reports = least(s.missed_reports + 1, 1000000),
           gone = s.gone OR s.missed_reports + 1 >= $4::int
         FROM olds o
         WHERE s.id = o.id AND o.discovered
           AND NOT EXISTS (SELECT 1 FROM rep WHERE rep.plugin = o.plugin AND rep.port = o.port)
         RETURNING s.id, s.plugin, s.port, s.gone, s.missed_reports, o.gone AS was_gone),
ah AS (INSERT INTO audit_log (actor, action, object_type, object_id, before, after)
       SELECT 'discovery', 'host.discovered', 'host', h.name,
              CASE WHEN o.id IS NULL THEN NULL ELSE jsonb_build_object('address', o.address,
                'discovered', o.discovered) END,
              jsonb_build_object('cause', 'discovery report', 'address', h.address,
                'enrolled', $7::boolean, 'facts', h.facts)
       FROM h LEFT JOIN oldh o ON o.id = h.id WHERE o.id IS NULL OR NOT o.discovered OR $7::boolean),
asv AS (INSERT INTO audit_log (actor, action, object_type, object_id, before, after)
        SELECT 'discovery',
               CASE WHEN u.inserted THEN 'service.discovered' WHEN o.gone THEN 'service.back'
                    WHEN u.enabled AND NOT o.enabled THEN 'service.enable'
                    ELSE 'service.credential_profile' END,
               'service', u.id::text,
               CASE WHEN u.inserted THEN NULL
                    ELSE jsonb_build_object('gone', o.gone, 'enabled', o.enabled,
                      'credential_profile', (SELECT name FROM credential_profiles
                                             WHERE id = o.credential_profile_id)) END,
               jsonb_build_object('cause', 'discovery report', 'host', $1::text, 'plugin', u.plugin,
                 'port', u.port, 'enabled', u.enabled, 'gone', false, 'credential_profile',
                 (SELECT name FROM credential_profiles WHERE id = u.credential_profile_id))
        FROM up u LEFT JOIN olds o ON o.id = u.id
        WHERE u.inserted OR o.gone OR (u.enabled AND NOT o.enabled)
           OR u.credential_profile_id IS DISTINCT FROM o.credential_profile_id),
ag AS (INSERT INTO audit_log (actor, action, object_type, object_id, before, after)
       SELECT 'discovery', 'service.gone', 'service', m.id::text,
              jsonb_build_object('gone', false),
              jsonb_build_object('cause', 'discovery report', 'host', $1::text, 'plugin', m.plugin,
                'port', m.port, 'gone', true, 'missed_reports', m.missed_reports)
       FROM miss m WHERE m.gone AND NOT m.was_gone)
SELECT (SELECT v FROM ok), (SELECT name FROM tok), (SELECT v FROM has),
       (SELECT count(*) FROM up), (SELECT count(*) FROM up WHERE inserted),
       (SELECT count(*) FROM miss WHERE gone AND NOT was_gone),
       (SELECT count(*) FROM up u JOIN olds o ON o.id = u.id WHERE o.gone),
       (SELECT count(*) FROM up u LEFT JOIN olds o ON o.id = u.id
        WHERE u.enabled AND NOT coalesce(o.enabled, false)),
       (SELECT count(*) FROM told)
)sql";

}  // namespace

void HttpApi::RegisterDiscovery() {
  const DiscoveryOptions& d = options_.discovery;
  discovery_by_peer_ = std::make_unique<RateLimiter>(d.rate_per_minute / 60.0, d.burst);
  discovery_by_token_ = std::make_unique<RateLimiter>(d.rate_per_minute / 60.0, d.burst);
  auto bind = [this](void (HttpApi::*fn)(const HttpRequest&, Call)) {
    return [this, fn](const HttpRequest& r, Call call) { (this->*fn)(r, std::move(call)); };
  };
  Add("POST", "/api/v1/discovery", Access::kOpen, bind(&HttpApi::Discovery));
  Add("DELETE", "/api/v1/discovery/tokens", Access::kAdmin, bind(&HttpApi::DeleteHostToken));
}

void HttpApi::Discovery(const HttpRequest& r, Call call) {
  if (!r.rest.empty()) return call.Send(Status::NotFound("no such resource: " + r.path));
  const DiscoveryOptions& d = options_.discovery;
  std::string peer = auth::SourceAddress(r.peer);
  if (double wait = discovery_by_peer_->Take(peer, NowSeconds(loop_)); wait > 0) {
    spdlog::debug("[discovery] {}: rate limited", peer);
    return call.Send(TooMany(wait, "from " + peer));
  }
  std::string token = BearerToken(r.Header("authorization"));
  if (token.empty()) {
    HttpResponse res = HttpResponse::Error(
        401,
        "authorization required: Bearer <host token>, or the enrolment secret on first contact");
    res.headers.emplace_back("www-authenticate", "Bearer realm=\"trapline discovery\"");
    return call.Send(std::move(res));
  }
  auto report = ParseDiscoveryReport(r.body);
  if (!report.ok()) {
    spdlog::warn("[discovery] {}: report refused: {}", peer, report.status().message());
    return call.Send(report.status());
  }
  bool enrol = !d.enrolment_secret.empty() && ConstantTimeEquals(token, d.enrolment_secret);
  std::string new_token;
  std::string hash;
  if (enrol) {
    new_token = NewHostToken();
    hash = HostTokenHash(new_token);
  } else {
    hash = HostTokenHash(token);
  }
  std::string key = enrol ? "enrol:" + report->host : hash;
  if (double wait = discovery_by_token_->Take(key, NowSeconds(loop_)); wait > 0) {
    spdlog::debug("[discovery] {} from {}: rate limited", report->host, peer);
    return call.Send(TooMany(wait, "for host " + report->host));
  }
  std::string host = report->host;
  size_t reported = report->services.size();
  size_t folded = report->folded;
  registry_->Query(
      "discovery report", kReportSql,
      {host, FactsJson(*report), ServicesJson(*report), std::to_string(d.gone_after_reports),
       PreferredAddress(*report), hash, Bool(enrol), TaskPluginsArray(), kAssignChannel},
      [call, alive = alive_, host, peer, enrol, new_token, reported,
       folded](Result<pg::Rows> rows) {
        if (!*alive) return;
        if (!rows.ok()) {
          // Two enrolments of one host at once: the second one's token row conflicts.
          if (enrol && rows.status().message().find("SQLSTATE 23505") != std::string::npos) {
            return call.Send(HttpResponse::Error(409, "host '" + host + "' enrolled meanwhile"));
          }
          spdlog::warn("[discovery] {} from {}: {}", host, peer, rows.status().message());
          return call.Send(RegistryError(rows.status()));
        }
        if (Cell(*rows, 0).value_or("f") != "t") {
          if (enrol) {
            spdlog::warn("[discovery] {} from {}: enrolment refused: the host has a token", host,
                         peer);
            return call.Send(HttpResponse::Error(
                409, "host '" + host +
                         "' is enrolled already: report with its own token, or "
                         "have an admin delete it (DELETE /api/v1/discovery/tokens/" +
                         host + ")"));
          }
          if (!Cell(*rows, 1)) {
            spdlog::warn("[discovery] {} from {}: invalid token", host, peer);
            HttpResponse res = HttpResponse::Error(401, "invalid token");
            res.headers.emplace_back("www-authenticate", "Bearer realm=\"trapline discovery\"");
            return call.Send(std::move(res));
          }
          spdlog::warn("[discovery] {} from {}: refused: the token is host {}'s", host, peer,
                       *Cell(*rows, 1));
          return call.Send(HttpResponse::Error(
              403, "this token belongs to another host; a host reports only its own record"));
        }
        auto n = [&](size_t col) { return std::atoll(Cell(*rows, col).value_or("0").c_str()); };
        long long fresh = n(4), gone = n(5), back = n(6), enabled = n(7);
        if (enrol || fresh || gone || back || enabled) {
          spdlog::info(
              "[discovery] {} from {}: {} services ({} new, {} gone, {} back, {} enabled{}){}",
              host, peer, reported, fresh, gone, back, enabled,
              folded ? ", " + std::to_string(folded) + " duplicates folded" : "",
              enrol ? "; enrolled" : "");
        } else {
          spdlog::debug("[discovery] {} from {}: {} services, no change", host, peer, reported);
        }
        json out = {{"host", host}, {"services", reported}, {"enrolled", enrol},
                    {"new", fresh}, {"gone", gone},         {"folded", folded}};
        if (enrol) out["token"] = new_token;
        call.Send(HttpResponse::Json(out.dump(-1, ' ', false, json::error_handler_t::replace),
                                     enrol ? 201 : 200));
      });
}

void HttpApi::DeleteHostToken(const HttpRequest& r, Call call) {
  const std::string& host = r.rest;
  if (Status st = ValidateName(host, "host name"); !st.ok()) return call.Send(st);
  Sql(call, "discovery token reset",
      "WITH d AS (DELETE FROM host_tokens t USING hosts h WHERE h.id = t.host_id AND h.name = $1 "
      "  RETURNING h.name, t.created_at, t.last_used), "
      "a AS (" +
          std::string(kAudit) +
          "SELECT $2, 'host.token_reset', 'host', d.name, jsonb_build_object('token', true, "
          "  'created_at', d.created_at, 'last_used', d.last_used), jsonb_build_object('token', "
          "  false) FROM d) "
          "SELECT json_build_object('host', name, 'token', false)::text FROM d",
      {host, call.actor()}, [host](const pg::Rows& rows) {
        return JsonOf(rows, 200, "host '" + host + "' has no token (or does not exist)");
      });
}

void HttpApi::PostHostSub(const HttpRequest& r, Call call) {
  std::string_view rest(r.rest);
  size_t slash = rest.find('/');
  std::string name(rest.substr(0, slash));
  std::string sub(slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1));
  if (sub != "clone" && sub != "services") {
    return call.Send(HttpResponse::Error(
        405,
        "POST is for /api/v1/hosts, /api/v1/hosts/{name}/clone and /api/v1/hosts/{name}/services"));
  }
  if (Status st = ValidateName(name, "host name"); !st.ok()) return call.Send(st);
  if (sub == "clone") return CloneHost(name, r, std::move(call));
  PostHostService(name, r, std::move(call));
}

void HttpApi::CloneHost(const std::string& host, const HttpRequest& r, Call call) {
  auto to = ParseCloneBody(r.body);
  if (!to.ok()) return call.Send(to.status());
  for (const auto& n : *to) {
    if (n == host) return call.Send(Status::InvalidArgument("'to' names the host itself"));
  }
  // Groups and the enabled state onto each named host (created when missing, with its name
  // as address: an operator edits it); each of the source's task services (plugin, port,
  // credential profile, enabled) onto it. URIs are not copied: they name the source host.
  // A credential profile that changes under a running task restarts it (generation + 1) and
  // tells its collector; the last column reads `told` so that PostgreSQL evaluates it (an
  // unreferenced plain-SELECT CTE never runs).
  Sql(call, "api clone host",
      "WITH src AS (SELECT * FROM hosts WHERE name = $1), "
      "names AS (SELECT n FROM jsonb_array_elements_text($2::jsonb) AS n), "
      "oldt AS (SELECT h.* FROM hosts h JOIN names ON h.name = names.n), "
      "olds AS (SELECT s.id, s.credential_profile_id FROM services s JOIN oldt ON s.host_id = "
      "oldt.id), "
      "t AS (INSERT INTO hosts (name, address, groups, enabled) "
      "  SELECT names.n, names.n, src.groups, src.enabled FROM names, src "
      "  ON CONFLICT (name) DO UPDATE SET groups = EXCLUDED.groups, enabled = EXCLUDED.enabled "
      "  RETURNING hosts.*), "
      "sv AS (INSERT INTO services AS s (host_id, plugin, port, credential_profile_id, enabled) "
      "  SELECT t.id, x.plugin, x.port, x.credential_profile_id, x.enabled FROM t, services x "
      "  JOIN src ON x.host_id = src.id WHERE NOT x.gone AND x.plugin = ANY ($4::text[]) "
      "  ON CONFLICT (host_id, plugin, port) DO UPDATE SET credential_profile_id = "
      "  EXCLUDED.credential_profile_id, enabled = EXCLUDED.enabled "
      "  RETURNING s.id, s.host_id, s.plugin, s.port, s.enabled, s.credential_profile_id), "
      "tb AS (UPDATE tasks SET generation = tasks.generation + 1 FROM sv JOIN olds o ON o.id = "
      "sv.id "
      "  WHERE tasks.service_id = sv.id AND tasks.collector_id IS NOT NULL AND "
      "  sv.credential_profile_id IS DISTINCT FROM o.credential_profile_id RETURNING "
      "tasks.collector_id), "
      "told AS (SELECT pg_notify('" +
          std::string(kAssignChannel) +
          "', c.name) FROM collectors c WHERE c.id IN (SELECT collector_id FROM tb)), "
          "a AS (" +
          kAudit +
          "SELECT $3, 'host.clone', 'host', t.name, CASE WHEN o.id IS NULL THEN NULL ELSE "
          "  jsonb_build_object('groups', o.groups, 'enabled', o.enabled) END, "
          "  jsonb_build_object('from', $1::text, 'groups', t.groups, 'enabled', t.enabled, "
          "  'created', o.id IS NULL, 'services', coalesce((SELECT jsonb_agg(jsonb_build_object("
          "  'plugin', sv.plugin, 'port', sv.port, 'enabled', sv.enabled, 'credential_profile', "
          "  (SELECT name FROM credential_profiles WHERE id = sv.credential_profile_id)) ORDER BY "
          "  sv.plugin, sv.port) FROM sv WHERE sv.host_id = t.id), '[]'::jsonb)) "
          "  FROM t LEFT JOIN oldt o ON o.id = t.id) "
          "SELECT (SELECT count(*) FROM src), json_build_object('from', $1::text, 'hosts', "
          "  coalesce((SELECT json_agg(json_build_object('name', t.name, 'created', NOT EXISTS "
          "  (SELECT 1 FROM oldt WHERE oldt.id = t.id), 'services', (SELECT count(*) FROM sv WHERE "
          "  sv.host_id = t.id)) ORDER BY t.name) FROM t), '[]'::json))::text, "
          "  (SELECT count(*) FROM told)",
      {host, JsonStringArray(*to), call.actor(), TaskPluginsArray()},
      [host](const pg::Rows& rows) -> Result<HttpResponse> {
        if (Cell(rows, 0).value_or("0") == "0") return Status::NotFound("no host '" + host + "'");
        if (!Cell(rows, 1)) return Status::Internal("clone returned nothing");
        return HttpResponse::Json(*Cell(rows, 1));
      });
}

void HttpApi::PostHostService(const std::string& host, const HttpRequest& r, Call call) {
  auto s = ParseNewService(r.body);
  if (!s.ok()) return call.Send(s.status());
  const plugins::PluginInfo* plugin = plugins::FindPlugin(s->plugin);
  if (plugin == nullptr || plugin->schemes.empty()) {  // trapline: a collector's, not a service
    std::string known;
    for (const auto& p : TaskPlugins()) known += (known.empty() ? "" : ", ") + p;
    return call.Send(
        Status::InvalidArgument("no plugin '" + s->plugin + "' (known: " + known + ")"));
  }
  if (!s->uri.empty() && plugins::PluginForUri(s->uri) != plugin) {
    return call.Send(
        Status::InvalidArgument("the URI's scheme is not one of plugin " + s->plugin + "'s"));
  }
  std::string name = host;
  std::string cp = s->credential_profile.value_or("");
  Sql(call, "api add service",
      "WITH h AS (SELECT * FROM hosts WHERE name = $1), "
      "cp AS (SELECT id, name FROM credential_profiles WHERE name = $5), "
      "ok AS (SELECT $5::text IS NULL OR EXISTS (SELECT 1 FROM cp) AS v), "
      "s AS (INSERT INTO services (host_id, plugin, port, uri, credential_profile_id, enabled) "
      "  SELECT h.id, $2, $3::int, $4, (SELECT id FROM cp), $6::boolean FROM h, ok WHERE ok.v "
      "  ON CONFLICT (host_id, plugin, port) DO NOTHING RETURNING *), "
      "a AS (" +
          std::string(kAudit) +
          "SELECT $7, 'service.create', 'service', s.id::text, NULL, jsonb_build_object('host', "
          "  $1::text, 'plugin', s.plugin, 'port', s.port, 'uri', " +
          std::string(kUriMasked) +
          ", 'enabled', s.enabled, 'credential_profile', "
          "  (SELECT name FROM cp)) FROM s) "
          "SELECT (SELECT count(*) FROM h), (SELECT v FROM ok), (SELECT json_build_object('id', "
          "  s.id, 'host', $1::text, 'plugin', s.plugin, 'port', s.port, 'uri', " +
          kUriMasked +
          ", 'enabled', s.enabled, 'credential_profile', (SELECT name FROM cp))::text FROM s)",
      {name, s->plugin, std::to_string(s->port), s->uri, Opt(s->credential_profile),
       Bool(s->enabled), call.actor()},
      [name, cp, plugin = s->plugin, port = s->port](const pg::Rows& rows) -> Result<HttpResponse> {
        if (Cell(rows, 0).value_or("0") == "0") return Status::NotFound("no host '" + name + "'");
        if (Cell(rows, 1).value_or("f") != "t") {
          return Status::InvalidArgument("no credential profile '" + cp + "'");
        }
        if (!Cell(rows, 2)) {
          return HttpResponse::Error(409, "host '" + name + "' has a " + plugin +
                                              " service on port " + std::to_string(port) +
                                              " already");
        }
        return HttpResponse::Json(*Cell(rows, 2), 201);
      });
}

}  // namespace trapline::coordinator
