#include "collector/spool.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "common/log.h"

namespace trapline {

namespace fs = std::filesystem;

namespace {

// Numbers start in the middle of the range so that Prepend() can go below the head.
constexpr uint64_t kFirstSegment = 1ull << 40;

Status Errno(const std::string& what) {
  return Status::IoError(what + ": " + std::strerror(errno));
}

Status WriteAll(int fd, const std::string& data, const std::string& path) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno("write " + path);
    }
    done += static_cast<size_t>(n);
  }
  return Status::OK();
}

}  // namespace

Spool::Spool(SpoolOptions options) : options_(std::move(options)) {}
Spool::~Spool() {
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the flock
}

std::string Spool::SegmentPath(uint64_t n) const {
  char name[32];
  std::snprintf(name, sizeof(name), "%020" PRIu64 ".spool", n);
  return options_.dir + "/" + name;
}

Result<std::unique_ptr<Spool>> Spool::Open(SpoolOptions options) {
  if (options.dir.empty()) return Status::InvalidArgument("spool folder not set");
  std::error_code ec;
  fs::create_directories(options.dir, ec);
  if (ec) return Status::IoError("spool folder " + options.dir + ": " + ec.message());
  std::unique_ptr<Spool> spool(new Spool(std::move(options)));
  std::string lock_path = spool->options_.dir + "/lock";
  spool->lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (spool->lock_fd_ < 0) return Errno("spool lock " + lock_path);
  if (::flock(spool->lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    return Status::Unavailable("spool folder " + spool->options_.dir +
                               " is in use by another process (each sender needs its own)");
  }
  TRAPLINE_RETURN_IF_ERROR(spool->Recover());
  return spool;
}

Status Spool::Recover() {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(options_.dir, ec)) {
    std::string name = entry.path().filename().string();
    if (name.size() != 26 || name.substr(20) != ".spool") continue;
    uint64_t n = std::strtoull(name.c_str(), nullptr, 10);
    segments_[n] = Segment{};
  }
  if (ec) return Status::IoError("spool folder " + options_.dir + ": " + ec.message());

  // The head: "segment offset index".
  head_ = SpoolPosition{segments_.empty() ? kFirstSegment : segments_.begin()->first, 0, 0};
  if (std::ifstream in(options_.dir + "/head"); in) {
    SpoolPosition h;
    if (in >> h.segment >> h.offset >> h.index) head_ = h;
  }
  // Segments before the head were delivered; a crash may have left them behind.
  while (!segments_.empty() && segments_.begin()->first < head_.segment) {
    fs::remove(SegmentPath(segments_.begin()->first), ec);
    segments_.erase(segments_.begin());
  }
  // Count values and truncate a torn last line.
  for (auto& [n, seg] : segments_) {
    std::string path = SegmentPath(n);
    std::ifstream in(path, std::ios::binary);
    std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    size_t last_nl = data.rfind('\n');
    size_t keep = last_nl == std::string::npos ? 0 : last_nl + 1;
    if (keep != data.size()) {
      spdlog::warn("[spool] {}: dropping a torn last line of {} bytes (crash while writing)",
                   path, data.size() - keep);
      fs::resize_file(path, keep, ec);
      if (ec) return Status::IoError("truncate " + path + ": " + ec.message());
    }
    seg.bytes = keep;
    seg.values = static_cast<uint64_t>(std::count(data.begin(), data.begin() + static_cast<std::ptrdiff_t>(keep), '\n'));
    bytes_ += seg.bytes;
  }
  if (!segments_.empty() && segments_.count(head_.segment) == 0) {
    head_ = SpoolPosition{segments_.begin()->first, 0, 0};
  }
  if (auto it = segments_.find(head_.segment); it != segments_.end()) {
    if (head_.offset > it->second.bytes || head_.index > it->second.values) {
      spdlog::warn("[spool] {}: head {}:{} is past the segment's end; replaying the segment",
                   options_.dir, head_.segment, head_.offset);
      head_.offset = 0;
      head_.index = 0;
    }
  }
  cursor_ = head_;
  if (!segments_.empty()) {
    spdlog::info("[spool] {}: recovered {} values in {} segments ({} bytes)", options_.dir,
                 pending_values(), segments_.size(), bytes_);
  }
  return Status::OK();
}

uint64_t Spool::ValuesFrom(SpoolPosition pos) const {
  uint64_t n = 0;
  for (auto it = segments_.lower_bound(pos.segment); it != segments_.end(); ++it) {
    n += it->second.values;
    if (it->first == pos.segment) n -= std::min(pos.index, it->second.values);
  }
  return n;
}

Status Spool::WriteSegment(uint64_t n, const std::string& data, bool append) {
  std::string path = SegmentPath(n);
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : O_TRUNC), 0600);
  if (fd < 0) return Errno("open " + path);
  Status st = WriteAll(fd, data, path);
  if (st.ok() && options_.fsync && ::fdatasync(fd) != 0) st = Errno("fdatasync " + path);
  ::close(fd);
  return st;
}

Status Spool::WriteHead() {
  std::string tmp = options_.dir + "/head.tmp";
  std::string data = std::to_string(head_.segment) + " " + std::to_string(head_.offset) + " " +
                     std::to_string(head_.index) + "\n";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Errno("open " + tmp);
  Status st = WriteAll(fd, data, tmp);
  if (st.ok() && options_.fsync && ::fdatasync(fd) != 0) st = Errno("fdatasync " + tmp);
  ::close(fd);
  TRAPLINE_RETURN_IF_ERROR(st);
  if (::rename(tmp.c_str(), (options_.dir + "/head").c_str()) != 0) return Errno("rename " + tmp);
  return Status::OK();
}

Status Spool::Append(std::span<const SenderValue> values) {
  if (values.empty()) return Status::OK();
  size_t i = 0;
  while (i < values.size()) {
    uint64_t tail = segments_.empty() ? head_.segment : segments_.rbegin()->first;
    if (!segments_.empty() && segments_.rbegin()->second.bytes >= options_.segment_bytes) ++tail;
    Segment& seg = segments_[tail];
    std::string data;
    uint64_t count = 0;
    for (; i < values.size() && seg.bytes + data.size() < options_.segment_bytes; ++i, ++count) {
      AppendValueJson(values[i], &data);
      data.push_back('\n');
    }
    TRAPLINE_RETURN_IF_ERROR(WriteSegment(tail, data, /*append=*/true).WithContext("spool append"));
    seg.bytes += data.size();
    seg.values += count;
    bytes_ += data.size();
  }
  return EnforceCap();
}

Status Spool::Prepend(std::span<const SenderValue> values) {
  if (values.empty()) return Status::OK();
  uint64_t n = (segments_.empty() ? head_.segment : std::min(head_.segment, segments_.begin()->first)) - 1;
  std::string data;
  for (const auto& v : values) {
    AppendValueJson(v, &data);
    data.push_back('\n');
  }
  TRAPLINE_RETURN_IF_ERROR(WriteSegment(n, data, /*append=*/false).WithContext("spool prepend"));
  // Drop what was delivered of the old head segment by moving the head to the new one; the
  // old head segment keeps its delivered prefix, so remember it: rewrite the head's segment
  // if it was partly delivered.
  if (auto it = segments_.find(head_.segment); it != segments_.end() && head_.offset > 0) {
    std::string path = SegmentPath(head_.segment);
    std::ifstream in(path, std::ios::binary);
    in.seekg(static_cast<std::streamoff>(head_.offset));
    std::string rest((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    TRAPLINE_RETURN_IF_ERROR(WriteSegment(head_.segment, rest, /*append=*/false));
    bytes_ -= head_.offset;
    it->second.bytes -= head_.offset;
    it->second.values -= head_.index;
  }
  segments_[n] = Segment{data.size(), values.size()};
  bytes_ += data.size();
  head_ = SpoolPosition{n, 0, 0};
  cursor_ = head_;
  TRAPLINE_RETURN_IF_ERROR(WriteHead());
  return EnforceCap();
}

Status Spool::DropSegment(uint64_t n) {
  auto it = segments_.find(n);
  if (it == segments_.end()) return Status::OK();
  std::error_code ec;
  fs::remove(SegmentPath(n), ec);
  bytes_ -= it->second.bytes;
  segments_.erase(it);
  if (ec) return Status::IoError("remove " + SegmentPath(n) + ": " + ec.message());
  return Status::OK();
}

Status Spool::EnforceCap() {
  while (bytes_ > options_.max_bytes && segments_.size() > 1) {
    auto first = segments_.begin();
    uint64_t lost = first->second.values;
    if (first->first == head_.segment) lost -= std::min(head_.index, lost);
    dropped_values_ += lost;
    spdlog::warn("[spool] {}: over its cap of {} bytes: dropped the oldest {} values", options_.dir,
                 options_.max_bytes, lost);
    uint64_t n = first->first;
    TRAPLINE_RETURN_IF_ERROR(DropSegment(n));
    uint64_t next = segments_.begin()->first;
    if (head_.segment <= n) head_ = SpoolPosition{next, 0, 0};
    if (cursor_.segment <= n) cursor_ = SpoolPosition{next, 0, 0};
    TRAPLINE_RETURN_IF_ERROR(WriteHead());
  }
  return Status::OK();
}

Result<size_t> Spool::Read(size_t max, std::vector<SenderValue>* out, SpoolPosition* end) {
  size_t n = 0;
  while (n < max) {
    auto it = segments_.lower_bound(cursor_.segment);
    if (it == segments_.end()) break;
    if (it->first != cursor_.segment) cursor_ = SpoolPosition{it->first, 0, 0};
    if (cursor_.offset >= it->second.bytes) {
      auto next = std::next(it);
      if (next == segments_.end()) break;
      cursor_ = SpoolPosition{next->first, 0, 0};
      continue;
    }
    std::string path = SegmentPath(it->first);
    std::ifstream in(path, std::ios::binary);
    if (!in) return Status::IoError("spool read: cannot open " + path);
    in.seekg(static_cast<std::streamoff>(cursor_.offset));
    std::string line;
    while (n < max && cursor_.offset < it->second.bytes && std::getline(in, line)) {
      cursor_.offset += line.size() + 1;
      cursor_.index += 1;
      auto v = ParseValueJson(line);
      if (!v.ok()) {
        ++corrupt_lines_;
        spdlog::warn("[spool] {} offset {}: skipping a corrupt record: {}", path,
                     cursor_.offset - line.size() - 1, v.status().message());
        continue;
      }
      out->push_back(std::move(v).value());
      ++n;
    }
    if (n < max && cursor_.offset < it->second.bytes) {
      return Status::IoError("spool read: " + path + " is shorter than recorded");
    }
  }
  *end = cursor_;
  return n;
}

Status Spool::Commit(SpoolPosition end) {
  if (end <= head_) return Status::OK();
  head_ = end;
  // Whole segments before the head are delivered.
  while (!segments_.empty() && segments_.begin()->first < head_.segment) {
    TRAPLINE_RETURN_IF_ERROR(DropSegment(segments_.begin()->first));
  }
  // A fully delivered last segment: remove it and start afresh so the folder empties.
  if (segments_.size() == 1 && segments_.begin()->first == head_.segment &&
      head_.offset >= segments_.begin()->second.bytes && cursor_ <= head_) {
    uint64_t n = head_.segment;
    TRAPLINE_RETURN_IF_ERROR(DropSegment(n));
    head_ = SpoolPosition{n + 1, 0, 0};
    cursor_ = head_;
  }
  return WriteHead();
}

void Spool::Rewind() { cursor_ = head_; }

}  // namespace trapline
