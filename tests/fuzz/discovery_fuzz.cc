// libFuzzer entry for the discovery report parser (coordinator/discovery.h): whatever the
// bytes, ParseDiscoveryReport returns a report or a reason, never crashes, never reads out of
// bounds (AddressSanitizer), and what it accepts is well formed.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "coordinator/discovery.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view body(reinterpret_cast<const char*>(data), size);
  auto r = trapline::coordinator::ParseDiscoveryReport(body);
  if (!r.ok()) {
    if (r.status().message().empty()) std::abort();  // every refusal says why
    return 0;
  }
  // Accepted reports keep the promises the registry statement relies on.
  if (r->host.empty() || r->services.size() > trapline::coordinator::kMaxDiscoveredServices) {
    std::abort();
  }
  for (const auto& s : r->services) {
    if (s.port < 1 || s.port > 65535 || s.plugin().empty()) std::abort();
  }
  (void)trapline::coordinator::FactsJson(*r);
  (void)trapline::coordinator::ServicesJson(*r);
  (void)trapline::coordinator::PreferredAddress(*r);
  return 0;
}
