// The Zabbix template of the linux plugin: macros, triggers and graphs (plugins/template.h).
// The triggers and macros are documented in README.md ("Zabbix template"); keep both in step.
//
// Values arrive as value sets: every interval_s (60 s) the samples of each second of the
// interval, with their own timestamps. So min(x,5m) is the real minimum of five minutes of
// per-second samples ("above the threshold all the time"), max(x,5m) the real maximum and
// avg(x,5m) the mean; windows are kept to several intervals so that a trigger always sees
// more than the value set that just arrived.

#include "plugins/linux/linux.h"

#include <string>
#include <utility>
#include <vector>

namespace trapline::plugins::linuxhost {
namespace {

// Trigger names used in depends_on.
constexpr const char* kLoadHigh = "Load average is too high (per CPU load over {$TRAPLINE.LINUX.LOAD.PER.CPU.WARN} for 5m)";
constexpr const char* kMemCritical = "Lack of available memory (used over {$TRAPLINE.LINUX.MEM.PUSED.HIGH}% for 5m)";
constexpr const char* kMemHigh = "High memory utilisation (used over {$TRAPLINE.LINUX.MEM.PUSED.WARN}% for 5m)";
constexpr const char* kFsCritical = R"(Filesystem {#ENTITY}: space is critically low (used over {$TRAPLINE.LINUX.FS.PUSED.HIGH:"{#ENTITY}"}%))";
constexpr const char* kInodesCritical = R"(Filesystem {#ENTITY}: running out of free inodes (free under {$TRAPLINE.LINUX.FS.INODES.PFREE.HIGH:"{#ENTITY}"}%))";

ZabbixTemplate Build() {
  ZabbixTemplate t;
  t.macros = {
      Macro("{$TRAPLINE.LINUX.NODATA.PERIOD}", "5m",
            "No value from trapline for this long raises \"No data from trapline\"."),
      Macro("{$TRAPLINE.LINUX.CPU.UTIL.WARN}", "90",
            "CPU utilisation (busy, % of all CPUs), mean over 5m, above which to warn."),
      Macro("{$TRAPLINE.LINUX.CPU.IOWAIT.WARN}", "20",
            "CPU iowait (% of all CPUs), mean over 5m, above which to warn."),
      Macro("{$TRAPLINE.LINUX.CPU.STEAL.WARN}", "10",
            "CPU time stolen by the hypervisor (% of all CPUs), mean over 10m, above which to "
            "warn."),
      Macro("{$TRAPLINE.LINUX.LOAD.PER.CPU.WARN}", "1.5",
            "1-minute load average per CPU that is still sustainable."),
      Macro("{$TRAPLINE.LINUX.MEM.PUSED.WARN}", "90", "Memory used (not available), % of RAM."),
      Macro("{$TRAPLINE.LINUX.MEM.PUSED.HIGH}", "95",
            "Memory used (not available), % of RAM, at which the OOM killer is close."),
      Macro("{$TRAPLINE.LINUX.SWAP.PUSED.WARN}", "50", "Swap space used, % of swap."),
      Macro("{$TRAPLINE.LINUX.MAJOR.FAULTS.WARN}", "1000",
            "Major page faults per second (mean over 5m) that mean memory thrashing."),
      Macro("{$TRAPLINE.LINUX.PSI.MEMORY.FULL.WARN}", "10",
            "Share of time (%) all non-idle tasks stalled on memory, mean over 5m."),
      Macro("{$TRAPLINE.LINUX.PSI.IO.FULL.WARN}", "20",
            "Share of time (%) all non-idle tasks stalled on I/O, mean over 5m."),
      Macro("{$TRAPLINE.LINUX.FD.PUSED.WARN}", "90",
            "System-wide file handles allocated, % of fs.file-max."),
      Macro("{$TRAPLINE.LINUX.FS.PUSED.WARN}", "80",
            "Filesystem space used, %; context: the mountpoint ({$TRAPLINE.LINUX.FS.PUSED.WARN:\"/var\"})."),
      Macro("{$TRAPLINE.LINUX.FS.PUSED.HIGH}", "90",
            "Filesystem space used, % (critical); context: the mountpoint."),
      Macro("{$TRAPLINE.LINUX.FS.TIMELEFT.MIN}", "1d",
            "Warn when the 1h trend says the filesystem fills up sooner than this; context: the "
            "mountpoint."),
      Macro("{$TRAPLINE.LINUX.FS.TIMELEFT.PUSED.MIN}", "50",
            "The fill-up prediction only counts above this used %; context: the mountpoint."),
      Macro("{$TRAPLINE.LINUX.FS.INODES.PFREE.WARN}", "20",
            "Free inodes, %, below which to warn; context: the mountpoint."),
      Macro("{$TRAPLINE.LINUX.FS.INODES.PFREE.HIGH}", "10",
            "Free inodes, % (critical); context: the mountpoint."),
      Macro("{$TRAPLINE.LINUX.DISK.UTIL.WARN}", "95",
            "Disk utilisation (% of time with I/O in flight), minimum over 15m; context: the "
            "disk. Meaningless for SSD/NVMe arrays that serve requests in parallel: raise it."),
      Macro("{$TRAPLINE.LINUX.DISK.READ.AWAIT.WARN}", "20",
            "Mean read latency (ms) over 15m above which to warn; context: the disk."),
      Macro("{$TRAPLINE.LINUX.DISK.WRITE.AWAIT.WARN}", "20",
            "Mean write latency (ms) over 15m above which to warn; context: the disk."),
      Macro("{$TRAPLINE.LINUX.IF.ERRORS.WARN}", "2",
            "Interface errors per second (rx or tx, mean over 5m); context: the interface."),
  };

  const std::string kHost;
  t.triggers = {
      // Host-level.
      Trigger(kHost, Severity::kAverage, "No data from trapline for {$TRAPLINE.LINUX.NODATA.PERIOD}",
              "nodata({{uptime}},{$TRAPLINE.LINUX.NODATA.PERIOD})=1",
              "trapline sent no uptime for this host (always reported): the host, its SSH "
              "server or trapline itself is down, or values are refused (see trapline's "
              "status). Other triggers of the host cannot fire meanwhile."),
      Trigger(kHost, Severity::kWarning, "Host has been restarted (uptime under 10m)",
              "last({{uptime}})<10m", "The host booted less than 10 minutes ago."),
      Trigger(kHost, Severity::kWarning,
              "High CPU utilisation (over {$TRAPLINE.LINUX.CPU.UTIL.WARN}% for 5m)",
              "avg({{cpu.total.busy}},5m)>{$TRAPLINE.LINUX.CPU.UTIL.WARN}",
              "The CPUs were busy (not idle, not iowait) more than the threshold on average for "
              "5 minutes. Look at the CPU time by mode and the load.",
              "avg({{cpu.total.busy}},10m)<{$TRAPLINE.LINUX.CPU.UTIL.WARN}", {kLoadHigh}),
      Trigger(kHost, Severity::kAverage, kLoadHigh,
              "min({{load1}},5m)>{$TRAPLINE.LINUX.LOAD.PER.CPU.WARN}*last({{cpu.count}}) and "
              "last({{load5}})>0 and last({{load15}})>0",
              "The 1-minute load average stayed above the threshold times the number of CPUs for "
              "5 minutes: runnable and D-state (I/O-blocked) threads queue up.",
              "max({{load1}},5m)<{$TRAPLINE.LINUX.LOAD.PER.CPU.WARN}*last({{cpu.count}})"),
      Trigger(kHost, Severity::kWarning,
              "High CPU iowait (over {$TRAPLINE.LINUX.CPU.IOWAIT.WARN}% for 5m)",
              "avg({{cpu.total.iowait}},5m)>{$TRAPLINE.LINUX.CPU.IOWAIT.WARN}",
              "CPUs sit idle waiting for disk I/O: storage is the bottleneck. Look at disk "
              "utilisation and latency."),
      Trigger(kHost, Severity::kWarning,
              "High CPU steal time (over {$TRAPLINE.LINUX.CPU.STEAL.WARN}% for 10m)",
              "avg({{cpu.total.steal}},10m)>{$TRAPLINE.LINUX.CPU.STEAL.WARN}",
              "The hypervisor gives this guest's CPU time to others (noisy neighbour or an "
              "overcommitted host)."),
      Trigger(kHost, Severity::kHigh, kMemCritical,
              "min({{mem.pused}},5m)>{$TRAPLINE.LINUX.MEM.PUSED.HIGH}",
              "MemAvailable stayed under 100 - threshold % of RAM for 5 minutes: the kernel "
              "reclaims hard and the OOM killer is close.",
              "max({{mem.pused}},5m)<{$TRAPLINE.LINUX.MEM.PUSED.HIGH}"),
      Trigger(kHost, Severity::kAverage, kMemHigh,
              "min({{mem.pused}},5m)>{$TRAPLINE.LINUX.MEM.PUSED.WARN}",
              "Memory used (MemTotal - MemAvailable) stayed above the threshold for 5 minutes.",
              "max({{mem.pused}},5m)<{$TRAPLINE.LINUX.MEM.PUSED.WARN}", {kMemCritical}),
      Trigger(kHost, Severity::kWarning,
              "High swap space usage (over {$TRAPLINE.LINUX.SWAP.PUSED.WARN}% for 5m)",
              "min({{swap.used}},5m)>{$TRAPLINE.LINUX.SWAP.PUSED.WARN}/100*last({{swap.total}}) "
              "and last({{swap.total}})>0",
              "More than the threshold of swap is in use. Not a problem by itself when nothing "
              "swaps in (see major page faults and memory pressure).",
              "max({{swap.used}},5m)<{$TRAPLINE.LINUX.SWAP.PUSED.WARN}/100*last({{swap.total}})",
              {kMemCritical, kMemHigh}),
      Trigger(kHost, Severity::kWarning,
              "Memory thrashing (major page faults over {$TRAPLINE.LINUX.MAJOR.FAULTS.WARN}/s "
              "for 5m)",
              "avg({{vm.major_faults}},5m)>{$TRAPLINE.LINUX.MAJOR.FAULTS.WARN}",
              "Many page faults need disk I/O: the working set does not fit in RAM.", "",
              {kMemCritical}),
      Trigger(kHost, Severity::kAverage, "OOM killer invoked",
              "max({{vm.oom_kills}},5m)>0",
              "The kernel killed a process to free memory within the last 5 minutes (Linux "
              "4.13+). Check the kernel log (dmesg) for the victim."),
      Trigger(kHost, Severity::kWarning,
              "Memory pressure (all tasks stalled over {$TRAPLINE.LINUX.PSI.MEMORY.FULL.WARN}% of "
              "the time for 5m)",
              "avg({{pressure.memory.full}},5m)>{$TRAPLINE.LINUX.PSI.MEMORY.FULL.WARN}",
              "Pressure stall information: all non-idle tasks waited for memory (reclaim, "
              "swap-in, refaults) this share of the time (Linux 4.20+).",
              "", {kMemCritical}),
      Trigger(kHost, Severity::kWarning,
              "I/O pressure (all tasks stalled over {$TRAPLINE.LINUX.PSI.IO.FULL.WARN}% of the "
              "time for 5m)",
              "avg({{pressure.io.full}},5m)>{$TRAPLINE.LINUX.PSI.IO.FULL.WARN}",
              "Pressure stall information: all non-idle tasks waited for I/O this share of the "
              "time; the host is I/O-bound (Linux 4.20+)."),
      Trigger(kHost, Severity::kAverage,
              "Running out of file handles (over {$TRAPLINE.LINUX.FD.PUSED.WARN}% of fs.file-max)",
              "min({{fd.pused}},5m)>{$TRAPLINE.LINUX.FD.PUSED.WARN}",
              "System-wide allocated file handles are close to fs.file-max: opening files and "
              "sockets will fail with ENFILE.",
              "max({{fd.pused}},5m)<{$TRAPLINE.LINUX.FD.PUSED.WARN}"),

      // Filesystems.
      Trigger("filesystem", Severity::kAverage, kFsCritical,
              R"(last({{fs.pused}})>{$TRAPLINE.LINUX.FS.PUSED.HIGH:"{#ENTITY}"})",
              "Space used (as df's Use%) is above the critical threshold.",
              R"(max({{fs.pused}},5m)<{$TRAPLINE.LINUX.FS.PUSED.HIGH:"{#ENTITY}"})"),
      Trigger("filesystem", Severity::kWarning,
              R"(Filesystem {#ENTITY}: space is low (used over {$TRAPLINE.LINUX.FS.PUSED.WARN:"{#ENTITY}"}%))",
              R"(last({{fs.pused}})>{$TRAPLINE.LINUX.FS.PUSED.WARN:"{#ENTITY}"})",
              "Space used (as df's Use%) is above the warning threshold.",
              R"(max({{fs.pused}},5m)<{$TRAPLINE.LINUX.FS.PUSED.WARN:"{#ENTITY}"})",
              {kFsCritical}),
      Trigger("filesystem", Severity::kWarning,
              R"(Filesystem {#ENTITY}: will be full in less than {$TRAPLINE.LINUX.FS.TIMELEFT.MIN:"{#ENTITY}"})",
              R"(timeleft({{fs.pused}},1h,100)<{$TRAPLINE.LINUX.FS.TIMELEFT.MIN:"{#ENTITY}"} and )"
              R"(last({{fs.pused}})>{$TRAPLINE.LINUX.FS.TIMELEFT.PUSED.MIN:"{#ENTITY}"})",
              "At the rate of the last hour the filesystem reaches 100% used sooner than the "
              "threshold.",
              R"(timeleft({{fs.pused}},1h,100)>2*{$TRAPLINE.LINUX.FS.TIMELEFT.MIN:"{#ENTITY}"} or )"
              R"(last({{fs.pused}})<{$TRAPLINE.LINUX.FS.TIMELEFT.PUSED.MIN:"{#ENTITY}"})",
              {kFsCritical}),
      Trigger("filesystem", Severity::kAverage, kInodesCritical,
              R"(last({{fs.inodes.pfree}})<{$TRAPLINE.LINUX.FS.INODES.PFREE.HIGH:"{#ENTITY}"})",
              "Few free inodes left: creating files will fail with ENOSPC although space is "
              "left (many small files)."),
      Trigger("filesystem", Severity::kWarning,
              R"(Filesystem {#ENTITY}: free inodes are low (free under {$TRAPLINE.LINUX.FS.INODES.PFREE.WARN:"{#ENTITY}"}%))",
              R"(last({{fs.inodes.pfree}})<{$TRAPLINE.LINUX.FS.INODES.PFREE.WARN:"{#ENTITY}"})",
              "The share of free inodes is under the warning threshold.", "", {kInodesCritical}),

      // Disks.
      Trigger("disk", Severity::kWarning,
              R"(Disk {#ENTITY}: utilisation is high (over {$TRAPLINE.LINUX.DISK.UTIL.WARN:"{#ENTITY}"}% for 15m))",
              R"(min({{disk.util}},15m)>{$TRAPLINE.LINUX.DISK.UTIL.WARN:"{#ENTITY}"})",
              "The device had I/O in flight nearly all the time for 15 minutes. Saturation for "
              "a single spindle; SSD/NVMe and arrays serve requests in parallel and may have "
              "headroom left: look at the latency.",
              R"(max({{disk.util}},5m)<{$TRAPLINE.LINUX.DISK.UTIL.WARN:"{#ENTITY}"})"),
      Trigger("disk", Severity::kWarning,
              R"(Disk {#ENTITY}: read latency is high (over {$TRAPLINE.LINUX.DISK.READ.AWAIT.WARN:"{#ENTITY}"} ms for 15m))",
              // Mean await = time spent reading / reads, written without a division.
              R"(avg({{disk.read_time}},15m)*1000>{$TRAPLINE.LINUX.DISK.READ.AWAIT.WARN:"{#ENTITY}"}*avg({{disk.reads}},15m) and avg({{disk.reads}},15m)>0)",
              "The mean time a read took (iostat r_await) over 15 minutes is above the "
              "threshold."),
      Trigger("disk", Severity::kWarning,
              R"(Disk {#ENTITY}: write latency is high (over {$TRAPLINE.LINUX.DISK.WRITE.AWAIT.WARN:"{#ENTITY}"} ms for 15m))",
              R"(avg({{disk.write_time}},15m)*1000>{$TRAPLINE.LINUX.DISK.WRITE.AWAIT.WARN:"{#ENTITY}"}*avg({{disk.writes}},15m) and avg({{disk.writes}},15m)>0)",
              "The mean time a write took (iostat w_await) over 15 minutes is above the "
              "threshold."),

      // Interfaces.
      Trigger("interface", Severity::kWarning,
              R"(Interface {#ENTITY}: high error rate (over {$TRAPLINE.LINUX.IF.ERRORS.WARN:"{#ENTITY}"}/s for 5m))",
              R"(avg({{net.rx.errors}},5m)>{$TRAPLINE.LINUX.IF.ERRORS.WARN:"{#ENTITY}"} or )"
              R"(avg({{net.tx.errors}},5m)>{$TRAPLINE.LINUX.IF.ERRORS.WARN:"{#ENTITY}"})",
              "Packets received or sent with errors (bad cable or optics, duplex mismatch, "
              "driver or NIC trouble).",
              R"(avg({{net.rx.errors}},15m)<{$TRAPLINE.LINUX.IF.ERRORS.WARN:"{#ENTITY}"}*0.8 and )"
              R"(avg({{net.tx.errors}},15m)<{$TRAPLINE.LINUX.IF.ERRORS.WARN:"{#ENTITY}"}*0.8)"),
  };

  t.graphs = {
      // Host-level.
      Graph(kHost, "CPU time by mode",
            {"cpu.total.user", "cpu.total.nice", "cpu.total.system", "cpu.total.iowait",
             "cpu.total.irq", "cpu.total.softirq", "cpu.total.steal"},
            true),
      Graph(kHost, "CPU utilisation", {"cpu.total.busy"}),
      Graph(kHost, "CPU load", {"load1", "load5", "load15", "cpu.count"}),
      Graph(kHost, "CPU switches and interrupts", {"context_switches", "interrupts", "softirqs"}),
      Graph(kHost, "Processes running and blocked", {"procs.running", "procs.blocked"}),
      Graph(kHost, "Processes created", {"forks"}),
      Graph(kHost, "Memory usage",
            {"mem.total", "mem.used", "mem.available", "mem.cached", "mem.buffers", "mem.dirty",
             "mem.slab"}),
      Graph(kHost, "Memory utilisation", {"mem.pused"}),
      Graph(kHost, "Swap usage", {"swap.total", "swap.used"}),
      Graph(kHost, "Swapping and major page faults", {"swap.in", "swap.out", "vm.major_faults"}),
      Graph(kHost, "Pressure stall",
            {"pressure.cpu.some", "pressure.memory.some", "pressure.memory.full",
             "pressure.io.some", "pressure.io.full"}),
      Graph(kHost, "File handles used", {"fd.pused"}),
      Graph(kHost, "Sockets",
            {"sock.used", "sock.tcp.inuse", "sock.tcp6.inuse", "sock.udp.inuse",
             "sock.udp6.inuse"}),
      Graph(kHost, "TCP connections", {"tcp.curr_estab", "sock.tcp.tw", "sock.tcp.orphan"}),
      Graph(kHost, "TCP connection rates", {"tcp.active_opens", "tcp.passive_opens"}),
      Graph(kHost, "TCP segments", {"tcp.in_segs", "tcp.out_segs", "tcp.retrans_segs"}),
      Graph(kHost, "TCP errors",
            {"tcp.attempt_fails", "tcp.estab_resets", "tcp.in_errs", "tcp.out_rsts"}),
      Graph(kHost, "UDP datagrams", {"udp.in_datagrams", "udp.out_datagrams"}),
      Graph(kHost, "UDP errors", {"udp.in_errors", "udp.no_ports", "udp.rcvbuf_errors"}),

      // Per CPU.
      Graph("cpu", "CPU {#ENTITY}: time by mode",
            {"cpu.user", "cpu.nice", "cpu.system", "cpu.iowait", "cpu.irq", "cpu.softirq",
             "cpu.steal"},
            true),

      // Per disk.
      Graph("disk", "Disk {#ENTITY}: throughput", {"disk.read_bytes", "disk.write_bytes"}),
      Graph("disk", "Disk {#ENTITY}: operations", {"disk.reads", "disk.writes"}),
      Graph("disk", "Disk {#ENTITY}: utilisation", {"disk.util"}),
      Graph("disk", "Disk {#ENTITY}: queue", {"disk.queue", "disk.inflight"}),
      Graph("disk", "Disk {#ENTITY}: time busy reading and writing",
            {"disk.read_time", "disk.write_time"}),

      // Per filesystem.
      Graph("filesystem", "Filesystem {#ENTITY}: space", {"fs.size", "fs.used", "fs.free"}),
      Graph("filesystem", "Filesystem {#ENTITY}: space used and inodes free, %",
            {"fs.pused", "fs.inodes.pfree"}),

      // Per interface.
      Graph("interface", "Interface {#ENTITY}: traffic", {"net.rx.bytes", "net.tx.bytes"}),
      Graph("interface", "Interface {#ENTITY}: packets", {"net.rx.packets", "net.tx.packets"}),
      Graph("interface", "Interface {#ENTITY}: errors and drops",
            {"net.rx.errors", "net.tx.errors", "net.rx.drops", "net.tx.drops"}),

      // Summaries.
      Summary("cpu", "CPU utilisation of every CPU", "cpu.busy"),
      Summary("filesystem", "Space used of every filesystem, %", "fs.pused"),
      Summary("disk", "Utilisation of every disk", "disk.util"),
      Summary("disk", "Bytes read from every disk", "disk.read_bytes"),
      Summary("disk", "Bytes written to every disk", "disk.write_bytes"),
      Summary("interface", "Traffic received on every interface", "net.rx.bytes"),
      Summary("interface", "Traffic sent on every interface", "net.tx.bytes"),
  };
  return t;
}

}  // namespace

const ZabbixTemplate& Template() {
  static const ZabbixTemplate kTemplate = Build();
  return kTemplate;
}

}  // namespace trapline::plugins::linuxhost
