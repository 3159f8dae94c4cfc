// `trapline send`: a drop-in for zabbix_sender (same flags, input format, summary lines and
// exit codes) that batches values and sends them over several connections at once.
//
// Differences, on purpose: a malformed input line is skipped and reported with its number
// (zabbix_sender stops at the first one); a value that Zabbix counts failed is traced to its
// host and key and reported.

#include <unistd.h>

#include <csignal>

#include <cstdio>
#include <cstring>
#include <string>

#include "cli/commands.h"
#include "collector/send_input.h"
#include "collector/sender.h"
#include "common/config.h"
#include "common/log.h"
#include "common/uv.h"

namespace trapline::cli {

namespace {

struct SendFlags {
  std::string server;
  int port = 10051;
  std::string host;
  std::string key;
  std::string value;
  std::string input;
  bool with_timestamps = false;
  bool with_ns = false;
  bool real_time = false;
  int verbose = 0;
  double timeout_s = 60;
  int connections = 4;
  int batch = 1000;
  bool compress = false;
  std::string spool_dir;
  double grace_s = 0;
  double retry_for_s = 0;
  int64_t memory_values = -1;
  std::string config;
  CLI::App* cmd = nullptr;  // to tell flags given from defaults
};

// Exit codes, as zabbix_sender: 0 all values processed, 2 some failed or skipped, 1 failure.
constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitPartial = 2;

// Reads the [sender] table of `path` over *opts. Keys the file does not set keep the one-shot
// defaults already in *opts (not the collector's): a one-shot sender must not drop what it
// read, nor retry rejected values for minutes, because the file did not mention it.
Status LoadSenderConfig(const std::string& path, SenderOptions* opts) {
  TRAPLINE_ASSIGN_OR_RETURN(ConfigTable file, ConfigTable::LoadFile(path));
  TRAPLINE_ASSIGN_OR_RETURN(ConfigTable * table, file.GetTable("sender"));
  TRAPLINE_ASSIGN_OR_RETURN(SenderOptions from_file, SenderOptions::FromConfig(table));
  TRAPLINE_RETURN_IF_ERROR(file.CheckKnown());
  if (!table->Has("memory_values")) from_file.memory_values = opts->memory_values;
  if (!table->Has("grace")) from_file.grace_ms = opts->grace_ms;
  if (!table->Has("retry_interval")) from_file.retry_interval_ms = opts->retry_interval_ms;
  *opts = from_file;
  return Status::OK();
}

int RunSend(const SendFlags& f) {
  if (Status st = InitLogging(f.verbose >= 2 ? "debug" : f.verbose == 1 ? "info" : "warn");
      !st.ok()) {
    std::fprintf(stderr, "trapline send: %s\n", st.message().c_str());
    return kExitFailure;
  }
  bool single = !f.key.empty() || !f.value.empty();
  if (single == !f.input.empty()) {
    std::fprintf(stderr, "trapline send: give either -k KEY -o VALUE (with -s HOST) or -i FILE\n");
    return kExitFailure;
  }
  if (single && (f.host.empty() || f.key.empty())) {
    std::fprintf(stderr, "trapline send: -k and -o need -s HOST\n");
    return kExitFailure;
  }
  if (f.with_ns && !f.with_timestamps) {
    std::fprintf(stderr, "trapline send: -N needs -T\n");
    return kExitFailure;
  }

  // Settings: defaults, then the config file's [sender] table, then flags given explicitly.
  SenderOptions opts;
  opts.memory_values = SIZE_MAX / 2;  // a one-shot sender keeps what it read unless told
  opts.retry_interval_ms = 1000;
  opts.grace_ms = 0;
  if (!f.config.empty()) {
    if (Status st = LoadSenderConfig(f.config, &opts); !st.ok()) {
      std::fprintf(stderr, "trapline send: %s\n", st.message().c_str());
      return kExitFailure;
    }
  }
  auto given = [&](const char* name) { return f.cmd->count(name) > 0; };
  if (given("--zabbix-server")) opts.server = f.server;
  if (given("--port")) opts.port = static_cast<uint16_t>(f.port);
  if (given("--connections")) opts.connections = f.connections;
  if (given("--batch")) opts.batch_values = static_cast<size_t>(f.batch);
  if (given("--compress")) opts.compress = f.compress;
  if (given("--timeout") || f.config.empty()) opts.timeout_ms = static_cast<uint64_t>(f.timeout_s * 1000);
  if (given("--memory-values")) opts.memory_values = static_cast<size_t>(f.memory_values);
  if (given("--spool")) opts.spool_dir = f.spool_dir;
  if (given("--grace")) opts.grace_ms = static_cast<uint64_t>(f.grace_s * 1000);
  if (f.real_time) opts.flush_interval_ms = 200;
  if (!given("--zabbix-server") && f.config.empty()) {
    std::fprintf(stderr, "trapline send: no Zabbix server: give -z SERVER or --config FILE\n");
    return kExitFailure;
  }

  Loop loop;
  Sender sender(loop.get(), opts);
  int64_t failed_at_server = 0;
  sender.set_on_reply([&](const std::string& peer, const SenderReply& r) {
    std::printf("Response from \"%s\": \"%s\"\n", peer.c_str(), r.info.c_str());
  });
  sender.set_on_reject([&](const std::string& host, const std::string& key, uint64_t n,
                           const std::string&) {
    failed_at_server += static_cast<int64_t>(n);
    std::fprintf(stderr, "trapline send: failed: host \"%s\" key \"%s\": %llu values\n",
                 host.c_str(), key.c_str(), static_cast<unsigned long long>(n));
  });
  if (Status st = sender.Start(); !st.ok()) {
    std::fprintf(stderr, "trapline send: %s\n", st.ToString().c_str());
    return kExitFailure;
  }

  Status outcome = Status::OK();
  // SIGTERM/SIGINT: stop reading and sending; what is undelivered stays in the spool (if any).
  bool interrupted = false;
  auto interrupt = [&] {
    outcome = Status::Unavailable("interrupted by a signal");
    interrupted = true;
    loop.Stop();
  };
  SignalWatcher on_term(loop.get(), SIGTERM, interrupt);
  SignalWatcher on_int(loop.get(), SIGINT, interrupt);
  auto drain = [&] {
    bool done = false;
    Timer deadline(loop.get());
    bool give_up = f.retry_for_s <= 0;
    if (!give_up) {
      deadline.Start(static_cast<uint64_t>(f.retry_for_s * 1000), 0, [&] {
        outcome = Status::Unavailable("zabbix " + sender.peer() + " not reached within --retry-for");
        done = true;
        loop.Stop();
      });
    }
    sender.Drain(give_up, [&](Status st) {
      if (!st.ok()) outcome = st;
      done = true;
      loop.Stop();
    });
    while (!done && !interrupted) loop.Run();
  };

  int64_t total = 0, skipped = 0;
  SendInputFormat format{f.with_timestamps, f.with_ns, f.host};
  auto take_line = [&](std::string_view sv) {
    ++total;
    if (!sv.empty() && sv.back() == '\n') sv.remove_suffix(1);
    auto v = ParseSendLine(sv, format);
    if (!v.ok()) {
      ++skipped;
      std::fprintf(stderr, "trapline send: [line %lld] %s (line skipped)\n",
                   static_cast<long long>(total), v.status().message().c_str());
      return;
    }
    sender.Enqueue(std::move(v).value());
  };

  if (single) {
    total = 1;
    sender.Enqueue(SenderValue{f.host, f.key, f.value, 0, 0, 0});
  } else if (f.input == "-" && StreamReader::IsPollableStream(STDIN_FILENO)) {
    // A pipe or terminal: read it on the loop, so values keep flowing (and Zabbix outages
    // are ridden out) while the writer takes its time.
    std::string partial;
    bool eof = false;
    StreamReader reader(loop.get(), STDIN_FILENO, [&](std::string_view chunk, bool at_eof, int st) {
      if (st < 0) outcome = UvError("reading stdin", st);
      size_t start = 0;
      for (size_t nl; (nl = chunk.find('\n', start)) != std::string_view::npos; start = nl + 1) {
        if (partial.empty()) {
          take_line(chunk.substr(start, nl - start));
        } else {
          partial.append(chunk.substr(start, nl - start));
          take_line(partial);
          partial.clear();
        }
      }
      partial.append(chunk.substr(start));
      if (f.real_time) sender.FlushNow();
      if (at_eof || st < 0) {
        if (!partial.empty()) take_line(partial);
        eof = true;
        loop.Stop();
      }
    });
    if (!reader.init_status().ok()) {
      std::fprintf(stderr, "trapline send: stdin: %s\n", reader.init_status().ToString().c_str());
      return kExitFailure;
    }
    while (!eof && !interrupted) loop.Run();
  } else {
    FILE* in = f.input == "-" ? stdin : std::fopen(f.input.c_str(), "r");
    if (in == nullptr) {
      std::fprintf(stderr, "trapline send: cannot open [%s]: %s\n", f.input.c_str(),
                   std::strerror(errno));
      return kExitFailure;
    }
    char* line = nullptr;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, in)) >= 0) {
      take_line(std::string_view(line, static_cast<size_t>(len)));
      if (total % static_cast<int64_t>(opts.batch_values) == 0) {
        uv_run(loop.get(), UV_RUN_NOWAIT);  // let replies come in while we read
      }
    }
    std::free(line);
    if (in != stdin) std::fclose(in);
  }
  if (outcome.ok()) drain();
  sender.Shutdown();

  SenderCounters c = sender.counters();
  if (f.verbose > 0) {
    std::fprintf(stderr,
                 "trapline send: processed=%llu rejected=%llu retried=%llu requests=%llu "
                 "request_errors=%llu spooled=%llu\n",
                 static_cast<unsigned long long>(c.sent), static_cast<unsigned long long>(c.rejected),
                 static_cast<unsigned long long>(c.retried), static_cast<unsigned long long>(c.requests),
                 static_cast<unsigned long long>(c.request_errors),
                 static_cast<unsigned long long>(c.spooled));
  }
  if (!outcome.ok()) {
    std::fprintf(stderr, "trapline send: %s\n", outcome.message().c_str());
    std::printf("Sending failed.%s\n", f.verbose < 2 ? " Use option -vv for more detailed output." : "");
    return kExitFailure;
  }
  std::printf("sent: %lld; skipped: %lld; total: %lld\n", static_cast<long long>(total - skipped),
              static_cast<long long>(skipped), static_cast<long long>(total));
  if (c.dropped > 0) {
    // Over the memory bound without a spool, or past the spool's cap: never delivered.
    std::fprintf(stderr,
                 "trapline send: %llu values dropped (more than the memory bound of %zu values "
                 "queued and no spool, or the spool full); use --spool DIR to keep them\n",
                 static_cast<unsigned long long>(c.dropped), opts.memory_values);
  }
  return (failed_at_server > 0 || skipped > 0 || c.dropped > 0) ? kExitPartial : kExitOk;
}

}  // namespace

Runner AddSendCommand(CLI::App& app) {
  auto f = std::make_shared<SendFlags>();
  CLI::App* cmd = app.add_subcommand(
      "send",
      "Send values to Zabbix trapper items: a drop-in for zabbix_sender (same flags, input "
      "format, output and exit codes: 0 all processed, 2 some failed or skipped, 1 failure), "
      "batched over parallel connections.");
  f->cmd = cmd;
  cmd->add_option("-z,--zabbix-server", f->server, "Zabbix server or proxy address");
  cmd->add_option("--config", f->config,
                  "TOML file whose [sender] table sets defaults (server, port, connections, "
                  "batch_values, spool_dir, ...); flags override it");
  cmd->add_option("-p,--port", f->port, "Zabbix trapper port")->check(CLI::Range(1, 65535))->capture_default_str();
  cmd->add_option("-s,--host", f->host, "Technical host name (default for '-' in the input)");
  cmd->add_option("-k,--key", f->key, "Item key (with -o)");
  cmd->add_option("-o,--value", f->value, "Item value (with -k)");
  cmd->add_option("-i,--input-file", f->input,
                  "Values from a file, '-' for stdin: lines '<host> <key> [<clock> [<ns>]] <value>'");
  cmd->add_flag("-T,--with-timestamps", f->with_timestamps, "Input lines carry a clock");
  cmd->add_flag("-N,--with-ns", f->with_ns, "Input lines carry nanoseconds after the clock (needs -T)");
  cmd->add_flag("-r,--real-time", f->real_time, "Send values as soon as they are read");
  cmd->add_flag("-v,--verbose", f->verbose, "More output (-vv: debug)");
  cmd->add_option("-t,--timeout", f->timeout_s, "Seconds per request")->check(CLI::Range(0.1, 600.0))->capture_default_str();
  cmd->add_option("--connections", f->connections, "Concurrent connections")->check(CLI::Range(1, 64))->capture_default_str();
  cmd->add_option("--batch", f->batch, "Values per request")->check(CLI::Range(1, 1000000))->capture_default_str();
  cmd->add_flag("--compress", f->compress, "zlib-compress requests");
  cmd->add_option("--spool", f->spool_dir, "Keep values Zabbix could not take in this folder; the next run sends them first");
  cmd->add_option("--memory-values", f->memory_values, "With --spool: values held in memory before they go to the spool (0: every value is spooled at once, so a crash loses none)");
  cmd->add_option("--grace", f->grace_s, "Seconds to retry values Zabbix counts failed (new items)")->capture_default_str();
  cmd->add_option("--retry-for", f->retry_for_s, "Seconds to keep retrying an unreachable Zabbix (0: fail at once)")->capture_default_str();
  return [f] { return RunSend(*f); };
}

}  // namespace trapline::cli
