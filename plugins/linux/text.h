#pragma once
// Private to the linux plugin: allocation-free splitting of /proc text and number parsing.
// No regex, no iostreams: a full tick is parsed in a few microseconds.

#include <charconv>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>

#include "plugins/plugin.h"

namespace trapline::plugins::linuxhost::text {

// Yields the '\n'-terminated lines of a text. A last line without '\n' is not yielded;
// truncated() then says so (see the contracts in linux.h).
class LineReader {
 public:
  explicit LineReader(std::string_view text) : text_(text) {}
  bool Next(std::string_view* line) {
    if (pos_ >= text_.size()) return false;
    size_t nl = text_.find('\n', pos_);
    if (nl == std::string_view::npos) {
      truncated_ = true;
      tail_pos_ = pos_;
      pos_ = text_.size();
      return false;
    }
    *line = text_.substr(pos_, nl - pos_);
    pos_ = nl + 1;
    return true;
  }
  bool truncated() const { return truncated_; }
  // The unterminated last line, once Next() has returned false ("" if none).
  std::string_view tail() const {
    return truncated_ ? text_.substr(tail_pos_) : std::string_view();
  }

 private:
  std::string_view text_;
  size_t pos_ = 0;
  size_t tail_pos_ = 0;
  bool truncated_ = false;
};

// /proc separates fields with spaces and tabs; other bytes are part of a token.
inline bool IsSpace(char c) { return c == ' ' || c == '\t'; }

// The next whitespace-separated token of *s (consumed), or "" at the end.
inline std::string_view NextToken(std::string_view* s) {
  const char* p = s->data();
  const char* end = p + s->size();
  while (p < end && IsSpace(*p)) ++p;
  const char* q = p;
  while (q < end && !IsSpace(*q)) ++q;
  *s = std::string_view(q, static_cast<size_t>(end - q));
  return std::string_view(p, static_cast<size_t>(q - p));
}

enum class Field { kOk, kEnd, kBad };

// The next token of *s (consumed) as a decimal unsigned number: kEnd when there is no token,
// kBad when it is not a number that fits 64 bits. The hot loop of the numeric files: it
// tokenizes and converts in one pass.
inline Field NextU64(std::string_view* s, uint64_t* v) {
  const char* p = s->data();
  const char* end = p + s->size();
  while (p < end && IsSpace(*p)) ++p;
  if (p == end) {
    *s = std::string_view(end, 0);
    return Field::kEnd;
  }
  uint64_t x = 0;
  bool ok = true;
  const char* q = p;
  for (; q < end && !IsSpace(*q); ++q) {
    const unsigned d = static_cast<unsigned char>(*q) - '0';
    if (d > 9 || __builtin_mul_overflow(x, 10u, &x) || __builtin_add_overflow(x, d, &x)) {
      ok = false;
    }
  }
  *s = std::string_view(q, static_cast<size_t>(end - q));
  *v = x;
  return ok ? Field::kOk : Field::kBad;
}

inline std::string_view Trim(std::string_view s) {
  while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsSpace(s.back())) s.remove_suffix(1);
  return s;
}

// Whole-token decimal numbers; false on anything else (sign, garbage, overflow).
inline bool ToU64(std::string_view s, uint64_t* v) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *v);
  return ec == std::errc() && p == s.data() + s.size();
}

inline bool ToI64(std::string_view s, int64_t* v) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *v);
  return ec == std::errc() && p == s.data() + s.size();
}

// A finite decimal ("inf", "nan" and hex are refused).
inline bool ToDouble(std::string_view s, double* v) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *v, std::chars_format::fixed);
  return ec == std::errc() && p == s.data() + s.size() && std::isfinite(*v);
}

// Index of `key` in names[0, n), or -1. Compares size and first character before the rest,
// which settles most of the many misses when scanning /proc/meminfo or /proc/vmstat.
inline int Lookup(std::string_view key, const std::string_view* names, int n) {
  if (key.empty()) return -1;
  for (int i = 0; i < n; ++i) {
    const std::string_view& k = names[i];
    if (k.size() == key.size() && k[0] == key[0] && k == key) return i;
  }
  return -1;
}

// Appends readings and warnings to a ParseResult; warnings are prefixed with the file's path.
class Emitter {
 public:
  Emitter(std::string_view path, ParseResult* out) : path_(path), out_(out) {}
  void Add(std::string_view metric, std::string_view entity, double value) {
    Reading& r = out_->readings.emplace_back();
    r.metric = metric;  // static: see Reading
    r.entity.assign(entity);
    r.value = value;
  }
  void Host(std::string_view metric, double value) { Add(metric, {}, value); }
  void Warn(std::string_view what) {
    std::string w;
    w.reserve(path_.size() + 2 + what.size());
    w.append(path_).append(": ").append(what);
    out_->warnings.push_back(std::move(w));
  }
  // The standard warning for a last line cut short.
  void WarnIfTruncated(const LineReader& lines) {
    if (lines.truncated()) Warn("last line cut short (no newline); ignored");
  }
  ParseResult* out() { return out_; }

 private:
  std::string_view path_;
  ParseResult* out_;
};

// A short, printable excerpt of untrusted text for a warning.
inline std::string Excerpt(std::string_view s) {
  std::string e;
  for (char c : s.substr(0, 40)) {
    e.push_back(c >= 0x20 && c < 0x7f ? c : '?');
  }
  if (s.size() > 40) e += "...";
  return e;
}

}  // namespace trapline::plugins::linuxhost::text
