#include "collector/send_input.h"

#include <charconv>

namespace trapline {

namespace {

bool IsBlank(char c) { return c == ' ' || c == '\t'; }

// Reads the next field from *rest. Returns false (and sets *error) on bad quoting; sets
// *present to false when the line has no more fields.
bool NextField(std::string_view* rest, std::string* field, bool* present, std::string* error) {
  std::string_view s = *rest;
  size_t i = 0;
  while (i < s.size() && IsBlank(s[i])) ++i;
  field->clear();
  if (i == s.size()) {
    *present = false;
    *rest = {};
    return true;
  }
  *present = true;
  if (s[i] != '"') {
    size_t start = i;
    while (i < s.size() && !IsBlank(s[i])) ++i;
    field->assign(s.substr(start, i - start));
    *rest = s.substr(i);
    return true;
  }
  ++i;  // opening quote
  for (; i < s.size(); ++i) {
    char c = s[i];
    if (c == '"') {
      if (i + 1 < s.size() && !IsBlank(s[i + 1])) {
        *error = "characters after a closing quote";
        return false;
      }
      *rest = s.substr(i + 1);
      return true;
    }
    if (c == '\\' && i + 1 < s.size() && (s[i + 1] == '"' || s[i + 1] == '\\')) c = s[++i];
    field->push_back(c);
  }
  *error = "missing closing quote";
  return false;
}

template <typename T>
bool ParseInt(const std::string& s, T* out) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && end == s.data() + s.size();
}

}  // namespace

Result<SenderValue> ParseSendLine(std::string_view line, const SendInputFormat& format) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  SenderValue v;
  std::string field, error;
  bool present = false;
  auto next = [&](const char* name, std::string* out) -> Status {
    if (!NextField(&line, out, &present, &error)) {
      return Status::InvalidArgument(std::string("'") + name + "': " + error);
    }
    if (!present) return Status::InvalidArgument(std::string("'") + name + "' required");
    return Status::OK();
  };

  TRAPLINE_RETURN_IF_ERROR(next("Hostname", &v.host));
  if (v.host == "-") {
    if (format.default_host.empty()) {
      return Status::InvalidArgument("'-' encountered as 'Hostname', but no default hostname was specified");
    }
    v.host = format.default_host;
  }
  if (v.host.empty()) return Status::InvalidArgument("'Hostname' required");
  TRAPLINE_RETURN_IF_ERROR(next("Key", &v.key));
  if (v.key.empty()) return Status::InvalidArgument("'Key' required");
  if (format.with_timestamps) {
    TRAPLINE_RETURN_IF_ERROR(next("Timestamp", &field));
    if (!ParseInt(field, &v.clock) || v.clock <= 0) {
      return Status::InvalidArgument("invalid 'Timestamp' value detected: '" + field + "'");
    }
    if (format.with_ns) {
      TRAPLINE_RETURN_IF_ERROR(next("Nanoseconds", &field));
      if (!ParseInt(field, &v.ns) || v.ns < 0 || v.ns > 999999999) {
        return Status::InvalidArgument("invalid 'Nanoseconds' value detected: '" + field + "'");
      }
    }
  }
  // As zabbix_sender: an unquoted value is the rest of the line, spaces included; a quoted one
  // must be the last field.
  size_t start = 0;
  while (start < line.size() && IsBlank(line[start])) ++start;
  line.remove_prefix(start);
  if (line.empty()) return Status::InvalidArgument("'Key value' required");
  if (line.front() != '"') {
    v.value.assign(line);
    return v;
  }
  TRAPLINE_RETURN_IF_ERROR(next("Key value", &v.value));
  if (!NextField(&line, &field, &present, &error)) {
    return Status::InvalidArgument("after 'Key value': " + error);
  }
  if (present) return Status::InvalidArgument("too many parameters after the quoted 'Key value'");
  return v;
}

std::string QuoteSendField(std::string_view field) {
  bool plain = !field.empty() && field != "-" && field.front() != '"';
  for (char c : field) plain = plain && !IsBlank(c) && c != '\\' && c != '"' && c != '\n';
  if (plain) return std::string(field);
  std::string out = "\"";
  for (char c : field) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

}  // namespace trapline
