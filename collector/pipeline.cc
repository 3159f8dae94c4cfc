#include "collector/pipeline.h"

#include <charconv>

#include "common/log.h"

namespace trapline {

MetricPipeline::MetricPipeline(std::string host, std::string plugin,
                               const std::vector<plugins::MetricSpec>* specs, int interval_s)
    : host_(std::move(host)), plugin_(std::move(plugin)), interval_s_(interval_s) {
  for (const auto& s : *specs) specs_[s.name] = &s;
}

MetricPipeline::Series* MetricPipeline::Find(const plugins::Reading& r, size_t position) {
  if (position < by_position_.size()) {
    uint32_t i = by_position_[position];
    if (i != kNoSeries) {
      Series& s = series_[i];
      if (s.spec->name == r.metric && s.entity == r.entity) return &s;
    }
  } else {
    by_position_.resize(position + 1, kNoSeries);
  }
  uint32_t i = FindSlow(r);
  by_position_[position] = i;
  return i == kNoSeries ? nullptr : &series_[i];
}

uint32_t MetricPipeline::FindSlow(const plugins::Reading& r) {
  scratch_key_.assign(r.metric);
  scratch_key_.push_back('\0');
  scratch_key_.append(r.entity);
  auto it = by_key_.find(scratch_key_);
  if (it != by_key_.end()) return it->second;
  auto spec = specs_.find(r.metric);
  if (spec == specs_.end()) {
    if (unknown_readings_++ == 0) {
      spdlog::warn("[pipeline] {} {}: plugin reported undeclared metric '{}' (not sent)", host_,
                   plugin_, r.metric);
    }
    return kNoSeries;
  }
  const plugins::MetricSpec* s = spec->second;
  IntervalAccumulator acc(interval_s_ > 0 ? interval_s_ : std::max(1, s->interval_s));
  series_.push_back(Series{s, CounterRate(), acc, r.entity, plugins::ItemKey(plugin_, r.metric, r.entity),
                           {}, false});
  auto index = static_cast<uint32_t>(series_.size() - 1);
  by_key_.emplace(scratch_key_, index);
  return index;
}

void MetricPipeline::Emit(const Series& s, const std::vector<TimedValue>& values,
                          std::vector<SenderValue>* out) {
  for (const TimedValue& tv : values) {
    char buf[32];
    auto res = std::to_chars(buf, buf + sizeof(buf), tv.value);
    out->push_back(SenderValue{host_, s.key, std::string(buf, res.ptr), tv.time.clock,
                               tv.time.ns, 0});
  }
}

void MetricPipeline::AddTick(ZbxTime t, const std::vector<plugins::Reading>& readings,
                             std::vector<SenderValue>* out) {
  for (size_t i = 0; i < readings.size(); ++i) {
    const plugins::Reading& r = readings[i];
    Series* s = Find(r, i);
    if (s == nullptr) continue;
    if (s->spec->value_type == plugins::ValueType::kText) {
      if (!s->has_text || s->last_text != r.text) {
        out->push_back(SenderValue{host_, s->key, r.text, t.clock, t.ns, 0});
        s->last_text = r.text;
        s->has_text = true;
      }
      continue;
    }
    double v = r.value;
    if (s->spec->kind == plugins::MetricKind::kCounter) {
      double rate;
      if (!s->rate.Update(t, r.value, &rate)) continue;
      v = rate * s->spec->rate_scale;
    }
    scratch_values_.clear();
    s->acc.Add(t, v, &scratch_values_);
    if (!scratch_values_.empty()) Emit(*s, scratch_values_, out);
  }
}

void MetricPipeline::FlushIfDue(ZbxTime now, std::vector<SenderValue>* out) {
  for (Series& s : series_) {
    scratch_values_.clear();
    s.acc.FlushIfDue(now, &scratch_values_);
    if (!scratch_values_.empty()) Emit(s, scratch_values_, out);
  }
}

void MetricPipeline::Flush(std::vector<SenderValue>* out) {
  for (Series& s : series_) {
    scratch_values_.clear();
    s.acc.Flush(&scratch_values_);
    if (!scratch_values_.empty()) Emit(s, scratch_values_, out);
  }
}

void MetricPipeline::ResetCounters() {
  for (Series& s : series_) s.rate.Reset();
}

}  // namespace trapline
