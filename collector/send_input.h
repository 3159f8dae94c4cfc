#pragma once
// The input format of zabbix_sender -i (one value per line):
//   <host> <key> <value>
//   <host> <key> <clock> <value>          with -T
//   <host> <key> <clock> <ns> <value>     with -T -N
// Fields are separated by spaces or tabs. A field may be double-quoted; inside quotes \" and
// \\ stand for " and \. A host of "-" means the default host (-s). Pure: no I/O.

#include <string>
#include <string_view>

#include "collector/zbx_protocol.h"
#include "common/status.h"

namespace trapline {

struct SendInputFormat {
  bool with_timestamps = false;  // -T
  bool with_ns = false;          // -N (REQUIRES with_timestamps)
  std::string default_host;      // -s; empty: "-" is an error
};

// Parses one line (without its newline). The error says which field is wrong and why, in
// zabbix_sender's words where it has them ("'Key' required").
Result<SenderValue> ParseSendLine(std::string_view line, const SendInputFormat& format);

// The inverse of the field parsing: quotes a field when it needs it (blanks, quotes,
// backslashes, empty, or a leading '"'), so ParseSendLine reads it back unchanged. A host
// "-" stays the default host, quoted or not, as in zabbix_sender.
std::string QuoteSendField(std::string_view field);

}  // namespace trapline
