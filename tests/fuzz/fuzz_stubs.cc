// The fuzzer links discovery.cc and the API's helpers (http_api_util.cc) without the HTTP
// server and the routes: the symbols the other helpers name are never reached from the
// parser, and abort if they ever are.
#include <cstdlib>

#include "common/http_server.h"
#include "coordinator/http_api.h"

namespace trapline {
HttpResponse HttpResponse::Error(int, std::string_view) { std::abort(); }
HttpResponse HttpResponse::Json(std::string, int) { std::abort(); }
namespace coordinator {
Status ValidateGroup(std::string_view) { std::abort(); }
Status ValidateAddress(std::string_view) { std::abort(); }
}  // namespace coordinator
}  // namespace trapline
