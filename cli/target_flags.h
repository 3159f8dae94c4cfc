#pragma once
// The flags that say how to reach one target, shared by `probe` and `sync`, and a short
// connection that collects the entities a plugin finds there.

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

#include "collector/target.h"
#include "common/status.h"
#include "plugins/builtin.h"

namespace trapline::cli {

struct TargetFlags {
  std::string uri;
  std::string plugin;  // default: from the URI's scheme
  std::string identity;
  std::string identity_passphrase;
  std::string identity_passphrase_file;
  bool use_agent = false;
  std::string known_hosts;
  bool trust_on_first_use = false;
  std::string password_file;
  std::vector<std::string> options;  // plugin options key=value
};

// Adds the URI argument (required unless `uri_optional`) and the access flags.
void AddTargetFlags(CLI::App* cmd, TargetFlags* f, bool uri_optional = false);

// The plugin for the flags (--plugin or the URI scheme), or InvalidArgument.
Result<const plugins::PluginInfo*> ResolvePlugin(const TargetFlags& f);

// A TargetConfig for the flags; `host` "" = the URI's host.
Result<TargetConfig> ToTargetConfig(const TargetFlags& f, const plugins::PluginInfo& plugin,
                                    const std::string& host, double period_s);

// "host" of a URI ("ssh://u@web1:22" -> "web1").
std::string UriHost(const std::string& uri);

// Connects, samples for up to `seconds` (stopping after the second tick with data) and
// returns the entities found. The first connection failure is returned with its reason.
Result<std::vector<plugins::Entity>> DiscoverEntities(const TargetConfig& config, double seconds);

}  // namespace trapline::cli
