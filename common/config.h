#pragma once
// Config files are TOML. A table is read through ConfigTable, which remembers which keys
// were asked for, so that a misspelt key is an error naming the key, its line and the keys
// that table knows, instead of a silently ignored setting.

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/status.h"

namespace trapline {

class ConfigTable {
 public:
  // Parses a TOML file. Errors name the file and line.
  static Result<ConfigTable> LoadFile(const std::string& path);
  // Parses TOML text; `origin` names it in errors.
  static Result<ConfigTable> Parse(const std::string& text, const std::string& origin);

  // Each getter returns the default when the key is absent, an error when it has the wrong
  // type or range. The key is remembered as known.
  Result<std::string> GetString(const std::string& key, const std::string& def);
  Result<int64_t> GetInt(const std::string& key, int64_t def, int64_t min, int64_t max);
  Result<double> GetDouble(const std::string& key, double def, double min, double max);
  Result<bool> GetBool(const std::string& key, bool def);
  // A sub-table; absent gives an empty table. Its keys are checked by CheckKnown() too.
  Result<ConfigTable*> GetTable(const std::string& key);
  // An array of tables ([[key]] in TOML); absent gives none.
  Result<std::vector<ConfigTable*>> GetTableArray(const std::string& key);
  // Every key of this table with its value as text (strings as they are, numbers and
  // booleans printed), marking them known: for option tables passed on to plugins.
  Result<std::vector<std::pair<std::string, std::string>>> GetAllAsText();
  bool Has(const std::string& key) const;

  // Fails on the first key that no getter asked for, here or in a sub-table.
  Status CheckKnown() const;

  const std::string& origin() const { return origin_; }

 private:
  struct Impl;
  ConfigTable();
  std::string Where(const std::string& key) const;

  const void* Self() const;  // this table's toml::value, or null when absent

  std::shared_ptr<Impl> impl_;
  const void* self_ = nullptr;  // toml::value inside impl_'s tree; null: an absent table
  std::string origin_;
  std::string path_;  // "sender", "target[2].linux"; "" for the root
  std::set<std::string> known_;
  std::map<std::string, std::unique_ptr<ConfigTable>> children_;
  std::vector<std::unique_ptr<ConfigTable>> array_children_;
};

}  // namespace trapline
