#pragma once
// A PostgreSQL instance: one libpq connection per instance (not per database), driven
// entirely through libpq's asynchronous API on the collector's loop, one round trip per tick.
//
// Connection state machine (Phase):
//
//   kIdle --Connect()--> kConnecting --PQconnectPoll OK, version >= 12--> kReady
//   kReady --Tick()--> kBusy --last statement's sync result--> kReady (Deliver)
//   any phase --error / TargetBase's deadline--> Failed() -> Disconnect() -> kIdle
//
//  - kConnecting: PQconnectStartParams, then PQconnectPoll each time the socket is ready in
//    the direction PQconnectPoll asked for (READING/WRITING). libpq may close the socket and
//    open another one while connecting (several hosts in the URI, sslmode=prefer or
//    gssencmode=prefer falling back, target_session_attrs): the watcher is stopped around every
//    PQconnectPoll call and re-created when PQsocket() changes, so a closed socket is never
//    polled. libpq ignores connect_timeout in this mode, so a deadline timer (timeout_s) bounds
//    the whole attempt.
//  - kReady: nonblocking, pipeline mode; the socket is watched for readability only, so a
//    server that goes away between ticks (restart, pg_terminate_backend) is noticed at once.
//  - kBusy: the plugin's TickQueryText() (its statements as one statement returning one text
//    value), prepared once per connection (PQsendPrepare in the first tick's pipeline), is
//    sent with PQsendQueryPrepared and a PQpipelineSync; PQflush runs until it returns
//    0 (writable is watched while it returns 1); then PQconsumeInput / PQisBusy / PQgetResult
//    collect its one result, parsed in place by ParseTickText. One round trip, one PGresult of
//    one value per tick: libpq's parsing of six result sets of ~60 values was most of a tick's
//    CPU.
//
// Why the statements one by one after an error: one statement is one implicit transaction,
// so an error anywhere in it (a DBA revoked SELECT on pg_stat_replication, a statement_timeout,
// a database dropped under pg_database_size) fails all of it. Then the plugin's TickQueries()
// statements are sent at once in the same tick, each with its own PQpipelineSync, so each is
// its own implicit transaction: the error costs that statement only, and the rest is still
// delivered, with a warning from the plugin's parser (and one saying why the one statement
// failed). The next kSplitTicksAfterError ticks send the statements one by one too, then the
// one statement is tried again.
//
// The session also gets statement_timeout = 80% of timeout_s (sent in the first tick's
// pipeline), so that the server cancels a statement that hangs (a lock, a slow
// pg_database_size) on its own: that statement gives a warning and the connection stays up;
// when the whole tick still overruns, TargetBase's tick deadline fails the connection.
//
// Disconnect() (also reached from inside our own socket callback through Failed()): stops and
// destroys the watcher first (uv_poll_stop removes the socket from epoll at once), then
// PQfinish, which closes the socket. libpq itself never calls back into the target except for
// the notice receiver, which only logs, so PQfinish never runs inside libpq's call stack.
//
// Thread: the loop's. Not copyable.

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "collector/target.h"
#include "common/status.h"
#include "common/uv.h"
#include "plugins/postgresql/postgresql.h"

// libpq's opaque handles, without including libpq-fe.h here.
struct pg_conn;
struct pg_result;

namespace trapline {

namespace postgres {

// The keyword/value arrays for PQconnectStartParams (expand_dbname = 1), in order. Later
// entries override earlier ones, so the order says who may override what:
// connect_timeout and fallback_application_name first (the connection string may set its
// own connect_timeout or application_name), then dbname = the URI or keyword/value string
// (expanded by libpq), then password last when one is given (config wins over the string).
// Without a password libpq falls back on PGPASSWORD, .pgpass or PGPASSFILE as usual.
struct ConnParams {
  std::vector<std::pair<std::string, std::string>> entries;
  // Null-terminated arrays pointing into `entries`; valid while this object lives unchanged.
  std::vector<const char*> keywords() const;
  std::vector<const char*> values() const;
};

// Builds the parameters. The connection string is checked with PQconninfoParse (no I/O): a
// malformed URI gives InvalidArgument with libpq's reason. `password` empty: none set.
Result<ConnParams> BuildConnParams(const std::string& conninfo, const std::string& password,
                                   double timeout_s);

// The password to use: password_file's first line when set, else config.password, else ""
// (libpq's own sources then apply).
Result<std::string> PasswordFor(const TargetConfig& config);

// libpq's multi-line messages on one line: lines trimmed and joined with "; " (with " " when
// a line goes on in lower case: a wrapped sentence), the double space after "FATAL:" /
// "ERROR:" collapsed.
std::string OneLine(std::string_view libpq_message);

// A failed connection attempt as a Status: Rejected when the server answered (a FATAL from
// it, e.g. authentication failed, no such database), Unavailable otherwise (refused,
// unreachable, timed out, TLS not offered).
Status ConnectFailure(std::string_view libpq_message);

// "15.4", "9.6.24" from PQserverVersion's number.
std::string FormatServerVersion(int server_version);

// OK when the plugin's queries support the version; else Rejected("unsupported PostgreSQL
// version 11.5: ...").
Status CheckServerVersion(int server_version);

// The plugin's SQL for one server version: TickQueries() split into its statements, and
// TickQueryText(); index [1] asks the database sizes, [0] does not (pgp::Options).
struct TickSql {
  std::vector<std::string> statements[2];
  std::string text_query[2];
};
// Built once per version and thread; the reference stays valid for the thread's life.
const TickSql& TickSqlFor(int server_version);

// Splits TickQueries() into its statements. Its documented format is one statement per
// ";\n" terminator; the terminator is kept (the extended protocol accepts a trailing ';').
// Text after the last terminator that is not only whitespace is a statement of its own.
std::vector<std::string> SplitStatements(std::string_view sql);

// A statement's PGresult as the plugin's ResultSet: column names, text values, NULLs;
// for PGRES_FATAL_ERROR the primary message and SQLSTATE in `error`.
// REQUIRES: result != nullptr.
plugins::postgresql::ResultSet ToResultSet(const pg_result* result);

}  // namespace postgres

class PostgresTarget : public TargetBase {
 public:
  enum class Phase { kIdle, kConnecting, kReady, kBusy };

  // Bad plugin options ([postgresql] size_interval) make every Connect() fail with that error
  // (as SshTarget does); Validate() tells beforehand.
  PostgresTarget(uv_loop_t* loop, TargetConfig config, DeliverFn deliver);
  ~PostgresTarget() override;

  // The configuration error the constructor would keep (an error names the bad option); OK
  // when usable.
  static Status Validate(const TargetConfig& config);

  Phase phase() const { return phase_; }
  // PQserverVersion of the current connection (0 before the first connect).
  int server_version() const { return server_version_; }

 protected:
  void Connect() override;
  void Tick() override;
  void Disconnect() override;

 private:
  // Socket callbacks by phase; each may end in Failed() and must return right after it (and
  // right after Deliver()/Connected(), which may destroy the target).
  void OnSocket(int status, int events);
  void PollConnect();
  void OnConnectOk();
  void OnBusy(int events);
  void OnIdleReadable();
  // Watches PQsocket() in these directions, re-creating the watcher if the socket changed.
  Status WatchSocket(bool readable, bool writable);
  // PQflush once; watches writable too while libpq has unsent data.
  Status Flush();
  // Sends the tick's statements: TickQueryText's one statement (text_query), or
  // TickQueries' statements one by one.
  void SendTick(bool text_query);
  // Collects results while libpq has them; true when the tick's last result is in.
  Result<bool> Drain();
  // One statement's result (not the setup's) as this tick's text value or ResultSet.
  void TakeResult(const pg_result* res);
  void FinishTick();
  Status ConnectionLost(std::string_view what) const;
  static void OnNotice(void* arg, const pg_result* notice);
  // Parses config.options into *options; the error names the target and the option.
  static Status ReadOptions(const TargetConfig& config, plugins::postgresql::Options* options);

  pg_conn* conn_ = nullptr;
  Phase phase_ = Phase::kIdle;
  std::unique_ptr<SocketWatcher> watcher_;
  int watched_fd_ = -1;
  Timer connect_deadline_;
  int server_version_ = 0;
  bool session_set_up_ = false;  // statement_timeout sent on this connection
  // TickQueryText's statement without [0] and with [1] the database sizes prepared on this
  // connection (as kTickStatementNames[i]), or the PQsendPrepare sent in the tick in flight;
  // cleared when that prepare fails.
  bool prepared_[2] = {false, false};
  size_t prepare_index_ = SIZE_MAX;  // the setup statement that prepares it, this tick
  plugins::postgresql::Options options_;
  Status config_status_;  // bad plugin options: every Connect() fails with it
  // The loop time (ms) from which a tick asks the database sizes again; 0 after a connect,
  // so that the first tick has them.
  uint64_t sizes_due_ms_ = 0;
  int sizes_ = 0;  // this tick's variant of TickSql: 1 with the sizes
  std::string last_fatal_;       // a FATAL the server sent before closing (notice receiver)

  // The plugin's SQL for the server's version, shared by the thread's targets (10 KB of text
  // that every connection would otherwise hold); set when a connection is made.
  const postgres::TickSql* tick_sql_ = nullptr;
  // Ticks left that send the statements one by one: after TickQueryText's statement failed
  // (an error anywhere in it fails all of it), for kSplitTicksAfterError ticks.
  static constexpr int kSplitTicksAfterError = 60;
  int split_ticks_left_ = 0;

  // The tick in flight.
  size_t setup_statements_ = 0;  // leading statements whose results are not the plugin's
  size_t statements_ = 0;        // statements sent this tick (setup included)
  size_t current_ = 0;           // the statement whose results are being read
  bool current_has_result_ = false;
  bool text_query_ = false;      // this tick sent TickQueryText's statement
  // text_query_: its value parsed in place (libpq's buffer, no copy), or why it failed.
  plugins::ParseResult parsed_;
  std::string text_error_;
  // A warning for this tick's delivery: the text statement failed and the statements were
  // sent again one by one.
  std::string fallback_warning_;
  // Otherwise one per plugin statement, this tick's only.
  std::vector<plugins::postgresql::ResultSet> results_;
};

}  // namespace trapline
