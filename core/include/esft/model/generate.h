#pragma once
#include <ATen/core/Tensor.h>

#include <functional>
#include <vector>

#include "esft/model/moe_causal_lm.h"
#include "esft/model/sampling.h"

namespace esft {

// Greedy decoding with the KV cache: one forward over the prompt, then one token at a time. Stops after
// `max_new_tokens` or when a token in `stop_ids` is produced (that token is kept). prompt [1, T] int64.
// `on_token` (optional) sees each new token as it is chosen. Returns [1, T + generated].
at::Tensor greedy_generate(MoECausalLM& model, const at::Tensor& prompt, int64_t max_new_tokens,
                           const std::vector<int64_t>& stop_ids, const std::function<void(int64_t)>& on_token = {});

// One sequence of a batch: its prompt, its own sampling settings and seed, its length limit and stop tokens.
struct GenerationRequest {
  std::vector<int64_t> prompt;  // at least one token
  int64_t max_new_tokens = 64;
  SamplingSettings sampling;
  std::vector<int64_t> stop_ids;  // the stop token is kept in the output
};

struct GenerationResult {
  std::vector<int64_t> tokens;  // the new tokens only
  bool stopped = false;         // a stop token ended it (else the length limit, or the caller)
};

// Several sequences decoded together: the prompts left-padded into one batch with an attention mask and positions
// that count each row's real tokens, one forward per step for every sequence still running, each with its own
// sampling, generator and limits. Greedy requests give the tokens greedy_generate gives for each prompt alone.
// `on_token(i, token)` sees each new token of request i as it is chosen; returning false ends that sequence there.
// `pad_id` fills the padding (never attended to).
std::vector<GenerationResult> generate_batch(MoECausalLM& model, const std::vector<GenerationRequest>& requests,
                                             int64_t pad_id,
                                             const std::function<bool(size_t, int64_t)>& on_token = {});

}  // namespace esft
