#pragma once
// Errors are values (LevelDB style): every fallible call returns Status or Result<T>.
// No exception crosses a module boundary; exceptions are allowed only during start-up and
// config loading, and never through a C callback.

#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace trapline {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,  // bad input from a user, a file or a peer
  kNotFound,
  kIoError,          // local I/O: files, sockets
  kProtocolError,    // the peer answered something that is not its protocol
  kUnavailable,      // the peer cannot be reached now; retrying later may help
  kTimeout,
  kRejected,         // the peer understood and refused
  kUnauthenticated,  // who is asking is not known (no or invalid credentials): HTTP 401
  kInternal,
};

std::string_view StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK

  static Status OK() { return Status(); }
  static Status InvalidArgument(std::string msg) { return {StatusCode::kInvalidArgument, std::move(msg)}; }
  static Status NotFound(std::string msg) { return {StatusCode::kNotFound, std::move(msg)}; }
  static Status IoError(std::string msg) { return {StatusCode::kIoError, std::move(msg)}; }
  static Status ProtocolError(std::string msg) { return {StatusCode::kProtocolError, std::move(msg)}; }
  static Status Unavailable(std::string msg) { return {StatusCode::kUnavailable, std::move(msg)}; }
  static Status Timeout(std::string msg) { return {StatusCode::kTimeout, std::move(msg)}; }
  static Status Rejected(std::string msg) { return {StatusCode::kRejected, std::move(msg)}; }
  static Status Unauthenticated(std::string msg) {
    return {StatusCode::kUnauthenticated, std::move(msg)};
  }
  static Status Internal(std::string msg) { return {StatusCode::kInternal, std::move(msg)}; }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

  // "what: message", so a caller can say where an error came from without losing it.
  Status WithContext(std::string_view what) const;
  // "InvalidArgument: message" ("OK" when ok()).
  std::string ToString() const;

 private:
  Status(StatusCode code, std::string msg) : code_(code), message_(std::move(msg)) {}

  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

// Either a value or a non-OK Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {}  // NOLINT: implicit by design
  // REQUIRES: !status.ok() when constructing from a Status.

  bool ok() const { return v_.index() == 0; }
  const Status& status() const {
    static const Status kOkStatus;
    return ok() ? kOkStatus : std::get<1>(v_);
  }
  // REQUIRES: ok().
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace trapline

#define TRAPLINE_CONCAT_INNER(a, b) a##b
#define TRAPLINE_CONCAT(a, b) TRAPLINE_CONCAT_INNER(a, b)

#define TRAPLINE_RETURN_IF_ERROR(expr)            \
  do {                                            \
    ::trapline::Status _st = (expr);              \
    if (!_st.ok()) return _st;                    \
  } while (0)

#define TRAPLINE_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                   \
  if (!tmp.ok()) return tmp.status();                  \
  lhs = std::move(tmp).value()

#define TRAPLINE_ASSIGN_OR_RETURN(lhs, expr) \
  TRAPLINE_ASSIGN_OR_RETURN_IMPL(TRAPLINE_CONCAT(_result_, __LINE__), lhs, expr)
