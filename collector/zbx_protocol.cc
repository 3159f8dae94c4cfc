#include "collector/zbx_protocol.h"

#include <zlib.h>

#include <charconv>
#include <cstring>
#include <nlohmann/json.hpp>

namespace trapline {

namespace {

void PutLe(std::string* out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint64_t GetLe(std::string_view s, size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) {
    v |= static_cast<uint64_t>(static_cast<unsigned char>(s[at + static_cast<size_t>(i)])) << (8 * i);
  }
  return v;
}

size_t HeaderSize(uint8_t flags) { return (flags & kZbxFlagLarge) ? 4 + 1 + 8 + 8 : 4 + 1 + 4 + 4; }

void AppendJsonString(std::string_view s, std::string* out) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->push_back('"');
  size_t run = 0;  // start of the current run of bytes that need no escaping
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out->append(s.data() + run, i - run);
    run = i + 1;
    switch (c) {
      case '"': out->append("\\\""); break;
      case '\\': out->append("\\\\"); break;
      case '\n': out->append("\\n"); break;
      case '\r': out->append("\\r"); break;
      case '\t': out->append("\\t"); break;
      default:
        out->append("\\u00");
        out->push_back(kHex[c >> 4]);
        out->push_back(kHex[c & 0xf]);
    }
  }
  out->append(s.data() + run, s.size() - run);
  out->push_back('"');
}

void AppendInt(int64_t v, std::string* out) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  out->append(buf, end);
}

}  // namespace

Result<std::string> EncodeFrame(std::string_view payload, bool compress) {
  if (payload.size() > kZbxMaxPacket) {
    return Status::InvalidArgument("request of " + std::to_string(payload.size()) +
                                   " bytes is over Zabbix's 1 GiB packet limit");
  }
  std::string body;
  uint8_t flags = kZbxFlagProtocol;
  if (compress) {
    uLongf bound = compressBound(static_cast<uLong>(payload.size()));
    body.resize(bound);
    int rc = compress2(reinterpret_cast<Bytef*>(body.data()), &bound,
                       reinterpret_cast<const Bytef*>(payload.data()),
                       static_cast<uLong>(payload.size()), Z_BEST_SPEED);
    if (rc != Z_OK) return Status::Internal("zlib compress2 failed: " + std::to_string(rc));
    body.resize(bound);
    flags |= kZbxFlagCompressed;
  }
  std::string_view data = compress ? std::string_view(body) : payload;
  std::string out;
  out.reserve(13 + data.size());
  out.append(kZbxMagic);
  out.push_back(static_cast<char>(flags));
  PutLe(&out, data.size(), 4);
  PutLe(&out, compress ? payload.size() : 0, 4);
  out.append(data);
  return out;
}

int64_t FrameSize(std::string_view received) {
  size_t n = std::min(received.size(), kZbxMagic.size());
  if (received.substr(0, n) != kZbxMagic.substr(0, n)) return -1;
  if (received.size() < 5) return 0;
  uint8_t flags = static_cast<uint8_t>(received[4]);
  if ((flags & kZbxFlagProtocol) == 0 || (flags & ~(kZbxFlagProtocol | kZbxFlagCompressed | kZbxFlagLarge)) != 0) {
    return -1;
  }
  size_t header = HeaderSize(flags);
  if (received.size() < header) return 0;
  int len_bytes = (flags & kZbxFlagLarge) ? 8 : 4;
  uint64_t len = GetLe(received, 5, len_bytes);
  if (len > kZbxMaxPacket) return -1;
  return static_cast<int64_t>(header + len);
}

Result<std::string> DecodeFrame(std::string_view frame) {
  int64_t size = FrameSize(frame);
  if (size < 0) return Status::ProtocolError("not a Zabbix frame (no ZBXD header)");
  if (size == 0 || frame.size() < static_cast<size_t>(size)) {
    return Status::ProtocolError("truncated Zabbix frame: " + std::to_string(frame.size()) +
                                 " bytes");
  }
  uint8_t flags = static_cast<uint8_t>(frame[4]);
  size_t header = HeaderSize(flags);
  int len_bytes = (flags & kZbxFlagLarge) ? 8 : 4;
  std::string_view data = frame.substr(header, static_cast<size_t>(size) - header);
  if ((flags & kZbxFlagCompressed) == 0) return std::string(data);
  uint64_t plain = GetLe(frame, 5 + static_cast<size_t>(len_bytes), len_bytes);
  if (plain > kZbxMaxPacket) return Status::ProtocolError("compressed frame claims " + std::to_string(plain) + " bytes");
  std::string out(plain, '\0');
  uLongf out_len = static_cast<uLongf>(plain);
  int rc = uncompress(reinterpret_cast<Bytef*>(out.data()), &out_len,
                      reinterpret_cast<const Bytef*>(data.data()), static_cast<uLong>(data.size()));
  if (rc != Z_OK || out_len != plain) {
    return Status::ProtocolError("compressed frame does not inflate (zlib " + std::to_string(rc) + ")");
  }
  return out;
}

void AppendValueJson(const SenderValue& v, std::string* out) {
  out->append("{\"host\":");
  AppendJsonString(v.host, out);
  out->append(",\"key\":");
  AppendJsonString(v.key, out);
  out->append(",\"value\":");
  AppendJsonString(v.value, out);
  if (v.clock != 0) {
    out->append(",\"clock\":");
    AppendInt(v.clock, out);
    out->append(",\"ns\":");
    AppendInt(v.ns, out);
  }
  out->push_back('}');
}

std::string BuildSenderRequest(std::span<const SenderValue> values, int64_t now_clock,
                               int32_t now_ns) {
  std::string out;
  size_t guess = 64;
  for (const auto& v : values) guess += v.host.size() + v.key.size() + v.value.size() + 64;
  out.reserve(guess);
  out.append("{\"request\":\"sender data\",\"data\":[");
  bool first = true;
  for (const auto& v : values) {
    if (!first) out.push_back(',');
    first = false;
    AppendValueJson(v, &out);
  }
  out.append("],\"clock\":");
  AppendInt(now_clock, &out);
  out.append(",\"ns\":");
  AppendInt(now_ns, &out);
  out.push_back('}');
  return out;
}

Result<SenderValue> ParseValueJson(std::string_view json) {
  auto j = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return Status::InvalidArgument("not a JSON object");
  SenderValue v;
  auto str = [&](const char* name, std::string* out) {
    auto it = j.find(name);
    if (it == j.end() || !it->is_string()) return false;
    *out = it->get<std::string>();
    return true;
  };
  if (!str("host", &v.host) || !str("key", &v.key) || !str("value", &v.value)) {
    return Status::InvalidArgument("value record lacks host, key or value");
  }
  auto c = j.find("clock");
  auto n = j.find("ns");
  if (c != j.end()) {
    if (!c->is_number_integer()) return Status::InvalidArgument("clock is not an integer");
    v.clock = c->get<int64_t>();
  }
  if (n != j.end()) {
    if (!n->is_number_integer()) return Status::InvalidArgument("ns is not an integer");
    v.ns = n->get<int32_t>();
  }
  return v;
}

Result<SenderReply> ParseSenderReply(std::string_view payload) {
  auto j = nlohmann::json::parse(payload, nullptr, false);
  auto excerpt = [&] {
    std::string s(payload.substr(0, 200));
    for (char& c : s) if (c == '\n' || c == '\r') c = ' ';
    return s;
  };
  if (j.is_discarded() || !j.is_object()) {
    return Status::ProtocolError("reply is not JSON: '" + excerpt() + "'");
  }
  auto resp = j.find("response");
  if (resp == j.end() || !resp->is_string()) {
    return Status::ProtocolError("reply has no \"response\": '" + excerpt() + "'");
  }
  std::string info;
  if (auto it = j.find("info"); it != j.end() && it->is_string()) info = it->get<std::string>();
  if (*resp != "success") {
    return Status::Rejected("server answered \"" + resp->get<std::string>() + "\"" +
                            (info.empty() ? "" : ": " + info));
  }
  SenderReply r;
  r.info = info;
  // "processed: 1; failed: 0; total: 1; seconds spent: 0.000055"
  long long p = 0, f = 0, t = 0;
  double s = 0;
  if (std::sscanf(info.c_str(), "processed: %lld; failed: %lld; total: %lld; seconds spent: %lf",
                  &p, &f, &t, &s) < 3) {
    return Status::ProtocolError("reply info is not 'processed: N; failed: M; total: T': '" +
                                 info + "'");
  }
  r.processed = p;
  r.failed = f;
  r.total = t;
  r.seconds_spent = s;
  return r;
}

}  // namespace trapline
