#pragma once
// Shared by the HTTP API's translation units (http_api.cc, and the discovery, session and
// panel routes in their own files): request-body checking, SQL fragments, registry answers,
// and HttpApi::Call. Not a public header: nothing outside coordinator/ includes it.

#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/http_server.h"
#include "common/pg_client.h"
#include "common/status.h"
#include "coordinator/http_api.h"

namespace trapline::coordinator {

// One request being answered: counts its status once, then answers.
class HttpApi::Call {
 public:
  Call(HttpApi* api, std::shared_ptr<bool> alive, std::string label, HttpServer::Responder r,
       std::string actor, bool admin = false)
      : api_(api),
        alive_(std::move(alive)),
        label_(std::move(label)),
        responder_(std::move(r)),
        actor_(std::move(actor)),
        admin_(admin) {}

  // Whether the caller has the admin role (the API token has every right). Routes open to
  // operators check it where the body decides: where credentials are sent (a host's address,
  // a service's URI or credential profile, a clone, a probe with a profile) is an admin's call,
  // or an operator could point a profile's secret at a machine of their own.
  bool admin() const { return admin_; }
  // The 403 for an operator doing what needs an admin, naming what.
  Status NeedsAdmin(std::string_view what) const {
    return Status::Rejected(std::string(what) + " needs the admin role (it decides where "
                            "credentials are sent)");
  }

  // Who makes the request, for the audit log: the signed-in user's name, or the API token's
  // actor ([http] options: "api").
  const std::string& actor() const { return actor_; }

  void Send(Result<HttpResponse> res) const {
    if (!responder_.pending()) return;
    int status = res.ok() ? res->status : HttpStatusFor(res.status().code());
    if (*alive_) ++api_->requests_[{label_, status}];
    responder_.Send(std::move(res));
  }

 private:
  HttpApi* api_;
  std::shared_ptr<bool> alive_;
  std::string label_;
  HttpServer::Responder responder_;
  std::string actor_;
  bool admin_ = false;
};

namespace api {

using nlohmann::json;

constexpr size_t kMaxNameBytes = 128;
constexpr size_t kMaxGroupBytes = 255;
constexpr size_t kMaxAddressBytes = 255;
constexpr size_t kMaxGroups = 64;
constexpr int kMaxJsonDepth = 16;
constexpr double kMaxWeight = 1e6;

bool IsAlnum(char c);
// A short, printable rendering of untrusted text for an error message.
std::string Shown(std::string_view s);
// `s` is 1..max bytes of letters, digits, `extra` (and inner spaces when allowed).
Status CheckChars(std::string_view s, std::string_view what, size_t max, std::string_view extra,
                  bool inner_space);
// The deepest nesting of arrays and objects in `body`, stopping early past `limit`.
int JsonDepth(std::string_view body, int limit);
// The body as a JSON object whose keys are all in `known` (depth-limited, no exceptions).
Result<json> ParseObject(std::string_view body, std::initializer_list<std::string_view> known);
Result<bool> GetBool(const json& j, const char* key);
Result<std::vector<std::string>> GetGroups(const json& j);  // j["groups"], validated
Result<std::string> GetAddress(const json& j);              // j["address"], validated
int DaysInMonth(int y, int m);
int64_t DaysFromCivil(int64_t y, int64_t m, int64_t d);

// SQL fragments. s: services, cp: credential_profiles, t: tasks, c: collectors.
extern const char* const kUriMasked;     // s.uri with a password masked
extern const char* const kServiceJoins;  // s LEFT JOIN cp, t, c
extern const char* const kAudit;         // "INSERT INTO audit_log (actor, action, ...) "
std::string HostObject(const std::string& h);         // json_build_object of hosts row h
std::string MaintenanceObject(const std::string& h);  // desired vs applied
std::string ServiceObject(const std::string& host_expr);

pg::Value Opt(const std::optional<std::string>& v);
pg::Value OptBool(const std::optional<bool>& v);
std::string Bool(bool v);
std::string FormatDouble(double v);

// The first column of the first row: the JSON document the statement built (404 with
// `not_found` when there is no row and it is given).
Result<HttpResponse> JsonOf(const pg::Rows& rows, int status = 200,
                            std::string_view not_found = {});
const pg::Value& Cell(const pg::Rows& rows, size_t col);
// The registry's error as an answer: unreachable 503, a constraint 409, bad data 400.
HttpResponse RegistryError(const Status& st);

}  // namespace api
}  // namespace trapline::coordinator
