#pragma once
// Training losses shared by every family.
#include <ATen/core/Tensor.h>

#include <vector>

namespace esft {

constexpr int64_t kIgnoreIndex = -100;

// Mean next-token cross-entropy: position t predicts labels[t+1]; labels equal to kIgnoreIndex do not count.
// logits [B, T, V], labels [B, T]. Computed in float32.
at::Tensor causal_lm_loss(const at::Tensor& logits, const at::Tensor& labels);

// The same loss from the final hidden states [B, T, H] and the output embedding [V, H] (logits = hidden @ W^T),
// `chunk_tokens` positions at a time: the [B*T, V] float32 logits never exist whole, in the forward or the
// backward (which recomputes each chunk's logits). At a real vocabulary they are the largest tensor of a step
// (8 x 2048 tokens x 151k entries = 9.9 GiB). Differentiable in hidden and weight.
at::Tensor chunked_causal_lm_loss(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& labels,
                                  int64_t chunk_tokens = 2048);

// Labels for causal LM training on input_ids: padded positions (attention_mask 0) become kIgnoreIndex.
at::Tensor labels_from_inputs(const at::Tensor& input_ids, const at::Tensor& attention_mask);

// The Switch/Mixtral load-balancing loss as transformers computes it over all MoE layers:
// P = softmax(concat(router_logits)); f = mean one_hot(topk(P, k)) over real tokens; Pbar = mean P over real
// tokens; aux = E * sum f * Pbar. token_mask [N] (N tokens per layer) may be undefined. Coefficient not applied.
at::Tensor load_balancing_loss(const std::vector<at::Tensor>& router_logits, int64_t top_k, const at::Tensor& token_mask);

}  // namespace esft
