#pragma once
// The `linux` plugin: what to read from a Linux host every tick and how to turn it into
// readings. The collector reads the files over SFTP (TickFiles(), in that order, pipelined over
// one session), asks statvfs@openssh.com for FilesystemsToStat(), and calls Parse(); nothing
// here does I/O, looks at the clock or keeps state between ticks.
//
// Contracts shared by every parser below:
// - Never throws, never crashes, whatever the input. What cannot be read becomes a warning in
//   ParseResult::warnings (prefixed with the file's path) and the rest is still parsed.
// - /proc files end in '\n'. A last line without one is taken as cut short (a read that
//   stopped early) and dropped with a warning, so a cut number is never taken at face value.
// - Counters are passed as the kernel prints them (the collector turns them into rates, see
//   MetricSpec::rate_scale in Metrics()), except the host-wide CPU counters, which are divided
//   by the number of CPUs so that their rate is a share of all CPUs.
// - Per-file parsers append to *out: readings, entities (every tick, for discovery) and
//   warnings.
//
// Thread-safety: all functions are reentrant; Metrics() builds its table once (thread-safe
// static initialisation) and returns it by reference.

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "plugins/plugin.h"
#include "plugins/template.h"

// Not `linux`: with GNU extensions `linux` is a predefined macro.
namespace trapline::plugins::linuxhost {

inline constexpr std::string_view kPluginName = "linux";

// Every metric the plugin can emit, in a fixed order. Every value is ValueType::kFloat: the
// fill values of a value set are generally not integers (they make the mean exact), and a
// Zabbix unsigned item would reject them.
const std::vector<MetricSpec>& Metrics();

// Triggers, graphs and macros for zabbix-sync (template.cc; see README.md "Zabbix template").
const ZabbixTemplate& Template();

// Which disks, filesystems and interfaces become entities. Patterns are globs ('*' any run of
// characters, '/' included; '?' one character; '[a-z]', '[!0-9]' sets) matched against the
// whole name. A name is kept when the include list is empty or one of its patterns matches,
// and no exclude pattern matches. Setting a list in the options replaces its default.
struct Filters {
  // Disks, by their name in /proc/diskstats ("sda", "nvme0n1", "dm-0").
  std::vector<std::string> disk_include;
  std::vector<std::string> disk_exclude = {"loop*", "ram*", "zram*", "sr*", "fd*"};
  // Partitions ("sda1", "nvme0n1p2", "mmcblk0p1") are left out unless true: the whole disk's
  // counters already include its partitions' I/O, and space per partition is reported per
  // filesystem. See IsPartition().
  bool disk_partitions = false;
  // Filesystems, by type (third field of /proc/mounts) and by mountpoint. By default only
  // filesystems on local storage: no pseudo filesystems (proc, sysfs, cgroup...), no memory
  // (tmpfs), no container layers (overlay) or read-only images (squashfs), and no network
  // filesystems, whose statvfs can hang the host's SFTP session when the server is away.
  std::vector<std::string> fs_type_include = {
      "ext2", "ext3", "ext4",  "xfs",     "btrfs",   "zfs",      "vfat",     "exfat", "f2fs",
      "jfs",  "ntfs", "ntfs3", "fuseblk", "hfsplus", "reiserfs", "bcachefs", "nilfs2"};
  std::vector<std::string> fs_type_exclude;
  std::vector<std::string> mountpoint_include;
  // Container runtimes mount volumes below these; the host's own filesystems are elsewhere.
  std::vector<std::string> mountpoint_exclude = {"/var/lib/docker/*", "/var/lib/containers/*",
                                                 "/var/lib/kubelet/*", "/run/containerd/*",
                                                 "/snap/*"};
  // Interfaces, by their name in /proc/net/dev. As in Zabbix's own Linux template: no
  // loopback, no veth pairs of containers, no docker bridges (docker0, br-<12 hex digits>).
  std::vector<std::string> interface_include;
  std::vector<std::string> interface_exclude = {"lo", "veth*", "docker[0-9]*", "br-????????????"};
  // Per-CPU metrics (11 items per CPU); the host-wide ones are always there.
  bool per_cpu = true;
};

// Reads a target's [linux] options, as text (TargetConfig::options), into *filters, which
// starts from its defaults for options not given. Lists are comma-separated (loop*, ram*: how
// the collector passes a TOML array of strings, so a pattern cannot contain ',') or TOML array
// text (["loop*", 'ram*']: '[' followed by a quote or ']'); "" and [] are the empty list.
// Booleans are true or false. Returns "" on success, else a one-line error naming the option (an
// unknown option is an error, so a typo does not go unnoticed); *filters is then unspecified.
std::string ParseFilters(const std::map<std::string, std::string>& options, Filters* filters);

// Glob match of the whole `name` (see Filters). A malformed set ('[' without ']') matches '['
// literally.
bool GlobMatch(std::string_view pattern, std::string_view name);
// True when `name` is kept by include/exclude lists (see Filters).
bool Wanted(std::string_view name, const std::vector<std::string>& include,
            const std::vector<std::string>& exclude);
// Whether a block device name is a partition, from its name alone (the plugin reads no
// /sys): sd/vd/hd/xvd + letters + digits ("sda1", "xvdb2"), or a name ending in
// <digit>p<digits> ("nvme0n1p1", "mmcblk0p2", "md0p1", "loop0p1"). "nvme0n1", "dm-0",
// "md127", "mmcblk0" are whole devices.
bool IsPartition(std::string_view name);
bool DiskWanted(std::string_view name, const Filters& filters);
bool InterfaceWanted(std::string_view name, const Filters& filters);

// The files to read every tick, in the order to request them. A file that cannot be read is
// left out of Parse()'s map (e.g. /proc/pressure/* on kernels before 4.20 or with psi=0,
// /proc/net/sockstat6 with IPv6 disabled).
std::vector<std::string> TickFiles();

// Whether a read(2) of `path` (a file of TickFiles()) that asked for more than `got` bytes and
// got `got` bytes, ending in '\n', certainly reached the end of the file, so that a reader need
// not read once more to see EOF (/proc files report size 0). From how the kernel produces them:
// - in one piece (single_open(), proc_sys: /proc/stat, meminfo, loadavg, net/snmp, sockstat*,
//   sys/fs/file-nr, pressure/*, uptime): the buffer grows to the whole text, so any short read
//   is all of it;
// - one record per line (seq_file: /proc/diskstats, net/dev, vmstat): a read stops at the end
//   or when the next record does not fit in the kernel's buffer (a page, at least 4096 bytes),
//   so a read that left more room than the longest such record stopped at the end;
// - anything else, e.g. /proc/mounts (a line can be several KiB): false.
// The caller checks that the read was short and that the reply is that one read(2) (OpenSSH's
// sftp-server answers a READ with one read(2) of the asked length).
bool ShortReadReachesEnd(std::string_view path, uint64_t got);

// Path of the mount table in TickFiles(). Read through sftp-server, /proc/mounts is the mount
// namespace of the SSH login, which on a host (not in a container) is the host's.
inline constexpr std::string_view kMountsFile = "/proc/mounts";

// What statvfs@openssh.com returns for one mountpoint (fields of statvfs(3)).
struct FsStat {
  std::string mountpoint;
  uint64_t bsize = 0, frsize = 0, blocks = 0, bfree = 0, bavail = 0, files = 0, ffree = 0,
           favail = 0;
};

struct Mount {
  std::string device, mountpoint, fstype;  // \ooo escapes of /proc/mounts decoded
  friend bool operator==(const Mount&, const Mount&) = default;
};

// Every line of a mount table, in order; malformed lines are skipped (with a warning when
// `warnings` is not null).
std::vector<Mount> ParseMounts(std::string_view proc_mounts,
                               std::vector<std::string>* warnings = nullptr);

// The mounts to statvfs, in /proc/mounts order:
// 1. a mountpoint mounted over more than once counts once, as its last (visible) mount;
// 2. then the filters (fstype, mountpoint);
// 3. then one mount per filesystem: mounts of the same source (bind mounts, btrfs subvolumes:
//    same device, same statvfs) count once, as the shortest mountpoint (the first of equal
//    length). A source identifies a filesystem when it is a path ("/dev/sda1"), a ZFS dataset,
//    or a network export ("host:/export"); sources such as "tmpfs" or "none" do not, and such
//    mounts are kept one per mountpoint.
std::vector<Mount> FilesystemsToStat(std::string_view proc_mounts, const Filters& filters);

// Everything from one tick. `files` maps a path of TickFiles() to its content; a missing file
// gives a warning and no readings from it. `fs` are the statvfs results for
// FilesystemsToStat() (of this tick's or the previous tick's mount table): a result whose
// mountpoint this tick's mount table no longer lists among FilesystemsToStat() is dropped
// with a warning (its statvfs may have answered for the filesystem underneath); without a
// mount table this tick, results are kept and their entities have no device or fstype.
ParseResult Parse(const std::map<std::string, std::string>& files, const std::vector<FsStat>& fs,
                  const Filters& filters);

// What Parse() makes of a mount table: FilesystemsToStat() and the warnings about its malformed
// lines. Mount tables rarely change: a caller that reads one every tick may keep this while
// the table's text stays the same and hand it to ParseTickFiles().
struct MountSelection {
  std::vector<Mount> mounts;
  std::vector<std::string> warnings;
};
MountSelection SelectMounts(std::string_view proc_mounts, const Filters& filters);

// Parse() for a caller that keeps the contents by position, as the SSH target does (no map
// to fill and search every tick): files[i] is the content of TickFiles()[i], or null when it
// was not read (entries past files.size() count as not read). `mounts`: null, or
// SelectMounts() of files' mount table with the same filters. Same result as Parse() with the
// same contents.
ParseResult ParseTickFiles(std::span<const std::string* const> files,
                           const std::vector<FsStat>& fs, const Filters& filters,
                           const MountSelection* mounts = nullptr);

// Per-file parsers (see the contracts at the top); each file's path is in its warnings.
void ParseStat(std::string_view text, const Filters& filters, ParseResult* out);  // /proc/stat
void ParseMeminfo(std::string_view text, ParseResult* out);                       // /proc/meminfo
void ParseVmstat(std::string_view text, ParseResult* out);                        // /proc/vmstat
void ParseLoadavg(std::string_view text, ParseResult* out);                       // /proc/loadavg
void ParseDiskstats(std::string_view text, const Filters& filters, ParseResult* out);
void ParseNetDev(std::string_view text, const Filters& filters, ParseResult* out);
void ParseNetSnmp(std::string_view text, ParseResult* out);    // /proc/net/snmp
void ParseSockstat(std::string_view text, ParseResult* out);   // /proc/net/sockstat
void ParseSockstat6(std::string_view text, ParseResult* out);  // /proc/net/sockstat6
void ParseFileNr(std::string_view text, ParseResult* out);     // /proc/sys/fs/file-nr
// `resource` is "cpu", "memory" or "io" (/proc/pressure/<resource>); others: a warning.
void ParsePressure(std::string_view resource, std::string_view text, ParseResult* out);
void ParseUptime(std::string_view text, ParseResult* out);  // /proc/uptime
// Filesystem readings and entities from statvfs results; `mounts` is what FilesystemsToStat()
// returned for this tick's mount table, or null when there was none (see Parse()).
void ParseFilesystems(const std::vector<Mount>* mounts, const std::vector<FsStat>& fs,
                      ParseResult* out);

}  // namespace trapline::plugins::linuxhost
