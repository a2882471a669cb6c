#pragma once
// Select-MoE's data selection (stage 2, shared/spec/VARIANTS.md §1): a model with trash cans whose router learned
// to send poor samples there scores every sample by how little of its routing mass goes to the trash,
//   quality = mean over MoE layers of [mean over the sample's real tokens of (1 - trash mass under the full softmax)],
// and the best fraction is kept (sorted by quality, descending; ties keep input order).
#include <cstdint>
#include <functional>
#include <vector>

#include "esft/data/samples.h"
#include "esft/model/moe_causal_lm.h"

namespace esft::pipeline {

struct QualityOptions {
  int64_t batch_size = 16;   // samples per forward pass (padded to the longest)
  int64_t max_length = 512;  // longer samples are scored on their first max_length tokens
};

// One quality per sample, in [0, 1]. Runs the routing-only pass (no logits). `progress(done, total)` (optional)
// hears each batch. Throws esft::Error when the model has no trash cans or a sample has no tokens.
std::vector<double> score_quality(MoECausalLM& model, const std::vector<data::Sample>& samples, int32_t pad_id,
                                  const c10::Device& device, const QualityOptions& options,
                                  const std::function<void(size_t done, size_t total)>& progress = {});

// The indices of the best floor(N * fraction) samples, best first; ties keep input order. Throws esft::Error for a
// fraction outside (0, 1].
std::vector<size_t> select_best(const std::vector<double>& quality, double fraction);

}  // namespace esft::pipeline
