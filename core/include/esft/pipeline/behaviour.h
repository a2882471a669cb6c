#pragma once
// Plan-B's stability, efficiency and quality figures of a trained model (shared/spec/VARIANTS.md §3), for any
// family, measured on held-out text:
//   - self-consistency: `passes` forward passes in training mode (dropout and router jitter on, nothing updated);
//     the share of real positions whose next-token argmax agrees with the first pass's, averaged over the later
//     passes. A model with neither dropout nor jitter scores exactly 1.
//   - embedding variance: the variance across real tokens of each dimension of the final hidden states (the final
//     norm's output, eval mode), averaged over dimensions; a collapsing representation drives it towards 0.
//   - routing in eval mode: expert-utilisation entropy (raw, and divided by ln E), overuse rate, drop fraction.
//   - repetition of generated text: greedy continuations of the first `prompt_tokens` tokens of `prompts` samples;
//     rep-n = 1 - distinct n-grams / n-grams of each continuation, for n = 2, 3, 4, averaged over continuations.
#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "esft/data/batching.h"
#include "esft/data/samples.h"
#include "esft/model/moe_causal_lm.h"
#include "esft/train/router_objective.h"

namespace esft::pipeline {

// rep-n of one token sequence: 1 - distinct n-grams / n-grams; nullopt when it has fewer than n tokens.
std::optional<double> ngram_repetition(const std::vector<int64_t>& tokens, int n);

// Per-dimension sums over tokens, for a variance that spans many batches (float64).
class VarianceAccumulator {
 public:
  // hidden [..., H]; mask [...] (nonzero = count the token) or undefined (every token).
  void add(const at::Tensor& hidden, const at::Tensor& mask);
  // The population variance of each dimension, averaged over dimensions; nullopt before any token.
  std::optional<double> mean_variance() const;

 private:
  at::Tensor sum_, sum_sq_;  // [H] float64
  double count_ = 0;
};

struct BehaviourOptions {
  int passes = 5;              // self-consistency: forward passes in training mode (>= 2)
  int64_t batch_size = 8;      // rows per forward pass
  int64_t prompts = 16;        // repetition: continuations generated (at most the number of samples)
  int64_t prompt_tokens = 16;  // ... from each sample's first tokens
  int64_t new_tokens = 48;     // ... of at most this many tokens
  double overuse_threshold = 2.0;  // an expert is overused above threshold / E of its layer's pairs
  uint64_t seed = 0;               // the training-mode passes' randomness
};

struct BehaviourReport {
  std::optional<double> self_consistency, embedding_variance;
  train::RoutingFigures routing;  // eval mode
  std::map<int, std::optional<double>> repetition;  // n -> rep-n (n = 2, 3, 4)
  int64_t tokens = 0, continuations = 0;
  double overuse_threshold = 2.0;

  std::optional<double> mean_repetition() const;  // over n with a value
  nlohmann::json to_json() const;                 // flat figures (null where unknown), then the routing figures
};

// `rows`: the held-out text as rows (self-consistency, variance, routing); `samples`: the same text one sample per
// entry (the prompts). `stop_ids` end a continuation. `progress` (optional) hears each stage's name. Leaves the
// model in eval mode. Throws esft::Error for options out of range or no rows.
BehaviourReport measure_behaviour(MoECausalLM& model, const std::vector<data::Row>& rows,
                                  const std::vector<data::Sample>& samples, const std::vector<int64_t>& stop_ids,
                                  int32_t pad_id, const c10::Device& device, const BehaviourOptions& options,
                                  const std::function<void(const std::string&)>& progress = {});

}  // namespace esft::pipeline
