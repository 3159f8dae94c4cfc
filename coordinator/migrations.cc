#include "coordinator/migrations.h"

#include <algorithm>
#include <string>

namespace trapline::coordinator {

namespace {

// Version 1: the registry of issues 5, 6 and 7.
//  - Names (hosts, collectors, credential profiles, users) are unique: the admin panel, the
//    API and Zabbix refer to them by name. Rows are referred to by bigint ids.
//  - Times are timestamptz set by the database's clock (now()), so that the coordinator, the
//    collectors and the API never compare clocks of different machines.
//  - CHECK constraints keep a row edited by hand from being nonsense the coordinator would
//    have to guess about (a weight of 0, NaN or infinity; a cost <= 0; an unknown state).
constexpr std::string_view kV1Registry = R"sql(
CREATE TABLE credential_profiles (
  id bigserial PRIMARY KEY,
  name text NOT NULL UNIQUE CHECK (name <> ''),
  kind text NOT NULL CHECK (kind IN ('ssh', 'postgresql', 'redis')),
  username text NOT NULL DEFAULT '',
  -- Passwords, private keys, passphrases: JSON, read only by the coordinator when it hands a
  -- task to a collector. Never returned by the API layer and never written to logs.
  secret jsonb NOT NULL DEFAULT '{}'::jsonb,
  -- Non-secret options (sslmode, known_hosts, use_agent, ...).
  options jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE hosts (
  id bigserial PRIMARY KEY,
  name text NOT NULL UNIQUE CHECK (name <> ''),  -- the Zabbix host name
  address text NOT NULL DEFAULT '',
  enabled boolean NOT NULL DEFAULT false,
  maintenance boolean NOT NULL DEFAULT false,
  maintenance_until timestamptz,
  groups text[] NOT NULL DEFAULT '{}',
  first_seen timestamptz NOT NULL DEFAULT now(),
  last_seen timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE services (
  id bigserial PRIMARY KEY,
  host_id bigint NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
  plugin text NOT NULL CHECK (plugin <> ''),  -- linux, postgresql, redis
  port integer NOT NULL DEFAULT 0 CHECK (port BETWEEN 0 AND 65535),  -- 0: the plugin's default
  uri text NOT NULL DEFAULT '',
  credential_profile_id bigint REFERENCES credential_profiles (id) ON DELETE SET NULL,
  enabled boolean NOT NULL DEFAULT false,
  state text NOT NULL DEFAULT 'unknown' CHECK (state IN ('unknown', 'ok', 'error')),
  gone boolean NOT NULL DEFAULT false,  -- no longer reported by discovery
  first_seen timestamptz NOT NULL DEFAULT now(),
  last_seen timestamptz NOT NULL DEFAULT now(),
  UNIQUE (host_id, plugin, port)
);
CREATE INDEX services_credential_profile_idx ON services (credential_profile_id);
CREATE INDEX services_enabled_idx ON services (enabled) WHERE enabled;

CREATE TABLE collectors (
  id bigserial PRIMARY KEY,
  name text NOT NULL UNIQUE CHECK (name <> ''),
  weight double precision NOT NULL DEFAULT 1
    CHECK (weight > 0 AND weight < 'Infinity'::double precision),  -- NaN sorts above Infinity
  address text NOT NULL DEFAULT '',
  version text NOT NULL DEFAULT '',
  protocol integer NOT NULL DEFAULT 1,
  -- active: takes its share; draining: leaving on purpose; dead: heartbeats stopped (set by
  -- the leader coordinator, back to active when they resume).
  state text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'draining', 'dead')),
  registered_at timestamptz NOT NULL DEFAULT now(),
  last_heartbeat timestamptz,
  -- The last heartbeat's load report: {"lag_p50_ms":..,"lag_p99_ms":..,"cpu_pct":..,
  -- "tasks":..,"connections":{"connected":..,"failed":..},"sender":{...}}.
  load jsonb NOT NULL DEFAULT '{}'::jsonb
);

CREATE TABLE tasks (
  id bigserial PRIMARY KEY,
  service_id bigint NOT NULL UNIQUE REFERENCES services (id) ON DELETE CASCADE,
  plugin text NOT NULL CHECK (plugin <> ''),
  -- Declared by the plugin, refined by the CPU the task is measured to use.
  cost double precision NOT NULL DEFAULT 1
    CHECK (cost > 0 AND cost < 'Infinity'::double precision),
  collector_id bigint REFERENCES collectors (id) ON DELETE SET NULL,
  -- Bumped on every change of collector_id: a collector acknowledges the generation it runs,
  -- so that a hand-over is never sampled twice.
  generation bigint NOT NULL DEFAULT 0,
  assigned_at timestamptz
);
CREATE INDEX tasks_collector_idx ON tasks (collector_id);

CREATE TABLE entities (
  id bigserial PRIMARY KEY,
  task_id bigint NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
  kind text NOT NULL,  -- database, disk, interface, ...
  name text NOT NULL,
  gone boolean NOT NULL DEFAULT false,
  first_seen timestamptz NOT NULL DEFAULT now(),
  last_seen timestamptz NOT NULL DEFAULT now(),
  UNIQUE (task_id, kind, name)
);

CREATE TABLE errors (
  id bigserial PRIMARY KEY,
  task_id bigint REFERENCES tasks (id) ON DELETE CASCADE,
  collector_id bigint REFERENCES collectors (id) ON DELETE CASCADE,
  message text NOT NULL,
  at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX errors_at_idx ON errors (at);
CREATE INDEX errors_task_idx ON errors (task_id, at);
CREATE INDEX errors_collector_idx ON errors (collector_id, at);

CREATE TABLE users (
  id bigserial PRIMARY KEY,
  name text NOT NULL UNIQUE CHECK (name <> ''),
  role text NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
  password_hash text NOT NULL CHECK (password_hash LIKE '$argon2id$%'),  -- PHC string
  disabled boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE audit_log (
  id bigserial PRIMARY KEY,
  at timestamptz NOT NULL DEFAULT now(),
  actor text NOT NULL,        -- a user name, "coordinator:<name>" or "discovery"
  action text NOT NULL,       -- "service.enable", "maintenance.start", ...
  object_type text NOT NULL,
  object_id text NOT NULL DEFAULT '',
  before jsonb,
  after jsonb
);
CREATE INDEX audit_log_at_idx ON audit_log (at);
CREATE INDEX audit_log_object_idx ON audit_log (object_type, object_id, at);

-- The leader's epoch: bumped by each coordinator that becomes leader. The leader's writes are
-- conditional on the epoch it got, so that a leader that lost its lock (and does not know it
-- yet) cannot overwrite its successor's assignment.
CREATE TABLE coordinator_leader (
  id smallint PRIMARY KEY CHECK (id = 1),
  epoch bigint NOT NULL,
  name text NOT NULL,
  since timestamptz NOT NULL
);
INSERT INTO coordinator_leader (id, epoch, name, since) VALUES (1, 0, '', now())
)sql";

// Version 2: what the coordinator last applied to Zabbix for a host's maintenance ("off", or
// "on:<unix end, 0 = open-ended>"), so that a change of hosts.maintenance(_until), from the
// API or by hand, is applied once and a restart or takeover does not re-apply everything.
// (No partial index for the pending ones: its predicate would need extract(epoch), which is
// not immutable; the leader's poll scans hosts, thousands of rows, once a second.)
constexpr std::string_view kV2MaintenanceApplied = R"sql(
ALTER TABLE hosts ADD COLUMN maintenance_applied text NOT NULL DEFAULT 'off'
)sql";

// Version 3: discovery (issue 6).
//  - host_tokens: the per-host token that trapline-discover got at enrolment, as its SHA-256
//    (hex): the registry never holds a token that could be replayed. One per host; an admin
//    deletes it (DELETE /api/v1/discovery/tokens/{host}) before the host may enrol again.
//  - hosts.facts: what the last report said (fqdn, os, kernel, addresses, cpus,
//    memory_bytes, script); hosts.discovered: reported at least once; last_report: when.
//  - services.discovered: the service came from a report (only those are counted missing
//    when a report lacks them: a service added by hand is never marked gone by discovery);
//    missed_reports: consecutive reports without it (gone at [discovery] gone_after_reports);
//    details: what the report said about it (version, data_directory, name).
//  - credential_profiles.host_groups / is_default: the profile a discovered service gets is
//    one of its kind whose host_groups meet the host's groups, else the kind's default (at
//    most one default per kind).
constexpr std::string_view kV3Discovery = R"sql(
CREATE TABLE host_tokens (
  host_id bigint PRIMARY KEY REFERENCES hosts (id) ON DELETE CASCADE,
  token_hash text NOT NULL UNIQUE CHECK (token_hash ~ '^[0-9a-f]{64}$'),
  created_at timestamptz NOT NULL DEFAULT now(),
  last_used timestamptz
);

ALTER TABLE hosts
  ADD COLUMN facts jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(facts) = 'object'),
  ADD COLUMN discovered boolean NOT NULL DEFAULT false,
  ADD COLUMN last_report timestamptz;

ALTER TABLE services
  ADD COLUMN discovered boolean NOT NULL DEFAULT false,
  ADD COLUMN missed_reports integer NOT NULL DEFAULT 0 CHECK (missed_reports >= 0),
  ADD COLUMN details jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(details) = 'object');

ALTER TABLE credential_profiles
  ADD COLUMN host_groups text[] NOT NULL DEFAULT '{}',
  ADD COLUMN is_default boolean NOT NULL DEFAULT false;
CREATE UNIQUE INDEX credential_profiles_default_idx ON credential_profiles (kind) WHERE is_default
)sql";
// Version 4: users' sessions (issue 7). A session is found by the hash of its cookie's token
// (never the token itself); it ends at expires_at (absolute), after an idle spell (checked
// against last_seen by the coordinator, whose [http] session_idle may change), at logout, and
// here, in the database, when its user is disabled, deleted or given a new password: so that
// `trapline user disable` and the API end them alike.
constexpr std::string_view kV4Sessions = R"sql(
CREATE TABLE sessions (
  id bigserial PRIMARY KEY,
  token_hash text NOT NULL UNIQUE CHECK (token_hash ~ '^[0-9a-f]{64}$'),
  user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  csrf_token text NOT NULL CHECK (length(csrf_token) >= 32),
  created_at timestamptz NOT NULL DEFAULT now(),
  last_seen timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL,
  source text NOT NULL DEFAULT '',
  user_agent text NOT NULL DEFAULT ''
);
CREATE INDEX sessions_user_idx ON sessions (user_id);
CREATE INDEX sessions_expires_idx ON sessions (expires_at);

ALTER TABLE users
  ADD COLUMN last_login timestamptz,
  ADD COLUMN last_login_source text,
  ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();

CREATE FUNCTION trapline_end_user_sessions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.disabled OR NEW.password_hash IS DISTINCT FROM OLD.password_hash THEN
    DELETE FROM sessions WHERE user_id = NEW.id;
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER users_end_sessions AFTER UPDATE OF disabled, password_hash ON users
  FOR EACH ROW EXECUTE FUNCTION trapline_end_user_sessions()
)sql";
// Version 5: the admin panel (issue 7): live events, collectors' load history, indexes for
// the panel's lists.
//  - Live events: triggers NOTIFY trapline_events with a small JSON hint {"type", "id",
//    "host"?, ...} (well under NOTIFY's 8000-byte limit: every text in it is cut to at most
//    300 characters, so a name edited by hand into something huge cannot fail the change) when
//    something the panel shows changes: a host's enabled/maintenance/groups/address, a
//    service's state/enabled/gone/profile, a collector's state/weight (not its heartbeats),
//    a task's collector, a new error, a new audit row. Every coordinator LISTENs and fans the
//    hints out to its browsers (coordinator/panel_api.cc); PostgreSQL delivers them at commit
//    and folds identical ones of one transaction into one.
//  - collector_load_history: one row per collector every [coordinator] load_history_interval
//    (15 s), written by the leader from collectors.load, kept 24 hours.
constexpr std::string_view kV5Panel = R"sql(
CREATE FUNCTION trapline_event(payload jsonb) RETURNS void LANGUAGE sql AS $$
  SELECT pg_notify('trapline_events', payload::text)
$$;

CREATE FUNCTION trapline_hosts_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE r hosts;
BEGIN
  IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
  IF TG_OP = 'UPDATE' AND OLD.enabled IS NOT DISTINCT FROM NEW.enabled
     AND OLD.maintenance IS NOT DISTINCT FROM NEW.maintenance
     AND OLD.maintenance_until IS NOT DISTINCT FROM NEW.maintenance_until
     AND OLD.maintenance_applied IS NOT DISTINCT FROM NEW.maintenance_applied
     AND OLD.groups IS NOT DISTINCT FROM NEW.groups
     AND OLD.address IS NOT DISTINCT FROM NEW.address AND OLD.name = NEW.name THEN
    RETURN NULL;
  END IF;
  PERFORM trapline_event(jsonb_build_object('type', 'host', 'id', left(r.name, 255), 'host', left(r.name, 255),
                                            'op', lower(TG_OP)));
  RETURN NULL;
END $$;
CREATE TRIGGER hosts_event AFTER INSERT OR UPDATE OR DELETE ON hosts
  FOR EACH ROW EXECUTE FUNCTION trapline_hosts_event();

CREATE FUNCTION trapline_services_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE r services;
BEGIN
  IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
  IF TG_OP = 'UPDATE' AND OLD.state = NEW.state AND OLD.enabled = NEW.enabled
     AND OLD.gone = NEW.gone
     AND OLD.credential_profile_id IS NOT DISTINCT FROM NEW.credential_profile_id THEN
    RETURN NULL;
  END IF;
  PERFORM trapline_event(jsonb_build_object('type', 'service', 'id', r.id, 'host',
    (SELECT left(name, 255) FROM hosts WHERE id = r.host_id), 'plugin', left(r.plugin, 100), 'state', r.state,
    'op', lower(TG_OP)));
  RETURN NULL;
END $$;
CREATE TRIGGER services_event AFTER INSERT OR UPDATE OR DELETE ON services
  FOR EACH ROW EXECUTE FUNCTION trapline_services_event();

CREATE FUNCTION trapline_collectors_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE r collectors;
BEGIN
  IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
  IF TG_OP = 'UPDATE' AND OLD.state = NEW.state AND OLD.weight = NEW.weight THEN
    RETURN NULL;
  END IF;
  PERFORM trapline_event(jsonb_build_object('type', 'collector', 'id', left(r.name, 255), 'state', r.state,
                                            'op', lower(TG_OP)));
  RETURN NULL;
END $$;
CREATE TRIGGER collectors_event AFTER INSERT OR UPDATE OR DELETE ON collectors
  FOR EACH ROW EXECUTE FUNCTION trapline_collectors_event();

CREATE FUNCTION trapline_tasks_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE r tasks;
BEGIN
  IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
  IF TG_OP = 'UPDATE' AND OLD.collector_id IS NOT DISTINCT FROM NEW.collector_id THEN
    RETURN NULL;
  END IF;
  PERFORM trapline_event(jsonb_build_object('type', 'task', 'id', r.id, 'host',
    (SELECT left(h.name, 255) FROM services s JOIN hosts h ON h.id = s.host_id WHERE s.id = r.service_id),
    'collector', (SELECT left(name, 255) FROM collectors WHERE id = r.collector_id), 'op', lower(TG_OP)));
  RETURN NULL;
END $$;
CREATE TRIGGER tasks_event AFTER INSERT OR UPDATE OR DELETE ON tasks
  FOR EACH ROW EXECUTE FUNCTION trapline_tasks_event();

CREATE FUNCTION trapline_errors_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM trapline_event(jsonb_build_object('type', 'error', 'id', NEW.id, 'host',
    (SELECT left(h.name, 255) FROM tasks t JOIN services s ON s.id = t.service_id JOIN hosts h
       ON h.id = s.host_id WHERE t.id = NEW.task_id),
    'collector', (SELECT left(name, 255) FROM collectors WHERE id = NEW.collector_id)));
  RETURN NULL;
END $$;
CREATE TRIGGER errors_event AFTER INSERT ON errors
  FOR EACH ROW EXECUTE FUNCTION trapline_errors_event();

CREATE FUNCTION trapline_audit_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM trapline_event(jsonb_build_object('type', 'audit', 'id', NEW.id, 'action',
    left(NEW.action, 100), 'object_type', left(NEW.object_type, 100), 'object',
    left(NEW.object_id, 300), 'actor', left(NEW.actor, 100)));
  RETURN NULL;
END $$;
CREATE TRIGGER audit_log_event AFTER INSERT ON audit_log
  FOR EACH ROW EXECUTE FUNCTION trapline_audit_event();

CREATE TABLE collector_load_history (
  collector_id bigint NOT NULL REFERENCES collectors (id) ON DELETE CASCADE,
  at timestamptz NOT NULL,
  lag_p50_ms double precision,
  lag_p99_ms double precision,
  cpu_pct double precision,
  tasks integer,
  PRIMARY KEY (collector_id, at)
);
CREATE INDEX collector_load_history_at_idx ON collector_load_history (at);

-- The audit page filters by actor and action, latest first.
CREATE INDEX audit_log_actor_idx ON audit_log (actor, at);
CREATE INDEX audit_log_action_idx ON audit_log (action, at);
-- The hosts page: a host's services (the unique key starts with host_id), its tasks
-- (tasks.service_id is unique), the latest error of a task (errors_task_idx), by group.
CREATE INDEX hosts_groups_idx ON hosts USING gin (groups)
)sql";

constexpr Migration kMigrations[] = {
    {1, "registry: hosts, services, credential profiles, collectors, tasks, entities, errors, "
        "users, audit log, leader epoch",
     kV1Registry},
    {2, "hosts.maintenance_applied: maintenance changes applied to Zabbix once", kV2MaintenanceApplied},
    {3, "discovery: host tokens, host facts, services missed/details, profiles by host group", kV3Discovery},
    {4, "sessions: users' login sessions, users.last_login, sessions end with their user", kV4Sessions},
    {5, "admin panel: live event triggers (NOTIFY trapline_events), collector load history, "
        "audit and host group indexes",
     kV5Panel},
};

}  // namespace

std::span<const Migration> Migrations() { return kMigrations; }

Status CheckMigrations(std::span<const Migration> all) {
  for (size_t i = 0; i < all.size(); ++i) {
    const Migration& m = all[i];
    if (m.version != static_cast<int>(i) + 1) {
      return Status::Internal("migration #" + std::to_string(i) + " has version " +
                              std::to_string(m.version) + ", expected " + std::to_string(i + 1));
    }
    if (m.name.empty() || m.name.find('\n') != std::string_view::npos) {
      return Status::Internal("migration " + std::to_string(m.version) + ": name empty or not one line");
    }
    if (m.sql.find_first_not_of(" \t\r\n") == std::string_view::npos) {
      return Status::Internal("migration " + std::to_string(m.version) + ": no SQL");
    }
  }
  return Status::OK();
}

Result<std::vector<const Migration*>> PendingMigrations(std::span<const Migration> all,
                                                        std::span<const int> applied) {
  int known = all.empty() ? 0 : all.back().version;
  for (int v : applied) {
    if (v > known || v < 1) {
      return Status::InvalidArgument(
          "the registry has schema version " + std::to_string(v) + " but this trapline knows " +
          "versions 1.." + std::to_string(known) +
          ": it was migrated by a newer trapline; upgrade this coordinator");
    }
  }
  std::vector<const Migration*> out;
  for (const Migration& m : all) {
    if (std::find(applied.begin(), applied.end(), m.version) == applied.end()) out.push_back(&m);
  }
  return out;
}

}  // namespace trapline::coordinator
