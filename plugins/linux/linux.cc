// The linux plugin's metric table, options, mount handling and Parse(); the per-file /proc
// parsers are in parsers.cc.

#include "plugins/linux/linux.h"

#include <algorithm>
#include <cstdlib>
#include <utility>

#include "plugins/linux/text.h"

namespace trapline::plugins::linuxhost {
namespace {

using text::Emitter;

// USER_HZ is 100 on every architecture Linux still supports (alpha's 1024 aside): a CPU busy
// for a whole second adds 100 jiffies, so a rate in jiffies per second *is* a percentage of
// one CPU and the scale is 1. The host-wide counters are divided by the CPU count, so theirs
// is a percentage of all CPUs.
constexpr double kJiffiesToPercent = 1.0;

struct CpuState {
  const char* name;
  const char* what;
};
constexpr CpuState kCpuStates[] = {
    {"user", "running user space (guests included)"},
    {"nice", "running niced user space (niced guests included)"},
    {"system", "running the kernel"},
    {"idle", "idle"},
    {"iowait", "idle with disk I/O outstanding"},
    {"irq", "serving hardware interrupts"},
    {"softirq", "serving software interrupts"},
    {"steal", "stolen by the hypervisor for other guests"},
    {"guest", "running guest VMs (also counted in user)"},
    {"guest_nice", "running niced guest VMs (also counted in nice)"},
    {"busy", "not idle: user + nice + system + irq + softirq + steal"},
};

std::vector<MetricSpec> BuildMetrics() {
  std::vector<MetricSpec> m;
  auto gauge = [&m](std::string name, std::string kind, std::string title, std::string units,
                    std::string description) {
    m.push_back(GaugeSpec(std::move(name), std::move(title), std::move(units),
                          std::move(description), std::move(kind)));
  };
  auto counter = [&m](std::string name, std::string kind, std::string title, std::string units,
                      double rate_scale, std::string description) {
    m.push_back(CounterSpec(std::move(name), std::move(title), std::move(units),
                            std::move(description), std::move(kind), rate_scale));
  };

  // CPU (/proc/stat).
  gauge("cpu.count", "", "Number of CPUs", "", "CPUs online (cpuN lines of /proc/stat).");
  for (const CpuState& st : kCpuStates) {
    counter(std::string("cpu.total.") + st.name, "", std::string("CPU ") + st.name + ", all CPUs",
            "%", kJiffiesToPercent,
            std::string("Share of all CPUs' time ") + st.what + ", in % (100 = every CPU).");
  }
  for (const CpuState& st : kCpuStates) {
    counter(std::string("cpu.") + st.name, "cpu", std::string("CPU {#ENTITY}: ") + st.name, "%",
            kJiffiesToPercent, std::string("Share of this CPU's time ") + st.what + ", in %.");
  }
  counter("context_switches", "", "Context switches", "/s", 1, "Context switches per second.");
  counter("interrupts", "", "Interrupts", "/s", 1, "Hardware interrupts serviced per second.");
  counter("softirqs", "", "Software interrupts", "/s", 1, "Software interrupts per second.");
  counter("forks", "", "Processes created", "/s", 1, "Processes and threads created per second.");
  gauge("procs.running", "", "Runnable threads", "", "Threads running or ready to run.");
  gauge("procs.blocked", "", "Blocked threads", "", "Threads blocked waiting for I/O to complete.");
  gauge("threads", "", "Threads", "", "Kernel scheduling entities (processes and threads).");
  gauge("load1", "", "Load average (1 min)", "", "Load average over 1 minute.");
  gauge("load5", "", "Load average (5 min)", "", "Load average over 5 minutes.");
  gauge("load15", "", "Load average (15 min)", "", "Load average over 15 minutes.");

  // Memory (/proc/meminfo, /proc/vmstat).
  gauge("mem.total", "", "Memory total", "B", "Usable RAM (MemTotal).");
  gauge("mem.available", "", "Memory available", "B",
        "Memory available for new work without swapping (MemAvailable; before Linux 3.14 "
        "MemFree + Buffers + Cached).");
  gauge("mem.used", "", "Memory used", "B", "MemTotal - MemAvailable.");
  gauge("mem.pused", "", "Memory used, %", "%", "mem.used as % of MemTotal.");
  gauge("mem.free", "", "Memory free", "B", "Memory not used at all (MemFree).");
  gauge("mem.buffers", "", "Memory buffers", "B", "Block device buffers (Buffers).");
  gauge("mem.cached", "", "Memory cached", "B", "Page cache, shared memory included (Cached).");
  gauge("mem.dirty", "", "Memory dirty", "B", "Memory waiting to be written to disk (Dirty).");
  gauge("mem.slab", "", "Memory slab", "B", "Kernel slab caches (Slab).");
  gauge("swap.total", "", "Swap total", "B", "Swap space (SwapTotal).");
  gauge("swap.used", "", "Swap used", "B", "SwapTotal - SwapFree.");
  gauge("swap.free", "", "Swap free", "B", "Unused swap space (SwapFree).");
  counter("swap.in", "", "Swap in (pages)", "/s", 1,
          "Pages swapped in per second (pswpin; a page is 4 KiB on x86).");
  counter("swap.out", "", "Swap out (pages)", "/s", 1,
          "Pages swapped out per second (pswpout; a page is 4 KiB on x86).");
  counter("vm.page_faults", "", "Page faults", "/s", 1, "Page faults per second (pgfault).");
  counter("vm.major_faults", "", "Major page faults", "/s", 1,
          "Page faults that needed disk I/O per second (pgmajfault).");
  counter("vm.oom_kills", "", "OOM kills", "/s", 1,
          "Processes killed by the OOM killer, per second (oom_kill, Linux 4.13+); any "
          "non-zero maximum in an interval means a kill.");

  // Disks (/proc/diskstats). The sector unit of diskstats is always 512 bytes.
  counter("disk.reads", "disk", "Disk {#ENTITY}: reads", "/s", 1, "Reads completed per second.");
  counter("disk.writes", "disk", "Disk {#ENTITY}: writes", "/s", 1, "Writes completed per second.");
  counter("disk.read_bytes", "disk", "Disk {#ENTITY}: read", "Bps", 512, "Bytes read per second.");
  counter("disk.write_bytes", "disk", "Disk {#ENTITY}: written", "Bps", 512,
          "Bytes written per second.");
  counter("disk.read_time", "disk", "Disk {#ENTITY}: read time", "s", 0.001,
          "Seconds spent on reads per second (summed over reads in flight). Read await = "
          "read_time / reads.");
  counter("disk.write_time", "disk", "Disk {#ENTITY}: write time", "s", 0.001,
          "Seconds spent on writes per second (summed over writes in flight). Write await = "
          "write_time / writes.");
  counter("disk.util", "disk", "Disk {#ENTITY}: utilisation", "%", 0.1,
          "Share of time the device had I/O in flight (io_ticks).");
  counter("disk.queue", "disk", "Disk {#ENTITY}: average queue length", "", 0.001,
          "Average number of requests queued or in flight (weighted io_ticks; iostat aqu-sz).");
  gauge("disk.inflight", "disk", "Disk {#ENTITY}: I/O in flight", "",
        "Requests issued to the device and not yet completed.");

  // Filesystems (statvfs@openssh.com).
  gauge("fs.size", "filesystem", "Filesystem {#ENTITY}: size", "B", "Total size.");
  gauge("fs.used", "filesystem", "Filesystem {#ENTITY}: used", "B",
        "Space used: (blocks - bfree) * frsize.");
  gauge("fs.free", "filesystem", "Filesystem {#ENTITY}: free", "B",
        "Space available to unprivileged users: bavail * frsize.");
  gauge("fs.pused", "filesystem", "Filesystem {#ENTITY}: used, %", "%",
        "used / (used + free) * 100, as df's Use% (root-reserved blocks count as neither).");
  gauge("fs.inodes.pfree", "filesystem", "Filesystem {#ENTITY}: free inodes, %", "%",
        "favail / files * 100; absent for filesystems without an inode limit (btrfs, vfat).");

  // Interfaces (/proc/net/dev).
  struct Dir {
    const char* name;
    const char* verb;
  };
  for (Dir d : {Dir{"rx", "received"}, Dir{"tx", "sent"}}) {
    std::string p = std::string("net.") + d.name + ".";
    std::string t = std::string("Interface {#ENTITY}: ");
    counter(p + "bytes", "interface", t + "bytes " + d.verb, "Bps", 1,
            std::string("Bytes ") + d.verb + " per second.");
    counter(p + "packets", "interface", t + "packets " + d.verb, "/s", 1,
            std::string("Packets ") + d.verb + " per second.");
    counter(p + "errors", "interface", t + d.name + " errors", "/s", 1,
            std::string("Errors per second on packets ") + d.verb + ".");
    counter(p + "drops", "interface", t + d.name + " drops", "/s", 1,
            std::string("Packets dropped per second, ") + d.verb + " side.");
  }

  // Sockets (/proc/net/sockstat, /proc/net/sockstat6).
  gauge("sock.used", "", "Sockets used", "", "Sockets of all families in use.");
  gauge("sock.tcp.inuse", "", "TCP sockets in use (IPv4)", "", "IPv4 TCP sockets in use.");
  gauge("sock.tcp.orphan", "", "TCP orphan sockets", "",
        "TCP sockets no longer attached to a process.");
  gauge("sock.tcp.tw", "", "TCP sockets in TIME_WAIT", "", "TCP sockets in TIME_WAIT.");
  gauge("sock.udp.inuse", "", "UDP sockets in use (IPv4)", "", "IPv4 UDP sockets in use.");
  gauge("sock.tcp6.inuse", "", "TCP sockets in use (IPv6)", "", "IPv6 TCP sockets in use.");
  gauge("sock.udp6.inuse", "", "UDP sockets in use (IPv6)", "", "IPv6 UDP sockets in use.");

  // TCP and UDP (/proc/net/snmp, IPv4 and IPv6 together).
  counter("tcp.active_opens", "", "TCP active opens", "/s", 1,
          "Connections opened from this host per second (ActiveOpens).");
  counter("tcp.passive_opens", "", "TCP passive opens", "/s", 1,
          "Connections accepted per second (PassiveOpens).");
  counter("tcp.attempt_fails", "", "TCP failed connection attempts", "/s", 1,
          "Connection attempts that failed per second (AttemptFails).");
  counter("tcp.estab_resets", "", "TCP established resets", "/s", 1,
          "Established connections reset per second (EstabResets).");
  gauge("tcp.curr_estab", "", "TCP connections established", "",
        "Connections in ESTABLISHED or CLOSE_WAIT (CurrEstab).");
  counter("tcp.in_segs", "", "TCP segments received", "/s", 1, "Segments received per second.");
  counter("tcp.out_segs", "", "TCP segments sent", "/s", 1,
          "Segments sent per second, retransmissions excluded.");
  counter("tcp.retrans_segs", "", "TCP segments retransmitted", "/s", 1,
          "Segments retransmitted per second (retransmission rate = retrans_segs / out_segs).");
  counter("tcp.in_errs", "", "TCP segments received in error", "/s", 1,
          "Bad segments received per second (InErrs).");
  counter("tcp.out_rsts", "", "TCP resets sent", "/s", 1, "Segments with RST sent per second.");
  counter("udp.in_datagrams", "", "UDP datagrams received", "/s", 1,
          "Datagrams delivered per second.");
  counter("udp.out_datagrams", "", "UDP datagrams sent", "/s", 1, "Datagrams sent per second.");
  counter("udp.in_errors", "", "UDP receive errors", "/s", 1,
          "Datagrams that could not be delivered per second (InErrors).");
  counter("udp.no_ports", "", "UDP datagrams to closed ports", "/s", 1,
          "Datagrams for ports nobody listens on per second (NoPorts).");
  counter("udp.rcvbuf_errors", "", "UDP receive buffer errors", "/s", 1,
          "Datagrams dropped per second because a receive buffer was full.");

  // File descriptors (/proc/sys/fs/file-nr).
  gauge("fd.allocated", "", "File handles allocated", "", "File handles in use, system-wide.");
  gauge("fd.max", "", "File handles max", "", "System-wide limit (fs.file-max).");
  gauge("fd.pused", "", "File handles used, %", "%", "fd.allocated as % of fd.max.");

  // Pressure stall information (/proc/pressure/*, Linux 4.20+).
  for (const char* res : {"cpu", "memory", "io"}) {
    for (const char* kind : {"some", "full"}) {
      // The kernel documents system-wide cpu "full" as undefined and prints zeros (5.13+).
      if (std::string_view(res) == "cpu" && std::string_view(kind) == "full") continue;
      std::string base = std::string("pressure.") + res + "." + kind;
      std::string who = std::string(kind) == "some" ? "at least one task" : "all non-idle tasks";
      counter(base, "", std::string("Pressure ") + res + " " + kind + ", %", "%", 1e-4,
              "Share of time " + who + " stalled on " + res + " (from the total in us).");
      gauge(base + ".avg10", "", std::string("Pressure ") + res + " " + kind + ", avg10", "%",
            "The kernel's 10 s running average of the same share.");
    }
  }

  gauge("uptime", "", "Uptime", "uptime", "Seconds since boot.");
  return m;
}

std::vector<std::string> ParseList(std::string_view v, std::string* error) {
  std::vector<std::string> out;
  v = text::Trim(v);
  if (v.empty()) return out;
  // TOML array text starts with '[' then a quote or ']'; anything else is a comma-separated
  // list (the collector joins TOML arrays with commas), so "[sv]d*" is a glob, not an array.
  std::string_view after = v.front() == '[' ? text::Trim(v.substr(1)) : std::string_view();
  const bool toml_array =
      v.front() == '[' && (after.empty() || after[0] == '"' || after[0] == '\'' || after[0] == ']');
  if (!toml_array) {
    // Comma-separated.
    while (true) {
      size_t comma = v.find(',');
      std::string_view item = text::Trim(v.substr(0, comma));
      if (!item.empty()) out.emplace_back(item);
      if (comma == std::string_view::npos) break;
      v.remove_prefix(comma + 1);
    }
    return out;
  }
  // TOML array of strings: [ "a", 'b' ] with an optional trailing comma.
  v.remove_prefix(1);
  bool need_comma = false;
  while (true) {
    v = text::Trim(v);
    if (v.empty()) {
      *error = "unterminated array";
      return {};
    }
    char c = v.front();
    if (c == ']') {
      if (!text::Trim(v.substr(1)).empty()) *error = "text after the array";
      return out;
    }
    if (c == ',') {
      if (!need_comma) {
        *error = "unexpected ','";
        return {};
      }
      need_comma = false;
      v.remove_prefix(1);
      continue;
    }
    if (need_comma) {
      *error = "expected ',' or ']'";
      return {};
    }
    if (c != '"' && c != '\'') {
      *error = "array items must be quoted strings";
      return {};
    }
    std::string item;
    size_t i = 1;
    bool closed = false;
    for (; i < v.size(); ++i) {
      char d = v[i];
      if (d == c) {
        closed = true;
        break;
      }
      if (c == '"' && d == '\\' && i + 1 < v.size()) {
        char e = v[++i];
        item.push_back(e == 't' ? '\t' : e == 'n' ? '\n' : e);
        continue;
      }
      item.push_back(d);
    }
    if (!closed) {
      *error = "unterminated string";
      return {};
    }
    out.push_back(std::move(item));
    v.remove_prefix(i + 1);
    need_comma = true;
  }
}

bool ParseBool(std::string_view v, bool* b) {
  v = text::Trim(v);
  if (v == "true") {
    *b = true;
    return true;
  }
  if (v == "false") {
    *b = false;
    return true;
  }
  return false;
}

// Decodes the \ooo escapes /proc/mounts uses for space, tab, newline and backslash.
std::string Unescape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      char a = s[i + 1], b = s[i + 2], c = s[i + 3];
      if (a >= '0' && a <= '3' && b >= '0' && b <= '7' && c >= '0' && c <= '7') {
        out.push_back(static_cast<char>((a - '0') * 64 + (b - '0') * 8 + (c - '0')));
        i += 3;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

// Whether a mount's source names one filesystem (see FilesystemsToStat()).
bool SourceIdentifiesFilesystem(const Mount& m) {
  if (m.device.empty()) return false;
  return m.device.front() == '/' || m.fstype == "zfs" || m.device.find(':') != std::string::npos;
}

bool SetMatch(std::string_view pattern, size_t* pi, char c, bool* ok) {
  // pattern[*pi] == '['. Returns whether c is in the set; *ok = false if malformed.
  size_t i = *pi + 1;
  bool negate = false;
  if (i < pattern.size() && (pattern[i] == '!' || pattern[i] == '^')) {
    negate = true;
    ++i;
  }
  bool match = false;
  bool first = true;
  while (i < pattern.size() && (first || pattern[i] != ']')) {
    first = false;
    char lo = pattern[i];
    char hi = lo;
    if (i + 2 < pattern.size() && pattern[i + 1] == '-' && pattern[i + 2] != ']') {
      hi = pattern[i + 2];
      i += 3;
    } else {
      ++i;
    }
    if (lo <= c && c <= hi) match = true;
  }
  if (i >= pattern.size()) {
    *ok = false;
    return false;
  }
  *ok = true;
  *pi = i + 1;
  return match != negate;
}

}  // namespace

const std::vector<MetricSpec>& Metrics() {
  static const std::vector<MetricSpec> metrics = BuildMetrics();
  return metrics;
}

bool GlobMatch(std::string_view pattern, std::string_view name) {
  // Iterative matcher with single-star backtracking: linear for patterns with one '*', and
  // O(|pattern| * |name|) at worst.
  size_t p = 0, n = 0;
  size_t star_p = std::string_view::npos, star_n = 0;
  while (n < name.size()) {
    if (p < pattern.size()) {
      char pc = pattern[p];
      if (pc == '*') {
        star_p = p++;
        star_n = n;
        continue;
      }
      if (pc == '?') {
        ++p;
        ++n;
        continue;
      }
      if (pc == '[') {
        size_t q = p;
        bool ok = false;
        bool in = SetMatch(pattern, &q, name[n], &ok);
        if (ok) {
          if (in) {
            p = q;
            ++n;
            continue;
          }
        } else if (name[n] == '[') {  // malformed set: a literal '['
          ++p;
          ++n;
          continue;
        }
      } else if (pc == name[n]) {
        ++p;
        ++n;
        continue;
      }
    }
    if (star_p == std::string_view::npos) return false;
    p = star_p + 1;
    n = ++star_n;
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

namespace {

// GlobMatch() with a quick reject on the first character, which settles most pairs.
bool QuickGlobMatch(const std::string& pattern, std::string_view name) {
  if (!pattern.empty() && !name.empty()) {
    char c = pattern[0];
    if (c != '*' && c != '?' && c != '[' && c != name[0]) return false;
  }
  return GlobMatch(pattern, name);
}

}  // namespace

bool Wanted(std::string_view name, const std::vector<std::string>& include,
            const std::vector<std::string>& exclude) {
  if (!include.empty()) {
    bool any = false;
    for (const std::string& p : include) {
      if (QuickGlobMatch(p, name)) {
        any = true;
        break;
      }
    }
    if (!any) return false;
  }
  for (const std::string& p : exclude) {
    if (QuickGlobMatch(p, name)) return false;
  }
  return true;
}

bool IsPartition(std::string_view name) {
  if (name.empty() || name.back() < '0' || name.back() > '9') return false;
  size_t i = name.size();
  while (i > 0 && name[i - 1] >= '0' && name[i - 1] <= '9') --i;
  if (i == 0) return false;
  // <digit>p<digits>: nvme0n1p1, mmcblk0p1, md0p1, loop0p1, nbd0p1, zd0p1, cciss!c0d0p1.
  if (name[i - 1] == 'p' && i >= 2 && name[i - 2] >= '0' && name[i - 2] <= '9') return true;
  // sd/vd/hd/xvd + letters + digits: sda1, vdb2, hda1, xvda1, sdaa3.
  std::string_view head = name.substr(0, i);
  size_t letters_from = 0;
  if (head.starts_with("xvd")) {
    letters_from = 3;
  } else if (head.starts_with("sd") || head.starts_with("vd") || head.starts_with("hd")) {
    letters_from = 2;
  } else {
    return false;
  }
  if (head.size() == letters_from) return false;
  for (size_t k = letters_from; k < head.size(); ++k) {
    if (head[k] < 'a' || head[k] > 'z') return false;
  }
  return true;
}

bool DiskWanted(std::string_view name, const Filters& filters) {
  if (!filters.disk_partitions && IsPartition(name)) return false;
  return Wanted(name, filters.disk_include, filters.disk_exclude);
}

bool InterfaceWanted(std::string_view name, const Filters& filters) {
  return Wanted(name, filters.interface_include, filters.interface_exclude);
}

std::string ParseFilters(const std::map<std::string, std::string>& options, Filters* filters) {
  struct ListOption {
    const char* name;
    std::vector<std::string> Filters::*field;
  };
  static constexpr ListOption kLists[] = {
      {"disk_include", &Filters::disk_include},
      {"disk_exclude", &Filters::disk_exclude},
      {"fs_type_include", &Filters::fs_type_include},
      {"fs_type_exclude", &Filters::fs_type_exclude},
      {"mountpoint_include", &Filters::mountpoint_include},
      {"mountpoint_exclude", &Filters::mountpoint_exclude},
      {"interface_include", &Filters::interface_include},
      {"interface_exclude", &Filters::interface_exclude},
  };
  struct BoolOption {
    const char* name;
    bool Filters::*field;
  };
  static constexpr BoolOption kBools[] = {
      {"disk_partitions", &Filters::disk_partitions},
      {"per_cpu", &Filters::per_cpu},
  };
  for (const auto& [key, value] : options) {
    bool known = false;
    for (const ListOption& o : kLists) {
      if (key != o.name) continue;
      known = true;
      std::string error;
      std::vector<std::string> list = ParseList(value, &error);
      if (!error.empty()) return "[linux] option " + key + ": " + error + " in '" + value + "'";
      filters->*o.field = std::move(list);
    }
    for (const BoolOption& o : kBools) {
      if (key != o.name) continue;
      known = true;
      if (!ParseBool(value, &(filters->*o.field))) {
        return "[linux] option " + key + ": expected true or false, got '" + value + "'";
      }
    }
    if (!known) {
      std::string names;
      for (const ListOption& o : kLists) names += std::string(names.empty() ? "" : ", ") + o.name;
      for (const BoolOption& o : kBools) names += std::string(", ") + o.name;
      return "[linux] unknown option '" + key + "' (known: " + names + ")";
    }
  }
  return {};
}

std::vector<std::string> TickFiles() {
  // Fast-moving counters first, so that they are read closest to the reply's arrival time
  // (the collector stamps the tick with it); the mount table last.
  return {"/proc/stat",           "/proc/diskstats",    "/proc/net/dev",
          "/proc/meminfo",        "/proc/vmstat",       "/proc/loadavg",
          "/proc/net/snmp",       "/proc/net/sockstat", "/proc/net/sockstat6",
          "/proc/sys/fs/file-nr", "/proc/pressure/cpu", "/proc/pressure/memory",
          "/proc/pressure/io",    "/proc/uptime",       std::string(kMountsFile)};
}

bool ShortReadReachesEnd(std::string_view path, uint64_t got) {
  // The smallest page size of any Linux architecture: the least a seq_file buffer holds.
  constexpr uint64_t kMinPage = 4096;
  struct Kind {
    std::string_view path;
    uint64_t longest_record;  // 0: produced in one piece
  };
  // Longest records, with room to spare: a diskstats line is a name and 20 numbers, a net/dev
  // line a name and 16 numbers (each at most 20 digits), a vmstat line a name of at most about
  // 32 characters and one number (54 bytes).
  static constexpr Kind kKinds[] = {
      {"/proc/stat", 0},           {"/proc/meminfo", 0},      {"/proc/loadavg", 0},
      {"/proc/net/snmp", 0},       {"/proc/net/sockstat", 0}, {"/proc/net/sockstat6", 0},
      {"/proc/sys/fs/file-nr", 0}, {"/proc/pressure/cpu", 0}, {"/proc/pressure/memory", 0},
      {"/proc/pressure/io", 0},    {"/proc/uptime", 0},       {"/proc/diskstats", 512},
      {"/proc/net/dev", 512},      {"/proc/vmstat", 80},
  };
  for (const Kind& k : kKinds) {
    if (k.path == path) return k.longest_record == 0 || got + k.longest_record <= kMinPage;
  }
  return false;
}

namespace {

// A line of /proc/mounts, still escaped.
struct MountView {
  std::string_view device, mountpoint, fstype;
};

std::vector<MountView> ParseMountViews(std::string_view proc_mounts,
                                       std::vector<std::string>* warnings) {
  std::vector<MountView> mounts;
  mounts.reserve(64);
  text::LineReader lines(proc_mounts);
  std::string_view line;
  while (lines.Next(&line)) {
    std::string_view rest = line;
    MountView m;
    m.device = text::NextToken(&rest);
    m.mountpoint = text::NextToken(&rest);
    m.fstype = text::NextToken(&rest);
    if (m.device.empty()) continue;  // blank line
    if (m.fstype.empty()) {
      if (warnings)
        warnings->push_back(std::string(kMountsFile) + ": malformed line '" + text::Excerpt(line) +
                            "'");
      continue;
    }
    mounts.push_back(m);
  }
  if (lines.truncated() && warnings) {
    warnings->push_back(std::string(kMountsFile) + ": last line cut short (no newline); ignored");
  }
  return mounts;
}

Mount ToMount(const MountView& v) {
  return Mount{Unescape(v.device), Unescape(v.mountpoint), std::string(v.fstype)};
}

// FilesystemsToStat(), with warnings. Works on the escaped text until a mount is kept, so
// the many pseudo filesystems cost no allocation; sorting makes step 1 O(n log n) for hosts
// with thousands of mounts.
std::vector<Mount> SelectFilesystems(std::string_view proc_mounts, const Filters& filters,
                                     std::vector<std::string>* warnings) {
  const std::vector<MountView> all = ParseMountViews(proc_mounts, warnings);
  const size_t n = all.size();
  std::vector<char> keep(n, 1);
  // 1. Only the last mount on a mountpoint is visible (escaping is the same for equal paths).
  std::vector<uint32_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = static_cast<uint32_t>(i);
  std::stable_sort(order.begin(), order.end(), [&all](uint32_t a, uint32_t b) {
    return all[a].mountpoint < all[b].mountpoint;
  });
  for (size_t k = 0; k + 1 < n; ++k) {
    if (all[order[k]].mountpoint == all[order[k + 1]].mountpoint) keep[order[k]] = 0;
  }
  // 2. Filters, the type first: it needs no unescaping and rejects most mounts.
  std::vector<Mount> kept;
  for (size_t i = 0; i < n; ++i) {
    if (!keep[i] || !Wanted(all[i].fstype, filters.fs_type_include, filters.fs_type_exclude)) {
      continue;
    }
    Mount m = ToMount(all[i]);
    if (Wanted(m.mountpoint, filters.mountpoint_include, filters.mountpoint_exclude)) {
      kept.push_back(std::move(m));
    }
  }
  // 3. One mount per filesystem: the shortest mountpoint, the first of equal length.
  const size_t k = kept.size();
  std::vector<char> keep2(k, 1);
  for (size_t i = 0; i < k; ++i) {
    if (!keep2[i] || !SourceIdentifiesFilesystem(kept[i])) continue;
    for (size_t j = i + 1; j < k; ++j) {
      if (!keep2[j] || kept[j].device != kept[i].device) continue;
      if (kept[j].mountpoint.size() < kept[i].mountpoint.size()) {
        keep2[i] = 0;
        break;
      }
      keep2[j] = 0;
    }
  }
  std::vector<Mount> out;
  out.reserve(k);
  for (size_t i = 0; i < k; ++i) {
    if (keep2[i]) out.push_back(std::move(kept[i]));
  }
  return out;
}

}  // namespace

std::vector<Mount> ParseMounts(std::string_view proc_mounts, std::vector<std::string>* warnings) {
  std::vector<Mount> mounts;
  for (const MountView& v : ParseMountViews(proc_mounts, warnings)) mounts.push_back(ToMount(v));
  return mounts;
}

std::vector<Mount> FilesystemsToStat(std::string_view proc_mounts, const Filters& filters) {
  return SelectFilesystems(proc_mounts, filters, nullptr);
}

void ParseFilesystems(const std::vector<Mount>* mounts, const std::vector<FsStat>& fs,
                      ParseResult* out) {
  Emitter e("statvfs", out);
  for (const FsStat& s : fs) {
    const Mount* mount = nullptr;
    if (mounts) {
      for (const Mount& m : *mounts) {
        if (m.mountpoint == s.mountpoint) {
          mount = &m;
          break;
        }
      }
      if (!mount) {
        e.Warn(s.mountpoint + ": not among the filesystems to stat in this tick's " +
               std::string(kMountsFile) + "; dropped");
        continue;
      }
    }
    const double frsize = static_cast<double>(s.frsize ? s.frsize : s.bsize);
    if (frsize == 0 || s.bfree > s.blocks || s.bavail > s.blocks) {
      e.Warn(s.mountpoint + ": inconsistent statvfs (block size 0 or free > total); dropped");
      continue;
    }
    Entity& ent = out->entities.emplace_back();
    ent.kind = "filesystem";
    ent.name = s.mountpoint;
    if (mount) {
      ent.labels.emplace_back("device", mount->device);
      ent.labels.emplace_back("fstype", mount->fstype);
    }
    const double used = static_cast<double>(s.blocks - s.bfree) * frsize;
    const double avail = static_cast<double>(s.bavail) * frsize;
    e.Add("fs.size", s.mountpoint, static_cast<double>(s.blocks) * frsize);
    e.Add("fs.used", s.mountpoint, used);
    e.Add("fs.free", s.mountpoint, avail);
    if (used + avail > 0) e.Add("fs.pused", s.mountpoint, used / (used + avail) * 100);
    if (s.files > 0 && s.favail <= s.files) {
      e.Add("fs.inodes.pfree", s.mountpoint,
            static_cast<double>(s.favail) / static_cast<double>(s.files) * 100);
    }
  }
}

MountSelection SelectMounts(std::string_view proc_mounts, const Filters& filters) {
  MountSelection out;
  out.mounts = SelectFilesystems(proc_mounts, filters, &out.warnings);
  return out;
}

ParseResult ParseTickFiles(std::span<const std::string* const> files,
                           const std::vector<FsStat>& fs, const Filters& filters,
                           const MountSelection* mounts) {
  ParseResult r;
  r.readings.reserve(256);
  // TickFiles() order (see there); the parsers run in that order.
  enum : size_t {
    kStat, kDiskstats, kNetDev, kMeminfo, kVmstat, kLoadavg, kNetSnmp, kSockstat, kSockstat6,
    kFileNr, kPressureCpu, kPressureMemory, kPressureIo, kUptime, kMounts, kCount
  };
  static const std::vector<std::string> kPaths = TickFiles();
  if (kPaths.size() != kCount) std::abort();  // TickFiles() and this list disagree
  auto file = [&](size_t i) -> const std::string* {
    const std::string* t = i < files.size() ? files[i] : nullptr;
    if (t == nullptr) r.warnings.push_back(kPaths[i] + ": not read");
    return t;
  };
  if (const std::string* t = file(kStat)) ParseStat(*t, filters, &r);
  if (const std::string* t = file(kDiskstats)) ParseDiskstats(*t, filters, &r);
  if (const std::string* t = file(kNetDev)) ParseNetDev(*t, filters, &r);
  if (const std::string* t = file(kMeminfo)) ParseMeminfo(*t, &r);
  if (const std::string* t = file(kVmstat)) ParseVmstat(*t, &r);
  if (const std::string* t = file(kLoadavg)) ParseLoadavg(*t, &r);
  if (const std::string* t = file(kNetSnmp)) ParseNetSnmp(*t, &r);
  if (const std::string* t = file(kSockstat)) ParseSockstat(*t, &r);
  if (const std::string* t = file(kSockstat6)) ParseSockstat6(*t, &r);
  if (const std::string* t = file(kFileNr)) ParseFileNr(*t, &r);
  if (const std::string* t = file(kPressureCpu)) ParsePressure("cpu", *t, &r);
  if (const std::string* t = file(kPressureMemory)) ParsePressure("memory", *t, &r);
  if (const std::string* t = file(kPressureIo)) ParsePressure("io", *t, &r);
  if (const std::string* t = file(kUptime)) ParseUptime(*t, &r);
  if (const std::string* t = file(kMounts)) {
    if (mounts != nullptr) {
      r.warnings.insert(r.warnings.end(), mounts->warnings.begin(), mounts->warnings.end());
      ParseFilesystems(&mounts->mounts, fs, &r);
    } else {
      std::vector<Mount> selected = SelectFilesystems(*t, filters, &r.warnings);
      ParseFilesystems(&selected, fs, &r);
    }
  } else {
    ParseFilesystems(nullptr, fs, &r);
  }
  return r;
}

ParseResult Parse(const std::map<std::string, std::string>& files, const std::vector<FsStat>& fs,
                  const Filters& filters) {
  // One std::string per path, made once: lookups then allocate nothing.
  static const std::vector<std::string> kPaths = TickFiles();
  std::vector<const std::string*> by_index(kPaths.size(), nullptr);
  for (size_t i = 0; i < kPaths.size(); ++i) {
    auto it = files.find(kPaths[i]);
    if (it != files.end()) by_index[i] = &it->second;
  }
  return ParseTickFiles(by_index, fs, filters, nullptr);
}

}  // namespace trapline::plugins::linuxhost
