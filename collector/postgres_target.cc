#include "collector/postgres_target.h"

#include <cstdlib>

#include <libpq-fe.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>

#include "common/log.h"
#include "common/pg_client.h"

namespace trapline {

namespace pgp = plugins::postgresql;

namespace postgres {

std::vector<const char*> ConnParams::keywords() const {
  std::vector<const char*> k;
  k.reserve(entries.size() + 1);
  for (const auto& e : entries) k.push_back(e.first.c_str());
  k.push_back(nullptr);
  return k;
}

std::vector<const char*> ConnParams::values() const {
  std::vector<const char*> v;
  v.reserve(entries.size() + 1);
  for (const auto& e : entries) v.push_back(e.second.c_str());
  v.push_back(nullptr);
  return v;
}

Result<ConnParams> BuildConnParams(const std::string& conninfo, const std::string& password,
                                   double timeout_s) {
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
  // libpq takes whole seconds (at least 2 when set at all); round up.
  int secs = std::max(2, static_cast<int>(timeout_s + 0.999));
  p.entries.emplace_back("connect_timeout", std::to_string(secs));
  p.entries.emplace_back("fallback_application_name", "trapline");
  // No GSSAPI transport encryption unless asked for (gssencmode in the URI, or PGGSSENCMODE):
  // with libpq's "prefer", every connect first looks for Kerberos credentials on the event
  // loop. Measured in a storm of 400 connects: 75 us of collector CPU per connect, and the
  // loop's lag p99 during the storm 24-72 ms against 13-27 ms without. GSSAPI authentication
  // is not affected (that is the server's pg_hba.conf); TLS is sslmode.
  if (std::getenv("PGGSSENCMODE") == nullptr) p.entries.emplace_back("gssencmode", "disable");
  p.entries.emplace_back("dbname", conninfo);  // expanded: its own keywords override the above
  if (!password.empty()) p.entries.emplace_back("password", password);
  return p;
}

Result<std::string> PasswordFor(const TargetConfig& config) {
  if (!config.password_file.empty()) return ReadSecretFile(config.password_file, "password_file");
  return config.password;
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
      // libpq wraps long sentences onto tab-indented lines that go on in lower case.
      bool continues = line.front() >= 'a' && line.front() <= 'z';
      if (!out.empty()) out += continues ? " " : "; ";
      out.append(line);
    }
    pos = nl + 1;
  }
  // libpq writes "FATAL:  msg" / "ERROR:  msg" with two spaces.
  for (std::string_view sev : {"FATAL:  ", "ERROR:  ", "PANIC:  ", "WARNING:  "}) {
    for (size_t at = out.find(sev); at != std::string::npos; at = out.find(sev, at)) {
      out.erase(at + sev.size() - 1, 1);
    }
  }
  return out;
}

Status ConnectFailure(std::string_view libpq_message) {
  std::string msg = OneLine(libpq_message);
  if (msg.empty()) msg = "connection failed (libpq gave no reason)";
  // A FATAL is the server's own answer (authentication, unknown database or role, no
  // pg_hba.conf entry, too many connections): retrying soon will not help much.
  if (msg.find("FATAL:") != std::string::npos) return Status::Rejected(std::move(msg));
  return Status::Unavailable(std::move(msg));
}

std::string FormatServerVersion(int v) {
  if (v >= 100000) return std::to_string(v / 10000) + "." + std::to_string(v % 10000);
  return std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." +
         std::to_string(v % 100);
}

Status CheckServerVersion(int server_version) {
  std::string why = pgp::UnsupportedVersionReason(server_version);
  if (why.empty()) return Status::OK();
  return Status::Rejected("unsupported PostgreSQL version " + FormatServerVersion(server_version) +
                          ": " + why);
}

std::vector<std::string> SplitStatements(std::string_view sql) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < sql.size()) {
    size_t end = sql.find(";\n", pos);
    if (end == std::string_view::npos) {
      std::string_view rest = sql.substr(pos);
      if (rest.find_first_not_of(" \t\r\n") != std::string_view::npos) out.emplace_back(rest);
      break;
    }
    out.emplace_back(sql.substr(pos, end + 2 - pos));
    pos = end + 2;
  }
  return out;
}

const TickSql& TickSqlFor(int server_version) {
  // Per thread: collectors may run a loop per thread, and a lookup costs no lock.
  thread_local std::map<int, std::unique_ptr<TickSql>> cache;
  std::unique_ptr<TickSql>& sql = cache[server_version];
  if (sql == nullptr) {
    sql = std::make_unique<TickSql>();
    for (int sizes : {0, 1}) {
      sql->statements[sizes] = SplitStatements(pgp::TickQueries(server_version, sizes == 1));
      sql->text_query[sizes] = pgp::TickQueryText(server_version, sizes == 1);
    }
  }
  return *sql;
}

pgp::ResultSet ToResultSet(const pg_result* cres) {
  // libpq's accessors take a non-const PGresult but do not modify it.
  auto* res = const_cast<PGresult*>(cres);
  pgp::ResultSet rs;
  ExecStatusType st = PQresultStatus(res);
  if (st == PGRES_PIPELINE_ABORTED) {
    rs.error = "not run: an earlier statement of the pipeline failed";
    return rs;
  }
  if (st == PGRES_FATAL_ERROR || st == PGRES_NONFATAL_ERROR || st == PGRES_BAD_RESPONSE) {
    const char* primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    const char* state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    rs.error = primary != nullptr ? OneLine(primary) : OneLine(PQresultErrorMessage(res));
    if (rs.error.empty()) rs.error = PQresStatus(st);
    if (state != nullptr) rs.error += std::string(" (SQLSTATE ") + state + ")";
    return rs;
  }
  pg::Rows rows = pg::ToRows(cres);
  rs.columns = std::move(rows.columns);
  rs.rows = std::move(rows.rows);
  return rs;
}

}  // namespace postgres

namespace {

// The names of TickQueryText's prepared statements on each connection, without and with the
// database sizes.
constexpr const char* kTickStatementNames[2] = {"trapline_tick", "trapline_tick_sizes"};

// The severity of an error or notice, untranslated ("ERROR", "FATAL", "PANIC", ...).
std::string_view Severity(const PGresult* res) {
  const char* s = PQresultErrorField(const_cast<PGresult*>(res), PG_DIAG_SEVERITY_NONLOCALIZED);
  return s != nullptr ? std::string_view(s) : std::string_view();
}

}  // namespace

PostgresTarget::PostgresTarget(uv_loop_t* loop, TargetConfig config, DeliverFn deliver)
    : TargetBase(loop, std::move(config), std::move(deliver)), connect_deadline_(loop) {
  config_status_ = ReadOptions(this->config(), &options_);
}

Status PostgresTarget::ReadOptions(const TargetConfig& config, pgp::Options* options) {
  std::string error = pgp::ParseOptions(config.options, options);
  if (!error.empty()) return Status::InvalidArgument(config.Name() + ": " + error);
  return Status::OK();
}

Status PostgresTarget::Validate(const TargetConfig& config) {
  pgp::Options options;
  return ReadOptions(config, &options);
}

PostgresTarget::~PostgresTarget() { PostgresTarget::Disconnect(); }

void PostgresTarget::Connect() {
  Disconnect();  // a previous connection, if any, is gone before a new one starts
  if (!config_status_.ok()) return Failed(config_status_);
  auto password = postgres::PasswordFor(config());
  if (!password.ok()) return Failed(password.status());
  auto params = postgres::BuildConnParams(config().uri, *password, config().timeout_s);
  if (!params.ok()) return Failed(params.status());
  std::vector<const char*> keywords = params->keywords();
  std::vector<const char*> values = params->values();
  // May block on DNS (getaddrinfo) for a host name: libpq has no asynchronous resolver.
  conn_ = PQconnectStartParams(keywords.data(), values.data(), /*expand_dbname=*/1);
  if (conn_ == nullptr) return Failed(Status::Internal("PQconnectStartParams: out of memory"));
  if (PQstatus(conn_) == CONNECTION_BAD) {
    return Failed(postgres::ConnectFailure(PQerrorMessage(conn_)));
  }
  PQsetNoticeReceiver(conn_, &PostgresTarget::OnNotice, this);
  phase_ = Phase::kConnecting;
  last_fatal_.clear();
  connect_deadline_.Start(timeout_ms(), 0, [this] {
    std::string why = "connect: no answer within " + std::to_string(timeout_ms()) + " ms";
    // What libpq knows so far, unless it is only the "connection to server at ... failed:"
    // header of a message still to come.
    std::string sofar = conn_ != nullptr ? postgres::OneLine(PQerrorMessage(conn_)) : "";
    if (!sofar.empty() && sofar.back() != ':') why += " (" + sofar + ")";
    Failed(Status::Timeout(std::move(why)));
  });
  // connectDBStart already ran PQconnectPoll once: behave as if it asked for WRITING.
  Status st = WatchSocket(false, true);
  if (!st.ok()) return Failed(st.WithContext("connect"));
}

Status PostgresTarget::WatchSocket(bool readable, bool writable) {
  int fd = PQsocket(conn_);
  if (fd < 0) return Status::Internal("libpq has no socket");
  if (watcher_ == nullptr || fd != watched_fd_) {
    watcher_.reset();  // closes the old poll handle before a new one takes the socket
    watched_fd_ = -1;
    auto w = std::make_unique<SocketWatcher>(
        loop(), fd, [this](int status, int events) { OnSocket(status, events); });
    if (!w->init_status().ok()) return w->init_status();
    watcher_ = std::move(w);
    watched_fd_ = fd;
  }
  return watcher_->Watch(readable, writable);
}

void PostgresTarget::OnSocket(int status, int events) {
  if (conn_ == nullptr) return;
  BusyScope busy(busy_counter());
  if (status < 0 && phase_ != Phase::kConnecting) {
    // libuv stopped polling this socket. libpq's own read gives the better message.
    if (PQconsumeInput(conn_) != 1) return Failed(ConnectionLost("polling"));
    return Failed(UvError("polling the connection's socket", status));
  }
  switch (phase_) {
    case Phase::kConnecting:
      return PollConnect();
    case Phase::kReady:
      if (events & UV_READABLE) return OnIdleReadable();
      return;
    case Phase::kBusy:
      return OnBusy(events);
    case Phase::kIdle:
      return;
  }
}

void PostgresTarget::PollConnect() {
  // The socket may be closed (and another opened) inside PQconnectPoll: never leave it in
  // epoll across the call.
  if (watcher_ != nullptr) watcher_->Stop();
  PostgresPollingStatusType st = PQconnectPoll(conn_);
  switch (st) {
    case PGRES_POLLING_READING:
    case PGRES_POLLING_WRITING: {
      Status w = WatchSocket(st == PGRES_POLLING_READING, st == PGRES_POLLING_WRITING);
      if (!w.ok()) return Failed(w.WithContext("connect"));
      return;
    }
    case PGRES_POLLING_OK:
      return OnConnectOk();
    case PGRES_POLLING_FAILED:
    default:
      return Failed(postgres::ConnectFailure(PQerrorMessage(conn_)));
  }
}

void PostgresTarget::OnConnectOk() {
  connect_deadline_.Stop();
  server_version_ = PQserverVersion(conn_);
  if (Status v = postgres::CheckServerVersion(server_version_); !v.ok()) return Failed(v);
  if (PQsetnonblocking(conn_, 1) != 0) {
    return Failed(
        Status::Internal("PQsetnonblocking: " + postgres::OneLine(PQerrorMessage(conn_))));
  }
  if (PQenterPipelineMode(conn_) != 1) {
    return Failed(
        Status::Internal("PQenterPipelineMode: " + postgres::OneLine(PQerrorMessage(conn_))));
  }
  session_set_up_ = false;
  prepared_[0] = prepared_[1] = false;
  sizes_due_ms_ = 0;
  // The plugin's SQL depends on the server version only: looked up once per connection.
  tick_sql_ = &postgres::TickSqlFor(server_version_);
  phase_ = Phase::kReady;
  if (Status w = WatchSocket(true, false); !w.ok()) return Failed(w);
  spdlog::debug(
      "[postgres] {}: server {} ({}), backend pid {}", config().Name(),
      postgres::FormatServerVersion(server_version_),
      PQparameterStatus(conn_, "server_version") ? PQparameterStatus(conn_, "server_version") : "?",
      PQbackendPID(conn_));
  Connected();
}

void PostgresTarget::Tick() {
  if (conn_ == nullptr || phase_ != Phase::kReady) {
    return Failed(Status::Internal("tick without a ready connection"));
  }
  fallback_warning_.clear();
  // The database sizes every size_interval: due half a period early, so that a tick that
  // comes a little before the interval is over asks them instead of the one after it.
  const uint64_t now = uv_now(loop());
  sizes_ = now >= sizes_due_ms_ ? 1 : 0;
  if (sizes_ == 1) {
    const auto interval_ms = static_cast<uint64_t>(options_.size_interval_s * 1000);
    const auto half_period_ms = static_cast<uint64_t>(config().period_s * 500);
    sizes_due_ms_ = now + (interval_ms > half_period_ms ? interval_ms - half_period_ms : 0);
  }
  SendTick(split_ticks_left_ == 0);
}

void PostgresTarget::SendTick(bool text_query) {
  std::string setup;
  if (!session_set_up_) {
    // The server cancels a hung statement by itself, well before our own tick deadline.
    uint64_t ms = std::max<uint64_t>(100, timeout_ms() * 8 / 10);
    setup = "SET statement_timeout = " + std::to_string(ms);
    session_set_up_ = true;
  }
  const bool prepare = text_query && !prepared_[sizes_];
  setup_statements_ = (setup.empty() ? 0 : 1) + (prepare ? 1 : 0);
  prepare_index_ = prepare ? setup_statements_ - 1 : SIZE_MAX;
  // libpq (before 17) flushes at every PQpipelineSync: one send per statement, each a TCP
  // segment that wakes the backend. Corked, the kernel sends them as one when uncorked (for a
  // Unix socket the option fails and nothing changes). Two setsockopt calls cost more than
  // they save when only one statement goes.
  const bool cork = setup_statements_ > 0 || !text_query;
  int fd = PQsocket(conn_);
  int on = 1;
  if (cork) (void)setsockopt(fd, IPPROTO_TCP, TCP_CORK, &on, sizeof(on));
  bool sent = true;
  auto send = [&](const std::string& sql) {
    sent = sent &&
           PQsendQueryParams(conn_, sql.c_str(), 0, nullptr, nullptr, nullptr, nullptr, 0) == 1 &&
           PQpipelineSync(conn_) == 1;
  };
  if (!setup.empty()) send(setup);
  if (prepare) {
    // Parsed and planned once per connection instead of every tick (it has no parameters: the
    // server keeps its generic plan), and each tick sends a Bind/Execute, not 5 KB of SQL.
    sent = sent &&
           PQsendPrepare(conn_, kTickStatementNames[sizes_], tick_sql_->text_query[sizes_].c_str(),
                         0, nullptr) == 1 &&
           PQpipelineSync(conn_) == 1;
    prepared_[sizes_] = true;
  }
  if (text_query) {
    sent = sent &&
           PQsendQueryPrepared(conn_, kTickStatementNames[sizes_], 0, nullptr, nullptr, nullptr,
                               0) == 1 &&
           PQpipelineSync(conn_) == 1;
  } else {
    for (const auto& sql : tick_sql_->statements[sizes_]) send(sql);
  }
  int off = 0;
  if (cork) (void)setsockopt(fd, IPPROTO_TCP, TCP_CORK, &off, sizeof(off));
  if (!sent) return Failed(ConnectionLost("sending the tick's queries"));
  text_query_ = text_query;
  statements_ = setup_statements_ + (text_query ? 1 : tick_sql_->statements[sizes_].size());
  current_ = 0;
  current_has_result_ = false;
  results_.clear();
  text_error_.clear();
  phase_ = Phase::kBusy;
  if (Status f = Flush(); !f.ok()) return Failed(f);
}

Status PostgresTarget::Flush() {
  int r = PQflush(conn_);
  if (r < 0) return ConnectionLost("sending");
  return WatchSocket(true, r == 1);
}

void PostgresTarget::OnBusy(int events) {
  if (events & UV_WRITABLE) {
    if (Status f = Flush(); !f.ok()) return Failed(f);
  }
  if (!(events & UV_READABLE)) return;
  if (PQconsumeInput(conn_) != 1) return Failed(ConnectionLost("reading results"));
  auto done = Drain();
  if (!done.ok()) return Failed(done.status());
  if (*done) return FinishTick();
  // libpq may have queued more output while reading (it answers some messages itself).
  if (Status f = Flush(); !f.ok()) return Failed(f);
}

Result<bool> PostgresTarget::Drain() {
  // Pipeline mode: per statement its result(s), a NULL, then the PGRES_PIPELINE_SYNC of its
  // own sync. PQisBusy says whether the next PQgetResult would have to wait for input.
  int nulls_in_a_row = 0;
  while (current_ < statements_) {
    if (PQisBusy(conn_)) return false;
    PGresult* res = PQgetResult(conn_);
    if (res == nullptr) {
      // The end of a statement's results; two in a row means libpq has nothing to go on.
      if (++nulls_in_a_row > 1) return false;
      continue;
    }
    nulls_in_a_row = 0;
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_PIPELINE_SYNC) {
      PQclear(res);
      if (current_ >= setup_statements_ && !current_has_result_) {
        if (text_query_) {
          text_error_ = "no result";
        } else {
          results_.emplace_back().error = "no result";
        }
      }
      ++current_;
      current_has_result_ = false;
      continue;
    }
    if (st == PGRES_FATAL_ERROR && (PQstatus(conn_) == CONNECTION_BAD || Severity(res) == "FATAL" ||
                                    Severity(res) == "PANIC")) {
      std::string why = postgres::OneLine(PQresultErrorMessage(res));
      PQclear(res);
      return Status::Unavailable(why + " (while reading results)");
    }
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK && st != PGRES_FATAL_ERROR &&
        st != PGRES_PIPELINE_ABORTED && st != PGRES_EMPTY_QUERY) {
      std::string what = PQresStatus(st);
      PQclear(res);
      return Status::ProtocolError("unexpected result " + what + " in the tick's pipeline");
    }
    if (current_ < setup_statements_) {
      if (st == PGRES_FATAL_ERROR) {
        spdlog::warn("[postgres] {}: session setup failed: {}", config().Name(),
                     postgres::OneLine(PQresultErrorMessage(res)));
        // Its execution fails too (no such prepared statement): the tick falls back on the
        // statements one by one, and the prepare is tried again after that.
        if (current_ == prepare_index_) prepared_[sizes_] = false;
      }
    } else if (!current_has_result_) {
      TakeResult(res);
    }
    current_has_result_ = true;
    PQclear(res);
  }
  return true;
}

void PostgresTarget::TakeResult(const pg_result* cres) {
  if (!text_query_) {
    results_.push_back(postgres::ToResultSet(cres));
    return;
  }
  auto* res = const_cast<PGresult*>(cres);
  if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 && PQnfields(res) == 1 &&
      !PQgetisnull(res, 0, 0)) {
    // Parsed where libpq holds it: no copy of the text.
    parsed_ = pgp::ParseTickText(
        server_version_, std::string_view(PQgetvalue(res, 0, 0),
                                          static_cast<size_t>(PQgetlength(res, 0, 0))));
    return;
  }
  pgp::ResultSet rs = postgres::ToResultSet(cres);
  text_error_ = !rs.error.empty() ? rs.error : "not one text value";
}

void PostgresTarget::FinishTick() {
  if (text_query_ && !text_error_.empty()) {
    // One error fails the whole statement: send the statements one by one now, in the same
    // tick (its deadline still runs), so that only the failing one is lost, and for the next
    // kSplitTicksAfterError ticks.
    spdlog::debug("[postgres] {}: tick statement failed: {}", config().Name(), text_error_);
    fallback_warning_ = "tick query failed (" + text_error_ +
                        "): its statements were run one by one";
    split_ticks_left_ = kSplitTicksAfterError;
    return SendTick(false);
  }
  phase_ = Phase::kReady;
  if (Status w = WatchSocket(true, false); !w.ok()) return Failed(w);
  plugins::ParseResult parsed;
  if (text_query_) {
    parsed = std::move(parsed_);
    parsed_ = {};
  } else {
    parsed = pgp::ParseTick(server_version_, results_);
    results_ = {};
    if (split_ticks_left_ > 0) --split_ticks_left_;
  }
  if (!fallback_warning_.empty()) {
    parsed.warnings.insert(parsed.warnings.begin(), std::move(fallback_warning_));
    fallback_warning_.clear();
  }
  // Deliver may destroy this target: nothing after it.
  Deliver(std::move(parsed));
}

void PostgresTarget::OnIdleReadable() {
  // Between ticks the server only speaks when something happens to the session: a
  // ParameterStatus, a notice, or a FATAL before it closes the connection.
  if (PQconsumeInput(conn_) != 1) return Failed(ConnectionLost("idle"));
  while (!PQisBusy(conn_)) {
    PGresult* res = PQgetResult(conn_);
    if (res == nullptr) break;
    PQclear(res);
  }
  if (PQstatus(conn_) == CONNECTION_BAD) return Failed(ConnectionLost("idle"));
}

Status PostgresTarget::ConnectionLost(std::string_view what) const {
  std::string why = conn_ != nullptr ? postgres::OneLine(PQerrorMessage(conn_)) : "";
  if (!last_fatal_.empty() && why.find(last_fatal_) == std::string::npos) {
    why = last_fatal_ + (why.empty() ? "" : "; " + why);
  }
  if (why.empty()) why = "connection closed";
  return Status::Unavailable(why + " (while " + std::string(what) + ")");
}

void PostgresTarget::OnNotice(void* arg, const pg_result* notice) {
  // Runs inside libpq (PQconsumeInput, PQgetResult, PQconnectPoll): record and log only.
  auto* self = static_cast<PostgresTarget*>(arg);
  std::string msg = postgres::OneLine(PQresultErrorMessage(const_cast<PGresult*>(notice)));
  std::string_view sev = Severity(notice);
  if (sev == "FATAL" || sev == "PANIC") {
    self->last_fatal_ = msg;  // e.g. "terminating connection due to administrator command"
    spdlog::info("[postgres] {}: server says: {}", self->config().Name(), msg);
  } else {
    spdlog::debug("[postgres] {}: server notice: {}", self->config().Name(), msg);
  }
}

void PostgresTarget::Disconnect() {
  connect_deadline_.Stop();
  // The poll handle leaves epoll before PQfinish closes the socket.
  watcher_.reset();
  watched_fd_ = -1;
  if (conn_ != nullptr) {
    PGconn* c = conn_;
    conn_ = nullptr;
    PQfinish(c);
  }
  phase_ = Phase::kIdle;
  statements_ = setup_statements_ = current_ = 0;
  current_has_result_ = false;
  results_ = {};
  parsed_ = {};
  split_ticks_left_ = 0;
}

}  // namespace trapline
