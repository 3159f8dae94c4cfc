#include "common/config.h"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <toml.hpp>

namespace trapline {

struct ConfigTable::Impl {
  toml::value root;
};

namespace {

// Keeps error text on one line: toml11's messages span several.
std::string OneLine(const std::string& s) {
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

const toml::value* AsValue(const void* p) { return static_cast<const toml::value*>(p); }

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
  t.self_ = &t.impl_->root;
  return t;
}

Result<ConfigTable> ConfigTable::LoadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound("config file " + path + ": cannot open");
  std::stringstream buf;
  buf << in.rdbuf();
  return Parse(buf.str(), path);
}

const void* ConfigTable::Self() const { return self_; }

namespace {
const toml::value* Child(const void* self, const std::string& key) {
  const toml::value* v = AsValue(self);
  if (v == nullptr || !v->is_table()) return nullptr;
  const auto& tbl = v->as_table();
  auto it = tbl.find(key);
  return it == tbl.end() ? nullptr : &it->second;
}
}  // namespace

std::string ConfigTable::Where(const std::string& key) const {
  std::string full = path_.empty() ? key : path_ + "." + key;
  const toml::value* v = Child(self_, key);
  std::string where = origin_;
  if (v != nullptr && v->location().line() > 0) where += ":" + std::to_string(v->location().line());
  return where + ": '" + full + "'";
}

bool ConfigTable::Has(const std::string& key) const { return Child(self_, key) != nullptr; }

Result<std::string> ConfigTable::GetString(const std::string& key, const std::string& def) {
  known_.insert(key);
  const toml::value* v = Child(self_, key);
  if (v == nullptr) return def;
  if (!v->is_string()) return Status::InvalidArgument(Where(key) + " must be a string");
  return std::string(v->as_string().str);
}

Result<int64_t> ConfigTable::GetInt(const std::string& key, int64_t def, int64_t min,
                                    int64_t max) {
  known_.insert(key);
  const toml::value* v = Child(self_, key);
  if (v == nullptr) return def;
  if (!v->is_integer()) return Status::InvalidArgument(Where(key) + " must be an integer");
  int64_t x = v->as_integer();
  if (x < min || x > max) {
    return Status::InvalidArgument(Where(key) + " is " + std::to_string(x) + ", must be in [" +
                                   std::to_string(min) + ", " + std::to_string(max) + "]");
  }
  return x;
}

Result<double> ConfigTable::GetDouble(const std::string& key, double def, double min,
                                      double max) {
  known_.insert(key);
  const toml::value* v = Child(self_, key);
  if (v == nullptr) return def;
  double x;
  if (v->is_floating()) {
    x = v->as_floating();
  } else if (v->is_integer()) {
    x = static_cast<double>(v->as_integer());
  } else {
    return Status::InvalidArgument(Where(key) + " must be a number");
  }
  if (!(x >= min && x <= max)) {
    std::ostringstream msg;
    msg << Where(key) << " is " << x << ", must be in [" << min << ", " << max << "]";
    return Status::InvalidArgument(msg.str());
  }
  return x;
}

Result<bool> ConfigTable::GetBool(const std::string& key, bool def) {
  known_.insert(key);
  const toml::value* v = Child(self_, key);
  if (v == nullptr) return def;
  if (!v->is_boolean()) return Status::InvalidArgument(Where(key) + " must be true or false");
  return v->as_boolean();
}

Result<ConfigTable*> ConfigTable::GetTable(const std::string& key) {
  known_.insert(key);
  const toml::value* v = Child(self_, key);
  if (v != nullptr && !v->is_table()) return Status::InvalidArgument(Where(key) + " must be a table");
  auto& child = children_[key];
  if (!child) {
    child.reset(new ConfigTable());
    child->impl_ = impl_;
    child->self_ = v;
    child->origin_ = origin_;
    child->path_ = path_.empty() ? key : path_ + "." + key;
  }
  return child.get();
}

Result<std::vector<ConfigTable*>> ConfigTable::GetTableArray(const std::string& key) {
  known_.insert(key);
  std::vector<ConfigTable*> out;
  const toml::value* v = Child(self_, key);
  if (v == nullptr) return out;
  if (!v->is_array()) {
    return Status::InvalidArgument(Where(key) + " must be an array of tables ([[" + key + "]])");
  }
  const auto& arr = v->as_array();
  for (size_t i = 0; i < arr.size(); ++i) {
    if (!arr[i].is_table()) {
      return Status::InvalidArgument(Where(key) + " element " + std::to_string(i) + " must be a table");
    }
    auto child = std::unique_ptr<ConfigTable>(new ConfigTable());
    child->impl_ = impl_;
    child->self_ = &arr[i];
    child->origin_ = origin_;
    child->path_ = (path_.empty() ? key : path_ + "." + key) + "[" + std::to_string(i) + "]";
    out.push_back(child.get());
    array_children_.push_back(std::move(child));
  }
  return out;
}

Result<std::vector<std::pair<std::string, std::string>>> ConfigTable::GetAllAsText() {
  std::vector<std::pair<std::string, std::string>> out;
  const toml::value* self = AsValue(self_);
  if (self == nullptr || !self->is_table()) return out;
  for (const auto& [k, v] : self->as_table()) {
    known_.insert(k);
    if (v.is_string()) {
      out.emplace_back(k, std::string(v.as_string().str));
    } else if (v.is_integer()) {
      out.emplace_back(k, std::to_string(v.as_integer()));
    } else if (v.is_floating()) {
      std::ostringstream s;
      s << v.as_floating();
      out.emplace_back(k, s.str());
    } else if (v.is_boolean()) {
      out.emplace_back(k, v.as_boolean() ? "true" : "false");
    } else if (v.is_array()) {
      // Arrays of strings become comma-separated lists (filters).
      std::string joined;
      for (const auto& e : v.as_array()) {
        if (!e.is_string()) return Status::InvalidArgument(Where(k) + " must hold strings");
        if (!joined.empty()) joined += ",";
        joined += std::string(e.as_string().str);
      }
      out.emplace_back(k, joined);
    } else {
      return Status::InvalidArgument(Where(k) + " must be a string, number, boolean or list");
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

Status ConfigTable::CheckKnown() const {
  const toml::value* self = AsValue(self_);
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
  for (const auto& child : array_children_) TRAPLINE_RETURN_IF_ERROR(child->CheckKnown());
  return Status::OK();
}

}  // namespace trapline
