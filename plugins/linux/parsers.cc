// Per-file /proc parsers of the linux plugin (contracts in linux.h). Hot path: every tick of
// every Linux target runs all of them, so they split string_views and parse with from_chars.

#include <cstdint>
#include <string>
#include <string_view>

#include "plugins/linux/linux.h"
#include "plugins/linux/text.h"

namespace trapline::plugins::linuxhost {
namespace {

using text::Emitter;
using text::LineReader;
using text::NextToken;
using text::ToDouble;
using text::ToI64;
using text::ToU64;

// Column order of the cpu lines of /proc/stat; "busy" is derived.
constexpr int kCpuFields = 10;
constexpr std::string_view kCpuMetric[kCpuFields + 1] = {
    "cpu.user",    "cpu.nice",  "cpu.system", "cpu.idle",       "cpu.iowait", "cpu.irq",
    "cpu.softirq", "cpu.steal", "cpu.guest",  "cpu.guest_nice", "cpu.busy"};
constexpr std::string_view kCpuTotalMetric[kCpuFields + 1] = {
    "cpu.total.user",   "cpu.total.nice",       "cpu.total.system",  "cpu.total.idle",
    "cpu.total.iowait", "cpu.total.irq",        "cpu.total.softirq", "cpu.total.steal",
    "cpu.total.guest",  "cpu.total.guest_nice", "cpu.total.busy"};
// Busy = user + nice + system + irq + softirq + steal. guest and guest_nice are already
// inside user and nice; idle and iowait are idle.
constexpr int kBusyFields[] = {0, 1, 2, 5, 6, 7};

bool AllDigits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

// Appends ", name" for each missing key to a warning and emits it if any.
void WarnMissing(Emitter* e, const std::string_view* names, const bool* found, int n) {
  std::string missing;
  for (int i = 0; i < n; ++i) {
    if (found[i]) continue;
    if (!missing.empty()) missing += ", ";
    missing += names[i];
  }
  if (!missing.empty()) e->Warn("missing " + missing);
}

}  // namespace

void ParseStat(std::string_view t, const Filters& filters, ParseResult* out) {
  Emitter e("/proc/stat", out);
  LineReader lines(t);
  std::string_view line;

  enum { kIntr, kCtxt, kProcesses, kRunning, kBlocked, kSoftirq, kKeys };
  static constexpr std::string_view kKeyName[kKeys] = {
      "intr", "ctxt", "processes", "procs_running", "procs_blocked", "softirq"};
  static constexpr std::string_view kKeyMetric[kKeys] = {
      "interrupts", "context_switches", "forks", "procs.running", "procs.blocked", "softirqs"};
  bool found[kKeys] = {};

  uint64_t total[kCpuFields] = {};
  int total_n = -1;  // fields of the "cpu" line; -1: none yet
  int ncpu = 0;
  int min_fields = kCpuFields;
  bool cpu_block_done = false;  // a non-cpu line followed the cpu lines

  while (lines.Next(&line)) {
    std::string_view rest = line;
    std::string_view key = NextToken(&rest);
    if (key.empty()) continue;
    if (key.starts_with("cpu")) {
      std::string_view id = key.substr(3);
      if (!id.empty() && !AllDigits(id)) {
        e.Warn("unexpected line '" + text::Excerpt(line) + "'");
        continue;
      }
      uint64_t v[kCpuFields] = {};
      int n = 0;
      bool bad = false;
      while (n < kCpuFields) {
        text::Field f = text::NextU64(&rest, &v[n]);
        if (f == text::Field::kEnd) break;
        if (f == text::Field::kBad) {
          bad = true;
          break;
        }
        ++n;
      }
      if (bad) e.Warn(std::string(key) + ": bad field after " + std::to_string(n) + " fields");
      if (n < 4) {
        e.Warn(std::string(key) + ": fewer than 4 fields; skipped");
        continue;
      }
      if (n < min_fields) min_fields = n;
      if (id.empty()) {
        for (int i = 0; i < n; ++i) total[i] = v[i];
        total_n = n;
        continue;
      }
      ++ncpu;
      if (!filters.per_cpu) continue;
      Entity& ent = out->entities.emplace_back();
      ent.kind = "cpu";
      ent.name.assign(key);
      double busy = 0;
      for (int i = 0; i < n; ++i) e.Add(kCpuMetric[i], key, static_cast<double>(v[i]));
      for (int i : kBusyFields) busy += static_cast<double>(v[i]);  // absent fields are 0
      e.Add(kCpuMetric[kCpuFields], key, busy);
      continue;
    }
    if (total_n >= 0 || ncpu > 0) cpu_block_done = true;
    const int k = text::Lookup(key, kKeyName, kKeys);
    if (k < 0) continue;
    uint64_t v = 0;
    if (!ToU64(NextToken(&rest), &v)) {
      e.Warn(std::string(key) + ": bad value");
    } else {
      found[k] = true;
      e.Host(kKeyMetric[k], static_cast<double>(v));
    }
  }
  e.WarnIfTruncated(lines);
  if (!cpu_block_done && (total_n >= 0 || ncpu > 0)) {
    // A line cut short whose first word is whole and not a cpu line still closes the block.
    std::string_view tail = lines.tail();
    size_t space = tail.find_first_of(" \t");
    if (space != std::string_view::npos && space > 0 && !tail.starts_with("cpu")) {
      cpu_block_done = true;
    }
  }

  if (min_fields < kCpuFields && (total_n >= 0 || ncpu > 0)) {
    e.Warn("cpu lines have " + std::to_string(min_fields) + " of " + std::to_string(kCpuFields) +
           " fields (older kernel); the others are not reported");
  }
  if (total_n < 0) {
    e.Warn("missing cpu line");
  } else if (ncpu == 0) {
    e.Warn("no cpuN lines; host-wide CPU not reported");
  } else if (!cpu_block_done) {
    // The file stopped inside the cpu lines: the CPU count may be short, and dividing by it
    // would make a false spike.
    e.Warn("ends inside the cpu lines; host-wide CPU not reported");
  } else {
    const double n = ncpu;
    e.Host("cpu.count", n);
    double busy = 0;
    for (int i = 0; i < total_n; ++i) e.Host(kCpuTotalMetric[i], static_cast<double>(total[i]) / n);
    for (int i : kBusyFields) busy += static_cast<double>(total[i]);
    e.Host(kCpuTotalMetric[kCpuFields], busy / n);
  }
  WarnMissing(&e, kKeyName, found, kKeys);
}

void ParseMeminfo(std::string_view t, ParseResult* out) {
  Emitter e("/proc/meminfo", out);
  enum {
    kTotal,
    kFree,
    kAvailable,
    kBuffers,
    kCached,
    kDirty,
    kSlab,
    kSwapTotal,
    kSwapFree,
    kKeys
  };
  static constexpr std::string_view kName[kKeys] = {"MemTotal", "MemFree",   "MemAvailable",
                                                    "Buffers",  "Cached",    "Dirty",
                                                    "Slab",     "SwapTotal", "SwapFree"};
  double v[kKeys] = {};
  bool found[kKeys] = {};
  LineReader lines(t);
  std::string_view line;
  while (lines.Next(&line)) {
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view key = line.substr(0, colon);
    const int k = text::Lookup(key, kName, kKeys);
    if (k < 0) continue;
    std::string_view rest = line.substr(colon + 1);
    uint64_t n = 0;
    if (!ToU64(NextToken(&rest), &n)) {
      e.Warn(std::string(key) + ": bad value");
      continue;
    }
    std::string_view unit = NextToken(&rest);
    double scale = 1;
    if (unit == "kB") {
      scale = 1024;
    } else if (!unit.empty()) {
      e.Warn(std::string(key) + ": unknown unit '" + text::Excerpt(unit) + "'");
      continue;
    }
    v[k] = static_cast<double>(n) * scale;
    found[k] = true;
  }
  e.WarnIfTruncated(lines);

  if (!found[kAvailable] && found[kFree] && found[kBuffers] && found[kCached]) {
    // Linux < 3.14: the estimate the kernel's own MemAvailable replaced.
    v[kAvailable] = v[kFree] + v[kBuffers] + v[kCached];
    found[kAvailable] = true;
    e.Warn("no MemAvailable (Linux < 3.14); mem.available = MemFree + Buffers + Cached");
  }
  static constexpr std::string_view kMetric[kKeys] = {"mem.total",   "mem.free",   "mem.available",
                                                      "mem.buffers", "mem.cached", "mem.dirty",
                                                      "mem.slab",    "swap.total", "swap.free"};
  for (int k = 0; k < kKeys; ++k) {
    if (found[k]) e.Host(kMetric[k], v[k]);
  }
  if (found[kTotal] && found[kAvailable]) {
    double used = v[kTotal] > v[kAvailable] ? v[kTotal] - v[kAvailable] : 0;
    e.Host("mem.used", used);
    if (v[kTotal] > 0) e.Host("mem.pused", used / v[kTotal] * 100);
  }
  if (found[kSwapTotal] && found[kSwapFree]) {
    e.Host("swap.used", v[kSwapTotal] > v[kSwapFree] ? v[kSwapTotal] - v[kSwapFree] : 0);
  }
  WarnMissing(&e, kName, found, kKeys);
}

void ParseVmstat(std::string_view t, ParseResult* out) {
  Emitter e("/proc/vmstat", out);
  enum { kPgfault, kPgmajfault, kPswpin, kPswpout, kOomKill, kKeys };
  static constexpr std::string_view kName[kKeys] = {"pgfault", "pgmajfault", "pswpin", "pswpout",
                                                    "oom_kill"};
  static constexpr std::string_view kMetric[kKeys] = {"vm.page_faults", "vm.major_faults",
                                                      "swap.in", "swap.out", "vm.oom_kills"};
  bool found[kKeys] = {};
  LineReader lines(t);
  std::string_view line;
  while (lines.Next(&line)) {
    // Cheap reject: every wanted key starts with 'p' or 'o'.
    if (line.empty() || (line[0] != 'p' && line[0] != 'o')) continue;
    std::string_view rest = line;
    std::string_view key = NextToken(&rest);
    const int k = text::Lookup(key, kName, kKeys);
    if (k < 0) continue;
    uint64_t v = 0;
    if (ToU64(NextToken(&rest), &v)) {
      found[k] = true;
      e.Host(kMetric[k], static_cast<double>(v));
    } else {
      e.Warn(std::string(key) + ": bad value");
    }
  }
  e.WarnIfTruncated(lines);
  WarnMissing(&e, kName, found, kKeys);
}

void ParseLoadavg(std::string_view t, ParseResult* out) {
  Emitter e("/proc/loadavg", out);
  LineReader lines(t);
  std::string_view line;
  if (!lines.Next(&line)) {
    e.WarnIfTruncated(lines);
    e.Warn("empty");
    return;
  }
  static constexpr std::string_view kMetric[3] = {"load1", "load5", "load15"};
  std::string_view rest = line;
  for (std::string_view m : kMetric) {
    double v = 0;
    if (!ToDouble(NextToken(&rest), &v)) {
      e.Warn(std::string("bad or missing ") + std::string(m));
      return;
    }
    e.Host(m, v);
  }
  std::string_view threads = NextToken(&rest);  // running/total
  size_t slash = threads.find('/');
  uint64_t total = 0;
  if (slash == std::string_view::npos || !ToU64(threads.substr(slash + 1), &total)) {
    e.Warn("bad or missing running/total threads");
    return;
  }
  e.Host("threads", static_cast<double>(total));
}

void ParseDiskstats(std::string_view t, const Filters& filters, ParseResult* out) {
  Emitter e("/proc/diskstats", out);
  // Indexes of the stat fields after major, minor and name.
  enum {
    kReads = 0,
    kReadSectors = 2,
    kReadMs = 3,
    kWrites = 4,
    kWriteSectors = 6,
    kWriteMs = 7,
    kInFlight = 8,
    kIoMs = 9,
    kWeightedMs = 10,
    kFull = 11,
  };
  constexpr int kMax = 11;  // later fields (discards, flushes) are not reported
  LineReader lines(t);
  std::string_view line;
  while (lines.Next(&line)) {
    std::string_view rest = line;
    std::string_view major = NextToken(&rest);
    std::string_view minor = NextToken(&rest);
    std::string_view name = NextToken(&rest);
    if (major.empty()) continue;
    if (name.empty() || !AllDigits(major) || !AllDigits(minor)) {
      e.Warn("malformed line '" + text::Excerpt(line) + "'");
      continue;
    }
    if (!DiskWanted(name, filters)) continue;
    uint64_t v[kMax] = {};
    int n = 0;
    bool bad = false;
    while (n < kMax) {
      text::Field f = text::NextU64(&rest, &v[n]);
      if (f == text::Field::kEnd) break;
      if (f == text::Field::kBad) {
        bad = true;
        break;
      }
      ++n;
    }
    if (bad) e.Warn(std::string(name) + ": bad field after " + std::to_string(n) + " fields");
    if (n < kFull && n != 4) {
      e.Warn(std::string(name) + ": " + std::to_string(n) + " fields; skipped");
      continue;
    }
    Entity& ent = out->entities.emplace_back();
    ent.kind = "disk";
    ent.name.assign(name);
    ent.labels.emplace_back("dev", std::string(major) + ":" + std::string(minor));
    auto add = [&](std::string_view metric, uint64_t x) {
      e.Add(metric, name, static_cast<double>(x));
    };
    if (n == 4) {
      // Partitions on Linux 2.6.x before 2.6.25: reads, sectors read, writes, sectors written.
      add("disk.reads", v[0]);
      add("disk.read_bytes", v[1]);
      add("disk.writes", v[2]);
      add("disk.write_bytes", v[3]);
      continue;
    }
    add("disk.reads", v[kReads]);
    add("disk.writes", v[kWrites]);
    add("disk.read_bytes", v[kReadSectors]);
    add("disk.write_bytes", v[kWriteSectors]);
    add("disk.read_time", v[kReadMs]);
    add("disk.write_time", v[kWriteMs]);
    add("disk.util", v[kIoMs]);
    add("disk.queue", v[kWeightedMs]);
    add("disk.inflight", v[kInFlight]);
  }
  e.WarnIfTruncated(lines);
}

void ParseNetDev(std::string_view t, const Filters& filters, ParseResult* out) {
  Emitter e("/proc/net/dev", out);
  constexpr int kFields = 16;
  struct Col {
    int index;
    std::string_view metric;
  };
  static constexpr Col kCols[] = {
      {0, "net.rx.bytes"}, {1, "net.rx.packets"}, {2, "net.rx.errors"},  {3, "net.rx.drops"},
      {8, "net.tx.bytes"}, {9, "net.tx.packets"}, {10, "net.tx.errors"}, {11, "net.tx.drops"},
  };
  LineReader lines(t);
  std::string_view line;
  while (lines.Next(&line)) {
    if (line.find('|') != std::string_view::npos) continue;  // the two header lines
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) {
      if (!text::Trim(line).empty()) e.Warn("malformed line '" + text::Excerpt(line) + "'");
      continue;
    }
    // Interface names cannot contain ':' or spaces; old kernels print "eth0:123" unspaced.
    std::string_view name = text::Trim(line.substr(0, colon));
    if (name.empty()) {
      e.Warn("malformed line '" + text::Excerpt(line) + "'");
      continue;
    }
    if (!InterfaceWanted(name, filters)) continue;
    std::string_view rest = line.substr(colon + 1);
    uint64_t v[kFields] = {};
    int n = 0;
    bool bad = false;
    while (n < kFields) {
      text::Field f = text::NextU64(&rest, &v[n]);
      if (f == text::Field::kEnd) break;
      if (f == text::Field::kBad) {
        bad = true;
        break;
      }
      ++n;
    }
    if (bad || n < kFields) {
      e.Warn(std::string(name) + ": " + std::to_string(n) + " of " + std::to_string(kFields) +
             " fields readable");
    }
    if (n == 0) continue;
    Entity& ent = out->entities.emplace_back();
    ent.kind = "interface";
    ent.name.assign(name);
    for (const Col& c : kCols) {
      if (c.index < n) e.Add(c.metric, name, static_cast<double>(v[c.index]));
    }
  }
  e.WarnIfTruncated(lines);
}

void ParseNetSnmp(std::string_view t, ParseResult* out) {
  Emitter e("/proc/net/snmp", out);
  struct Col {
    std::string_view proto, name, metric;
  };
  static constexpr Col kCols[] = {
      {"Tcp", "ActiveOpens", "tcp.active_opens"},
      {"Tcp", "PassiveOpens", "tcp.passive_opens"},
      {"Tcp", "AttemptFails", "tcp.attempt_fails"},
      {"Tcp", "EstabResets", "tcp.estab_resets"},
      {"Tcp", "CurrEstab", "tcp.curr_estab"},
      {"Tcp", "InSegs", "tcp.in_segs"},
      {"Tcp", "OutSegs", "tcp.out_segs"},
      {"Tcp", "RetransSegs", "tcp.retrans_segs"},
      {"Tcp", "InErrs", "tcp.in_errs"},
      {"Tcp", "OutRsts", "tcp.out_rsts"},
      {"Udp", "InDatagrams", "udp.in_datagrams"},
      {"Udp", "OutDatagrams", "udp.out_datagrams"},
      {"Udp", "InErrors", "udp.in_errors"},
      {"Udp", "NoPorts", "udp.no_ports"},
      {"Udp", "RcvbufErrors", "udp.rcvbuf_errors"},
  };
  constexpr int kColCount = sizeof(kCols) / sizeof(kCols[0]);
  bool found[kColCount] = {};
  // Lines come in pairs with the same prefix: column names, then values. Columns are found
  // by name, so new kernels' extra columns (anywhere in the line) do no harm.
  std::string_view header, header_proto;
  LineReader lines(t);
  std::string_view line;
  while (lines.Next(&line)) {
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) {
      if (!text::Trim(line).empty()) e.Warn("malformed line '" + text::Excerpt(line) + "'");
      continue;
    }
    std::string_view proto = line.substr(0, colon);
    if (header.empty() || proto != header_proto) {
      header = line.substr(colon + 1);
      header_proto = proto;
      if (text::Trim(header).empty()) header = {};
      continue;
    }
    std::string_view names = header;
    std::string_view values = line.substr(colon + 1);
    header = {};
    if (proto != "Tcp" && proto != "Udp") continue;
    int columns = 0;
    while (true) {
      std::string_view name = NextToken(&names);
      std::string_view value = NextToken(&values);
      if (name.empty() || value.empty()) {
        if (!name.empty() || !value.empty()) {
          e.Warn(std::string(proto) + ": " + std::to_string(columns) +
                 " columns matched; names and values differ in number");
        }
        break;
      }
      ++columns;
      for (int k = 0; k < kColCount; ++k) {
        const Col& c = kCols[k];
        if (c.name.size() != name.size() || c.name[0] != name[0] || c.proto != proto ||
            c.name != name) {
          continue;
        }
        int64_t v = 0;
        if (!ToI64(value, &v) || v < 0) {
          uint64_t u = 0;  // unsigned long counters above INT64_MAX
          if (!ToU64(value, &u)) {
            e.Warn(std::string(proto) + " " + std::string(name) + ": bad value");
            break;
          }
          e.Host(kCols[k].metric, static_cast<double>(u));
        } else {
          e.Host(kCols[k].metric, static_cast<double>(v));
        }
        found[k] = true;
        break;
      }
    }
  }
  e.WarnIfTruncated(lines);
  std::string missing;
  for (int k = 0; k < kColCount; ++k) {
    if (found[k]) continue;
    if (!missing.empty()) missing += ", ";
    missing.append(kCols[k].proto).append(" ").append(kCols[k].name);
  }
  if (!missing.empty()) e.Warn("missing " + missing);
}

namespace {

struct SockField {
  std::string_view prefix, key, metric;
};

template <size_t N>
void ParseSockstatTable(std::string_view path, std::string_view t, const SockField (&fields)[N],
                        ParseResult* out) {
  Emitter e(path, out);
  bool found[N] = {};
  LineReader lines(t);
  std::string_view line;
  while (lines.Next(&line)) {
    std::string_view rest = line;
    std::string_view prefix = NextToken(&rest);
    bool wanted = false;
    for (const SockField& f : fields) wanted = wanted || f.prefix == prefix;
    if (!wanted) continue;
    while (true) {
      std::string_view key = NextToken(&rest);
      std::string_view value = NextToken(&rest);
      if (key.empty()) break;
      for (size_t k = 0; k < N; ++k) {
        if (fields[k].prefix != prefix || fields[k].key != key) continue;
        uint64_t v = 0;
        if (ToU64(value, &v)) {
          found[k] = true;
          e.Host(fields[k].metric, static_cast<double>(v));
        } else {
          e.Warn(std::string(prefix) + " " + std::string(key) + ": bad value");
        }
        break;
      }
      if (value.empty()) break;
    }
  }
  e.WarnIfTruncated(lines);
  std::string missing;
  for (size_t k = 0; k < N; ++k) {
    if (found[k]) continue;
    if (!missing.empty()) missing += ", ";
    missing.append(fields[k].prefix).append(" ").append(fields[k].key);
  }
  if (!missing.empty()) e.Warn("missing " + missing);
}

}  // namespace

void ParseSockstat(std::string_view t, ParseResult* out) {
  static constexpr SockField kFields[] = {
      {"sockets:", "used", "sock.used"},     {"TCP:", "inuse", "sock.tcp.inuse"},
      {"TCP:", "orphan", "sock.tcp.orphan"}, {"TCP:", "tw", "sock.tcp.tw"},
      {"UDP:", "inuse", "sock.udp.inuse"},
  };
  ParseSockstatTable("/proc/net/sockstat", t, kFields, out);
}

void ParseSockstat6(std::string_view t, ParseResult* out) {
  static constexpr SockField kFields[] = {
      {"TCP6:", "inuse", "sock.tcp6.inuse"},
      {"UDP6:", "inuse", "sock.udp6.inuse"},
  };
  ParseSockstatTable("/proc/net/sockstat6", t, kFields, out);
}

void ParseFileNr(std::string_view t, ParseResult* out) {
  Emitter e("/proc/sys/fs/file-nr", out);
  LineReader lines(t);
  std::string_view line;
  if (!lines.Next(&line)) {
    e.WarnIfTruncated(lines);
    e.Warn("empty");
    return;
  }
  std::string_view rest = line;
  uint64_t allocated = 0, free = 0, max = 0;
  if (!ToU64(NextToken(&rest), &allocated) || !ToU64(NextToken(&rest), &free) ||
      !ToU64(NextToken(&rest), &max)) {
    e.Warn("expected 3 numbers, got '" + text::Excerpt(line) + "'");
    return;
  }
  // The middle number (free handles) is 0 since Linux 2.6; subtract it for older ones.
  const double used = static_cast<double>(free <= allocated ? allocated - free : 0);
  e.Host("fd.allocated", used);
  e.Host("fd.max", static_cast<double>(max));
  if (max > 0) e.Host("fd.pused", used / static_cast<double>(max) * 100);
}

void ParsePressure(std::string_view resource, std::string_view t, ParseResult* out) {
  static constexpr std::string_view kResources[3] = {"cpu", "memory", "io"};
  static constexpr std::string_view kPaths[3] = {"/proc/pressure/cpu", "/proc/pressure/memory",
                                                 "/proc/pressure/io"};
  // [resource][some, full]
  // System-wide cpu "full" is undefined (the kernel prints zeros since 5.13): not reported.
  static constexpr std::string_view kTotal[3][2] = {
      {"pressure.cpu.some", ""},
      {"pressure.memory.some", "pressure.memory.full"},
      {"pressure.io.some", "pressure.io.full"}};
  static constexpr std::string_view kAvg10[3][2] = {
      {"pressure.cpu.some.avg10", ""},
      {"pressure.memory.some.avg10", "pressure.memory.full.avg10"},
      {"pressure.io.some.avg10", "pressure.io.full.avg10"}};
  int r = 0;
  while (r < 3 && kResources[r] != resource) ++r;
  if (r == 3) {
    Emitter e("/proc/pressure", out);
    e.Warn("unknown resource '" + text::Excerpt(resource) + "'");
    return;
  }
  Emitter e(kPaths[r], out);
  bool found[2] = {};
  LineReader lines(t);
  std::string_view line;
  while (lines.Next(&line)) {
    std::string_view rest = line;
    std::string_view kind = NextToken(&rest);
    int k = kind == "some" ? 0 : kind == "full" ? 1 : -1;
    if (k < 0) {
      if (!kind.empty()) e.Warn("unexpected line '" + text::Excerpt(line) + "'");
      continue;
    }
    if (kTotal[r][k].empty()) continue;
    bool have_avg = false, have_total = false;
    double avg10 = 0;
    uint64_t total = 0;
    for (std::string_view tok = NextToken(&rest); !tok.empty(); tok = NextToken(&rest)) {
      if (tok.starts_with("avg10=")) {
        have_avg = ToDouble(tok.substr(6), &avg10);
      } else if (tok.starts_with("total=")) {
        have_total = ToU64(tok.substr(6), &total);
      }
    }
    if (have_avg) e.Host(kAvg10[r][k], avg10);
    if (have_total) e.Host(kTotal[r][k], static_cast<double>(total));
    if (!have_avg || !have_total) e.Warn(std::string(kind) + ": avg10 or total missing or bad");
    found[k] = found[k] || have_avg || have_total;
  }
  e.WarnIfTruncated(lines);
  if (!found[0]) e.Warn("missing some");
  if (!found[1] && r != 0) e.Warn("missing full");
}

void ParseUptime(std::string_view t, ParseResult* out) {
  Emitter e("/proc/uptime", out);
  LineReader lines(t);
  std::string_view line;
  if (!lines.Next(&line)) {
    e.WarnIfTruncated(lines);
    e.Warn("empty");
    return;
  }
  std::string_view rest = line;
  double up = 0;
  if (!ToDouble(NextToken(&rest), &up)) {
    e.Warn("bad value '" + text::Excerpt(line) + "'");
    return;
  }
  e.Host("uptime", up);
}

}  // namespace trapline::plugins::linuxhost
