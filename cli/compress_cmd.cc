// `trapline compress`: one metric's value-set compression as a filter from stdin to stdout, to
// see what a collector would send for a series of samples (and to test it from the outside).

#include <CLI/CLI.hpp>
#include <unistd.h>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "cli/commands.h"
#include "collector/send_input.h"
#include "common/uv.h"
#include "collector/value_set.h"
#include "common/status.h"

namespace trapline::cli {
namespace {

constexpr char kFooter[] =
    R"(Input (stdin): one sample per line, '<unix_time> <value>', separated by spaces or tabs.
  unix_time  seconds since 1970, optionally with a fraction down to the nanosecond
             (1700000000 or 1700000000.25; finer digits are truncated); times must not
             go backwards (equal times are fine)
  value      a decimal or scientific number (42, -1.5, 3.2e9); not nan or inf, and at
             most 1e300 in magnitude
  Empty lines and lines whose first non-blank character is '#' are skipped.

Output (stdout): one line per value that would be sent to Zabbix, '<clock> <ns> <value>':
  clock and ns as Zabbix stores them, the value in its shortest form that reads back as
  the same double. Each interval [k*S, (k+1)*S), S = --interval, becomes the fewest values
  whose min, max and mean are the interval's; the values come interval by interval, sorted
  by time. An interval without samples prints nothing; the last one is printed at the end
  of the input.

With --counter the values are a monotonic counter, turned into per-second rates against
  the previous line before compression: the first line gives no rate, nor does a decrease
  (a reset; with --wrap-bits 32 or 64, a decrease from the top quarter of the width to
  its bottom quarter is a wrap and gives the wrapped rate), nor a repeated time.

Errors: the first bad line (wrong number of fields, a time or value that is not a number,
  nan or inf, a time before the previous line's) stops the command with a message on
  stderr that names the line, and exit status 1. Values of intervals that closed before
  that line have been printed already; the open interval's are not.

Exit status: 0 success, 1 bad input or an I/O error, 2 bad usage.)";

constexpr size_t kReadBuffer = size_t{1} << 20;
constexpr size_t kMaxLine = size_t{1} << 16;  // a sample line is < 100 bytes
constexpr size_t kWriteFlushAt = size_t{1} << 16;
constexpr int64_t kMaxClock = 9'000'000'000;  // times are int64 nanoseconds inside

struct Options {
  int64_t interval_s = 0;
  bool counter = false;
  int wrap_bits = 0;
  std::string host;  // with key: print zabbix_sender -T -N lines for `trapline send`
  std::string key;
};

std::string Quoted(std::string_view s) {
  std::string q = "'";
  q.append(s.substr(0, 64));
  if (s.size() > 64) q += "...";
  q += "'";
  return q;
}

// "<digits>[.<digits>]" into a ZbxTime, exactly (a double would round 1.7e9 s to ~240 ns).
Status ParseTime(std::string_view s, ZbxTime* t) {
  const size_t dot = s.find('.');
  const std::string_view whole = s.substr(0, dot);
  const std::string_view frac = dot == std::string_view::npos ? "" : s.substr(dot + 1);
  auto all_digits = [](std::string_view d) {
    for (char c : d) {
      if (c < '0' || c > '9') return false;
    }
    return true;
  };
  if (whole.empty() || !all_digits(whole) || !all_digits(frac)) {
    return Status::InvalidArgument("time " + Quoted(s) +
                                   " is not a unix time (digits with an optional fraction, "
                                   "e.g. 1700000000.25)");
  }
  int64_t clock = 0;
  for (char c : whole) {
    clock = clock * 10 + (c - '0');
    if (clock >= kMaxClock) {
      return Status::InvalidArgument("time " + Quoted(s) + " is out of range");
    }
  }
  int32_t ns = 0;
  for (size_t i = 0; i < 9; ++i) ns = ns * 10 + (i < frac.size() ? frac[i] - '0' : 0);
  *t = {clock, ns};
  return Status::OK();
}

Status ParseValue(std::string_view s, double* v) {
  std::string_view digits = s;
  if (!digits.empty() && digits[0] == '+') digits.remove_prefix(1);  // from_chars takes no '+'
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), *v);
  if (ec == std::errc::result_out_of_range && end == digits.data() + digits.size()) {
    return Status::InvalidArgument("value " + Quoted(s) + " is out of range");
  }
  if (ec != std::errc() || end != digits.data() + digits.size() || digits.empty()) {
    return Status::InvalidArgument("value " + Quoted(s) + " is not a number");
  }
  if (!std::isfinite(*v)) return Status::InvalidArgument("value " + Quoted(s) + " is not finite");
  if (std::fabs(*v) > kMaxAbsValue) {
    return Status::InvalidArgument("value " + Quoted(s) + " is out of range (|value| > 1e300)");
  }
  return Status::OK();
}

// Buffered writes of '<clock> <ns> <value>' lines to stdout.
class Writer {
 public:
  // `prefix` starts every line (e.g. '"host" "key" ' for trapline send -T -N).
  explicit Writer(std::string prefix) : prefix_(std::move(prefix)) {
    buf_.reserve(kWriteFlushAt + 128);
  }

  Status Write(const std::vector<TimedValue>& values) {
    for (const TimedValue& tv : values) {
      buf_ += prefix_;
      Append(tv.time.clock);
      buf_ += ' ';
      Append(tv.time.ns);
      buf_ += ' ';
      Append(tv.value);  // shortest form that reads back as the same double
      buf_ += '\n';
      if (buf_.size() >= kWriteFlushAt) TRAPLINE_RETURN_IF_ERROR(Flush());
    }
    return Status::OK();
  }

  Status Flush() {
    if (!buf_.empty() && std::fwrite(buf_.data(), 1, buf_.size(), stdout) != buf_.size()) {
      return Status::IoError(std::string("writing stdout failed: ") + std::strerror(errno));
    }
    buf_.clear();
    if (std::fflush(stdout) != 0) {
      return Status::IoError(std::string("writing stdout failed: ") + std::strerror(errno));
    }
    return Status::OK();
  }

 private:
  template <typename T>
  void Append(T x) {
    char tmp[40];  // int64: 20 chars, double in shortest form: 24
    const auto r = std::to_chars(tmp, tmp + sizeof(tmp), x);
    buf_.append(tmp, r.ptr);
  }

  std::string prefix_;
  std::string buf_;
};

// The compression state of the one metric on stdin.
class Compressor {
 public:
  explicit Compressor(const Options& o)
      : o_(o),
        acc_(o.interval_s),
        rate_(o.wrap_bits),
        writer_(o.host.empty() ? std::string()
                               : QuoteSendField(o.host) + " " + QuoteSendField(o.key) + " ") {}

  // One input line (without its newline); `line_no` counts from 1.
  Status Line(std::string_view line, int64_t line_no) {
    std::string_view fields[3];
    size_t n = 0;
    size_t i = 0;
    auto blank = [](char c) { return c == ' ' || c == '\t' || c == '\r'; };
    while (i < line.size()) {
      while (i < line.size() && blank(line[i])) ++i;
      if (i == line.size()) break;
      if (n == 0 && line[i] == '#') return Status::OK();  // a comment
      const size_t start = i;
      while (i < line.size() && !blank(line[i])) ++i;
      if (n < 3) fields[n] = line.substr(start, i - start);
      ++n;
    }
    if (n == 0) return Status::OK();  // an empty line
    if (n != 2) {
      return Status::InvalidArgument("expected 2 fields '<unix_time> <value>', got " +
                                     std::to_string(n));
    }
    ZbxTime t;
    double v = 0;
    TRAPLINE_RETURN_IF_ERROR(ParseTime(fields[0], &t));
    TRAPLINE_RETURN_IF_ERROR(ParseValue(fields[1], &v));
    if (prev_line_ > 0 && t < prev_time_) {
      return Status::InvalidArgument("time " + std::string(fields[0]) +
                                     " is before the previous sample's " + prev_text_ + " (line " +
                                     std::to_string(prev_line_) + ")");
    }
    prev_time_ = t;
    prev_line_ = line_no;
    prev_text_.assign(fields[0]);
    if (o_.counter && !rate_.Update(t, v, &v)) return Status::OK();
    out_.clear();
    if (!acc_.Add(t, v, &out_)) {
      // Times and values were checked above, so only a rate can land here (1e300 in 1 ns).
      return Status::InvalidArgument("the rate at time " + std::string(fields[0]) +
                                     " is out of range");
    }
    return writer_.Write(out_);
  }

  Status Finish() {
    out_.clear();
    acc_.Flush(&out_);
    TRAPLINE_RETURN_IF_ERROR(writer_.Write(out_));
    return writer_.Flush();
  }

  Status FlushOutput() { return writer_.Flush(); }

 private:
  Options o_;
  IntervalAccumulator acc_;
  CounterRate rate_;
  Writer writer_;
  std::vector<TimedValue> out_;
  ZbxTime prev_time_;
  int64_t prev_line_ = 0;
  std::string prev_text_;
};

int Fail(const Status& s) {
  std::fprintf(stderr, "trapline compress: %s\n", s.message().c_str());
  return 1;
}

int Run(const Options& o) {
  Compressor c(o);
  std::vector<char> buf(kReadBuffer);
  size_t have = 0;  // bytes in buf, starting with an incomplete line
  int64_t line_no = 0;
  auto bad_line = [&](const Status& s) {
    // Print what is complete before the error, so stdout ends at the last closed interval.
    const Status flushed = c.FlushOutput();
    return Fail(flushed.ok() ? s.WithContext("stdin line " + std::to_string(line_no)) : flushed);
  };
  // From a pipe or terminal, print each value set as soon as its interval closes.
  const bool streaming = StreamReader::IsPollableStream(STDIN_FILENO);
  bool eof = false;
  while (!eof) {
    // read(2), not fread: from a pipe it returns what has arrived, so value sets stream out
    // as intervals close instead of waiting for a full buffer.
    const ssize_t got = ::read(STDIN_FILENO, buf.data() + have, buf.size() - have);
    if (got < 0) {
      if (errno == EINTR) continue;
      return Fail(Status::IoError(std::string("reading stdin failed: ") + std::strerror(errno)));
    }
    if (got == 0) eof = true;
    have += static_cast<size_t>(got);
    size_t pos = 0;
    while (true) {
      const char* nl = static_cast<const char*>(std::memchr(buf.data() + pos, '\n', have - pos));
      if (nl == nullptr) break;
      const size_t len = static_cast<size_t>(nl - (buf.data() + pos));
      ++line_no;
      if (len > kMaxLine) {
        return bad_line(
            Status::InvalidArgument("longer than " + std::to_string(kMaxLine) + " bytes"));
      }
      const Status s = c.Line(std::string_view(buf.data() + pos, len), line_no);
      if (!s.ok()) return bad_line(s);
      pos += len + 1;
    }
    // Keep the incomplete last line for the next read (or as the last line at EOF).
    std::memmove(buf.data(), buf.data() + pos, have - pos);
    have -= pos;
    if (have > kMaxLine) {
      ++line_no;
      return bad_line(
          Status::InvalidArgument("longer than " + std::to_string(kMaxLine) + " bytes"));
    }
    if (streaming) {
      const Status f = c.FlushOutput();
      if (!f.ok()) return Fail(f);
    }
    if (eof && have > 0) {
      ++line_no;
      const Status s = c.Line(std::string_view(buf.data(), have), line_no);
      if (!s.ok()) return bad_line(s);
    }
  }
  const Status s = c.Finish();
  return s.ok() ? 0 : Fail(s);
}

}  // namespace

Runner AddCompressCommand(CLI::App& app) {
  auto opts = std::make_shared<Options>();
  CLI::App* sub = app.add_subcommand(
      "compress",
      "Compress one metric's samples from stdin into the value sets a collector would send");
  sub->add_option("--interval", opts->interval_s,
                  "S: the interval in seconds; samples in [k*S, (k+1)*S) form one value set")
      ->required()
      ->check(CLI::Range(int64_t{1}, int64_t{366} * 86400));
  CLI::Option* counter =
      sub->add_flag("--counter", opts->counter,
                    "the values are a monotonic counter: compress its rate per second");
  sub->add_option("--wrap-bits", opts->wrap_bits,
                  "with --counter: the counter's width, 32 or 64, to tell wraps from resets "
                  "(default 0: unknown, every decrease is a reset)")
      ->check(CLI::IsMember({0, 32, 64}))
      ->needs(counter);
  CLI::Option* host = sub->add_option(
      "--host", opts->host,
      "with --key: print '<host> <key> <clock> <ns> <value>' lines, the input of "
      "`trapline send -T -N -i -`");
  sub->add_option("--key", opts->key, "the item key for --host")->needs(host);
  host->needs(sub->get_option("--key"));
  sub->footer(kFooter);
  return [opts] { return Run(*opts); };
}

}  // namespace trapline::cli
