#pragma once
// The Zabbix sender/trapper protocol (ZABBIX.md): framing, the "sender data" request and its
// reply. Pure functions: no I/O.

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "common/status.h"

namespace trapline {

// One value as Zabbix takes it. `value` is sent as a JSON string, as zabbix_sender does.
struct SenderValue {
  std::string host;  // technical host name, case-sensitive
  std::string key;
  std::string value;
  int64_t clock = 0;  // 0: let the server stamp it
  int32_t ns = 0;
  uint64_t queued_ms = 0;  // local bookkeeping (loop time when queued); never sent
};

inline constexpr std::string_view kZbxMagic = "ZBXD";
inline constexpr uint8_t kZbxFlagProtocol = 0x01;
inline constexpr uint8_t kZbxFlagCompressed = 0x02;
inline constexpr uint8_t kZbxFlagLarge = 0x04;
inline constexpr uint64_t kZbxMaxPacket = 1ull << 30;  // the server's limit: 1 GiB

// Frames a payload; with `compress`, zlib-compresses it (reserved = uncompressed size).
Result<std::string> EncodeFrame(std::string_view payload, bool compress);

// For a stream of received bytes: 0 when more are needed to know, the frame's total size when
// the header is complete, -1 when the bytes are not a Zabbix frame (or too large).
int64_t FrameSize(std::string_view received);

// Returns the payload of one complete frame, inflating it if the frame says so.
Result<std::string> DecodeFrame(std::string_view frame);

// {"request":"sender data","data":[...],"clock":..,"ns":..}. The request clock lets the server
// correct for clock skew between us and it, as zabbix_sender does.
std::string BuildSenderRequest(std::span<const SenderValue> values, int64_t now_clock,
                               int32_t now_ns);
// Appends the JSON object of one value (used for requests and the spool).
void AppendValueJson(const SenderValue& v, std::string* out);
// Parses one object written by AppendValueJson.
Result<SenderValue> ParseValueJson(std::string_view json);

struct SenderReply {
  int64_t processed = 0;
  int64_t failed = 0;
  int64_t total = 0;
  double seconds_spent = 0;
  std::string info;  // the server's text, verbatim
};

// Parses {"response":"success","info":"processed: N; failed: M; total: T; seconds spent: S"}.
// A "failed" response or anything else is an error carrying the server's text.
Result<SenderReply> ParseSenderReply(std::string_view payload);

}  // namespace trapline
