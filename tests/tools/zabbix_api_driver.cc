// zabbix_api_driver: runs Zabbix API calls through zabbix-sync's client for the integration
// test (tests/integration/test_zabbix_api.py).
//
//   zabbix_api_driver --url U [--user X --password-env VAR | --token-env VAR] [--timeout S]
//       [--retries N] [--retry-base S] [--no-verify-tls] [--ca-file F] [--log-level L]
//       [--sleep S] METHOD JSONPARAMS [METHOD JSONPARAMS ...]
//     Connects (BlockingApi: version, login or token check), then runs the calls one after the
//     other. stdout, JSON lines:
//       {"connected": {"version": "6.0.14"}}
//       {"method": M, "result": R}                          one per call
//       {"calls": n, "calls_by_method": {...}}              at the end
//     The first failure ends the run: exit 1, "error: <reason>" on stderr. --sleep S waits S
//     seconds before each call after the first (a test ends the session meanwhile).
//
//   zabbix_api_driver --url U ... --concurrent N METHOD JSONPARAMS
//     Connects an ApiClient on a loop, fires N copies of the call at once, and prints one line
//     per answer ({"i": k, "method": M, "result": R} or {"i": k, "error": E}), then
//     {"concurrent": N, "answered": a, "failed": f, "max_in_flight": m, "max_sockets": s,
//      "seconds": t}. Exit 0 when every call succeeded.
//
// Secrets come from environment variables, never from the command line (which `ps` shows).

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/log.h"
#include "common/uv.h"
#include "zabbix-sync/api_client.h"

namespace {

using nlohmann::json;
using trapline::Result;
using trapline::Status;
using trapline::zabbix::ApiClient;
using trapline::zabbix::ApiConfig;
using trapline::zabbix::BlockingApi;

void Print(const json& j) {
  std::printf("%s\n", j.dump().c_str());
  std::fflush(stdout);
}

int Fail(const Status& st) {
  std::fprintf(stderr, "error: %s\n", st.ToString().c_str());
  return 1;
}

int Usage() {
  std::fprintf(
      stderr,
      "usage: zabbix_api_driver --url U [--user X --password-env VAR | --token-env VAR] "
      "[--timeout S] [--retries N] [--retry-base S] [--no-verify-tls] [--ca-file F] "
      "[--concurrent N] [--sleep S] [--log-level L] METHOD JSONPARAMS [METHOD JSONPARAMS ...]\n");
  return 2;
}

int RunSequential(ApiConfig config, const std::vector<std::pair<std::string, json>>& calls,
                  double sleep_s) {
  BlockingApi api(std::move(config));
  Status st = api.Connect();
  if (!st.ok()) return Fail(st);
  Print({{"connected", {{"version", api.version().ToString()}}}});
  bool first = true;
  for (const auto& [method, params] : calls) {
    if (!first && sleep_s > 0) std::this_thread::sleep_for(std::chrono::duration<double>(sleep_s));
    first = false;
    Result<json> r = api.Call(method, params);
    if (!r.ok()) return Fail(r.status());
    Print({{"method", method}, {"result", *r}});
  }
  Print({{"calls", api.calls()}, {"calls_by_method", api.calls_by_method()}});
  return 0;
}

int RunConcurrent(ApiConfig config, int n, const std::string& method, const json& params) {
  trapline::Loop loop;
  int rc = 0;
  // Declared before the client: its destructor runs the callbacks of calls still pending.
  std::optional<Status> connected;
  int answered = 0, failed = 0;
  {
    ApiClient client(loop.get(), std::move(config));
    client.Connect([&](Status st) { connected = std::move(st); });
    while (!connected && uv_run(loop.get(), UV_RUN_ONCE) != 0) {
    }
    if (!connected || !connected->ok()) {
      return Fail(connected ? *connected : Status::Internal("connect never completed"));
    }
    Print({{"connected", {{"version", client.version().ToString()}}}});
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < n; ++i) {
      client.Call(method, params, [&, i](Result<json> r) {
        ++answered;
        if (r.ok()) {
          Print({{"i", i}, {"method", method}, {"result", *r}});
        } else {
          ++failed;
          Print({{"i", i}, {"error", r.status().ToString()}});
        }
      });
    }
    while (answered < n && uv_run(loop.get(), UV_RUN_ONCE) != 0) {
    }
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    Print({{"concurrent", n},
           {"answered", answered},
           {"failed", failed},
           {"max_in_flight", client.max_in_flight()},
           {"max_sockets", client.max_sockets()},
           {"calls", client.calls()},
           {"seconds", seconds}});
    rc = answered == n && failed == 0 ? 0 : 1;
  }
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  ApiConfig config;
  config.retries = 1;
  config.retry_base_s = 0.2;
  config.timeout_s = 30;
  std::string log_level = "warn";
  int concurrent = 0;
  double sleep_s = 0;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    auto env = [](const char* name) -> const char* {
      const char* v = name ? std::getenv(name) : nullptr;
      if (v == nullptr) std::fprintf(stderr, "environment variable %s is not set\n", name);
      return v;
    };
    const char* val = nullptr;
    if (a == "--no-verify-tls") {
      config.verify_tls = false;
    } else if (a.rfind("--", 0) == 0) {
      if ((val = next()) == nullptr) return Usage();
      if (a == "--url") {
        config.url = val;
      } else if (a == "--user") {
        config.user = val;
      } else if (a == "--password-env") {
        if ((val = env(val)) == nullptr) return 2;
        config.password = val;
      } else if (a == "--token-env") {
        if ((val = env(val)) == nullptr) return 2;
        config.token = val;
      } else if (a == "--timeout") {
        config.timeout_s = std::atof(val);
      } else if (a == "--retries") {
        config.retries = std::atoi(val);
      } else if (a == "--retry-base") {
        config.retry_base_s = std::atof(val);
      } else if (a == "--ca-file") {
        config.ca_file = val;
      } else if (a == "--concurrent") {
        concurrent = std::atoi(val);
      } else if (a == "--sleep") {
        sleep_s = std::atof(val);
      } else if (a == "--log-level") {
        log_level = val;
      } else {
        return Usage();
      }
    } else {
      positional.push_back(a);
    }
  }
  if (config.url.empty() || positional.size() % 2 != 0) return Usage();
  if (Status st = trapline::InitLogging(log_level); !st.ok()) return Fail(st);
  std::vector<std::pair<std::string, json>> calls;
  for (size_t i = 0; i < positional.size(); i += 2) {
    json params = json::parse(positional[i + 1], nullptr, false);
    if (params.is_discarded()) {
      return Fail(Status::InvalidArgument("params of " + positional[i] + " are not JSON"));
    }
    calls.emplace_back(positional[i], std::move(params));
  }
  if (concurrent > 0) {
    if (calls.size() != 1) return Usage();
    return RunConcurrent(std::move(config), concurrent, calls[0].first, calls[0].second);
  }
  return RunSequential(std::move(config), calls, sleep_s);
}
