#include "common/pg_client.h"

#include <libpq-fe.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <random>

#include "common/log.h"

namespace trapline::pg {

uint64_t BackoffDelayMs(int attempt, uint64_t base_ms, uint64_t max_ms, double jitter,
                        double random01) {
  double d = static_cast<double>(base_ms);
  for (int i = 1; i < attempt && d < static_cast<double>(max_ms); ++i) d *= 2;
  d = std::min(d, static_cast<double>(max_ms));
  jitter = std::clamp(jitter, 0.0, 1.0);
  random01 = std::clamp(random01, 0.0, 1.0);
  d *= 1.0 - jitter * random01;
  return std::max<uint64_t>(1, static_cast<uint64_t>(d));
}

Result<std::string> QuoteIdent(std::string_view name) {
  if (name.empty()) return Status::InvalidArgument("empty SQL identifier");
  std::string out = "\"";
  for (char c : name) {
    if (c == '\0') return Status::InvalidArgument("SQL identifier with a NUL byte");
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
  return out;
}

std::string Int64ArrayLiteral(const std::vector<std::optional<int64_t>>& values) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out += ',';
    out += values[i] ? std::to_string(*values[i]) : "NULL";
  }
  out += '}';
  return out;
}

Status QueryError(std::string_view what, std::string_view primary, std::string_view sqlstate,
                  bool connection_lost) {
  std::string msg(what);
  msg += ": ";
  msg += primary.empty() ? std::string_view("failed (no reason given)") : primary;
  if (!sqlstate.empty()) {
    msg += " (SQLSTATE ";
    msg += sqlstate;
    msg += ")";
  }
  return connection_lost ? Status::Unavailable(std::move(msg)) : Status::Rejected(std::move(msg));
}

std::string OneLine(std::string_view msg) {
  std::string out;
  size_t pos = 0;
  while (pos <= msg.size()) {
    size_t nl = msg.find('\n', pos);
    if (nl == std::string_view::npos) nl = msg.size();
    std::string_view line = msg.substr(pos, nl - pos);
    while (!line.empty() && (line.front() == ' ' || line.front() == '\t' || line.front() == '\r')) {
      line.remove_prefix(1);
    }
    while (!line.empty() && (line.back() == ' ' || line.back() == '\t' || line.back() == '\r')) {
      line.remove_suffix(1);
    }
    if (!line.empty()) {
      bool continues = line.front() >= 'a' && line.front() <= 'z';
      if (!out.empty()) out += continues ? " " : "; ";
      out.append(line);
    }
    pos = nl + 1;
  }
  for (std::string_view sev : {"FATAL:  ", "ERROR:  ", "PANIC:  ", "WARNING:  "}) {
    for (size_t at = out.find(sev); at != std::string::npos; at = out.find(sev, at)) {
      out.erase(at + sev.size() - 1, 1);
    }
  }
  return out;
}

Result<ConnParams> BuildConnParams(const std::string& conninfo,
                                   const std::string& application_name,
                                   double connect_timeout_s) {
  if (conninfo.empty()) return Status::InvalidArgument("empty PostgreSQL connection string");
  char* err = nullptr;
  PQconninfoOption* parsed = PQconninfoParse(conninfo.c_str(), &err);
  if (parsed == nullptr) {
    std::string why = err != nullptr ? OneLine(err) : "out of memory";
    PQfreemem(err);
    return Status::InvalidArgument("invalid PostgreSQL connection string: " + why);
  }
  PQconninfoFree(parsed);
  ConnParams p;
  int secs = std::max(2, static_cast<int>(std::ceil(connect_timeout_s)));
  p.entries.emplace_back("connect_timeout", std::to_string(secs));
  p.entries.emplace_back("fallback_application_name", application_name);
  // An idle connection to a peer that vanished without a FIN (a lost network) is noticed
  // within about 5 + 3 * 1 s instead of the kernel's two hours.
  p.entries.emplace_back("keepalives", "1");
  p.entries.emplace_back("keepalives_idle", "5");
  p.entries.emplace_back("keepalives_interval", "1");
  p.entries.emplace_back("keepalives_count", "3");
  p.entries.emplace_back("dbname", conninfo);
  return p;
}

namespace {

std::string_view Field(const PGresult* res, int code) {
  const char* s = PQresultErrorField(const_cast<PGresult*>(res), code);
  return s != nullptr ? std::string_view(s) : std::string_view();
}

bool IsError(ExecStatusType st) {
  return st == PGRES_FATAL_ERROR || st == PGRES_NONFATAL_ERROR || st == PGRES_BAD_RESPONSE;
}

}  // namespace

Rows ToRows(const pg_result* cres) {
  // libpq's accessors take a non-const PGresult but do not modify it.
  auto* res = const_cast<PGresult*>(cres);
  Rows out;
  int ncols = PQnfields(res);
  int nrows = PQntuples(res);
  out.columns.reserve(static_cast<size_t>(ncols));
  for (int c = 0; c < ncols; ++c) out.columns.emplace_back(PQfname(res, c));
  out.rows.resize(static_cast<size_t>(nrows));
  for (int r = 0; r < nrows; ++r) {
    Row& row = out.rows[static_cast<size_t>(r)];
    row.reserve(static_cast<size_t>(ncols));
    for (int c = 0; c < ncols; ++c) {
      if (PQgetisnull(res, r, c)) {
        row.emplace_back(std::nullopt);
      } else {
        row.emplace_back(
            std::string(PQgetvalue(res, r, c), static_cast<size_t>(PQgetlength(res, r, c))));
      }
    }
  }
  const char* tuples = PQcmdTuples(res);
  out.affected = (tuples != nullptr && *tuples != '\0') ? std::atoll(tuples) : 0;
  const char* tag = PQcmdStatus(res);
  out.command = tag != nullptr ? tag : "";
  return out;
}

namespace {

double Random01() {
  static thread_local std::minstd_rand rng{std::random_device{}()};
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
}

uint64_t Ms(double seconds) { return static_cast<uint64_t>(std::max(0.0, seconds) * 1000.0); }

void OnNotice(void* arg, const PGresult* notice) {
  // Runs inside libpq: log only. Without a receiver libpq would print NOTICEs to stderr
  // ("relation ... already exists, skipping").
  auto* name = static_cast<const std::string*>(arg);
  spdlog::debug("[pg] {}: server says: {}", *name,
                OneLine(PQresultErrorMessage(const_cast<PGresult*>(notice))));
}

}  // namespace

Client::Client(uv_loop_t* loop, Options options)
    : loop_(loop),
      options_(std::move(options)),
      connect_deadline_(loop),
      reconnect_timer_(loop),
      query_deadline_(loop),
      deferred_timer_(loop) {}

Client::~Client() {
  Close();
  *alive_ = false;
}

void Client::Start() {
  if (started_) return;
  started_ = true;
  attempt_ = 0;
  // From the loop, so that no callback runs inside Start().
  reconnect_timer_.Start(0, 0, [this] { Connect(); });
}

void Client::Connect() {
  if (!started_ || phase_ != Phase::kIdle) return;
  auto params = BuildConnParams(options_.conninfo, options_.application_name,
                                options_.connect_timeout_s);
  if (!params.ok()) {
    // A malformed connection string will not get better by retrying.
    started_ = false;
    spdlog::error("[pg] {}: {}", options_.name, params.status().message());
    if (on_state_) {
      auto cb = on_state_;
      cb(false, params.status());
    }
    return;
  }
  std::vector<const char*> keywords;
  std::vector<const char*> values;
  for (const auto& [k, v] : params->entries) {
    keywords.push_back(k.c_str());
    values.push_back(v.c_str());
  }
  keywords.push_back(nullptr);
  values.push_back(nullptr);
  // May block on DNS for a host name: libpq has no asynchronous resolver.
  conn_ = PQconnectStartParams(keywords.data(), values.data(), /*expand_dbname=*/1);
  if (conn_ == nullptr) {
    (void)Fail(Status::Internal("PQconnectStartParams: out of memory"));
    return;
  }
  if (PQstatus(conn_) == CONNECTION_BAD) {
    (void)Fail(Status::Unavailable("connect: " + OneLine(PQerrorMessage(conn_))));
    return;
  }
  PQsetNoticeReceiver(conn_, &OnNotice, &options_.name);
  phase_ = Phase::kConnecting;
  connect_deadline_.Start(Ms(options_.connect_timeout_s), 0, [this] {
    std::string sofar = conn_ != nullptr ? OneLine(PQerrorMessage(conn_)) : "";
    std::string why = "connect: no answer within " + std::to_string(Ms(options_.connect_timeout_s)) +
                      " ms";
    if (!sofar.empty() && sofar.back() != ':') why += " (" + sofar + ")";
    (void)Fail(Status::Timeout(std::move(why)));
  });
  // connectDBStart already ran PQconnectPoll once: behave as if it asked for WRITING.
  if (Status st = WatchSocket(false, true); !st.ok()) (void)Fail(st.WithContext("connect"));
}

Status Client::WatchSocket(bool readable, bool writable) {
  int fd = PQsocket(conn_);
  if (fd < 0) return Status::Internal("libpq has no socket");
  if (watcher_ == nullptr || fd != watched_fd_) {
    watcher_.reset();  // the old poll handle leaves epoll before another takes the socket
    watched_fd_ = -1;
    auto w = std::make_unique<SocketWatcher>(
        loop_, fd, [this](int status, int events) { OnSocket(status, events); });
    if (!w->init_status().ok()) return w->init_status();
    watcher_ = std::move(w);
    watched_fd_ = fd;
  }
  return watcher_->Watch(readable, writable);
}

void Client::OnSocket(int status, int events) {
  if (conn_ == nullptr) return;
  if (status < 0 && phase_ != Phase::kConnecting) {
    if (PQconsumeInput(conn_) != 1) {
      (void)Fail(Status::Unavailable(LostReason("polling")));
    } else {
      (void)Fail(UvError("polling the connection's socket", status));
    }
    return;
  }
  if (phase_ == Phase::kConnecting) return PollConnect();
  if (phase_ != Phase::kReady) return;
  if ((events & UV_WRITABLE) && inflight_) {
    if (Status f = Flush(); !f.ok()) {
      (void)Fail(f);
      return;
    }
  }
  if (events & UV_READABLE) OnReadable();
}

void Client::PollConnect() {
  // libpq may close the socket and open another inside PQconnectPoll (several hosts,
  // sslmode=prefer): never leave it in epoll across the call.
  if (watcher_ != nullptr) watcher_->Stop();
  PostgresPollingStatusType st = PQconnectPoll(conn_);
  switch (st) {
    case PGRES_POLLING_READING:
    case PGRES_POLLING_WRITING:
      if (Status w = WatchSocket(st == PGRES_POLLING_READING, st == PGRES_POLLING_WRITING);
          !w.ok()) {
        (void)Fail(w.WithContext("connect"));
      }
      return;
    case PGRES_POLLING_OK:
      return OnConnected();
    case PGRES_POLLING_FAILED:
    default: {
      std::string why = OneLine(PQerrorMessage(conn_));
      if (why.empty()) why = "connection failed (libpq gave no reason)";
      // A FATAL is the server's own answer (authentication, unknown database).
      (void)Fail(why.find("FATAL:") != std::string::npos ? Status::Rejected("connect: " + why)
                                                          : Status::Unavailable("connect: " + why));
      return;
    }
  }
}

void Client::OnConnected() {
  connect_deadline_.Stop();
  if (PQsetnonblocking(conn_, 1) != 0) {
    (void)Fail(Status::Internal("PQsetnonblocking: " + OneLine(PQerrorMessage(conn_))));
    return;
  }
  phase_ = Phase::kReady;
  attempt_ = 0;
  ++connections_;
  if (Status w = WatchSocket(true, false); !w.ok()) {
    (void)Fail(w);
    return;
  }
  spdlog::debug("[pg] {}: connected (backend pid {})", options_.name, PQbackendPID(conn_));
  // LISTENs first: nothing the state callback issues may run before them.
  for (const auto& ch : channels_) {
    queue_.push_back(Pending{"listen " + ch, "LISTEN " + *QuoteIdent(ch), {}, true, true, {}});
  }
  SendNext();
  if (phase_ != Phase::kReady) return;
  if (on_state_) {
    auto cb = on_state_;
    cb(true, Status::OK());
  }
}

void Client::Query(std::string name, std::string sql, std::vector<Value> params,
                   QueryCallback cb) {
  Pending p{std::move(name), std::move(sql), std::move(params), false, false, std::move(cb)};
  if (phase_ != Phase::kReady) {
    Status st = Status::Unavailable("query '" + p.name + "': not connected to " + options_.name);
    deferred_.emplace_back(std::move(p.cb), std::move(st));
  } else {
    queue_.push_back(std::move(p));
  }
  Kick();
}

void Client::Exec(std::string name, std::string sql, QueryCallback cb) {
  Pending p{std::move(name), std::move(sql), {}, true, false, std::move(cb)};
  if (phase_ != Phase::kReady) {
    Status st = Status::Unavailable("query '" + p.name + "': not connected to " + options_.name);
    deferred_.emplace_back(std::move(p.cb), std::move(st));
  } else {
    queue_.push_back(std::move(p));
  }
  Kick();
}

void Client::Kick() {
  if (!deferred_timer_.active()) deferred_timer_.Start(0, 0, [this] { RunDeferred(); });
}

void Client::RunDeferred() {
  auto items = std::move(deferred_);
  deferred_.clear();
  std::shared_ptr<bool> alive = alive_;
  for (auto& [cb, st] : items) {
    if (cb) cb(st);
    if (!*alive) return;
  }
  SendNext();
}

Status Client::Listen(const std::string& channel) {
  TRAPLINE_ASSIGN_OR_RETURN(std::string quoted, QuoteIdent(channel));
  if (std::find(channels_.begin(), channels_.end(), channel) != channels_.end()) {
    return Status::OK();
  }
  channels_.push_back(channel);
  if (phase_ == Phase::kReady) {
    queue_.push_back(Pending{"listen " + channel, "LISTEN " + quoted, {}, true, true, {}});
    Kick();
  }
  return Status::OK();
}

void Client::SendNext() {
  if (phase_ != Phase::kReady || inflight_ || queue_.empty()) return;
  inflight_ = std::move(queue_.front());
  queue_.pop_front();
  const Pending& q = *inflight_;
  int ok;
  if (q.simple) {
    ok = PQsendQuery(conn_, q.sql.c_str());
  } else {
    std::vector<const char*> values;
    values.reserve(q.params.size());
    for (const auto& v : q.params) values.push_back(v ? v->c_str() : nullptr);
    ok = PQsendQueryParams(conn_, q.sql.c_str(), static_cast<int>(values.size()), nullptr,
                           values.data(), nullptr, nullptr, 0);
  }
  if (ok != 1) {
    (void)Fail(Status::Unavailable(LostReason("sending query '" + q.name + "'")));
    return;
  }
  if (options_.query_timeout_s > 0) {
    query_deadline_.Start(Ms(options_.query_timeout_s), 0, [this] {
      std::string what = inflight_ ? "query '" + inflight_->name + "'" : "a query";
      (void)Fail(Status::Timeout(what + ": no answer within " +
                                 std::to_string(Ms(options_.query_timeout_s)) + " ms"));
    });
  }
  if (Status f = Flush(); !f.ok()) (void)Fail(f);
}

Status Client::Flush() {
  int r = PQflush(conn_);
  if (r < 0) return Status::Unavailable(LostReason("sending"));
  return WatchSocket(true, r == 1);
}

void Client::OnReadable() {
  if (PQconsumeInput(conn_) != 1) {
    (void)Fail(Status::Unavailable(LostReason("reading")));
    return;
  }
  std::shared_ptr<bool> alive = alive_;
  if (!Drain()) return;
  if (!DeliverNotifications()) return;
  if (conn_ == nullptr || phase_ != Phase::kReady) return;
  if (!inflight_) {
    // Between queries the server speaks only when something happens to the session (a
    // notice, a FATAL before it closes the connection).
    while (!PQisBusy(conn_)) {
      PGresult* res = PQgetResult(conn_);
      if (res == nullptr) break;
      PQclear(res);
    }
  }
  if (PQstatus(conn_) == CONNECTION_BAD) {
    (void)Fail(Status::Unavailable(LostReason("idle")));
    return;
  }
  if (inflight_) {
    // libpq may have queued output while reading.
    if (Status f = Flush(); !f.ok()) (void)Fail(f);
  }
}

bool Client::Drain() {
  std::shared_ptr<bool> alive = alive_;
  while (inflight_ && conn_ != nullptr) {
    if (PQisBusy(conn_)) return true;
    PGresult* res = PQgetResult(conn_);
    if (res != nullptr) {
      ExecStatusType st = PQresultStatus(res);
      if (IsError(st)) {
        if (first_error_ == nullptr) {
          first_error_ = res;
        } else {
          PQclear(res);
        }
      } else if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
        // COPY is not supported by this client: the connection cannot go on.
        PQclear(res);
        std::string what = "query '" + inflight_->name + "'";
        return Fail(Status::ProtocolError(what + ": COPY is not supported"));
      } else {
        if (last_result_ != nullptr) PQclear(last_result_);
        last_result_ = res;
      }
      continue;
    }
    // The end of the query's results.
    query_deadline_.Stop();
    Pending done = std::move(*inflight_);
    inflight_.reset();
    std::string what = "query '" + done.name + "'";
    Result<Rows> out = Status::Internal(what + ": no result");
    if (first_error_ != nullptr) {
      std::string_view primary = Field(first_error_, PG_DIAG_MESSAGE_PRIMARY);
      std::string msg = primary.empty() ? OneLine(PQresultErrorMessage(first_error_))
                                        : OneLine(primary);
      std::string_view sev = Field(first_error_, PG_DIAG_SEVERITY_NONLOCALIZED);
      bool lost = PQstatus(conn_) == CONNECTION_BAD || sev == "FATAL" || sev == "PANIC";
      out = QueryError(what, msg, Field(first_error_, PG_DIAG_SQLSTATE), lost);
    } else if (last_result_ != nullptr) {
      out = ToRows(last_result_);
    }
    if (first_error_ != nullptr) PQclear(first_error_);
    if (last_result_ != nullptr) PQclear(last_result_);
    first_error_ = last_result_ = nullptr;
    if (done.internal) {
      if (!out.ok()) spdlog::warn("[pg] {}: {}", options_.name, out.status().message());
    } else if (done.cb) {
      done.cb(std::move(out));
      if (!*alive) return false;
    }
    if (conn_ == nullptr || phase_ != Phase::kReady) return true;
    SendNext();
  }
  return *alive;
}

bool Client::DeliverNotifications() {
  if (conn_ == nullptr) return true;
  std::shared_ptr<bool> alive = alive_;
  while (conn_ != nullptr) {
    PGnotify* n = PQnotifies(conn_);
    if (n == nullptr) break;
    std::string channel = n->relname != nullptr ? n->relname : "";
    std::string payload = n->extra != nullptr ? n->extra : "";
    PQfreemem(n);
    if (on_notify_) {
      auto cb = on_notify_;
      cb(channel, payload);
      if (!*alive) return false;
    }
  }
  return true;
}

std::string Client::LostReason(std::string_view what) const {
  std::string why = conn_ != nullptr ? OneLine(PQerrorMessage(conn_)) : "";
  if (why.empty()) why = "connection closed";
  return why + " (while " + std::string(what) + ")";
}

bool Client::Fail(const Status& why) {
  bool was_ready = phase_ == Phase::kReady;
  connect_deadline_.Stop();
  query_deadline_.Stop();
  watcher_.reset();  // leaves epoll before PQfinish closes the socket
  watched_fd_ = -1;
  if (first_error_ != nullptr) PQclear(first_error_);
  if (last_result_ != nullptr) PQclear(last_result_);
  first_error_ = last_result_ = nullptr;
  if (conn_ != nullptr) {
    PGconn* c = conn_;
    conn_ = nullptr;
    PQfinish(c);
  }
  phase_ = Phase::kIdle;
  std::vector<Pending> failed;
  if (inflight_) failed.push_back(std::move(*inflight_));
  inflight_.reset();
  for (auto& p : queue_) failed.push_back(std::move(p));
  queue_.clear();

  if (was_ready) {
    spdlog::warn("[pg] {}: connection lost: {}", options_.name, why.message());
  } else {
    spdlog::debug("[pg] {}: connect attempt failed: {}", options_.name, why.message());
  }
  ScheduleReconnect();

  std::shared_ptr<bool> alive = alive_;
  for (auto& p : failed) {
    if (p.internal || !p.cb) continue;
    p.cb(Status::Unavailable("query '" + p.name + "': " + why.message()));
    if (!*alive) return false;
  }
  if (on_state_) {
    auto cb = on_state_;
    cb(false, why);
    if (!*alive) return false;
  }
  return true;
}

void Client::ScheduleReconnect() {
  if (!started_ || !options_.reconnect) return;
  ++attempt_;
  uint64_t delay = BackoffDelayMs(attempt_, std::max<uint64_t>(1, Ms(options_.reconnect_base_s)),
                                  std::max(Ms(options_.reconnect_max_s), Ms(options_.reconnect_base_s)),
                                  0.2, Random01());
  reconnect_timer_.Start(delay, 0, [this] { Connect(); });
}

void Client::Close() {
  started_ = false;
  reconnect_timer_.Stop();
  connect_deadline_.Stop();
  query_deadline_.Stop();
  watcher_.reset();
  watched_fd_ = -1;
  if (first_error_ != nullptr) PQclear(first_error_);
  if (last_result_ != nullptr) PQclear(last_result_);
  first_error_ = last_result_ = nullptr;
  if (conn_ != nullptr) {
    PGconn* c = conn_;
    conn_ = nullptr;
    PQfinish(c);
  }
  phase_ = Phase::kIdle;
  std::vector<std::pair<QueryCallback, Status>> failed = std::move(deferred_);
  deferred_.clear();
  deferred_timer_.Stop();
  if (inflight_) {
    failed.emplace_back(std::move(inflight_->cb),
                        Status::Unavailable("query '" + inflight_->name + "': client closed"));
  }
  inflight_.reset();
  for (auto& p : queue_) {
    failed.emplace_back(std::move(p.cb), Status::Unavailable("query '" + p.name + "': client closed"));
  }
  queue_.clear();
  std::shared_ptr<bool> alive = alive_;
  for (auto& [cb, st] : failed) {
    if (cb) cb(st);
    if (!*alive) return;
  }
}

}  // namespace trapline::pg
