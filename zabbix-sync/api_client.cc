#include "zabbix-sync/api_client.h"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <deque>
#include <mutex>
#include <optional>
#include <utility>

#include "common/log.h"
#include "common/uv.h"

namespace trapline::zabbix {

using nlohmann::json;

namespace {

// A reply larger than this is refused (the biggest sync reads are item.get over thousands of
// hosts: tens of MB).
constexpr size_t kMaxReplyBytes = size_t{1} << 30;
constexpr double kMaxRetryDelayS = 30;

Status MakeStatus(StatusCode code, std::string msg) {
  switch (code) {
    case StatusCode::kOk:
      return Status::OK();
    case StatusCode::kInvalidArgument:
      return Status::InvalidArgument(std::move(msg));
    case StatusCode::kNotFound:
      return Status::NotFound(std::move(msg));
    case StatusCode::kIoError:
      return Status::IoError(std::move(msg));
    case StatusCode::kProtocolError:
      return Status::ProtocolError(std::move(msg));
    case StatusCode::kUnavailable:
      return Status::Unavailable(std::move(msg));
    case StatusCode::kTimeout:
      return Status::Timeout(std::move(msg));
    case StatusCode::kRejected:
      return Status::Rejected(std::move(msg));
    case StatusCode::kUnauthenticated:
      return Status::Unauthenticated(std::move(msg));
    case StatusCode::kInternal:
      break;
  }
  return Status::Internal(std::move(msg));
}

Status CurlGlobalInit() {
  static std::once_flag once;
  static CURLcode rc = CURLE_OK;
  std::call_once(once, [] { rc = curl_global_init(CURL_GLOBAL_DEFAULT); });
  if (rc != CURLE_OK) {
    return Status::Internal(std::string("curl_global_init: ") + curl_easy_strerror(rc));
  }
  return Status::OK();
}

// A JSON value as text for a message: strings without quotes.
std::string Text(const json& j) {
  if (j.is_string()) return j.get<std::string>();
  return j.dump();
}

std::string Printable(std::string_view s, size_t max) {
  std::string out;
  bool space = false;
  for (char c : s) {
    if (out.size() >= max) {
      out += "...";
      break;
    }
    auto u = static_cast<unsigned char>(c);
    if (std::isspace(u) || u < 0x20 || u == 0x7f) {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += c;
  }
  return out;
}

// What a non-JSON-RPC body looks like, in a few words: the <title> of an HTML page, else its
// first characters.
std::string Excerpt(const std::string& body) {
  if (body.empty()) return "empty body";
  std::string lower(body.substr(0, 4096));
  std::transform(lower.begin(), lower.end(), lower.begin(), [](char c) {
    return static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  });
  auto t = lower.find("<title>");
  if (t != std::string::npos) {
    auto e = lower.find("</title>", t);
    if (e != std::string::npos) {
      return "an HTML page titled \"" + Printable(body.substr(t + 7, e - t - 7), 100) + "\" (" +
             std::to_string(body.size()) + " bytes)";
    }
  }
  return "body \"" + Printable(body, 120) + "\" (" + std::to_string(body.size()) + " bytes)";
}

// Replaces every occurrence of a secret (4 characters or more: shorter ones would mangle the
// text and are guessable anyway) by "***".
std::string Scrub(std::string msg, const std::vector<const std::string*>& secrets) {
  for (const std::string* s : secrets) {
    if (s->size() < 4) continue;
    for (size_t pos = msg.find(*s); pos != std::string::npos; pos = msg.find(*s, pos + 3)) {
      msg.replace(pos, s->size(), "***");
    }
  }
  return msg;
}

Status CurlStatus(CURLcode code, const char* errbuf, const std::string& where) {
  std::string msg = where + ": " + (errbuf[0] != '\0' ? errbuf : curl_easy_strerror(code));
  switch (code) {
    case CURLE_OPERATION_TIMEDOUT:
      return Status::Timeout(std::move(msg));
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
      return Status::InvalidArgument(std::move(msg));
    // TLS set-up problems: retrying cannot help, the configuration must change.
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_WRITE_ERROR:  // the reply was too large
    case CURLE_OUT_OF_MEMORY:
      return Status::IoError(std::move(msg));
    default:
      return Status::Unavailable(std::move(msg));
  }
}

bool Transient(const Status& st) {
  return st.code() == StatusCode::kUnavailable || st.code() == StatusCode::kTimeout;
}

}  // namespace

// --------------------------------------------------------------------------------------------
// ApiVersion and wire

std::string ApiVersion::ToString() const {
  return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
}

Result<ApiVersion> ApiVersion::Parse(const std::string& text) {
  // "6.0.14", "7.0" or "7.0.0rc1" (a pre-release suffix after the numbers is ignored).
  ApiVersion v;
  int* parts[] = {&v.major, &v.minor, &v.patch};
  const char* p = text.data();
  const char* end = text.data() + text.size();
  int n = 0;
  while (n < 3) {
    auto [next, ec] = std::from_chars(p, end, *parts[n]);
    if (ec != std::errc() || *parts[n] < 0) break;
    ++n;
    p = next;
    if (p == end || *p != '.' || n == 3) break;
    ++p;
  }
  bool suffix_ok = p == end || (n == 3 && std::isalpha(static_cast<unsigned char>(*p)));
  if (n < 2 || !suffix_ok) {
    return Status::InvalidArgument("not a Zabbix version: \"" + Printable(text, 40) + "\"");
  }
  return v;
}

namespace wire {

bool NeedsAuth(const std::string& method) {
  return method != "apiinfo.version" && method != "user.login" &&
         method != "user.checkAuthentication";
}

json Request(const std::string& method, const json& params, int64_t id, const std::string& auth,
             const ApiVersion& version) {
  json body = {{"jsonrpc", "2.0"}, {"method", method}, {"params", params}, {"id", id}};
  if (!auth.empty() && NeedsAuth(method) && !version.AtLeast(6, 4)) body["auth"] = auth;
  return body;
}

std::vector<std::string> Headers(const std::string& auth, const ApiVersion& version) {
  std::vector<std::string> out = {"Content-Type: application/json-rpc"};
  if (!auth.empty() && version.AtLeast(6, 4)) out.push_back("Authorization: Bearer " + auth);
  return out;
}

Result<json> ParseReply(const std::string& method, long http_status, const std::string& body) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!j.is_discarded() && j.is_object()) {
    auto v = j.find("jsonrpc");
    if (v != j.end() && v->is_string() && v->get<std::string>() == "2.0") {
      auto err = j.find("error");
      if (err != j.end() && !err->is_null()) {
        std::string msg = method + ":";
        if (err->is_object()) {
          auto m = err->find("message");
          auto d = err->find("data");
          if (m != err->end()) msg += " " + Text(*m);
          if (d != err->end() && !d->is_null()) msg += " " + Text(*d);
          if (m == err->end() && (d == err->end() || d->is_null())) msg += " " + err->dump();
        } else {
          msg += " " + Text(*err);
        }
        return Status::Rejected(std::move(msg));
      }
      auto res = j.find("result");
      if (res != j.end()) return std::move(*res);
    }
  }
  std::string what =
      method + ": HTTP " + std::to_string(http_status) + ", not a JSON-RPC reply: " + Excerpt(body);
  if (http_status >= 500) return Status::Unavailable(std::move(what));
  return Status::ProtocolError(std::move(what));
}

std::string Endpoint(const std::string& url) {
  if (url.size() >= 4 && url.compare(url.size() - 4, 4, ".php") == 0) return url;
  std::string base = url;
  while (!base.empty() && base.back() == '/') base.pop_back();
  return base + "/api_jsonrpc.php";
}

}  // namespace wire

// --------------------------------------------------------------------------------------------
// ApiClient::Impl

class ApiClient::Impl {
 public:
  Impl(uv_loop_t* loop, ApiConfig config);
  ~Impl();

  void Connect(std::function<void(Status)> done);
  void Call(const std::string& method, json params, Callback done);

  const ApiVersion& version() const { return version_; }
  int64_t calls() const { return calls_; }
  const std::map<std::string, int64_t>& calls_by_method() const { return calls_by_method_; }
  int max_in_flight() const { return max_in_flight_; }
  int max_sockets() const { return max_sockets_; }

 private:
  // One API call, across its attempts. Owned by pending_ until its result is known.
  struct Request {
    int64_t id = 0;
    std::string method;
    json params;
    Callback done;
    int attempt = 0;        // HTTP requests sent so far
    bool relogged = false;  // renewed the session once for this call
    CURL* easy = nullptr;
    curl_slist* headers = nullptr;
    std::string body;
    std::string response;
    char errbuf[CURL_ERROR_SIZE] = {};
    std::unique_ptr<Timer> timer;  // retry backoff, or delivery of a local failure
  };

  static int OnCurlSocket(CURL* easy, curl_socket_t s, int what, void* userp,
                          void* socketp) noexcept;
  static int OnCurlTimer(CURLM* multi, long timeout_ms, void* userp) noexcept;
  static size_t OnWrite(char* data, size_t size, size_t n, void* userp) noexcept;

  void OnSocketEvent(curl_socket_t s, int status, int events);
  void OnTimeout();
  void Send(Request* r);
  void FailSoon(Request* r, Status st);
  void ReleaseEasy(Request* r);
  void CollectDone();
  void OnAttemptDone(Request* r, CURLcode code, long http_status);
  bool ShouldRelogin(const Request& r, const Status& st) const;
  void Relogin(Request* r);
  void Login(std::function<void(Status)> done);
  void Complete(int64_t id, Result<json> result);
  void Deliver();
  Status Clean(const Status& st) const;

  uv_loop_t* loop_;
  ApiConfig config_;
  std::string endpoint_;
  Status init_status_;
  CURLM* multi_ = nullptr;
  Timer curl_timer_;
  std::map<curl_socket_t, std::unique_ptr<SocketWatcher>> watchers_;
  std::map<int64_t, std::unique_ptr<Request>> pending_;
  // Results known, callbacks not yet run: delivered from the loop, outside libcurl.
  std::deque<std::pair<Callback, Result<json>>> ready_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  bool closing_ = false;

  ApiVersion version_;
  std::string auth_;
  bool relogin_running_ = false;
  std::vector<int64_t> relogin_waiters_;

  int64_t next_id_ = 1;
  int64_t calls_ = 0;
  std::map<std::string, int64_t> calls_by_method_;
  int in_flight_ = 0;
  int max_in_flight_ = 0;
  int max_sockets_ = 0;
};

ApiClient::Impl::Impl(uv_loop_t* loop, ApiConfig config)
    : loop_(loop),
      config_(std::move(config)),
      endpoint_(wire::Endpoint(config_.url)),
      curl_timer_(loop) {
  init_status_ = CurlGlobalInit();
  if (!init_status_.ok()) return;
  multi_ = curl_multi_init();
  if (multi_ == nullptr) {
    init_status_ = Status::Internal("curl_multi_init failed");
    return;
  }
  curl_multi_setopt(multi_, CURLMOPT_SOCKETFUNCTION, &Impl::OnCurlSocket);
  curl_multi_setopt(multi_, CURLMOPT_SOCKETDATA, this);
  curl_multi_setopt(multi_, CURLMOPT_TIMERFUNCTION, &Impl::OnCurlTimer);
  curl_multi_setopt(multi_, CURLMOPT_TIMERDATA, this);
  curl_multi_setopt(multi_, CURLMOPT_MAX_HOST_CONNECTIONS,
                    static_cast<long>(std::max(1, config_.max_connections)));
}

ApiClient::Impl::~Impl() {
  closing_ = true;
  *alive_ = false;
  curl_timer_.Stop();
  std::vector<std::pair<Callback, Result<json>>> out;
  for (auto& item : ready_) out.push_back(std::move(item));
  ready_.clear();
  for (auto& [id, r] : pending_) {
    ReleaseEasy(r.get());
    r->timer.reset();
    out.emplace_back(std::move(r->done),
                     Status::Unavailable("zabbix api " + r->method + ": client closed"));
  }
  pending_.clear();
  // Closes the cached connections; libcurl tells OnCurlSocket to forget their sockets first.
  if (multi_ != nullptr) curl_multi_cleanup(multi_);
  multi_ = nullptr;
  watchers_.clear();
  // Last, so that a callback that looks at the client (or calls it: it gets "client closed"
  // at once) finds it consistent.
  for (auto& [cb, result] : out) {
    if (cb) cb(std::move(result));
  }
}

// libcurl: watch socket `s` for `what` (CURL_POLL_IN/OUT/INOUT) or forget it (REMOVE).
int ApiClient::Impl::OnCurlSocket(CURL*, curl_socket_t s, int what, void* userp, void*) noexcept {
  auto* self = static_cast<Impl*>(userp);
  if (what == CURL_POLL_REMOVE) {
    self->watchers_.erase(s);
    return 0;
  }
  auto it = self->watchers_.find(s);
  if (it == self->watchers_.end()) {
    auto w = std::make_unique<SocketWatcher>(self->loop_, s, [self, s](int status, int events) {
      self->OnSocketEvent(s, status, events);
    });
    if (!w->init_status().ok()) {
      spdlog::error("[zabbix-api] cannot watch a socket: {}", w->init_status().message());
      return -1;  // libcurl fails the transfers on it
    }
    it = self->watchers_.emplace(s, std::move(w)).first;
    self->max_sockets_ = std::max(self->max_sockets_, static_cast<int>(self->watchers_.size()));
  }
  Status st = it->second->Watch((what & CURL_POLL_IN) != 0, (what & CURL_POLL_OUT) != 0);
  if (!st.ok()) {
    spdlog::error("[zabbix-api] cannot watch a socket: {}", st.message());
    return -1;
  }
  return 0;
}

// libcurl: call curl_multi_socket_action(CURL_SOCKET_TIMEOUT) in timeout_ms (-1: never). Never
// called back from here directly (libcurl forbids the recursion): a 0 ms timer fires on the
// next loop iteration.
int ApiClient::Impl::OnCurlTimer(CURLM*, long timeout_ms, void* userp) noexcept {
  auto* self = static_cast<Impl*>(userp);
  if (timeout_ms < 0) {
    self->curl_timer_.Stop();
  } else {
    self->curl_timer_.Start(static_cast<uint64_t>(timeout_ms), 0, [self] { self->OnTimeout(); });
  }
  return 0;
}

size_t ApiClient::Impl::OnWrite(char* data, size_t size, size_t n, void* userp) noexcept {
  auto* r = static_cast<Request*>(userp);
  size_t len = size * n;
  if (r->response.size() + len > kMaxReplyBytes) return 0;  // CURLE_WRITE_ERROR
  try {
    r->response.append(data, len);
  } catch (...) {
    return 0;
  }
  return len;
}

void ApiClient::Impl::OnSocketEvent(curl_socket_t s, int status, int events) {
  int flags = 0;
  if (status < 0) flags |= CURL_CSELECT_ERR;
  if ((events & UV_READABLE) != 0) flags |= CURL_CSELECT_IN;
  if ((events & UV_WRITABLE) != 0) flags |= CURL_CSELECT_OUT;
  int running = 0;
  curl_multi_socket_action(multi_, s, flags, &running);
  CollectDone();
  Deliver();
}

void ApiClient::Impl::OnTimeout() {
  int running = 0;
  curl_multi_socket_action(multi_, CURL_SOCKET_TIMEOUT, 0, &running);
  CollectDone();
  Deliver();
}

void ApiClient::Impl::Call(const std::string& method, json params, Callback done) {
  if (closing_) {
    if (done) done(Status::Unavailable("zabbix api " + method + ": client closed"));
    return;
  }
  auto req = std::make_unique<Request>();
  req->id = next_id_++;
  req->method = method;
  req->params = std::move(params);
  req->done = std::move(done);
  Request* r = req.get();
  pending_.emplace(r->id, std::move(req));
  Send(r);
}

void ApiClient::Impl::Send(Request* r) {
  if (!init_status_.ok()) return FailSoon(r, init_status_);
  ++r->attempt;
  ++calls_;
  ++calls_by_method_[r->method];
  const std::string& auth = wire::NeedsAuth(r->method) ? auth_ : std::string();
  r->body = wire::Request(r->method, r->params, r->id, auth, version_).dump();
  r->response.clear();
  r->errbuf[0] = '\0';
  r->easy = curl_easy_init();
  if (r->easy == nullptr) return FailSoon(r, Status::Internal("curl_easy_init failed"));
  for (const std::string& h : wire::Headers(auth, version_)) {
    r->headers = curl_slist_append(r->headers, h.c_str());
  }
  // No "Expect: 100-continue" round trip before large bodies.
  r->headers = curl_slist_append(r->headers, "Expect:");
  CURL* e = r->easy;
  curl_easy_setopt(e, CURLOPT_URL, endpoint_.c_str());
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_POST, 1L);
  curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(r->body.size()));
  curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body.c_str());  // r->body outlives the transfer
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
  curl_easy_setopt(e, CURLOPT_USERAGENT, "trapline-zabbix-sync");
  curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");  // whatever libcurl can decode
  auto timeout_ms = static_cast<long>(std::max(0.001, config_.timeout_s) * 1000);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, config_.verify_tls ? 1L : 0L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, config_.verify_tls ? 2L : 0L);
  if (!config_.ca_file.empty()) curl_easy_setopt(e, CURLOPT_CAINFO, config_.ca_file.c_str());
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &Impl::OnWrite);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
  curl_easy_setopt(e, CURLOPT_PRIVATE, r);
  CURLMcode mc = curl_multi_add_handle(multi_, e);
  if (mc != CURLM_OK) {
    curl_easy_cleanup(e);
    r->easy = nullptr;
    return FailSoon(
        r, Status::Internal(std::string("curl_multi_add_handle: ") + curl_multi_strerror(mc)));
  }
  ++in_flight_;
  max_in_flight_ = std::max(max_in_flight_, in_flight_);
}

// A failure before the request reached libcurl: reported from the loop like any other result,
// never from inside Call().
void ApiClient::Impl::FailSoon(Request* r, Status st) {
  int64_t id = r->id;
  r->timer = std::make_unique<Timer>(loop_);
  r->timer->Start(0, 0, [this, id, st] {
    Complete(id, st);
    Deliver();
  });
}

void ApiClient::Impl::ReleaseEasy(Request* r) {
  if (r->easy != nullptr) {
    curl_multi_remove_handle(multi_, r->easy);
    curl_easy_cleanup(r->easy);
    r->easy = nullptr;
    --in_flight_;
  }
  if (r->headers != nullptr) {
    curl_slist_free_all(r->headers);
    r->headers = nullptr;
  }
}

void ApiClient::Impl::CollectDone() {
  int left = 0;
  while (CURLMsg* msg = curl_multi_info_read(multi_, &left)) {
    if (msg->msg != CURLMSG_DONE) continue;
    CURL* easy = msg->easy_handle;
    CURLcode code = msg->data.result;
    char* priv = nullptr;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
    auto* r = reinterpret_cast<Request*>(priv);
    long http_status = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &http_status);
    ReleaseEasy(r);
    OnAttemptDone(r, code, http_status);
  }
}

void ApiClient::Impl::OnAttemptDone(Request* r, CURLcode code, long http_status) {
  Result<json> result = code != CURLE_OK
                            ? Result<json>(CurlStatus(code, r->errbuf, r->method + " " + endpoint_))
                            : wire::ParseReply(r->method, http_status, r->response);
  r->response.clear();
  r->response.shrink_to_fit();
  r->body.clear();
  r->body.shrink_to_fit();
  if (result.ok()) return Complete(r->id, std::move(result));

  Status st = Clean(result.status());
  if (Transient(st) && r->attempt <= config_.retries) {
    double delay =
        std::min(kMaxRetryDelayS, std::ldexp(config_.retry_base_s, std::min(r->attempt - 1, 20)));
    spdlog::warn("[zabbix-api] {}; retry {}/{} in {:.1f}s", st.message(), r->attempt,
                 config_.retries, delay);
    int64_t id = r->id;
    r->timer = std::make_unique<Timer>(loop_);
    r->timer->Start(static_cast<uint64_t>(delay * 1000), 0, [this, id] {
      auto it = pending_.find(id);
      if (it == pending_.end()) return;
      it->second->timer.reset();  // safe: Timer may be destroyed inside its own callback
      Send(it->second.get());
      Deliver();
    });
    return;
  }
  if (Transient(st) && r->attempt > 1) {
    st = MakeStatus(st.code(), st.message() + " (" + std::to_string(r->attempt) + " attempts)");
  }
  if (st.code() == StatusCode::kProtocolError) {
    st = Status::ProtocolError("not a Zabbix API at " + endpoint_ + ": " + st.message());
  }
  if (ShouldRelogin(*r, st)) return Relogin(r);
  Complete(r->id, st);
}

bool ApiClient::Impl::ShouldRelogin(const Request& r, const Status& st) const {
  return st.code() == StatusCode::kRejected && !r.relogged && wire::NeedsAuth(r.method) &&
         config_.token.empty() && !config_.user.empty() && !auth_.empty() &&
         st.message().find("re-login") != std::string::npos;
}

// The session ended (Zabbix logs idle sessions out): log in again once, then resend every call
// that was refused meanwhile.
void ApiClient::Impl::Relogin(Request* r) {
  relogin_waiters_.push_back(r->id);
  if (relogin_running_) return;
  relogin_running_ = true;
  spdlog::info("[zabbix-api] {}: session ended, logging in again as {}", endpoint_, config_.user);
  Login([this](Status st) {
    relogin_running_ = false;
    std::vector<int64_t> waiters = std::move(relogin_waiters_);
    relogin_waiters_.clear();
    for (int64_t id : waiters) {
      auto it = pending_.find(id);
      if (it == pending_.end()) continue;
      if (!st.ok()) {
        Complete(id, st);
        continue;
      }
      it->second->relogged = true;
      it->second->attempt = 0;
      Send(it->second.get());
    }
  });
}

void ApiClient::Impl::Login(std::function<void(Status)> done) {
  // "user" became "username" in 5.4 and was removed in 6.4.
  const char* user_field = version_.major == 0 || version_.AtLeast(5, 4) ? "username" : "user";
  json params = {{user_field, config_.user}, {"password", config_.password}};
  Call("user.login", std::move(params), [this, done](Result<json> r) {
    if (!r.ok()) return done(r.status());
    if (!r->is_string() || r->get<std::string>().empty()) {
      return done(Status::ProtocolError("zabbix api user.login at " + endpoint_ +
                                        ": no session id in the reply"));
    }
    auth_ = r->get<std::string>();
    done(Status::OK());
  });
}

void ApiClient::Impl::Connect(std::function<void(Status)> done) {
  Call("apiinfo.version", json::object(), [this, done](Result<json> r) {
    if (!r.ok()) return done(r.status());
    Result<ApiVersion> v =
        r->is_string() ? ApiVersion::Parse(r->get<std::string>())
                       : Result<ApiVersion>(Status::InvalidArgument(Printable(r->dump(), 60)));
    if (!v.ok()) {
      return done(Status::ProtocolError("not a Zabbix API at " + endpoint_ +
                                        ": apiinfo.version answered " + v.status().message()));
    }
    version_ = *v;
    if (!version_.AtLeast(6, 0)) {
      spdlog::warn(
          "[zabbix-api] {}: Zabbix {} is older than 6.0, the oldest version trapline "
          "supports",
          endpoint_, version_.ToString());
    }
    auto connected = [this, done](const char* how) {
      spdlog::info("[zabbix-api] {}: Zabbix {}, {}, token in {}", endpoint_, version_.ToString(),
                   how, version_.AtLeast(6, 4) ? "an Authorization header" : "the auth field");
      done(Status::OK());
    };
    if (!config_.token.empty()) {
      auth_ = config_.token;
      Call("host.get", {{"countOutput", true}}, [this, done, connected](Result<json> c) {
        if (c.ok()) return connected("API token accepted");
        const Status& st = c.status();
        if (st.code() != StatusCode::kRejected) return done(st);
        done(Status::Rejected("zabbix api at " + endpoint_ +
                              ": the configured token is not accepted: " + st.message()));
      });
    } else if (!config_.user.empty()) {
      Login([this, done, connected](Status st) {
        if (st.ok()) return connected(("logged in as " + config_.user).c_str());
        done(st);
      });
    } else {
      connected("no credentials");
    }
  });
}

void ApiClient::Impl::Complete(int64_t id, Result<json> result) {
  auto it = pending_.find(id);
  if (it == pending_.end()) return;
  std::unique_ptr<Request> r = std::move(it->second);
  pending_.erase(it);
  ReleaseEasy(r.get());
  ready_.emplace_back(std::move(r->done), std::move(result));
  // r->timer may be the timer whose callback runs now: its destruction is safe (uv.h).
}

void ApiClient::Impl::Deliver() {
  std::shared_ptr<bool> alive = alive_;
  while (!ready_.empty()) {
    auto item = std::move(ready_.front());
    ready_.pop_front();
    if (item.first) item.first(std::move(item.second));
    if (!*alive) return;  // the callback destroyed the client: its destructor delivered the rest
  }
}

Status ApiClient::Impl::Clean(const Status& st) const {
  std::string msg = Scrub(st.message(), {&config_.password, &config_.token, &auth_});
  return msg == st.message() ? st : MakeStatus(st.code(), std::move(msg));
}

// --------------------------------------------------------------------------------------------
// ApiClient

ApiClient::ApiClient(uv_loop_t* loop, ApiConfig config)
    : impl_(std::make_unique<Impl>(loop, std::move(config))) {}
ApiClient::~ApiClient() = default;

void ApiClient::Connect(std::function<void(Status)> done) { impl_->Connect(std::move(done)); }
void ApiClient::Call(const std::string& method, json params, Callback done) {
  impl_->Call(method, std::move(params), std::move(done));
}
const ApiVersion& ApiClient::version() const { return impl_->version(); }
int64_t ApiClient::calls() const { return impl_->calls(); }
const std::map<std::string, int64_t>& ApiClient::calls_by_method() const {
  return impl_->calls_by_method();
}
int ApiClient::max_in_flight() const { return impl_->max_in_flight(); }
int ApiClient::max_sockets() const { return impl_->max_sockets(); }

// --------------------------------------------------------------------------------------------
// BlockingApi

struct BlockingApi::State {
  Loop loop;  // declared first: destroyed after the client, and runs its close callbacks
  std::unique_ptr<ApiClient> client;

  // Runs the loop until *slot is filled. The slot is shared with the callback, so a callback
  // that comes late (it cannot, but) never writes into a dead frame.
  template <typename T>
  T Wait(const std::shared_ptr<std::optional<T>>& slot, const char* what) {
    while (!slot->has_value()) {
      if (uv_run(loop.get(), UV_RUN_ONCE) == 0 && !slot->has_value()) {
        return Status::Internal(std::string("zabbix api ") + what +
                                ": the event loop ran out of work before the call completed");
      }
    }
    return std::move(**slot);
  }
};

BlockingApi::BlockingApi(ApiConfig config) : state_(std::make_unique<State>()) {
  state_->client = std::make_unique<ApiClient>(state_->loop.get(), std::move(config));
}

BlockingApi::~BlockingApi() { state_->client.reset(); }

Status BlockingApi::Connect() {
  auto slot = std::make_shared<std::optional<Status>>();
  state_->client->Connect([slot](Status st) { *slot = std::move(st); });
  return state_->Wait(slot, "connect");
}

Result<json> BlockingApi::Call(const std::string& method, json params) {
  auto slot = std::make_shared<std::optional<Result<json>>>();
  state_->client->Call(method, std::move(params), [slot](Result<json> r) { *slot = std::move(r); });
  return state_->Wait(slot, method.c_str());
}

const ApiVersion& BlockingApi::version() const { return state_->client->version(); }
int64_t BlockingApi::calls() const { return state_->client->calls(); }
const std::map<std::string, int64_t>& BlockingApi::calls_by_method() const {
  return state_->client->calls_by_method();
}

}  // namespace trapline::zabbix
