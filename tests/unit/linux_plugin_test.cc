// The linux plugin's parsers over captured /proc files (tests/fixtures/linux/README.md):
// exact values, discovery, filters, kernel-format variants, files cut short or missing, and
// every prefix and random corruptions of every fixture without a crash.

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "common/config.h"
#include "plugins/linux/linux.h"

namespace trapline::plugins::linuxhost {
namespace {

namespace stdfs = std::filesystem;

const std::string kDir = std::string(TRAPLINE_FIXTURES) + "/linux";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "cannot read " << path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Variant(const std::string& name) { return ReadFile(kDir + "/variants/" + name); }

// One captured tick: TickFiles() paths that exist under `dir`.
std::map<std::string, std::string> LoadTick(const std::string& dir) {
  std::map<std::string, std::string> files;
  for (const std::string& path : TickFiles()) {
    if (stdfs::exists(dir + path)) files[path] = ReadFile(dir + path);
  }
  return files;
}

std::string Unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      out.push_back(static_cast<char>(std::stoi(s.substr(i + 1, 3), nullptr, 8)));
      i += 3;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

// statvfs.txt written by capture.sh, for the given mountpoints only (as the collector asks).
std::vector<FsStat> LoadStatvfs(const std::string& dir, const std::vector<Mount>& mounts) {
  std::vector<FsStat> all;
  std::istringstream in(ReadFile(dir + "/statvfs.txt"));
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    FsStat s;
    std::string mp;
    ls >> mp >> s.bsize >> s.frsize >> s.blocks >> s.bfree >> s.bavail >> s.files >> s.ffree >>
        s.favail;
    s.mountpoint = Unescape(mp);
    all.push_back(s);
  }
  std::vector<FsStat> out;
  for (const Mount& m : mounts) {
    for (const FsStat& s : all) {
      if (s.mountpoint == m.mountpoint) {
        out.push_back(s);
        break;
      }
    }
  }
  return out;
}

ParseResult ParseTick(const std::string& dir, const Filters& filters = {}) {
  auto files = LoadTick(dir);
  std::vector<Mount> mounts = FilesystemsToStat(files.at("/proc/mounts"), filters);
  return Parse(files, LoadStatvfs(dir, mounts), filters);
}

const std::string kT0 = kDir + "/real/t0";
const std::string kT1 = kDir + "/real/t1";

std::optional<double> Find(const ParseResult& r, std::string_view metric,
                           std::string_view entity = "") {
  for (const Reading& x : r.readings) {
    if (x.metric == metric && x.entity == entity) return x.value;
  }
  return std::nullopt;
}

double Get(const ParseResult& r, std::string_view metric, std::string_view entity = "") {
  auto v = Find(r, metric, entity);
  REQUIRE_MESSAGE(v.has_value(), "no reading " << metric << "[" << entity << "]");
  return *v;
}

std::vector<std::string> EntityNames(const ParseResult& r, std::string_view kind) {
  std::vector<std::string> names;
  for (const Entity& e : r.entities) {
    if (e.kind == kind) names.push_back(e.name);
  }
  return names;
}

bool HasWarning(const ParseResult& r, std::string_view needle) {
  for (const std::string& w : r.warnings) {
    if (w.find(needle) != std::string::npos) return true;
  }
  return false;
}

std::string Warnings(const ParseResult& r) {
  std::string s;
  for (const std::string& w : r.warnings) s += w + "\n";
  return s;
}

const MetricSpec* Spec(std::string_view name) {
  for (const MetricSpec& m : Metrics()) {
    if (m.name == name) return &m;
  }
  return nullptr;
}

// Every reading is a declared metric, with an entity exactly when the metric has an entity
// kind, and a finite value.
void CheckReadingsDeclared(const ParseResult& r) {
  for (const Reading& x : r.readings) {
    const MetricSpec* s = Spec(x.metric);
    REQUIRE_MESSAGE(s != nullptr, "undeclared metric " << x.metric);
    REQUIRE_MESSAGE(s->entity_kind.empty() == x.entity.empty(), x.metric << "[" << x.entity << "]");
    REQUIRE_MESSAGE(std::isfinite(x.value), x.metric << "[" << x.entity << "]");
  }
  for (const Entity& e : r.entities) REQUIRE(!e.name.empty());
}

// The value of `key` in a "Key: value kB" meminfo text, read independently of the plugin.
double MeminfoKb(const std::string& text, const std::string& key) {
  const std::string t = "\n" + text;
  size_t at = t.find("\n" + key + ":");
  REQUIRE(at != std::string::npos);
  return std::strtod(t.c_str() + at + key.size() + 2, nullptr);
}

TEST_CASE("linux: metric table") {
  const auto& metrics = Metrics();
  CHECK(metrics.size() == 108);
  std::set<std::string> names;
  const std::set<std::string> units = {"", "%", "B", "Bps", "/s", "s", "uptime"};
  const std::set<std::string> kinds = {"", "cpu", "disk", "filesystem", "interface"};
  for (const MetricSpec& m : metrics) {
    INFO(m.name);
    CHECK(names.insert(m.name).second);
    CHECK(units.count(m.units) == 1);
    CHECK(kinds.count(m.entity_kind) == 1);
    CHECK(m.value_type == ValueType::kFloat);
    CHECK(m.interval_s == 60);
    CHECK(m.rate_scale > 0);
    CHECK(!m.description.empty());
    CHECK((m.title.find("{#ENTITY}") != std::string::npos) == !m.entity_kind.empty());
    if (m.kind == MetricKind::kGauge) CHECK(m.rate_scale == 1.0);
  }
  // USER_HZ = 100: jiffies per second are % of a CPU.
  CHECK(Spec("cpu.user")->rate_scale == 1.0);
  CHECK(Spec("cpu.user")->entity_kind == "cpu");
  CHECK(Spec("cpu.total.user")->entity_kind.empty());
  CHECK(Spec("disk.read_bytes")->rate_scale == 512);
  CHECK(Spec("disk.util")->rate_scale == doctest::Approx(0.1));
  CHECK(Spec("disk.queue")->rate_scale == doctest::Approx(0.001));
  CHECK(Spec("disk.read_time")->units == "s");
  CHECK(Spec("pressure.io.full")->rate_scale == doctest::Approx(1e-4));
  CHECK(Spec("pressure.io.full.avg10")->kind == MetricKind::kGauge);
  CHECK(Spec("vm.oom_kills")->kind == MetricKind::kCounter);
  CHECK(Spec("swap.in")->units == "/s");
}

TEST_CASE("linux: tick files") {
  auto files = TickFiles();
  CHECK(files.front() == "/proc/stat");
  CHECK(files.back() == kMountsFile);
  CHECK(std::set<std::string>(files.begin(), files.end()).size() == files.size());
  CHECK(std::count(files.begin(), files.end(), "/proc/pressure/io") == 1);
}

TEST_CASE("linux: which short reads reach the end of a file") {
  // Made in one piece: any short read is all of it, however long.
  for (std::string_view f : {"/proc/stat", "/proc/meminfo", "/proc/loadavg", "/proc/net/snmp",
                             "/proc/net/sockstat", "/proc/net/sockstat6", "/proc/sys/fs/file-nr",
                             "/proc/pressure/cpu", "/proc/pressure/memory", "/proc/pressure/io",
                             "/proc/uptime"}) {
    CHECK(ShortReadReachesEnd(f, 100));
    CHECK(ShortReadReachesEnd(f, 20000));
  }
  // One record per line: only with room for the longest record left in a 4096-byte page.
  CHECK(ShortReadReachesEnd("/proc/vmstat", 3984));  // this machine's, whole
  CHECK(ShortReadReachesEnd("/proc/vmstat", 4016));
  CHECK_FALSE(ShortReadReachesEnd("/proc/vmstat", 4017));
  CHECK(ShortReadReachesEnd("/proc/diskstats", 611));
  CHECK_FALSE(ShortReadReachesEnd("/proc/diskstats", 3700));
  CHECK(ShortReadReachesEnd("/proc/net/dev", 3584));
  CHECK_FALSE(ShortReadReachesEnd("/proc/net/dev", 3585));
  // A mount line can be several KiB; unknown files are never vouched for.
  CHECK_FALSE(ShortReadReachesEnd(kMountsFile, 100));
  CHECK_FALSE(ShortReadReachesEnd("/proc/self/status", 100));
  // Every tick file but the mount table has a rule.
  for (const std::string& f : TickFiles()) {
    CHECK(ShortReadReachesEnd(f, 1) == (f != kMountsFile));
  }
}

TEST_CASE("linux: a full captured tick") {
  ParseResult r = ParseTick(kT0);
  INFO(Warnings(r));
  CHECK(r.warnings.empty());
  CheckReadingsDeclared(r);

  SUBCASE("every declared metric is emitted") {
    std::set<std::string> seen;
    for (const Reading& x : r.readings) seen.insert(std::string(x.metric));
    for (const MetricSpec& m : Metrics()) CHECK_MESSAGE(seen.count(m.name) == 1, m.name);
  }

  SUBCASE("entities: this machine's CPUs, disks, interfaces, filesystems") {
    CHECK(EntityNames(r, "cpu") == std::vector<std::string>{"cpu0", "cpu1"});
    // loop0-7 and zram0 are excluded by default.
    CHECK(EntityNames(r, "disk") == std::vector<std::string>{"vda"});
    // lo is excluded by default; ifb0/ifb1 are real (if idle) interfaces.
    CHECK(EntityNames(r, "interface") == std::vector<std::string>{"ifb0", "ifb1", "eth0"});
    CHECK(EntityNames(r, "filesystem") == std::vector<std::string>{"/"});
    for (const Entity& e : r.entities) {
      if (e.kind == "filesystem") {
        using L = std::vector<std::pair<std::string, std::string>>;
        CHECK(e.labels == L{{"device", "/dev/vda"}, {"fstype", "ext4"}});
      }
      if (e.kind == "disk") {
        CHECK(e.labels == std::vector<std::pair<std::string, std::string>>{{"dev", "254:0"}});
      }
    }
  }

  SUBCASE("memory matches /proc/meminfo") {
    const std::string meminfo = ReadFile(kT0 + "/proc/meminfo");
    CHECK(Get(r, "mem.total") == 24684084.0 * 1024);
    CHECK(Get(r, "mem.total") == MeminfoKb(meminfo, "MemTotal") * 1024);
    CHECK(Get(r, "mem.available") == MeminfoKb(meminfo, "MemAvailable") * 1024);
    CHECK(Get(r, "mem.free") == MeminfoKb(meminfo, "MemFree") * 1024);
    CHECK(Get(r, "mem.buffers") == MeminfoKb(meminfo, "Buffers") * 1024);
    CHECK(Get(r, "mem.cached") == MeminfoKb(meminfo, "Cached") * 1024);
    CHECK(Get(r, "mem.dirty") == MeminfoKb(meminfo, "Dirty") * 1024);
    CHECK(Get(r, "mem.slab") == MeminfoKb(meminfo, "Slab") * 1024);
    CHECK(Get(r, "mem.used") == (24684084.0 - 23589968.0) * 1024);
    CHECK(Get(r, "mem.pused") == doctest::Approx((24684084.0 - 23589968.0) / 24684084.0 * 100));
    CHECK(Get(r, "swap.total") == 0);
    CHECK(Get(r, "swap.used") == 0);
    CHECK(Get(r, "swap.free") == 0);
  }

  SUBCASE("cpu matches /proc/stat") {
    // cpu0 61225 0 19974 80794 129 0 1264 98 0 0
    CHECK(Get(r, "cpu.user", "cpu0") == 61225);
    CHECK(Get(r, "cpu.system", "cpu0") == 19974);
    CHECK(Get(r, "cpu.idle", "cpu0") == 80794);
    CHECK(Get(r, "cpu.iowait", "cpu0") == 129);
    CHECK(Get(r, "cpu.softirq", "cpu0") == 1264);
    CHECK(Get(r, "cpu.steal", "cpu0") == 98);
    CHECK(Get(r, "cpu.guest_nice", "cpu0") == 0);
    CHECK(Get(r, "cpu.busy", "cpu0") == 61225 + 19974 + 1264 + 98);
    CHECK(Get(r, "cpu.user", "cpu1") == 65736);
    // cpu  126961 0 40937 155562 680 0 2641 188 0 0, over 2 CPUs.
    CHECK(Get(r, "cpu.count") == 2);
    CHECK(Get(r, "cpu.total.user") == 126961 / 2.0);
    CHECK(Get(r, "cpu.total.idle") == 155562 / 2.0);
    CHECK(Get(r, "cpu.total.busy") == (126961 + 40937 + 2641 + 188) / 2.0);
    CHECK(Get(r, "context_switches") == 7715364);
    CHECK(Get(r, "interrupts") == 2508063);
    CHECK(Get(r, "softirqs") == 5196309);
    CHECK(Get(r, "forks") == 53602);
    CHECK(Get(r, "procs.running") == 1);
    CHECK(Get(r, "procs.blocked") == 0);
  }

  SUBCASE("disk, interface, network, misc match their files") {
    // 254 0 vda 75806 9468 4440122 71682 56515 86399 14352776 45303 0 14164 121450 ...
    CHECK(Get(r, "disk.reads", "vda") == 75806);
    CHECK(Get(r, "disk.read_bytes", "vda") == 4440122);  // sectors; rate_scale 512
    CHECK(Get(r, "disk.read_time", "vda") == 71682);
    CHECK(Get(r, "disk.writes", "vda") == 56515);
    CHECK(Get(r, "disk.write_bytes", "vda") == 14352776);
    CHECK(Get(r, "disk.write_time", "vda") == 45303);
    CHECK(Get(r, "disk.inflight", "vda") == 0);
    CHECK(Get(r, "disk.util", "vda") == 14164);
    CHECK(Get(r, "disk.queue", "vda") == 121450);
    CHECK(Get(r, "net.rx.bytes", "eth0") == 59145487);
    CHECK(Get(r, "net.rx.packets", "eth0") == 1310);
    CHECK(Get(r, "net.tx.bytes", "eth0") == 57946);
    CHECK(Get(r, "net.tx.packets", "eth0") == 704);
    CHECK(Get(r, "net.tx.drops", "eth0") == 0);
    CHECK(!Find(r, "net.rx.bytes", "lo"));
    CHECK(Get(r, "load1") == 0.85);
    CHECK(Get(r, "load5") == 1.55);
    CHECK(Get(r, "load15") == 1.57);
    CHECK(Get(r, "threads") == 186);
    CHECK(Get(r, "uptime") == 1646.15);
    CHECK(Get(r, "fd.allocated") == 2004);
    CHECK(Get(r, "fd.max") == 2466170);
    CHECK(Get(r, "fd.pused") == doctest::Approx(2004.0 / 2466170 * 100));
    CHECK(Get(r, "pressure.cpu.some.avg10") == 3.57);
    CHECK(Get(r, "pressure.cpu.some") == 383992462);
    CHECK(!Find(r, "pressure.cpu.full"));  // undefined system-wide
    CHECK(!Spec("pressure.cpu.full"));
    CHECK(Get(r, "pressure.io.some") == 6769014);
    CHECK(Get(r, "pressure.io.full.avg10") == 0.16);
    CHECK(Get(r, "pressure.io.full") == 4917006);
    CHECK(Get(r, "pressure.memory.some") == 0);
    CHECK(Get(r, "sock.used") == 117);
    CHECK(Get(r, "sock.tcp.inuse") == 48);
    CHECK(Get(r, "sock.tcp.tw") == 649);
    CHECK(Get(r, "sock.tcp.orphan") == 0);
    CHECK(Get(r, "sock.tcp6.inuse") == 0);
    CHECK(Get(r, "tcp.active_opens") == 18830);
    CHECK(Get(r, "tcp.passive_opens") == 18286);
    CHECK(Get(r, "tcp.curr_estab") == 40);
    CHECK(Get(r, "tcp.out_segs") == 4562269);
    CHECK(Get(r, "tcp.retrans_segs") == 1205);
    CHECK(Get(r, "tcp.out_rsts") == 766);
    CHECK(Get(r, "tcp.estab_resets") == 263);
    CHECK(Get(r, "udp.in_datagrams") == 29);
    CHECK(Get(r, "udp.out_datagrams") == 30);
    CHECK(Get(r, "vm.page_faults") == 48066405);
    CHECK(Get(r, "vm.major_faults") == 2365);
    CHECK(Get(r, "vm.oom_kills") == 0);
    CHECK(Get(r, "swap.in") == 0);
  }

  SUBCASE("filesystem / matches statvfs") {
    // / 4096 4096 66053021 61429015 20460291 16777216 16347352 16347352
    const double used = (66053021.0 - 61429015.0) * 4096;
    const double avail = 20460291.0 * 4096;
    CHECK(Get(r, "fs.size", "/") == 66053021.0 * 4096);
    CHECK(Get(r, "fs.used", "/") == used);
    CHECK(Get(r, "fs.free", "/") == avail);
    CHECK(Get(r, "fs.pused", "/") == doctest::Approx(used / (used + avail) * 100));
    CHECK(Get(r, "fs.pused", "/") == doctest::Approx(18.4).epsilon(0.01));  // df: 19%
    CHECK(Get(r, "fs.inodes.pfree", "/") == doctest::Approx(16347352.0 / 16777216 * 100));
  }

  SUBCASE("item keys") {
    auto key = [](const Reading& x) { return ItemKey(kPluginName, x.metric, x.entity); };
    std::set<std::string> keys;
    for (const Reading& x : r.readings) keys.insert(key(x));
    CHECK(keys.size() == r.readings.size());  // no two readings share an item
    CHECK(keys.count("linux.cpu.user[cpu0]") == 1);
    CHECK(keys.count("linux.cpu.total.user") == 1);
    CHECK(keys.count("linux.load1") == 1);
    CHECK(keys.count("linux.fs.pused[/]") == 1);
    CHECK(keys.count("linux.disk.util[vda]") == 1);
    CHECK(keys.count("linux.net.rx.bytes[eth0]") == 1);
    CHECK(keys.count("linux.pressure.memory.full.avg10") == 1);
  }
}

TEST_CASE("linux: two ticks a second apart give sane rates") {
  ParseResult a = ParseTick(kT0);
  ParseResult b = ParseTick(kT1);
  REQUIRE(a.warnings.empty());
  REQUIRE(b.warnings.empty());
  const double dt = Get(b, "uptime") - Get(a, "uptime");
  REQUIRE(dt > 0.5);
  for (const Reading& x : a.readings) {
    const MetricSpec* s = Spec(x.metric);
    if (s->kind != MetricKind::kCounter) continue;
    auto later = Find(b, x.metric, x.entity);
    REQUIRE(later.has_value());
    CHECK_MESSAGE(*later >= x.value, x.metric << "[" << x.entity << "]");
  }
  // The CPU states add up to 100 % per second, per CPU and for the host (rate_scale 1).
  auto rate = [&](std::string_view m, std::string_view e) {
    return (Get(b, m, e) - Get(a, m, e)) / dt * Spec(m)->rate_scale;
  };
  for (std::string e : {"cpu0", "cpu1"}) {
    double sum = 0;
    for (const char* s : {"user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"}) {
      sum += rate(std::string("cpu.") + s, e);
    }
    CHECK(sum == doctest::Approx(100).epsilon(0.1));
    CHECK(rate("cpu.busy", e) + rate("cpu.idle", e) + rate("cpu.iowait", e) ==
          doctest::Approx(sum));
  }
  double total = 0;
  for (const char* s : {"user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"}) {
    total += rate(std::string("cpu.total.") + s, "");
  }
  CHECK(total == doctest::Approx(100).epsilon(0.1));
}

TEST_CASE("linux: options") {
  Filters f;
  SUBCASE("defaults") {
    CHECK(ParseFilters({}, &f).empty());
    CHECK(!f.disk_partitions);
    CHECK(f.per_cpu);
    CHECK(!DiskWanted("loop0", f));
    CHECK(!DiskWanted("ram0", f));
    CHECK(!DiskWanted("zram0", f));
    CHECK(!DiskWanted("sr0", f));
    CHECK(!DiskWanted("sda1", f));
    CHECK(DiskWanted("sda", f));
    CHECK(DiskWanted("nvme0n1", f));
    CHECK(DiskWanted("dm-0", f));
    CHECK(!InterfaceWanted("lo", f));
    CHECK(!InterfaceWanted("veth1a2b3c4", f));
    CHECK(!InterfaceWanted("docker0", f));
    CHECK(!InterfaceWanted("br-0123456789ab", f));
    CHECK(InterfaceWanted("br-lan", f));
    CHECK(InterfaceWanted("eth0", f));
    CHECK(InterfaceWanted("dockerish", f));
  }
  SUBCASE("TOML arrays, comma lists, booleans; lists replace defaults") {
    std::map<std::string, std::string> o = {
        {"disk_include", R"(["sd*", 'nvme*'])"},
        {"disk_exclude", "[]"},
        {"disk_partitions", "true"},
        {"interface_exclude", "lo, docker*"},
        {"fs_type_include", R"([ "ext4", "tmpfs", ])"},
        {"mountpoint_exclude", ""},
        {"per_cpu", "false"},
    };
    REQUIRE(ParseFilters(o, &f) == "");
    CHECK(f.disk_include == std::vector<std::string>{"sd*", "nvme*"});
    CHECK(f.disk_exclude.empty());
    CHECK(f.disk_partitions);
    CHECK(f.interface_exclude == std::vector<std::string>{"lo", "docker*"});
    CHECK(f.fs_type_include == std::vector<std::string>{"ext4", "tmpfs"});
    CHECK(f.mountpoint_exclude.empty());
    CHECK(!f.per_cpu);
    CHECK(DiskWanted("sda1", f));
    CHECK(DiskWanted("nvme0n1p1", f));
    // A glob starting with a set is not an array.
    REQUIRE(ParseFilters({{"disk_include", "[sv]d*,loop*"}}, &f) == "");
    CHECK(f.disk_include == std::vector<std::string>{"[sv]d*", "loop*"});
    CHECK(!DiskWanted("dm-0", f));
    CHECK(InterfaceWanted("veth123", f));
  }
  SUBCASE("errors name the option") {
    std::string e = ParseFilters({{"disk_exlude", "[]"}}, &f);
    CHECK(e.find("unknown option 'disk_exlude'") != std::string::npos);
    CHECK(e.find("disk_exclude") != std::string::npos);  // lists the known ones
    e = ParseFilters({{"per_cpu", "yes"}}, &f);
    CHECK(e.find("per_cpu") != std::string::npos);
    e = ParseFilters({{"disk_include", R"(["sd*")"}}, &f);
    CHECK(e.find("disk_include") != std::string::npos);
    CHECK(!ParseFilters({{"disk_include", R"(["a", b])"}}, &f).empty());
    CHECK(!ParseFilters({{"disk_include", R"(["a" "b"])"}}, &f).empty());
    CHECK(!ParseFilters({{"disk_include", R"(["a"] x)"}}, &f).empty());
  }
}

TEST_CASE("linux: sample.toml, read as the collector reads it, sets the defaults") {
  auto root =
      ConfigTable::LoadFile(std::string(TRAPLINE_FIXTURES) + "/../../plugins/linux/sample.toml");
  REQUIRE_MESSAGE(root.ok(), root.status().ToString());
  auto targets = root->GetTableArray("target");
  REQUIRE(targets.ok());
  REQUIRE(targets->size() == 1);
  auto table = (*targets)[0]->GetTable("linux");
  REQUIRE(table.ok());
  auto pairs = (*table)->GetAllAsText();
  REQUIRE(pairs.ok());
  CHECK(pairs->size() == 10);  // every option is shown
  std::map<std::string, std::string> options(pairs->begin(), pairs->end());
  Filters f;
  f.disk_exclude.clear();
  f.per_cpu = false;
  REQUIRE(ParseFilters(options, &f) == "");
  const Filters d;
  CHECK(f.disk_include == d.disk_include);
  CHECK(f.disk_exclude == d.disk_exclude);
  CHECK(f.disk_partitions == d.disk_partitions);
  CHECK(f.fs_type_include == d.fs_type_include);
  CHECK(f.fs_type_exclude == d.fs_type_exclude);
  CHECK(f.mountpoint_include == d.mountpoint_include);
  CHECK(f.mountpoint_exclude == d.mountpoint_exclude);
  CHECK(f.interface_include == d.interface_include);
  CHECK(f.interface_exclude == d.interface_exclude);
  CHECK(f.per_cpu == d.per_cpu);
}

TEST_CASE("linux: globs and partitions") {
  CHECK(GlobMatch("loop*", "loop0"));
  CHECK(GlobMatch("loop*", "loop"));
  CHECK(!GlobMatch("loop*", "xloop0"));
  CHECK(GlobMatch("*", ""));
  CHECK(GlobMatch("/var/lib/docker/*", "/var/lib/docker/overlay2/x/merged"));
  CHECK(!GlobMatch("/var/lib/docker/*", "/var/lib/docker"));
  CHECK(GlobMatch("docker[0-9]*", "docker0"));
  CHECK(!GlobMatch("docker[0-9]*", "dockerx"));
  CHECK(GlobMatch("eth[!0]", "eth1"));
  CHECK(!GlobMatch("eth[!0]", "eth0"));
  CHECK(GlobMatch("br-????????????", "br-0123456789ab"));
  CHECK(!GlobMatch("br-????????????", "br-lan"));
  CHECK(GlobMatch("*a*b*c", "xxaxxbxxbcxc"));
  CHECK(GlobMatch("[", "["));  // malformed set: literal
  CHECK(!GlobMatch("[a", "a"));
  CHECK(GlobMatch("[]]", "]"));

  for (const char* p : {"sda1", "sdaa3", "vdb2", "hda1", "xvda1", "nvme0n1p1", "mmcblk0p2", "md0p1",
                        "loop0p1", "nbd0p1", "cciss!c0d0p1"}) {
    CHECK_MESSAGE(IsPartition(p), p);
  }
  for (const char* d : {"sda", "vda", "xvda", "nvme0n1", "mmcblk0", "dm-0", "md127", "sr0", "loop0",
                        "nbd0", "zram0", "rbd0", "mmcblk0boot0", "sd1", ""}) {
    CHECK_MESSAGE(!IsPartition(d), d);
  }
}

TEST_CASE("linux: diskstats formats and device selection") {
  const std::vector<std::string> whole = {"sda", "sdb", "nvme0n1", "dm-0", "md0", "mmcblk0"};
  for (const char* name :
       {"diskstats_3.10", "diskstats_4.18", "diskstats_5.5", "diskstats_future"}) {
    INFO(name);
    ParseResult r;
    ParseDiskstats(Variant(name), Filters{}, &r);
    CHECK(r.warnings.empty());
    CheckReadingsDeclared(r);
    CHECK(EntityNames(r, "disk") == whole);
    // nvme0n1 is the fifth device: the captured vda stats + 4.
    CHECK(Get(r, "disk.reads", "nvme0n1") == 75806 + 4);
    CHECK(Get(r, "disk.read_bytes", "nvme0n1") == 4440122 + 4);
    CHECK(Get(r, "disk.write_time", "nvme0n1") == 45303 + 4);
    CHECK(Get(r, "disk.inflight", "nvme0n1") == 0 + 4);
    CHECK(Get(r, "disk.util", "nvme0n1") == 14164 + 4);
    CHECK(Get(r, "disk.queue", "nvme0n1") == 121450 + 4);
    CHECK(r.readings.size() == whole.size() * 9);
  }
  SUBCASE("partitions on request") {
    Filters f;
    f.disk_partitions = true;
    ParseResult r;
    ParseDiskstats(Variant("diskstats_5.5"), f, &r);
    CHECK(EntityNames(r, "disk") ==
          std::vector<std::string>{"sda", "sda1", "sda2", "sdb", "nvme0n1", "nvme0n1p1",
                                   "nvme0n1p2", "dm-0", "md0", "mmcblk0", "mmcblk0p1"});
  }
  SUBCASE("Linux 2.6.18 partition lines have 4 stats") {
    Filters f;
    f.disk_partitions = true;
    ParseResult r;
    ParseDiskstats(Variant("diskstats_2.6.18"), f, &r);
    CHECK(r.warnings.empty());
    CHECK(Get(r, "disk.reads", "sda1") == 1201);
    CHECK(Get(r, "disk.read_bytes", "sda1") == 9608);
    CHECK(Get(r, "disk.writes", "sda1") == 310);
    CHECK(Get(r, "disk.write_bytes", "sda1") == 2480);
    CHECK(!Find(r, "disk.util", "sda1"));
    CHECK(Get(r, "disk.util", "sda") == 14164);
  }
  SUBCASE("broken lines are skipped with warnings") {
    ParseResult r;
    ParseDiskstats(Variant("diskstats_broken"), Filters{}, &r);
    CheckReadingsDeclared(r);
    CHECK(EntityNames(r, "disk") == std::vector<std::string>{"sda"});
    CHECK(HasWarning(r, "sdb: 3 fields; skipped"));
    CHECK(HasWarning(r, "malformed line '   x    0 sdc"));
    CHECK(HasWarning(r, "sdd: bad field after 5 fields"));
    CHECK(HasWarning(r, "last line cut short"));
    CHECK(!Find(r, "disk.reads", "sde"));
  }
}

TEST_CASE("linux: /proc/stat variants") {
  SUBCASE("Linux 2.6.18: 8 cpu fields, no softirq line") {
    ParseResult r;
    ParseStat(Variant("stat_2.6.18"), Filters{}, &r);
    CheckReadingsDeclared(r);
    CHECK(Get(r, "cpu.steal", "cpu0") == 98);
    CHECK(!Find(r, "cpu.guest", "cpu0"));
    CHECK(Get(r, "cpu.busy", "cpu0") == 61225 + 19974 + 1264 + 98);
    CHECK(Get(r, "cpu.total.user") == 126961 / 2.0);
    CHECK(!Find(r, "softirqs"));
    CHECK(HasWarning(r, "cpu lines have 8 of 10 fields"));
    CHECK(HasWarning(r, "missing softirq"));
    CHECK(Get(r, "context_switches") == 7715364);
  }
  SUBCASE("cut inside the cpu lines: no host-wide CPU") {
    ParseResult r;
    ParseStat(Variant("stat_cut_in_cpu"), Filters{}, &r);
    CHECK(Get(r, "cpu.user", "cpu0") == 61225);
    CHECK(!Find(r, "cpu.user", "cpu1"));
    CHECK(!Find(r, "cpu.total.user"));
    CHECK(!Find(r, "cpu.count"));
    CHECK(HasWarning(r, "ends inside the cpu lines"));
    CHECK(HasWarning(r, "/proc/stat: last line cut short"));
  }
  SUBCASE("cut inside the intr line") {
    ParseResult r;
    ParseStat(Variant("stat_cut_in_intr"), Filters{}, &r);
    CHECK(Get(r, "cpu.total.user") == 126961 / 2.0);
    CHECK(!Find(r, "interrupts"));
    CHECK(!Find(r, "context_switches"));
    CHECK(HasWarning(r, "missing intr, ctxt, processes, procs_running, procs_blocked, softirq"));
  }
  SUBCASE("a bad field and an unknown line") {
    ParseResult r;
    ParseStat(Variant("stat_garbage"), Filters{}, &r);
    CHECK(HasWarning(r, "cpu0: bad field after 0 fields"));
    CHECK(!Find(r, "cpu.user", "cpu0"));
    CHECK(Get(r, "cpu.user", "cpu1") == 65736);
    CHECK(Get(r, "forks") == 53602);
  }
  SUBCASE("per_cpu = false") {
    Filters f;
    f.per_cpu = false;
    ParseResult r;
    ParseStat(ReadFile(kT0 + "/proc/stat"), f, &r);
    CHECK(EntityNames(r, "cpu").empty());
    CHECK(!Find(r, "cpu.user", "cpu0"));
    CHECK(Get(r, "cpu.count") == 2);
    CHECK(Get(r, "cpu.total.user") == 126961 / 2.0);
  }
}

TEST_CASE("linux: /proc/meminfo variants") {
  SUBCASE("before Linux 3.14: MemAvailable estimated") {
    ParseResult r;
    ParseMeminfo(Variant("meminfo_3.13"), &r);
    CHECK(Get(r, "mem.available") == (22728736.0 + 13676 + 1281852) * 1024);
    CHECK(Get(r, "mem.used") == (24684084.0 - 22728736 - 13676 - 1281852) * 1024);
    CHECK(HasWarning(r, "no MemAvailable"));
  }
  SUBCASE("missing fields") {
    ParseResult r;
    ParseMeminfo(Variant("meminfo_missing"), &r);
    CHECK(HasWarning(r, "missing Slab, SwapFree"));
    CHECK(!Find(r, "mem.slab"));
    CHECK(!Find(r, "swap.used"));
    CHECK(Get(r, "swap.total") == 0);
    CHECK(Get(r, "mem.dirty") > 0);
  }
  SUBCASE("cut in the Dirty line") {
    ParseResult r;
    ParseMeminfo(Variant("meminfo_cut"), &r);
    CHECK(HasWarning(r, "last line cut short"));
    CHECK(HasWarning(r, "missing Dirty, Slab"));
    CHECK(!Find(r, "mem.dirty"));
    CHECK(Get(r, "mem.total") == 24684084.0 * 1024);
    CHECK(Get(r, "swap.total") == 0);  // SwapTotal comes before Dirty
  }
}

TEST_CASE("linux: /proc/net/dev, /proc/net/snmp, pressure, file-nr variants") {
  SUBCASE("server interfaces, unspaced old format") {
    ParseResult r;
    ParseNetDev(Variant("net_dev_server"), Filters{}, &r);
    CHECK(r.warnings.empty());
    CHECK(EntityNames(r, "interface") ==
          std::vector<std::string>{"eth0", "eth0.100", "bond0", "br-lan", "wg0"});
    CHECK(Get(r, "net.rx.bytes", "eth0") == 59145488);
    CHECK(Get(r, "net.rx.errors", "eth0") == 1);
    CHECK(Get(r, "net.rx.drops", "eth0") == 2);
    CHECK(Get(r, "net.tx.errors", "eth0") == 3);
    CHECK(Get(r, "net.tx.drops", "eth0") == 4);
  }
  SUBCASE("short and bad rows") {
    ParseResult r;
    ParseNetDev(Variant("net_dev_short"), Filters{}, &r);
    CHECK(Get(r, "net.tx.bytes", "eth0") == 9);
    CHECK(Get(r, "net.tx.packets", "eth0") == 10);
    CHECK(!Find(r, "net.tx.errors", "eth0"));
    CHECK(Get(r, "net.rx.packets", "eth1") == 2);
    CHECK(!Find(r, "net.rx.errors", "eth1"));
    CHECK(HasWarning(r, "eth0: 10 of 16 fields"));
    CHECK(HasWarning(r, "eth1: 2 of 16 fields"));
  }
  SUBCASE("snmp columns are found by name") {
    ParseResult r;
    ParseNetSnmp(Variant("net_snmp_extra_columns"), &r);
    CHECK(r.warnings.empty());
    CHECK(Get(r, "tcp.out_segs") == 4562269);
    CHECK(Get(r, "tcp.retrans_segs") == 1205);
    CHECK(Get(r, "udp.rcvbuf_errors") == 0);
    ParseResult s;
    ParseNetSnmp(Variant("net_snmp_short"), &s);
    CHECK(Get(s, "tcp.active_opens") == 5);
    CHECK(HasWarning(s, "names and values differ"));
    CHECK(HasWarning(s, "missing Tcp PassiveOpens"));
  }
  SUBCASE("cpu pressure without a full line (Linux < 5.13)") {
    ParseResult r;
    ParsePressure("cpu", Variant("pressure_cpu_5.10"), &r);
    CHECK(r.warnings.empty());
    CHECK(Get(r, "pressure.cpu.some") == 383992462);
    CHECK(!Find(r, "pressure.cpu.full"));
    ParseResult m;
    ParsePressure("memory", Variant("pressure_cpu_5.10"), &m);
    CHECK(HasWarning(m, "/proc/pressure/memory: missing full"));
    ParseResult u;
    ParsePressure("disk", "some avg10=1.00 total=1\n", &u);
    CHECK(u.readings.empty());
    CHECK(HasWarning(u, "unknown resource"));
  }
  SUBCASE("file-nr of Linux 2.4 counts free handles") {
    ParseResult r;
    ParseFileNr(Variant("file-nr_2.4"), &r);
    CHECK(Get(r, "fd.allocated") == 1012);
    CHECK(Get(r, "fd.max") == 8192);
  }
}

TEST_CASE("linux: missing and empty files") {
  SUBCASE("a kernel without /proc/pressure") {
    auto files = LoadTick(kT0);
    files.erase("/proc/pressure/cpu");
    files.erase("/proc/pressure/memory");
    files.erase("/proc/pressure/io");
    ParseResult r = Parse(files, {}, Filters{});
    CHECK(r.warnings.size() == 3);
    CHECK(HasWarning(r, "/proc/pressure/io: not read"));
    for (const Reading& x : r.readings) CHECK(x.metric.rfind("pressure.", 0) == std::string::npos);
    CHECK(Get(r, "mem.total") > 0);
    CHECK(Get(r, "cpu.user", "cpu1") > 0);
  }
  SUBCASE("nothing read at all") {
    ParseResult r = Parse({}, {}, Filters{});
    CHECK(r.readings.empty());
    CHECK(r.warnings.size() == TickFiles().size());
  }
  SUBCASE("every file empty") {
    std::map<std::string, std::string> files;
    for (const std::string& p : TickFiles()) files[p] = Variant("empty");
    ParseResult r = Parse(files, {}, Filters{});
    CHECK(r.readings.empty());
    CHECK(r.entities.empty());
    CHECK(!r.warnings.empty());
  }
}

TEST_CASE("linux: filesystems to stat") {
  SUBCASE("this machine: only / among proc, sysfs, tmpfs, cgroup...") {
    auto mounts = FilesystemsToStat(ReadFile(kT0 + "/proc/mounts"), Filters{});
    CHECK(mounts == std::vector<Mount>{{"/dev/vda", "/", "ext4"}});
  }
  SUBCASE("a server: overmounts, bind mounts, subvolumes, datasets, escapes") {
    auto mounts = FilesystemsToStat(Variant("mounts_server"), Filters{});
    std::vector<std::string> mps;
    for (const Mount& m : mounts) mps.push_back(m.mountpoint);
    CHECK(mps == std::vector<std::string>{"/", "/boot", "/boot/efi", "/srv/data", "/home", "/tank",
                                          "/tank/backups", "/media/My Disk", "/mnt/under"});
    CHECK(mounts[0] == Mount{"/dev/mapper/vg0-root", "/", "ext4"});
    CHECK(mounts[4] == Mount{"/dev/sdb2", "/home", "btrfs"});
    CHECK(mounts[7] == Mount{"/dev/sdc1", "/media/My Disk", "exfat"});
    CHECK(mounts[8] == Mount{"/dev/sde1", "/mnt/under", "ext4"});
  }
  SUBCASE("filters by type and mountpoint") {
    Filters f;
    REQUIRE(ParseFilters(
                {{"fs_type_include", "ext4, tmpfs, nfs*"}, {"mountpoint_exclude", "/boot*, /run"}},
                &f) == "");
    auto mounts = FilesystemsToStat(Variant("mounts_server"), f);
    std::vector<std::string> mps;
    for (const Mount& m : mounts) mps.push_back(m.mountpoint);
    // tmpfs sources do not name a filesystem: kept one per mountpoint. /mnt/over's visible
    // mount is now wanted (tmpfs); the kubelet volume shows once its exclude is gone.
    CHECK(mps == std::vector<std::string>{"/", "/dev/shm", "/tmp", "/mnt/media", "/mnt/over",
                                          "/mnt/under",
                                          "/var/lib/kubelet/pods/1234/volumes/"
                                          "kubernetes.io~csi/pvc-1/mount"});
  }
}

// The same readings, entities and warnings, in the same order.
void CheckSameResult(const ParseResult& a, const ParseResult& b) {
  REQUIRE(a.readings.size() == b.readings.size());
  for (size_t i = 0; i < a.readings.size(); ++i) {
    CHECK(a.readings[i].metric == b.readings[i].metric);
    CHECK(a.readings[i].entity == b.readings[i].entity);
    CHECK(a.readings[i].value == b.readings[i].value);
  }
  REQUIRE(a.entities.size() == b.entities.size());
  for (size_t i = 0; i < a.entities.size(); ++i) {
    CHECK(a.entities[i].kind == b.entities[i].kind);
    CHECK(a.entities[i].name == b.entities[i].name);
    CHECK(a.entities[i].labels == b.entities[i].labels);
  }
  CHECK(a.warnings == b.warnings);
}

TEST_CASE("linux: ParseTickFiles() by TickFiles() index, with a kept mount selection, is Parse()") {
  auto files = LoadTick(kT0);
  SUBCASE("a captured tick") {}
  SUBCASE("a server's mount table with a malformed line (warnings kept with the selection)") {
    files["/proc/mounts"] = Variant("mounts_server") + "junk\n";
  }
  SUBCASE("a file not read") { files.erase("/proc/vmstat"); }
  SUBCASE("no mount table") { files.erase("/proc/mounts"); }
  const std::vector<FsStat> fs = {FsStat{"/", 4096, 4096, 1000, 400, 350, 100, 25, 25}};
  const ParseResult want = Parse(files, fs, Filters{});
  if (files.count("/proc/mounts") > 0 && files["/proc/mounts"].ends_with("junk\n")) {
    CHECK(HasWarning(want, "/proc/mounts: malformed line 'junk'"));
  }
  std::vector<const std::string*> by_index;
  for (const std::string& path : TickFiles()) {
    auto it = files.find(path);
    by_index.push_back(it == files.end() ? nullptr : &it->second);
  }
  CheckSameResult(ParseTickFiles(by_index, fs, Filters{}), want);
  if (files.count("/proc/mounts") > 0) {
    const MountSelection kept = SelectMounts(files["/proc/mounts"], Filters{});
    CHECK(kept.mounts == FilesystemsToStat(files["/proc/mounts"], Filters{}));
    CheckSameResult(ParseTickFiles(by_index, fs, Filters{}, &kept), want);
  }
  // Entries past the end count as not read.
  by_index.resize(3);
  const ParseResult short_list = ParseTickFiles(by_index, fs, Filters{});
  CHECK(HasWarning(short_list, "/proc/uptime: not read"));
  CHECK(Get(short_list, "cpu.count") > 0);
}

TEST_CASE("linux: filesystem readings") {
  std::vector<Mount> mounts = {{"/dev/sda1", "/", "ext4"}, {"/dev/sdb1", "/data disk", "btrfs"}};
  FsStat root{"/", 4096, 4096, 1000, 400, 350, 100, 25, 25};
  FsStat data{"/data disk", 4096, 1024, 2000, 2000, 2000, 0, 0, 0};
  FsStat gone{"/mnt/gone", 4096, 4096, 10, 5, 5, 10, 5, 5};
  FsStat bad{"/", 0, 0, 10, 5, 5, 10, 5, 5};
  SUBCASE("with the mount table") {
    ParseResult r;
    ParseFilesystems(&mounts, {root, data, gone}, &r);
    CheckReadingsDeclared(r);
    CHECK(Get(r, "fs.size", "/") == 1000 * 4096);
    CHECK(Get(r, "fs.used", "/") == 600 * 4096);
    CHECK(Get(r, "fs.free", "/") == 350 * 4096);
    CHECK(Get(r, "fs.pused", "/") == doctest::Approx(600.0 / 950 * 100));
    CHECK(Get(r, "fs.inodes.pfree", "/") == 25);
    CHECK(Get(r, "fs.size", "/data disk") == 2000 * 1024);  // frsize, not bsize
    CHECK(Get(r, "fs.pused", "/data disk") == 0);
    CHECK(!Find(r, "fs.inodes.pfree", "/data disk"));  // btrfs: no inode table
    CHECK(!Find(r, "fs.size", "/mnt/gone"));
    CHECK(HasWarning(r, "/mnt/gone: not among"));
    CHECK(EntityNames(r, "filesystem") == std::vector<std::string>{"/", "/data disk"});
    CHECK(r.entities[1].labels == std::vector<std::pair<std::string, std::string>>{
                                      {"device", "/dev/sdb1"}, {"fstype", "btrfs"}});
    CHECK(ItemKey(kPluginName, "fs.pused", "/data disk") == "linux.fs.pused[\"/data disk\"]");
  }
  SUBCASE("without a mount table; inconsistent results") {
    ParseResult r;
    ParseFilesystems(nullptr, {gone, bad}, &r);
    CHECK(Get(r, "fs.size", "/mnt/gone") == 40960);
    CHECK(r.entities.size() == 1);
    CHECK(r.entities[0].labels.empty());
    CHECK(HasWarning(r, "/: inconsistent statvfs"));
  }
}

// Runs every parser over `text`; each must cope with any input.
void ParseWithEverything(std::string_view text, const Filters& f) {
  ParseResult r;
  ParseStat(text, f, &r);
  ParseMeminfo(text, &r);
  ParseVmstat(text, &r);
  ParseLoadavg(text, &r);
  ParseDiskstats(text, f, &r);
  ParseNetDev(text, f, &r);
  ParseNetSnmp(text, &r);
  ParseSockstat(text, &r);
  ParseSockstat6(text, &r);
  ParseFileNr(text, &r);
  ParsePressure("io", text, &r);
  ParseUptime(text, &r);
  std::vector<Mount> mounts = FilesystemsToStat(text, f);
  ParseFilesystems(&mounts, {FsStat{"/", 4096, 4096, 10, 5, 5, 10, 5, 5}}, &r);
  CheckReadingsDeclared(r);
}

std::vector<std::string> AllFixtures() {
  std::vector<std::string> paths;
  for (const auto& e : stdfs::recursive_directory_iterator(kDir)) {
    if (e.is_regular_file() && e.path().extension() != ".py" && e.path().extension() != ".sh" &&
        e.path().extension() != ".md") {
      paths.push_back(e.path().string());
    }
  }
  std::sort(paths.begin(), paths.end());
  return paths;
}

TEST_CASE("linux: every prefix of every fixture, through every parser") {
  Filters everything;
  everything.disk_exclude.clear();
  everything.interface_exclude.clear();
  everything.disk_partitions = true;
  everything.fs_type_include.clear();
  auto paths = AllFixtures();
  REQUIRE(paths.size() > 40);
  size_t parsed = 0;
  for (const std::string& path : paths) {
    const std::string text = ReadFile(path);
    INFO(path);
    // Every prefix; bounded, so long files are cut at a stride past their first 2 KiB.
    for (size_t n = 0; n <= text.size(); n += n < 2048 ? 1 : 7) {
      ParseWithEverything(std::string_view(text).substr(0, n), n % 2 ? everything : Filters{});
      ++parsed;
    }
  }
  MESSAGE(parsed << " prefixes parsed");
}

TEST_CASE("linux: random corruption of every fixture, and of whole ticks") {
  std::mt19937 rng(20260417);
  const char kInteresting[] = {'\n', ' ', '\t', ':',  '-', '/', '0', '9',
                               '=',  '.', '\0', '\\', '[', '*', 'x'};
  auto corrupt = [&](std::string s) {
    if (s.empty()) return s;
    int flips = 1 + static_cast<int>(rng() % 6);
    for (int i = 0; i < flips; ++i) {
      size_t at = rng() % s.size();
      switch (rng() % 4) {
        case 0:
          s[at] = kInteresting[rng() % sizeof(kInteresting)];
          break;
        case 1:
          s[at] = static_cast<char>(rng() % 256);
          break;
        case 2:
          s.erase(at, 1 + rng() % 16);
          break;
        default:
          s.insert(at, std::string(1 + rng() % 8, kInteresting[rng() % 10]));
          break;
      }
      if (s.empty()) break;
    }
    return s;
  };
  for (const std::string& path : AllFixtures()) {
    INFO(path);
    const std::string text = ReadFile(path);
    for (int i = 0; i < 200; ++i) ParseWithEverything(corrupt(text), Filters{});
  }
  const auto tick = LoadTick(kT0);
  for (int i = 0; i < 300; ++i) {
    auto files = tick;
    for (auto& [path, content] : files) {
      if (rng() % 3 == 0) content = corrupt(content);
    }
    ParseResult r = Parse(files, {FsStat{"/", 4096, 4096, 10, 5, 5, 10, 5, 5}}, Filters{});
    CheckReadingsDeclared(r);
  }
}

}  // namespace
}  // namespace trapline::plugins::linuxhost
