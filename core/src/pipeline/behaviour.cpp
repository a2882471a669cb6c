#include "esft/pipeline/behaviour.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <set>

#include "esft/error.h"
#include "esft/model/generate.h"
#include "esft/train/batch_stream.h"

namespace esft::pipeline {

namespace {

nlohmann::json opt(const std::optional<double>& v) { return v ? nlohmann::json(*v) : nlohmann::json(nullptr); }

std::vector<std::vector<const data::Row*>> batches_of(const std::vector<data::Row>& rows, int64_t batch_size) {
  std::vector<std::vector<const data::Row*>> out;
  for (size_t i = 0; i < rows.size(); i += static_cast<size_t>(batch_size)) {
    out.emplace_back();
    for (size_t j = i; j < std::min(rows.size(), i + static_cast<size_t>(batch_size)); ++j) out.back().push_back(&rows[j]);
  }
  return out;
}

// Training mode for a scope: eval mode again however it ends.
struct TrainingModeScope {
  explicit TrainingModeScope(MoECausalLM& m) : model(m) { model.train(); }
  ~TrainingModeScope() { model.eval(); }
  MoECausalLM& model;
};

// Self-consistency over the rows: `passes` training-mode forward passes per batch.
std::optional<double> self_consistency(MoECausalLM& model, const std::vector<std::vector<const data::Row*>>& batches,
                                       int32_t pad_id, const c10::Device& device, const BehaviourOptions& o) {
  const TrainingModeScope training(model);
  double agree = 0, compared = 0;
  uint64_t draw = 0;
  for (const auto& rows : batches) {
    const auto b = train::collate(rows, pad_id);
    const auto ids = b.input_ids.to(device), mask = b.attention_mask.to(device);
    const auto real = mask.to(at::kBool);
    at::Tensor first;
    for (int pass = 0; pass < o.passes; ++pass) {
      at::manual_seed(o.seed * 1000003ULL + draw++);  // reproducible dropout and jitter
      ForwardOptions fo;
      const auto predicted = model.forward(ids, mask, fo).logits.argmax(-1);
      if (pass == 0) {
        first = predicted;
        continue;
      }
      agree += predicted.eq(first).logical_and(real).sum().item<double>();
      compared += real.sum().item<double>();
    }
  }
  if (compared == 0) return std::nullopt;
  return agree / compared;
}

}  // namespace

std::optional<double> ngram_repetition(const std::vector<int64_t>& tokens, int n) {
  if (n < 1) throw Error("n-gram repetition needs n >= 1, not " + std::to_string(n));
  if (tokens.size() < static_cast<size_t>(n)) return std::nullopt;
  std::set<std::vector<int64_t>> distinct;
  const size_t grams = tokens.size() - static_cast<size_t>(n) + 1;
  for (size_t i = 0; i < grams; ++i) distinct.emplace(tokens.begin() + static_cast<long>(i), tokens.begin() + static_cast<long>(i) + n);
  return 1.0 - static_cast<double>(distinct.size()) / static_cast<double>(grams);
}

void VarianceAccumulator::add(const at::Tensor& hidden, const at::Tensor& mask) {
  auto h = hidden.detach().to(at::kDouble).reshape({-1, hidden.size(-1)});
  if (mask.defined()) h = h.index({mask.reshape({-1}).to(h.device(), at::kBool)});
  if (h.size(0) == 0) return;
  const auto s = h.sum(0), sq = h.square().sum(0);
  sum_ = sum_.defined() ? sum_ + s : s;
  sum_sq_ = sum_sq_.defined() ? sum_sq_ + sq : sq;
  count_ += static_cast<double>(h.size(0));
}

std::optional<double> VarianceAccumulator::mean_variance() const {
  if (count_ == 0) return std::nullopt;
  const auto mean = sum_ / count_;
  return (sum_sq_ / count_ - mean.square()).clamp_min(0).mean().item<double>();
}

std::optional<double> BehaviourReport::mean_repetition() const {
  double sum = 0;
  int n = 0;
  for (const auto& [order, value] : repetition)
    if (value) sum += *value, ++n;
  if (n == 0) return std::nullopt;
  return sum / n;
}

nlohmann::json BehaviourReport::to_json() const {
  nlohmann::json j = {{"self_consistency", opt(self_consistency)},
                      {"embedding_variance", opt(embedding_variance)},
                      {"utilisation_entropy", opt(routing.utilisation_entropy(false))},
                      {"utilisation_entropy_norm", opt(routing.utilisation_entropy(true))},
                      {"overuse_rate", opt(routing.overuse_rate(overuse_threshold))},
                      {"overuse_threshold", overuse_threshold},
                      {"drop_fraction", opt(routing.drop_fraction())}};
  for (const auto& [n, value] : repetition) j["repetition_" + std::to_string(n)] = opt(value);
  j["repetition"] = opt(mean_repetition());
  j["tokens"] = tokens;
  j["continuations"] = continuations;
  j["routing"] = routing.to_json();
  return j;
}

BehaviourReport measure_behaviour(MoECausalLM& model, const std::vector<data::Row>& rows,
                                  const std::vector<data::Sample>& samples, const std::vector<int64_t>& stop_ids,
                                  int32_t pad_id, const c10::Device& device, const BehaviourOptions& o,
                                  const std::function<void(const std::string&)>& progress) {
  if (o.passes < 2) throw Error("self-consistency needs at least 2 passes, not " + std::to_string(o.passes));
  if (o.batch_size < 1 || o.prompts < 0 || o.prompt_tokens < 1 || o.new_tokens < 1) {
    throw Error("batch size, prompt tokens and new tokens must be positive, prompts not negative");
  }
  if (!(o.overuse_threshold > 0)) throw Error("the overuse threshold must be > 0");
  if (rows.empty()) throw Error("no rows of text to measure the model on");
  auto say = [&](const std::string& what) {
    if (progress) progress(what);
  };
  at::NoGradGuard no_grad;
  BehaviourReport r;
  r.overuse_threshold = o.overuse_threshold;
  const auto batches = batches_of(rows, o.batch_size);

  say("eval pass: routing and embedding variance");
  model.eval();
  train::RoutingTally tally;
  VarianceAccumulator variance;
  for (const auto& batch : batches) {
    const auto b = train::collate(batch, pad_id);
    ForwardOptions fo;
    fo.logits = LogitsMode::None;
    fo.final_hidden = true;
    fo.hooks.push_back(&tally);
    const auto hidden = model.forward(b.input_ids.to(device), b.attention_mask.to(device), fo).final_hidden;
    variance.add(hidden, b.attention_mask);
    r.tokens += b.tokens;
  }
  tally.read_into(r.routing);
  r.embedding_variance = variance.mean_variance();

  say("self-consistency: " + std::to_string(o.passes) + " training-mode passes");
  r.self_consistency = self_consistency(model, batches, pad_id, device, o);

  say("repetition: greedy continuations");
  std::map<int, std::pair<double, int64_t>> rep;  // n -> (sum, count)
  for (const auto& s : samples) {
    if (r.continuations >= o.prompts) break;
    if (s.ids.size() < static_cast<size_t>(o.prompt_tokens)) continue;
    const std::vector<int64_t> ids(s.ids.begin(), s.ids.begin() + o.prompt_tokens);
    const auto prompt = at::tensor(ids, at::kLong).unsqueeze(0).to(device);
    const auto out = greedy_generate(model, prompt, o.new_tokens, stop_ids).cpu();
    const auto* p = out.data_ptr<int64_t>();
    std::vector<int64_t> generated(p + prompt.size(1), p + out.size(1));
    if (!generated.empty() && std::find(stop_ids.begin(), stop_ids.end(), generated.back()) != stop_ids.end())
      generated.pop_back();  // the stop token is not text
    for (int n = 2; n <= 4; ++n) {
      if (const auto v = ngram_repetition(generated, n)) rep[n].first += *v, ++rep[n].second;
    }
    ++r.continuations;
  }
  for (int n = 2; n <= 4; ++n) {
    const auto it = rep.find(n);
    r.repetition[n] = it == rep.end() ? std::nullopt : std::optional<double>(it->second.first / it->second.second);
  }
  return r;
}

}  // namespace esft::pipeline
