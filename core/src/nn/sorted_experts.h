#pragma once
// The math of an expert bank over tokens already sorted by expert, as one autograd node (private to core; the
// ExpertBank module owns the weights and the routing around it).
//
// Why a node of its own rather than autograd through per-expert matrix products: autograd would save every
// intermediate of every expert, and the weight gradient of a bank it reaches through per-expert rows is stacked
// from per-expert pieces, one bank-sized copy per step. Here the forward saves only the sorted input and the
// pre-activation projections; the backward recomputes the activation, writes each trainable expert's gradient
// straight into its row of one tensor, and for a frozen expert computes the input gradient only.
#include <ATen/core/Tensor.h>

#include <vector>

#include "esft/nn/expert_bank.h"

namespace esft::nn::detail {

// The weights of one half of a bank (the trainable or the frozen rows): gate_up [R, 2I, H], down [R, H, I], biases
// [R, 2I] and [R, H] or undefined.
struct BankHalf {
  at::Tensor gate_up, down, gate_up_bias, down_bias;
};

// gate_up [.., 2I] (gate columns first) -> [.., I], the spec's activation.
at::Tensor expert_activation(const at::Tensor& gate_up, const ExpertBankSpec& spec);

// xs [M, H]: the tokens sorted by expert, counts[e] rows for expert e in expert order. slot[e] >= 0 puts expert e in
// row slot[e] of `trainable`, slot[e] < 0 in row -slot[e]-1 of `frozen`. Returns each row's expert output [M, H]
// (before the routing weight). Differentiable in xs and in the trainable half.
at::Tensor sorted_experts(const at::Tensor& xs, const std::vector<int64_t>& counts, const std::vector<int64_t>& slot,
                          const BankHalf& trainable, const BankHalf& frozen, const ExpertBankSpec& spec);

}  // namespace esft::nn::detail
