// `trapline probe URI`: connects to one target as a collector would, samples it for a few
// seconds and prints what it finds (like zabbix_get, for operators checking access).

#include <csignal>
#include <cstdio>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/target_flags.h"
#include "collector/collector.h"
#include "collector/send_input.h"
#include "common/log.h"
#include "common/uv.h"
#include "plugins/builtin.h"

namespace trapline::cli {

namespace {

struct ProbeFlags {
  TargetFlags target;
  double seconds = 3;
  double period = 1;
  std::string host;
  std::string format = "json";
  std::string log_level = "error";
};

int RunProbe(const ProbeFlags& f) {
  if (Status st = InitLogging(f.log_level); !st.ok()) {
    std::fprintf(stderr, "trapline probe: %s\n", st.message().c_str());
    return 1;
  }
  auto resolved = ResolvePlugin(f.target);
  if (!resolved.ok()) {
    std::fprintf(stderr, "trapline probe: %s\n", resolved.status().message().c_str());
    return 1;
  }
  const plugins::PluginInfo* plugin = *resolved;
  auto made_config = ToTargetConfig(f.target, *plugin, f.host, f.period);
  if (!made_config.ok()) {
    std::fprintf(stderr, "trapline probe: %s\n", made_config.status().message().c_str());
    return 1;
  }
  const TargetConfig& tc = *made_config;

  // Counters are shown as per-second rates, as the collector sends them (before compression).
  std::map<std::string, const plugins::MetricSpec*, std::less<>> specs;
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
      std::fprintf(stderr, "trapline probe: %s: %s\n", RedactUri(tc.uri).c_str(), t.state().last_error.c_str());
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
    std::fprintf(stderr, "trapline probe: %s: no data within %.1f s\n", RedactUri(tc.uri).c_str(), f.seconds);
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
  AddTargetFlags(cmd, &f->target);
  cmd->add_option("--seconds", f->seconds, "How long to sample")->check(CLI::Range(0.1, 3600.0))->capture_default_str();
  cmd->add_option("--period", f->period, "Seconds between samples")->check(CLI::Range(0.1, 3600.0))->capture_default_str();
  cmd->add_option("--host", f->host, "Zabbix host name for --format sender (default: the URI's host)");
  cmd->add_option("--format", f->format, "json: one JSON object per line; sender: zabbix_sender input lines")
      ->check(CLI::IsMember({"json", "sender"}))
      ->capture_default_str();
  cmd->add_option("--log-level", f->log_level, "trace, debug, info, warn, error")->capture_default_str();
  return [f] { return RunProbe(*f); };
}

}  // namespace trapline::cli
