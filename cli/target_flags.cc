#include "cli/target_flags.h"

#include <csignal>
#include <set>

#include "collector/collector.h"
#include "common/uv.h"

namespace trapline::cli {

void AddTargetFlags(CLI::App* cmd, TargetFlags* f, bool uri_optional) {
  auto* uri = cmd->add_option("uri", f->uri,
                              "ssh://user@host:port, postgresql://user@host:port/db, "
                              "redis://[user[:password]@]host:port");
  if (!uri_optional) uri->required();
  cmd->add_option("--plugin", f->plugin, "Plugin (default: from the URI scheme)");
  cmd->add_option("-i,--identity", f->identity, "SSH private key file (ed25519 or RSA)");
  cmd->add_option("--passphrase", f->identity_passphrase,
                  "Passphrase of the key (visible to other users in ps: prefer --passphrase-file)");
  cmd->add_option("--passphrase-file", f->identity_passphrase_file,
                  "File whose first line is the passphrase of the key");
  cmd->add_flag("--agent", f->use_agent, "Try ssh-agent first");
  cmd->add_option("--known-hosts", f->known_hosts, "known_hosts file to check the host key against");
  cmd->add_flag("--trust-on-first-use", f->trust_on_first_use, "Accept and record an unknown host key");
  cmd->add_option("--password-file", f->password_file,
                  "File whose first line is the password (PostgreSQL, Redis)");
  cmd->add_option("-o,--option", f->options, "Plugin option key=value (repeatable)");
}

Result<const plugins::PluginInfo*> ResolvePlugin(const TargetFlags& f) {
  const plugins::PluginInfo* plugin =
      f.plugin.empty() ? plugins::PluginForUri(f.uri) : plugins::FindPlugin(f.plugin);
  if (plugin == nullptr) {
    return Status::InvalidArgument(
        f.plugin.empty() ? "no plugin for '" + RedactUri(f.uri) + "' (use ssh://, postgresql://, redis:// or --plugin)"
                         : "no plugin called '" + f.plugin + "' (linux, postgresql, redis; trapline "
                           "for a collector's own host, with sync)");
  }
  return plugin;
}

std::string UriHost(const std::string& uri) {
  size_t start = uri.find("://");
  start = start == std::string::npos ? 0 : start + 3;
  size_t at = uri.find('@', start);
  size_t slash = uri.find('/', start);
  if (at != std::string::npos && (slash == std::string::npos || at < slash)) start = at + 1;
  size_t end = uri.find_first_of(":/?", start);
  if (start < uri.size() && uri[start] == '[') end = uri.find(']', start) + 1;
  return uri.substr(start, end == std::string::npos ? std::string::npos : end - start);
}

Result<TargetConfig> ToTargetConfig(const TargetFlags& f, const plugins::PluginInfo& plugin,
                                    const std::string& host, double period_s) {
  TargetConfig tc;
  tc.uri = f.uri;
  tc.plugin = std::string(plugin.name);
  tc.host = host.empty() ? UriHost(f.uri) : host;
  tc.identity = f.identity;
  tc.identity_passphrase = f.identity_passphrase;
  tc.identity_passphrase_file = f.identity_passphrase_file;
  tc.use_agent = f.use_agent;
  tc.known_hosts = f.known_hosts;
  tc.trust_on_first_use = f.trust_on_first_use;
  tc.password_file = f.password_file;
  tc.period_s = period_s;
  for (const auto& kv : f.options) {
    size_t eq = kv.find('=');
    if (eq == std::string::npos) return Status::InvalidArgument("--option '" + kv + "' is not key=value");
    tc.options[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return tc;
}

Result<std::vector<plugins::Entity>> DiscoverEntities(const TargetConfig& config, double seconds) {
  Loop loop;
  std::vector<plugins::Entity> entities;
  std::set<std::string> seen;
  int ticks = 0;
  Status failure;
  auto made = MakeTarget(loop.get(), config, [&](ZbxTime, plugins::ParseResult r) {
    for (auto& e : r.entities) {
      if (seen.insert(e.kind + '\0' + e.name).second) entities.push_back(std::move(e));
    }
    if (++ticks >= 2) loop.Stop();
  });
  if (!made.ok()) return made.status();
  std::unique_ptr<TargetBase> target = std::move(made).value();
  target->set_on_state([&](const TargetBase& t) {
    if (!t.state().connected && !t.state().last_error.empty()) {
      failure = Status::Unavailable(RedactUri(config.uri) + ": " + t.state().last_error);
      loop.Stop();
    }
  });
  Timer deadline(loop.get());
  deadline.Start(static_cast<uint64_t>(seconds * 1000), 0, [&] { loop.Stop(); });
  SignalWatcher on_int(loop.get(), SIGINT, [&] { loop.Stop(); });
  target->Start();
  loop.Run();
  target.reset();
  if (!failure.ok()) return failure;
  if (ticks == 0) {
    return Status::Timeout(RedactUri(config.uri) + ": no data within " + std::to_string(seconds) + " s");
  }
  return entities;
}

}  // namespace trapline::cli
