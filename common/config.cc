#include "common/config.h"

#include <fstream>
#include <sstream>
#include <toml.hpp>

namespace trapline {

struct ConfigTable::Impl {
  toml::value root;
};

namespace {

// Keeps error text on one line: toml11's messages span several.
std::string OneLine(std::string s) {
  std::string out;
  bool space = false;
  for (char c : s) {
    if (c == '\n' || c == '\r' || c == '\t' || c == ' ') {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += c;
  }
  return out;
}

}  // namespace

ConfigTable::ConfigTable() = default;

Result<ConfigTable> ConfigTable::Parse(const std::string& text, const std::string& origin) {
  ConfigTable t;
  t.impl_ = std::make_shared<Impl>();
  t.origin_ = origin;
  try {
    std::istringstream in(text);
    t.impl_->root = toml::parse(in, origin);
  } catch (const std::exception& e) {
    return Status::InvalidArgument(origin + ": not valid TOML: " + OneLine(e.what()));
  }
  return t;
}

Result<ConfigTable> ConfigTable::LoadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound("config file " + path + ": cannot open");
  std::stringstream buf;
  buf << in.rdbuf();
  return Parse(buf.str(), path);
}

namespace {
const toml::value* Lookup(const toml::value& root, const std::string& path) {
  const toml::value* v = &root;
  if (path.empty()) return v;
  size_t start = 0;
  while (start <= path.size()) {
    size_t dot = path.find('.', start);
    std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!v->is_table()) return nullptr;
    const auto& tbl = v->as_table();
    auto it = tbl.find(part);
    if (it == tbl.end()) return nullptr;
    v = &it->second;
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return v;
}
}  // namespace

std::string ConfigTable::Where(const std::string& key) const {
  std::string full = path_.empty() ? key : path_ + "." + key;
  const toml::value* v = Lookup(impl_->root, full);
  std::string where = origin_;
  if (v != nullptr && v->location().line() > 0) where += ":" + std::to_string(v->location().line());
  return where + ": '" + full + "'";
}

bool ConfigTable::Has(const std::string& key) const {
  const toml::value* self = Lookup(impl_->root, path_);
  return self != nullptr && self->is_table() && self->as_table().count(key) > 0;
}

Result<std::string> ConfigTable::GetString(const std::string& key, const std::string& def) {
  known_.insert(key);
  if (!Has(key)) return def;
  const toml::value& v = *Lookup(impl_->root, path_.empty() ? key : path_ + "." + key);
  if (!v.is_string()) return Status::InvalidArgument(Where(key) + " must be a string");
  return std::string(v.as_string().str);
}

Result<int64_t> ConfigTable::GetInt(const std::string& key, int64_t def, int64_t min,
                                    int64_t max) {
  known_.insert(key);
  if (!Has(key)) return def;
  const toml::value& v = *Lookup(impl_->root, path_.empty() ? key : path_ + "." + key);
  if (!v.is_integer()) return Status::InvalidArgument(Where(key) + " must be an integer");
  int64_t x = v.as_integer();
  if (x < min || x > max) {
    return Status::InvalidArgument(Where(key) + " is " + std::to_string(x) + ", must be in [" +
                                   std::to_string(min) + ", " + std::to_string(max) + "]");
  }
  return x;
}

Result<double> ConfigTable::GetDouble(const std::string& key, double def, double min,
                                      double max) {
  known_.insert(key);
  if (!Has(key)) return def;
  const toml::value& v = *Lookup(impl_->root, path_.empty() ? key : path_ + "." + key);
  double x;
  if (v.is_floating()) {
    x = v.as_floating();
  } else if (v.is_integer()) {
    x = static_cast<double>(v.as_integer());
  } else {
    return Status::InvalidArgument(Where(key) + " must be a number");
  }
  if (!(x >= min && x <= max)) {
    return Status::InvalidArgument(Where(key) + " is " + std::to_string(x) + ", must be in [" +
                                   std::to_string(min) + ", " + std::to_string(max) + "]");
  }
  return x;
}

Result<bool> ConfigTable::GetBool(const std::string& key, bool def) {
  known_.insert(key);
  if (!Has(key)) return def;
  const toml::value& v = *Lookup(impl_->root, path_.empty() ? key : path_ + "." + key);
  if (!v.is_boolean()) return Status::InvalidArgument(Where(key) + " must be true or false");
  return v.as_boolean();
}

Result<ConfigTable*> ConfigTable::GetTable(const std::string& key) {
  known_.insert(key);
  if (Has(key)) {
    const toml::value& v = *Lookup(impl_->root, path_.empty() ? key : path_ + "." + key);
    if (!v.is_table()) return Status::InvalidArgument(Where(key) + " must be a table");
  }
  auto& child = children_[key];
  if (!child) {
    child.reset(new ConfigTable());
    child->impl_ = impl_;
    child->origin_ = origin_;
    child->path_ = path_.empty() ? key : path_ + "." + key;
  }
  return child.get();
}

Status ConfigTable::CheckKnown() const {
  const toml::value* self = Lookup(impl_->root, path_);
  if (self != nullptr && self->is_table()) {
    // Report in file order so the first unknown key in the file is named first.
    std::vector<std::pair<uint32_t, std::string>> unknown;
    for (const auto& [k, v] : self->as_table()) {
      if (known_.count(k) == 0) unknown.emplace_back(v.location().line(), k);
    }
    if (!unknown.empty()) {
      std::sort(unknown.begin(), unknown.end());
      std::string known_list;
      for (const auto& k : known_) known_list += (known_list.empty() ? "" : ", ") + k;
      return Status::InvalidArgument(Where(unknown.front().second) + " is not a known key" +
                                     (known_list.empty() ? "" : " (known here: " + known_list + ")"));
    }
  }
  for (const auto& [k, child] : children_) TRAPLINE_RETURN_IF_ERROR(child->CheckKnown());
  return Status::OK();
}

}  // namespace trapline
