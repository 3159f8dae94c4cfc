// `trapline probe URI`: connects to one target as a collector would, samples it for a few
// seconds and prints what it finds (like zabbix_get, for operators checking access).

#include <csignal>
#include <cstdio>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "collector/collector.h"
#include "collector/send_input.h"
#include "common/log.h"
#include "common/uv.h"
#include "plugins/builtin.h"

namespace trapline::cli {

namespace {

struct ProbeFlags {
  std::string uri;
  std::string plugin;
  double seconds = 3;
  double period = 1;
  std::string identity;
  std::string identity_passphrase;
  bool use_agent = false;
  std::string known_hosts;
  bool trust_on_first_use = false;
  std::string password_file;
  std::string host;
  std::string format = "json";
  std::vector<std::string> options;  // plugin options key=value
  std::string log_level = "error";
};

// "host" of a URI, for the Zabbix host name when none is given.
std::string UriHost(const std::string& uri) {
  size_t start = uri.find("://");
  start = start == std::string::npos ? 0 : start + 3;
  size_t at = uri.find('@', start);
  size_t slash = uri.find('/', start);
  if (at != std::string::npos && (slash == std::string::npos || at < slash)) start = at + 1;
  size_t end = uri.find_first_of(":/?", start);
  if (!uri.empty() && start < uri.size() && uri[start] == '[') end = uri.find(']', start) + 1;
  return uri.substr(start, end == std::string::npos ? std::string::npos : end - start);
}

int RunProbe(const ProbeFlags& f) {
  if (Status st = InitLogging(f.log_level); !st.ok()) {
    std::fprintf(stderr, "trapline probe: %s\n", st.message().c_str());
    return 1;
  }
  const plugins::PluginInfo* plugin =
      f.plugin.empty() ? plugins::PluginForUri(f.uri) : plugins::FindPlugin(f.plugin);
  if (plugin == nullptr) {
    std::fprintf(stderr, "trapline probe: no plugin for '%s' (use ssh://, postgresql://, redis:// or --plugin)\n",
                 f.uri.c_str());
    return 1;
  }
  TargetConfig tc;
  tc.uri = f.uri;
  tc.plugin = std::string(plugin->name);
  tc.host = f.host.empty() ? UriHost(f.uri) : f.host;
  tc.identity = f.identity;
  tc.identity_passphrase = f.identity_passphrase;
  tc.use_agent = f.use_agent;
  tc.known_hosts = f.known_hosts;
  tc.trust_on_first_use = f.trust_on_first_use;
  tc.password_file = f.password_file;
  tc.period_s = f.period;
  for (const auto& kv : f.options) {
    size_t eq = kv.find('=');
    if (eq == std::string::npos) {
      std::fprintf(stderr, "trapline probe: --option '%s' is not key=value\n", kv.c_str());
      return 1;
    }
    tc.options[kv.substr(0, eq)] = kv.substr(eq + 1);
  }

  // Counters are shown as per-second rates, as the collector sends them (before compression).
  std::map<std::string, const plugins::MetricSpec*> specs;
  for (const auto& m : plugin->metrics()) specs[m.name] = &m;
  std::map<std::string, CounterRate> rates;
  std::set<std::string> entities_seen;
  bool json = f.format == "json";

  Loop loop;
  int exit_code = 0;
  bool got_data = false;
  std::unique_ptr<TargetBase> target;
  auto made = MakeTarget(loop.get(), tc, [&](ZbxTime t, plugins::ParseResult r) {
    got_data = true;
    for (const auto& e : r.entities) {
      if (!entities_seen.insert(e.kind + '\0' + e.name).second) continue;
      if (json) {
        nlohmann::json j = {{"entity", e.kind}, {"name", e.name}};
        for (const auto& [k, v] : e.labels) j[k] = v;
        std::printf("%s\n", j.dump().c_str());
      }
    }
    for (const auto& w : r.warnings) spdlog::warn("[probe] {}", w);
    for (const auto& reading : r.readings) {
      auto spec = specs.find(reading.metric);
      if (spec == specs.end()) continue;
      std::string key = plugins::ItemKey(plugin->name, reading.metric, reading.entity);
      double v = reading.value;
      if (spec->second->kind == plugins::MetricKind::kCounter) {
        double rate;
        if (!rates[key].Update(t, reading.value, &rate)) continue;
        v = rate * spec->second->rate_scale;
      }
      bool text = spec->second->value_type == plugins::ValueType::kText;
      if (json) {
        nlohmann::json j = {{"key", key}, {"clock", t.clock}, {"ns", t.ns}};
        if (text) {
          j["value"] = reading.text;
        } else {
          j["value"] = v;
        }
        std::printf("%s\n", j.dump().c_str());
      } else {
        char buf[32];
        std::snprintf(buf, sizeof(buf), "%.17g", v);
        std::printf("%s %s %lld %d %s\n", QuoteSendField(tc.host).c_str(),
                    QuoteSendField(key).c_str(), static_cast<long long>(t.clock), t.ns,
                    QuoteSendField(text ? reading.text : std::string(buf)).c_str());
      }
    }
    std::fflush(stdout);
  });
  if (!made.ok()) {
    std::fprintf(stderr, "trapline probe: %s\n", made.status().message().c_str());
    return 1;
  }
  target = std::move(made).value();
  // The first failure ends the probe: an operator wants the reason, not retries.
  target->set_on_state([&](const TargetBase& t) {
    if (!t.state().connected && !t.state().last_error.empty()) {
      std::fprintf(stderr, "trapline probe: %s: %s\n", RedactUri(f.uri).c_str(), t.state().last_error.c_str());
      exit_code = 1;
      loop.Stop();
    }
  });
  Timer deadline(loop.get());
  deadline.Start(static_cast<uint64_t>(f.seconds * 1000), 0, [&] { loop.Stop(); });
  SignalWatcher on_int(loop.get(), SIGINT, [&] { loop.Stop(); });
  target->Start();
  loop.Run();
  target.reset();
  if (exit_code == 0 && !got_data) {
    std::fprintf(stderr, "trapline probe: %s: no data within %.1f s\n", RedactUri(f.uri).c_str(), f.seconds);
    exit_code = 1;
  }
  return exit_code;
}

}  // namespace

Runner AddProbeCommand(CLI::App& app) {
  auto f = std::make_shared<ProbeFlags>();
  CLI::App* cmd = app.add_subcommand(
      "probe",
      "Connect to one target as a collector would and print what it finds (entities and "
      "samples); exits non-zero with the reason when it cannot connect or authenticate");
  cmd->add_option("uri", f->uri, "ssh://user@host:port, postgresql://user@host:port/db, redis://[user[:password]@]host:port")
      ->required();
  cmd->add_option("--plugin", f->plugin, "Plugin (default: from the URI scheme)");
  cmd->add_option("--seconds", f->seconds, "How long to sample")->check(CLI::Range(0.1, 3600.0))->capture_default_str();
  cmd->add_option("--period", f->period, "Seconds between samples")->check(CLI::Range(0.1, 3600.0))->capture_default_str();
  cmd->add_option("-i,--identity", f->identity, "SSH private key file (ed25519 or RSA)");
  cmd->add_option("--passphrase", f->identity_passphrase, "Passphrase of the key");
  cmd->add_flag("--agent", f->use_agent, "Try ssh-agent first");
  cmd->add_option("--known-hosts", f->known_hosts, "known_hosts file to check the host key against");
  cmd->add_flag("--trust-on-first-use", f->trust_on_first_use, "Accept and record an unknown host key");
  cmd->add_option("--password-file", f->password_file, "File whose first line is the password (PostgreSQL, Redis)");
  cmd->add_option("--host", f->host, "Zabbix host name for --format sender (default: the URI's host)");
  cmd->add_option("--format", f->format, "json: one JSON object per line; sender: zabbix_sender input lines")
      ->check(CLI::IsMember({"json", "sender"}))
      ->capture_default_str();
  cmd->add_option("-o,--option", f->options, "Plugin option key=value (repeatable)");
  cmd->add_option("--log-level", f->log_level, "trace, debug, info, warn, error")->capture_default_str();
  return [f] { return RunProbe(*f); };
}

}  // namespace trapline::cli
