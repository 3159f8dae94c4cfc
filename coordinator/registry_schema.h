#pragma once
// Brings the registry database up to this build's schema at start-up (migrations.h), safely
// when several coordinators start at once: everything runs in one transaction that first
// takes pg_advisory_xact_lock(kMigrationLockKey), so a second coordinator waits for the
// first to commit and then finds nothing left to do. A failed migration rolls back the
// whole transaction: the schema is never left half-migrated.

#include <functional>
#include <string>
#include <vector>

#include "common/pg_client.h"
#include "common/status.h"

namespace trapline::coordinator {

struct MigrationReport {
  int from_version = 0;  // the highest version applied before (0: an empty database)
  int to_version = 0;
  std::vector<std::string> applied;  // "1 registry: ..." per migration applied now
};

// Runs the migrations on `client`, which must be connected and have nothing else queued
// (the transaction's statements must not interleave with other queries). Calls `done`
// exactly once: with the report, Unavailable when the connection was lost (retry after the
// reconnect), InvalidArgument when the registry is newer than this build, or the failed
// migration's error naming it. REQUIRES: `client` outlives the call or is closed first
// (Close() completes it with Unavailable).
void MigrateRegistry(pg::Client* client, std::function<void(Result<MigrationReport>)> done);

}  // namespace trapline::coordinator
