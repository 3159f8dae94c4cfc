#include "common/metrics_text.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace trapline {

namespace {

bool NameChar(char c, bool first, bool allow_colon) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_') return true;
  if (c == ':' && allow_colon) return true;
  return !first && c >= '0' && c <= '9';
}

std::string Sanitize(std::string_view name, bool allow_colon) {
  std::string out;
  out.reserve(name.size() + 1);
  for (size_t i = 0; i < name.size(); ++i) {
    out.push_back(NameChar(name[i], i == 0, allow_colon) ? name[i] : '_');
  }
  if (out.empty()) out = "_";
  return out;
}

const char* TypeName(MetricsText::Type type) {
  switch (type) {
    case MetricsText::Type::kGauge:
      return "gauge";
    case MetricsText::Type::kCounter:
      return "counter";
    case MetricsText::Type::kSummary:
      return "summary";
    case MetricsText::Type::kUntyped:
      return "untyped";
  }
  return "untyped";
}

}  // namespace

std::string MetricsText::SanitizeName(std::string_view name) { return Sanitize(name, true); }

std::string MetricsText::SanitizeLabelName(std::string_view name) {
  std::string out = Sanitize(name, false);
  // "__" prefixed label names are reserved for Prometheus itself.
  if (out.size() >= 2 && out[0] == '_' && out[1] == '_') out.insert(0, "x");
  return out;
}

std::string MetricsText::EscapeLabelValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string MetricsText::EscapeHelp(std::string_view help) {
  std::string out;
  out.reserve(help.size());
  for (char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string MetricsText::FormatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  // Integers up to 2^53 print without exponent or fraction; the rest round-trip exactly.
  if (v == std::floor(v) && std::fabs(v) < 9007199254740992.0) {
    return fmt::format("{}", static_cast<int64_t>(v));
  }
  return fmt::format("{}", v);
}

double MetricsText::Quantile(const std::vector<double>& sorted, double q) {
  q = std::clamp(q, 0.0, 1.0);
  auto rank = static_cast<size_t>(std::ceil(q * static_cast<double>(sorted.size())));
  if (rank > 0) --rank;
  return sorted[std::min(rank, sorted.size() - 1)];
}

MetricsText& MetricsText::Family(std::string_view name, Type type, std::string_view help) {
  family_ = SanitizeName(name);
  if (announced_.insert(family_).second) {
    out_ += "# HELP ";
    out_ += family_;
    out_ += ' ';
    out_ += EscapeHelp(help);
    out_ += "\n# TYPE ";
    out_ += family_;
    out_ += ' ';
    out_ += TypeName(type);
    out_ += '\n';
  }
  return *this;
}

void MetricsText::WriteLabels(const Labels& labels, std::string_view extra_name,
                              std::string_view extra_value) {
  if (labels.empty() && extra_name.empty()) return;
  out_ += '{';
  bool first = true;
  for (const auto& [k, v] : labels) {
    if (!first) out_ += ',';
    first = false;
    out_ += SanitizeLabelName(k);
    out_ += "=\"";
    out_ += EscapeLabelValue(v);
    out_ += '"';
  }
  if (!extra_name.empty()) {
    if (!first) out_ += ',';
    out_ += extra_name;
    out_ += "=\"";
    out_ += extra_value;
    out_ += '"';
  }
  out_ += '}';
}

MetricsText& MetricsText::Sample(double value, const Labels& labels, std::string_view suffix) {
  out_ += family_.empty() ? std::string("_") : family_;
  if (!suffix.empty()) out_ += SanitizeName(suffix);
  WriteLabels(labels, {}, {});
  out_ += ' ';
  out_ += FormatValue(value);
  out_ += '\n';
  return *this;
}

void MetricsText::Gauge(std::string_view name, std::string_view help, double value,
                        const Labels& labels) {
  Family(name, Type::kGauge, help).Sample(value, labels);
}

void MetricsText::Counter(std::string_view name, std::string_view help, double value,
                          const Labels& labels) {
  Family(name, Type::kCounter, help).Sample(value, labels);
}

void MetricsText::Summary(std::string_view name, std::string_view help,
                          std::vector<double> observations, const std::vector<double>& quantiles,
                          const Labels& labels, double sum, int64_t count) {
  Family(name, Type::kSummary, help);
  std::sort(observations.begin(), observations.end());
  if (!observations.empty()) {
    for (double q : quantiles) {
      out_ += family_;
      WriteLabels(labels, "quantile", FormatValue(q));
      out_ += ' ';
      out_ += FormatValue(Quantile(observations, q));
      out_ += '\n';
    }
  }
  if (sum < 0) {
    sum = 0;
    for (double v : observations) sum += v;
  }
  if (count < 0) count = static_cast<int64_t>(observations.size());
  Sample(sum, labels, "_sum");
  Sample(static_cast<double>(count), labels, "_count");
}

}  // namespace trapline
