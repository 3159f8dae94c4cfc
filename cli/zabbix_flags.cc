#include "cli/zabbix_flags.h"

#include <cstdlib>

namespace trapline::cli {

namespace {
std::string FlagOrEnv(const std::string& flag, const char* var) {
  if (!flag.empty()) return flag;
  const char* v = std::getenv(var);
  return v == nullptr ? "" : v;
}
}  // namespace

void AddZabbixFlags(CLI::App* cmd, ZabbixFlags* f) {
  cmd->add_option("--zabbix-url", f->url, "Zabbix frontend URL, e.g. https://zabbix.example.com (env TRAPLINE_ZABBIX_URL)");
  cmd->add_option("--zabbix-user", f->user, "Zabbix API user (env TRAPLINE_ZABBIX_USER)");
  cmd->add_option("--zabbix-password", f->password,
                  "Password of the API user; prefer env TRAPLINE_ZABBIX_PASSWORD (not visible in ps)");
  cmd->add_option("--zabbix-token", f->token, "Zabbix API token; prefer env TRAPLINE_ZABBIX_TOKEN");
  cmd->add_option("--zabbix-timeout", f->timeout_s, "Seconds per API request")
      ->check(CLI::Range(0.1, 3600.0))
      ->capture_default_str();
}

Result<zabbix::ApiConfig> ToApiConfig(const ZabbixFlags& f) {
  zabbix::ApiConfig c;
  c.url = FlagOrEnv(f.url, "TRAPLINE_ZABBIX_URL");
  c.user = FlagOrEnv(f.user, "TRAPLINE_ZABBIX_USER");
  c.password = FlagOrEnv(f.password, "TRAPLINE_ZABBIX_PASSWORD");
  c.token = FlagOrEnv(f.token, "TRAPLINE_ZABBIX_TOKEN");
  c.timeout_s = f.timeout_s;
  if (c.url.empty()) return Status::InvalidArgument("no Zabbix URL: give --zabbix-url or set TRAPLINE_ZABBIX_URL");
  if (c.token.empty() && (c.user.empty() || c.password.empty())) {
    return Status::InvalidArgument(
        "no Zabbix credentials: give --zabbix-token (or TRAPLINE_ZABBIX_TOKEN), or --zabbix-user and "
        "--zabbix-password (or TRAPLINE_ZABBIX_USER and TRAPLINE_ZABBIX_PASSWORD)");
  }
  return c;
}

}  // namespace trapline::cli
