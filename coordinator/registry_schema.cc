#include "coordinator/registry_schema.h"

#include <algorithm>
#include <cstdlib>
#include <memory>

#include "coordinator/migrations.h"

namespace trapline::coordinator {

namespace {

std::string SqlLiteral(std::string_view s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') out += '\'';
    out += c;
  }
  out += '\'';
  return out;
}

struct MigrationRun {
  pg::Client* client;
  std::function<void(Result<MigrationReport>)> done;
  MigrationReport report;
  std::vector<const Migration*> pending;
  size_t next = 0;
};

// Ends the run with an error: roll back (when the connection is still there), then report.
void Abort(const std::shared_ptr<MigrationRun>& run, Status why) {
  run->client->Exec("migration rollback", "ROLLBACK",
                    [run, why = std::move(why)](Result<pg::Rows>) { run->done(why); });
}

void ApplyNext(const std::shared_ptr<MigrationRun>& run) {
  if (run->next == run->pending.size()) {
    run->client->Exec("migration commit", "COMMIT", [run](Result<pg::Rows> r) {
      if (!r.ok()) return run->done(r.status());
      run->done(run->report);
    });
    return;
  }
  const Migration* m = run->pending[run->next];
  std::string sql(m->sql);
  sql += ";\nINSERT INTO schema_migrations (version, name) VALUES (" + std::to_string(m->version) +
         ", " + SqlLiteral(m->name) + ")";
  run->client->Exec("migration " + std::to_string(m->version), std::move(sql),
                    [run, m](Result<pg::Rows> r) {
                      if (!r.ok()) {
                        return Abort(run, r.status().WithContext(
                                              "registry schema: migration " +
                                              std::to_string(m->version) + " (" +
                                              std::string(m->name) + ") failed, rolled back"));
                      }
                      run->report.applied.push_back(std::to_string(m->version) + " " +
                                                    std::string(m->name));
                      run->report.to_version = m->version;
                      ++run->next;
                      ApplyNext(run);
                    });
}

}  // namespace

void MigrateRegistry(pg::Client* client, std::function<void(Result<MigrationReport>)> done) {
  auto run = std::make_shared<MigrationRun>();
  run->client = client;
  run->done = std::move(done);
  if (Status st = CheckMigrations(Migrations()); !st.ok()) {
    // A programming error in this build: report it rather than half-apply.
    client->Exec("migration check", "SELECT 1", [run, st](Result<pg::Rows>) { run->done(st); });
    return;
  }
  // One round trip: the lock, the bookkeeping table, the versions already applied. The
  // SELECT's snapshot is taken after the lock is held, so it sees a concurrent coordinator's
  // committed migrations.
  std::string begin = "BEGIN;\nSELECT pg_advisory_xact_lock(" + std::to_string(kMigrationLockKey) +
                      ");\n"
                      "CREATE TABLE IF NOT EXISTS schema_migrations (\n"
                      "  version integer PRIMARY KEY,\n"
                      "  name text NOT NULL DEFAULT '',\n"
                      "  applied_at timestamptz NOT NULL DEFAULT now()\n"
                      ");\n"
                      "SELECT version FROM schema_migrations ORDER BY version";
  client->Exec("migration begin", std::move(begin), [run](Result<pg::Rows> r) {
    if (!r.ok()) return Abort(run, r.status().WithContext("registry schema"));
    std::vector<int> applied;
    for (const auto& row : r->rows) {
      if (row.empty() || !row[0]) continue;
      applied.push_back(std::atoi(row[0]->c_str()));
    }
    for (int v : applied) run->report.from_version = std::max(run->report.from_version, v);
    run->report.to_version = run->report.from_version;
    auto pending = PendingMigrations(Migrations(), applied);
    if (!pending.ok()) return Abort(run, pending.status());
    run->pending = std::move(pending).value();
    ApplyNext(run);
  });
}

}  // namespace trapline::coordinator
