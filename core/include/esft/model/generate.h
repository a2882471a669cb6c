#pragma once
#include <ATen/core/Tensor.h>

#include <functional>
#include <vector>

#include "esft/model/moe_causal_lm.h"

namespace esft {

// Greedy decoding with the KV cache: one forward over the prompt, then one token at a time. Stops after
// `max_new_tokens` or when a token in `stop_ids` is produced (that token is kept). prompt [1, T] int64.
// `on_token` (optional) sees each new token as it is chosen. Returns [1, T + generated].
at::Tensor greedy_generate(MoECausalLM& model, const at::Tensor& prompt, int64_t max_new_tokens,
                           const std::vector<int64_t>& stop_ids, const std::function<void(int64_t)>& on_token = {});

}  // namespace esft
