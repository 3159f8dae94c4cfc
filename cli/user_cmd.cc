// `trapline user add|list|passwd|disable`: the admin panel's local users, straight in the
// registry (issue 7: the first admin is made here, before anyone can sign in). The registry
// comes from --registry DSN or from --config coordinator.toml ([coordinator] registry); its
// schema is brought up to date first, as a coordinator would.
//
// Passwords: --password-file FILE (its first line), else standard input (first line), asked
// twice without echo when it is a terminal. A password is never printed, logged or put in
// the audit log; the registry keeps its Argon2id hash only.

#include <pwd.h>
#include <termios.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "common/config.h"
#include "common/log.h"
#include "common/pg_client.h"
#include "common/uv.h"
#include "coordinator/auth.h"
#include "coordinator/registry_schema.h"

namespace trapline::cli {

namespace {

namespace auth = coordinator::auth;

struct UserFlags {
  std::string registry;
  std::string config;
  std::string name;
  std::string role;
  std::string password_file;
};

// The registry's connection on a private loop, one statement at a time.
class Registry {
 public:
  explicit Registry(std::string conninfo)
      : client_(loop_.get(), Options(std::move(conninfo))) {}
  ~Registry() {
    client_.Close();
    loop_.Run();  // lets the connection's handles close
  }

  Status Open() {
    bool done = false;
    Status why;
    client_.SetStateCallback([&](bool connected, const Status& st) {
      if (done) return;
      done = true;
      if (!connected) why = st.ok() ? Status::Unavailable("cannot connect") : st;
    });
    client_.Start();
    TRAPLINE_RETURN_IF_ERROR(Wait(&done));
    if (!why.ok()) return why.WithContext("registry");
    client_.SetStateCallback(nullptr);
    done = false;
    Status migrated;
    coordinator::MigrateRegistry(&client_, [&](Result<coordinator::MigrationReport> r) {
      done = true;
      if (!r.ok()) migrated = r.status();
    });
    TRAPLINE_RETURN_IF_ERROR(Wait(&done));
    return migrated.ok() ? Status::OK() : migrated.WithContext("registry schema");
  }

  Result<pg::Rows> Query(std::string sql, std::vector<pg::Value> params) {
    bool done = false;
    Result<pg::Rows> out = Status::Internal("no answer");
    client_.Query("user", std::move(sql), std::move(params), [&](Result<pg::Rows> r) {
      done = true;
      out = std::move(r);
    });
    TRAPLINE_RETURN_IF_ERROR(Wait(&done));
    return out;
  }

 private:
  static pg::Client::Options Options(std::string conninfo) {
    pg::Client::Options o;
    o.conninfo = std::move(conninfo);
    o.application_name = "trapline user";
    o.reconnect = false;
    return o;
  }
  Status Wait(const bool* done) {
    while (!*done) {
      if (uv_run(loop_.get(), UV_RUN_ONCE) == 0 && !*done) {
        return Status::Internal("the registry connection stopped without an answer");
      }
    }
    return Status::OK();
  }

  Loop loop_;
  pg::Client client_;
};

Result<std::string> RegistryOf(const UserFlags& f) {
  if (!f.registry.empty() && !f.config.empty()) {
    return Status::InvalidArgument("give --registry or --config, not both");
  }
  if (!f.registry.empty()) return f.registry;
  if (f.config.empty()) {
    return Status::InvalidArgument("the registry is needed: --registry DSN or --config coordinator.toml");
  }
  TRAPLINE_ASSIGN_OR_RETURN(ConfigTable root, ConfigTable::LoadFile(f.config));
  TRAPLINE_ASSIGN_OR_RETURN(ConfigTable * c, root.GetTable("coordinator"));
  TRAPLINE_ASSIGN_OR_RETURN(std::string registry, c->GetString("registry", ""));
  if (registry.empty()) {
    return Status::InvalidArgument(f.config + ": [coordinator] has no 'registry'");
  }
  return registry;
}

std::string StripEol(std::string line) {
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
  return line;
}

// Reads a line from the terminal without echo.
Result<std::string> Prompt(const char* what) {
  std::fprintf(stderr, "%s", what);
  std::fflush(stderr);
  termios old{};
  bool tty = tcgetattr(STDIN_FILENO, &old) == 0;
  if (tty) {
    termios quiet = old;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
  }
  std::string line;
  bool got = static_cast<bool>(std::getline(std::cin, line));
  if (tty) tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
  std::fprintf(stderr, "\n");
  if (!got) return Status::InvalidArgument("no password given");
  return StripEol(line);
}

Result<std::string> ReadPassword(const UserFlags& f) {
  std::string pw;
  if (!f.password_file.empty()) {
    std::ifstream in(f.password_file, std::ios::binary);
    if (!in) return Status::InvalidArgument("--password-file " + f.password_file + " cannot be read");
    std::getline(in, pw);
    pw = StripEol(pw);
  } else if (isatty(STDIN_FILENO)) {
    TRAPLINE_ASSIGN_OR_RETURN(pw, Prompt("Password: "));
    TRAPLINE_ASSIGN_OR_RETURN(std::string again, Prompt("Password again: "));
    if (again != pw) return Status::InvalidArgument("the two passwords differ");
  } else {
    if (!std::getline(std::cin, pw)) {
      return Status::InvalidArgument("no password on standard input (or use --password-file)");
    }
    pw = StripEol(pw);
  }
  TRAPLINE_RETURN_IF_ERROR(auth::CheckPasswordPolicy(pw));
  return pw;
}

// The audit log's actor for changes made here.
std::string Actor() {
  const char* login = std::getenv("USER");
  if (login == nullptr || *login == '\0') {
    const passwd* pw = getpwuid(getuid());
    login = pw != nullptr ? pw->pw_name : "unknown";
  }
  return std::string("cli:") + login;
}

// A copy of api::kAudit (coordinator/http_api_internal.h), which is coordinator-internal.
constexpr const char* kAudit =
    "INSERT INTO audit_log (actor, action, object_type, object_id, before, after) ";

// The advisory lock that serialises changes which may end the last admin, taken before any
// row lock (the same number as in coordinator/session_api.cc, see there): without it, two
// such changes at once can deadlock on each other's rows.
constexpr const char* kAdminsLock = "(SELECT true FROM (SELECT pg_advisory_xact_lock(7265376101)) l)";

// Whether a change leaves an enabled admin other than user $1 (the change makes $1 not one).
constexpr const char* kOtherAdmin =
    "EXISTS (SELECT 1 FROM (SELECT x.id FROM users x WHERE x.role = 'admin' AND NOT x.disabled "
    "AND x.name <> $1 FOR UPDATE) x)";

Status Add(Registry& db, const UserFlags& f) {
  TRAPLINE_RETURN_IF_ERROR(auth::ValidateNewUserName(f.name));
  TRAPLINE_ASSIGN_OR_RETURN(auth::Role role, auth::ParseRole(f.role));
  TRAPLINE_ASSIGN_OR_RETURN(std::string pw, ReadPassword(f));
  TRAPLINE_ASSIGN_OR_RETURN(std::string hash, auth::HashPassword(pw));
  TRAPLINE_ASSIGN_OR_RETURN(
      pg::Rows rows,
      db.Query(std::string("WITH ins AS (INSERT INTO users (name, role, password_hash) VALUES ($1, $2, $3) "
                           "ON CONFLICT (name) DO NOTHING RETURNING *), a AS (") +
                   kAudit +
                   "SELECT $4, 'user.create', 'user', ins.name, NULL, jsonb_build_object('name', "
                   "ins.name, 'role', ins.role, 'disabled', ins.disabled) FROM ins) "
                   "SELECT count(*) FROM ins",
               {f.name, std::string(auth::RoleName(role)), hash, Actor()}));
  if (rows.rows.empty() || rows.rows[0][0].value_or("0") == "0") {
    return Status::InvalidArgument("user '" + f.name + "' exists (trapline user passwd changes its password)");
  }
  std::printf("user %s added (%s)\n", f.name.c_str(), std::string(auth::RoleName(role)).c_str());
  return Status::OK();
}

Status List(Registry& db) {
  TRAPLINE_ASSIGN_OR_RETURN(
      pg::Rows rows,
      db.Query("SELECT u.name, u.role, CASE WHEN u.disabled THEN 'disabled' ELSE 'enabled' END, "
               "coalesce(to_char(u.last_login AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
               "'never'), (SELECT count(*) FROM sessions s WHERE s.user_id = u.id AND s.expires_at > "
               "now()) FROM users u ORDER BY u.name",
               {}));
  std::printf("%-32s %-9s %-9s %-21s %s\n", "NAME", "ROLE", "STATE", "LAST LOGIN", "SESSIONS");
  for (const auto& r : rows.rows) {
    std::printf("%-32s %-9s %-9s %-21s %s\n", r[0].value_or("").c_str(), r[1].value_or("").c_str(),
                r[2].value_or("").c_str(), r[3].value_or("").c_str(), r[4].value_or("0").c_str());
  }
  return Status::OK();
}

Status Passwd(Registry& db, const UserFlags& f) {
  TRAPLINE_RETURN_IF_ERROR(auth::ValidateUserName(f.name));
  TRAPLINE_ASSIGN_OR_RETURN(std::string pw, ReadPassword(f));
  TRAPLINE_ASSIGN_OR_RETURN(std::string hash, auth::HashPassword(pw));
  // The user's sessions end in the registry (trigger of migration 4).
  TRAPLINE_ASSIGN_OR_RETURN(
      pg::Rows rows,
      db.Query(std::string("WITH u AS (UPDATE users SET password_hash = $2, updated_at = now() WHERE "
                           "name = $1 RETURNING name), a AS (") +
                   kAudit +
                   "SELECT $3, 'user.update', 'user', u.name, NULL, jsonb_build_object("
                   "'password_changed', true) FROM u) SELECT count(*) FROM u",
               {f.name, hash, Actor()}));
  if (rows.rows.empty() || rows.rows[0][0].value_or("0") == "0") {
    return Status::NotFound("no user '" + f.name + "'");
  }
  std::printf("password of %s changed; its sessions ended\n", f.name.c_str());
  return Status::OK();
}

Status Disable(Registry& db, const UserFlags& f) {
  TRAPLINE_RETURN_IF_ERROR(auth::ValidateUserName(f.name));
  TRAPLINE_ASSIGN_OR_RETURN(
      pg::Rows rows,
      db.Query(std::string("WITH old AS (SELECT * FROM users WHERE name = $1 AND ") + kAdminsLock +
                   " FOR UPDATE), "
                   "ok AS (SELECT NOT EXISTS (SELECT 1 FROM old WHERE role = 'admin' AND NOT "
                   "disabled) OR " +
                   kOtherAdmin +
                   " AS v), u AS (UPDATE users SET disabled = true, updated_at = now() FROM old, ok "
                   "WHERE users.id = old.id AND ok.v RETURNING users.name), a AS (" +
                   kAudit +
                   "SELECT $2, 'user.update', 'user', u.name, jsonb_build_object('disabled', "
                   "old.disabled), jsonb_build_object('disabled', true) FROM u, old) "
                   "SELECT (SELECT count(*) FROM old), (SELECT v FROM ok)",
               {f.name, Actor()}));
  if (rows.rows.empty() || rows.rows[0][0].value_or("0") == "0") {
    return Status::NotFound("no user '" + f.name + "'");
  }
  if (rows.rows[0][1].value_or("f") != "t") {
    return Status::Rejected("'" + f.name + "' is the last enabled admin: add another admin first");
  }
  std::printf("user %s disabled; its sessions ended\n", f.name.c_str());
  return Status::OK();
}

int Run(const std::string& action, const UserFlags& f) {
  auto fail = [&](const Status& st) {
    std::fprintf(stderr, "trapline user %s: %s\n", action.c_str(), st.message().c_str());
    return 1;
  };
  if (Status st = InitLogging("error"); !st.ok()) return fail(st);
  if (Status st = auth::Init(); !st.ok()) return fail(st);
  auto registry = RegistryOf(f);
  if (!registry.ok()) return fail(registry.status());
  // Checked before any I/O; the reason never repeats the string (it may hold a password).
  if (auto p = pg::BuildConnParams(*registry, "trapline user", 5); !p.ok()) return fail(p.status());
  Registry db(*registry);
  if (Status st = db.Open(); !st.ok()) return fail(st);
  Status st;
  if (action == "add") st = Add(db, f);
  if (action == "list") st = List(db);
  if (action == "passwd") st = Passwd(db, f);
  if (action == "disable") st = Disable(db, f);
  return st.ok() ? 0 : fail(st);
}

}  // namespace

Runner AddUserCommand(CLI::App& app) {
  auto f = std::make_shared<UserFlags>();
  auto action = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand(
      "user", "Manage the admin panel's users in the registry (add, list, passwd, disable)");
  cmd->require_subcommand(1);
  auto registry_flags = [f](CLI::App* sub) {
    sub->add_option("--registry", f->registry, "The registry's PostgreSQL URI or key=value string");
    sub->add_option("-c,--config", f->config, "A coordinator config: [coordinator] registry")
        ->check(CLI::ExistingFile);
  };
  auto password_flag = [f](CLI::App* sub) {
    sub->add_option("--password-file", f->password_file,
                    "Read the password from this file's first line (default: standard input, "
                    "asked without echo on a terminal)")
        ->check(CLI::ExistingFile);
  };
  CLI::App* add = cmd->add_subcommand("add", "Add a user (the first admin is made this way)");
  add->add_option("name", f->name, "User name: letters, digits, '.', '_', '-', '@'")->required();
  add->add_option("--role", f->role, "admin, operator or viewer")
      ->required()
      ->check(CLI::IsMember({"admin", "operator", "viewer"}));
  password_flag(add);
  registry_flags(add);
  CLI::App* list = cmd->add_subcommand("list", "List users: role, state, last login, sessions");
  registry_flags(list);
  CLI::App* passwd = cmd->add_subcommand("passwd", "Set a user's password (its sessions end)");
  passwd->add_option("name", f->name, "User name")->required();
  password_flag(passwd);
  registry_flags(passwd);
  CLI::App* disable = cmd->add_subcommand("disable", "Disable a user (its sessions end)");
  disable->add_option("name", f->name, "User name")->required();
  registry_flags(disable);
  for (CLI::App* sub : {add, list, passwd, disable}) {
    sub->callback([action, sub] { *action = sub->get_name(); });
  }
  return [f, action] { return Run(*action, *f); };
}

}  // namespace trapline::cli
