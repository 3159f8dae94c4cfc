#pragma once
// The registry schema as versioned migrations (SQL in migrations.cc), and the pure planning
// of which ones a database still needs. Applying them is registry_schema.h's job.
//
// Rules for adding a migration: append one with the next version; never edit or reorder a
// released one (a database records the versions it has applied in schema_migrations and
// never re-runs them). Each migration runs inside the start-up transaction, so it must not
// use statements that refuse a transaction block (CREATE INDEX CONCURRENTLY, VACUUM).

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace trapline::coordinator {

struct Migration {
  int version = 0;         // 1, 2, 3, ... without gaps
  std::string_view name;   // one line, for schema_migrations.name and the logs
  std::string_view sql;    // statements separated by ';' (run through the simple protocol)
};

// Every migration this build knows, in version order.
std::span<const Migration> Migrations();

// The advisory lock keys (pg_advisory_xact_lock / pg_advisory_lock take a bigint), one per
// purpose, so that the start-up migration and the leader election never wait on each other.
inline constexpr int64_t kMigrationLockKey = 0x7472706c6d6967;  // "trplmig"
inline constexpr int64_t kLeaderLockKey = 0x7472706c6c6472;     // "trplldr"

// Checks that `all` is well formed: versions 1..N in order, names and SQL non-empty.
Status CheckMigrations(std::span<const Migration> all);

// The migrations of `all` that a database with the versions `applied` still needs, in order.
// InvalidArgument when the database has a version this build does not know (a newer trapline
// migrated it: refuse rather than run against a schema we do not understand).
Result<std::vector<const Migration*>> PendingMigrations(std::span<const Migration> all,
                                                        std::span<const int> applied);

}  // namespace trapline::coordinator
