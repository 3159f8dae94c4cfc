// The admin panel's static files (issue 7): [http] ui_dir, the output of `npm run build` in
// ui/ (ui/dist), served at "/" by the API's HTTP server. The router's longest prefix wins, so
// /api/v1/... and /metrics keep their routes and everything else is looked up in ui_dir.
// The panel uses hash routes (#/hosts/NAME), so no fallback to index.html is needed.
//
// Content-Security-Policy: ServeDirectory sets no extra headers, so the policy is a <meta
// http-equiv> in ui/index.html (default-src 'self'; no inline scripts; no framing is not
// expressible there).

#include <sys/stat.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include "coordinator/http_api.h"

namespace trapline::coordinator {

std::string CheckUiDir(const std::string& dir) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return "'" + dir + "' is not a folder (build the panel: scripts/build.sh, or cd ui && npm ci && npm run build)";
  }
  std::string index = dir + "/index.html";
  if (::access(index.c_str(), R_OK) != 0) {
    return "'" + dir + "' has no readable index.html (build the panel: cd ui && npm ci && npm run build)";
  }
  return "";
}

void HttpApi::RegisterUi() {
  if (options_.ui_dir.empty()) return;
  if (Status st = server_->ServeDirectory("/", options_.ui_dir); !st.ok()) {
    spdlog::error("[http] admin panel not served: [http] ui_dir {}", st.message());
    return;
  }
  spdlog::info("[http] admin panel from {} at /", options_.ui_dir);
}

}  // namespace trapline::coordinator
