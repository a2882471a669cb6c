#include "esft/model/sampling.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "esft/error.h"

namespace esft {

void SamplingSettings::validate() const {
  if (!(temperature >= 0) || !std::isfinite(temperature)) throw Error("temperature must be a finite number >= 0");
  if (!(top_p > 0 && top_p <= 1)) throw Error("top_p must be in (0, 1]");
  if (top_k < 0) throw Error("top_k must be >= 0 (0: no limit)");
  if (!(repetition_penalty > 0) || !std::isfinite(repetition_penalty)) throw Error("repetition_penalty must be > 0");
}

at::Generator make_sampling_generator(uint64_t seed) { return at::make_generator<at::CPUGeneratorImpl>(seed); }

int64_t choose_token(const at::Tensor& logits_in, const SamplingSettings& s, const std::vector<int64_t>& seen,
                     at::Generator& generator) {
  at::Tensor logits = logits_in.to(at::kFloat).cpu().clone();
  if (s.repetition_penalty != 1 && !seen.empty()) {
    std::vector<int64_t> unique(seen);  // a token is penalised once, however often it was seen
    std::sort(unique.begin(), unique.end());
    unique.erase(std::unique(unique.begin(), unique.end()), unique.end());
    const auto ids = at::tensor(unique, at::kLong);
    auto picked = logits.index_select(0, ids);
    picked = at::where(picked < 0, picked * s.repetition_penalty, picked / s.repetition_penalty);
    logits.index_copy_(0, ids, picked);
  }
  if (s.greedy()) return logits.argmax().item<int64_t>();
  logits = logits / s.temperature;
  const double neg_inf = -std::numeric_limits<double>::infinity();
  if (s.top_k > 0 && s.top_k < logits.size(0)) {
    const auto kth = std::get<0>(at::topk(logits, s.top_k)).min();
    logits = logits.masked_fill(logits < kth, neg_inf);
  }
  if (s.top_p < 1) {
    // transformers' TopPLogitsWarper: drop the least likely tokens whose cumulative probability (ascending) stays
    // at or below 1 - top_p; the most likely token always stays.
    const auto [sorted, order] = at::sort(logits, /*dim=*/0, /*descending=*/false);
    auto cumulative = at::softmax(sorted, 0).cumsum(0);
    auto drop_sorted = cumulative <= (1 - s.top_p);
    drop_sorted.index_put_({-1}, false);
    const auto drop = at::zeros_like(drop_sorted).scatter(0, order, drop_sorted);
    logits = logits.masked_fill(drop, neg_inf);
  }
  const auto probs = at::softmax(logits, 0);
  return at::multinomial(probs, 1, /*replacement=*/false, generator).item<int64_t>();
}

}  // namespace esft
