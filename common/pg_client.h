#pragma once
// A small asynchronous PostgreSQL client on a libuv loop: one libpq connection driven through
// libpq's asynchronous API (PQconnectPoll, PQsendQueryParams, PQconsumeInput, PQisBusy,
// PQflush) and one SocketWatcher, the way collector/postgres_target.cc drives a monitored
// instance, but general: parameterised queries with rows as text, LISTEN/NOTIFY, reconnect
// with backoff. For the coordinator's registry connection and its leader-lock connection.
//
// Rules:
//  - Thread: the loop's. Not copyable. libpq-fe.h is not needed by users of this header.
//  - Queries run one at a time, in the order they were issued (a FIFO on one connection), so
//    a caller may issue "BEGIN", statements and "COMMIT" back to back and they run in order on
//    the same session; nothing else the caller issues meanwhile interleaves with them. When
//    the connection is lost inside a transaction the server rolls it back.
//  - Every query's callback runs exactly once: with the rows, with the server's error, with
//    Unavailable when the connection is lost (or is not up when the query is issued), or with
//    Unavailable("... client closed") from Close() or the destructor. Callbacks never run
//    inside Query()/Exec() itself (a failure found there is delivered from the loop), but may
//    run inside Close(): an owner that closes the client from its destructor must not touch
//    members already destroyed in those callbacks.
//  - Errors name the query ("query 'read tasks': relation \"tasks\" does not exist (SQLSTATE
//    42P01)"), never its parameters (they may hold secrets).
//  - A callback may destroy the client (Redis's freeClientAsync rule is kept inside: the
//    client notices and touches nothing afterwards).
//  - Reconnect: after a lost connection or a failed attempt, the next attempt starts after an
//    exponential backoff with jitter (BackoffDelayMs) unless Options::reconnect is false.
//    LISTEN channels are re-issued on every new connection, before any queued query.

#include <uv.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"
#include "common/uv.h"

struct pg_conn;
struct pg_result;

namespace trapline::pg {

// One value as text; nullopt is SQL NULL.
using Value = std::optional<std::string>;
using Row = std::vector<Value>;

struct Rows {
  std::vector<std::string> columns;
  std::vector<Row> rows;
  // PQcmdTuples: rows affected by INSERT/UPDATE/DELETE (0 for other commands).
  int64_t affected = 0;
  std::string command;  // the command tag, e.g. "UPDATE 3"
};

// The rows of a result (columns, values, affected count, command tag); its status is not looked
// at. REQUIRES: result != nullptr.
Rows ToRows(const pg_result* result);

using QueryCallback = std::function<void(Result<Rows>)>;

// ---- pure helpers (unit-tested) --------------------------------------------------------

// Milliseconds to wait before reconnect attempt number `attempt` (1 = the first retry):
// base * 2^(attempt-1) capped at max, then scaled by a factor in [1 - jitter, 1] taken from
// `random01` in [0, 1). REQUIRES: base_ms > 0, max_ms >= base_ms, 0 <= jitter <= 1.
uint64_t BackoffDelayMs(int attempt, uint64_t base_ms, uint64_t max_ms, double jitter,
                        double random01);

// A SQL identifier quoted for splicing into a statement (LISTEN takes no parameters):
// "name" with embedded quotes doubled. Rejects empty names and NUL bytes.
Result<std::string> QuoteIdent(std::string_view name);

// A PostgreSQL array literal of int64 for a text parameter cast to bigint[]:
// {1,2,NULL}. nullopt becomes NULL.
std::string Int64ArrayLiteral(const std::vector<std::optional<int64_t>>& values);

// A query's error as a Status naming it: `what` is "query 'read tasks'"; `primary` the
// server's primary message (or libpq's message), `sqlstate` may be empty. Unavailable when
// `connection_lost`, else Rejected (the server understood and refused).
Status QueryError(std::string_view what, std::string_view primary, std::string_view sqlstate,
                  bool connection_lost);

// The connection parameters for PQconnectStartParams (expand_dbname = 1), in override order:
// connect_timeout, fallback_application_name, TCP keepalives (so that a silent peer is noticed
// on an idle connection), then dbname = the URI or key=value string. The string is checked
// with PQconninfoParse (no I/O); a malformed one is InvalidArgument with libpq's reason.
struct ConnParams {
  std::vector<std::pair<std::string, std::string>> entries;
};
Result<ConnParams> BuildConnParams(const std::string& conninfo, const std::string& application_name,
                                   double connect_timeout_s);

// libpq's multi-line messages on one line (lines trimmed and joined with "; ").
std::string OneLine(std::string_view libpq_message);

// ---- the client ------------------------------------------------------------------------

class Client {
 public:
  struct Options {
    std::string conninfo;                 // URI or key=value; REQUIRES: non-empty
    std::string name = "registry";        // in logs: "[pg] registry: connected"
    std::string application_name = "trapline";
    double connect_timeout_s = 5;         // whole connect attempt (libpq's own is ignored async)
    // A query not answered within this many seconds drops the connection (a hung or
    // unreachable server); 0: no limit.
    double query_timeout_s = 10;
    bool reconnect = true;
    double reconnect_base_s = 0.5;
    double reconnect_max_s = 10;
  };

  // Connection state changes: connected == true once a connection is ready (after its
  // LISTENs were sent), false when it is lost or an attempt failed (`why` says why).
  using StateCallback = std::function<void(bool connected, const Status& why)>;
  using NotifyCallback = std::function<void(const std::string& channel, const std::string& payload)>;

  Client(uv_loop_t* loop, Options options);
  ~Client();  // Close()
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  void SetStateCallback(StateCallback cb) { on_state_ = std::move(cb); }
  void SetNotifyCallback(NotifyCallback cb) { on_notify_ = std::move(cb); }

  // Starts connecting (and reconnecting, per Options). Idempotent while open.
  void Start();
  // Drops the connection, fails every pending query with Unavailable("client closed"), stops
  // reconnecting. Start() may be called again afterwards.
  void Close();

  bool connected() const { return phase_ == Phase::kReady; }
  // Counts connections made; a caller can tell "the same session" from a reconnect.
  uint64_t connection_number() const { return connections_; }
  // Queries issued and not yet answered (the one in flight included).
  size_t pending() const { return queue_.size() + (inflight_ ? 1 : 0); }

  // One statement through the extended protocol; $1.. are `params` (text; nullopt = NULL).
  // `name` names the query in errors and logs. A query issued while not connected fails
  // with Unavailable (it is not kept for a later connection: the caller decides).
  void Query(std::string name, std::string sql, std::vector<Value> params, QueryCallback cb);
  // Statements without parameters through the simple protocol (several separated by ';',
  // as in a migration script). The callback gets the last statement's rows, or the first
  // error (the statements after a failed one are not run).
  void Exec(std::string name, std::string sql, QueryCallback cb);

  // Adds a channel to LISTEN on, now (if connected) and on every later connection.
  // Notifications arrive through the NotifyCallback.
  Status Listen(const std::string& channel);

 private:
  enum class Phase { kIdle, kConnecting, kReady };
  struct Pending {
    std::string name;
    std::string sql;
    std::vector<Value> params;
    bool simple = false;
    bool internal = false;  // our own LISTEN: errors are logged, no callback
    QueryCallback cb;
  };

  void Connect();
  void OnSocket(int status, int events);
  void PollConnect();
  void OnConnected();
  // Drops the connection: fails the query in flight and the queue, tells the state callback,
  // schedules a reconnect. May run user callbacks; returns false when they destroyed us.
  bool Fail(const Status& why);
  void ScheduleReconnect();
  Status WatchSocket(bool readable, bool writable);
  // Sends the next queued query when none is in flight.
  void SendNext();
  Status Flush();
  void OnReadable();
  // Takes whatever results libpq has; completes the query in flight when its last one is in.
  // Returns false when a callback destroyed the client.
  bool Drain();
  bool DeliverNotifications();
  // Query()/Exec()/Listen() only queue; the loop then runs RunDeferred(): the failures found
  // before sending, then SendNext(). So no callback ever runs inside them.
  void Kick();
  void RunDeferred();
  std::string LostReason(std::string_view what) const;

  uv_loop_t* loop_;
  Options options_;
  StateCallback on_state_;
  NotifyCallback on_notify_;

  pg_conn* conn_ = nullptr;
  Phase phase_ = Phase::kIdle;
  bool started_ = false;
  std::unique_ptr<SocketWatcher> watcher_;
  int watched_fd_ = -1;
  Timer connect_deadline_;
  Timer reconnect_timer_;
  Timer query_deadline_;
  Timer deferred_timer_;
  int attempt_ = 0;
  uint64_t connections_ = 0;
  std::vector<std::string> channels_;

  std::deque<Pending> queue_;
  std::optional<Pending> inflight_;
  pg_result* first_error_ = nullptr;  // first error of the query in flight (simple protocol)
  pg_result* last_result_ = nullptr;  // its last non-error result
  std::vector<std::pair<QueryCallback, Status>> deferred_;

  // Set to false by the destructor; callbacks check it through a copy (Redis's rule: never
  // free a connection inside its own callback without the caller noticing).
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace trapline::pg
