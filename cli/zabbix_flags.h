#pragma once
// How a command reaches the Zabbix API: --zabbix-url, --zabbix-user with --zabbix-password,
// or --zabbix-token; each also from the environment (TRAPLINE_ZABBIX_URL, _USER, _PASSWORD,
// _TOKEN) so that secrets stay out of `ps`. A flag wins over its variable.

#include <CLI/CLI.hpp>

#include <string>

#include "common/status.h"
#include "zabbix-sync/api_client.h"

namespace trapline::cli {

struct ZabbixFlags {
  std::string url;
  std::string user;
  std::string password;
  std::string token;
  double timeout_s = 30;
};

void AddZabbixFlags(CLI::App* cmd, ZabbixFlags* f);
// Fills what the flags left empty from the environment and checks that there is a URL and
// either a token or a user with a password.
Result<zabbix::ApiConfig> ToApiConfig(const ZabbixFlags& f);

}  // namespace trapline::cli
