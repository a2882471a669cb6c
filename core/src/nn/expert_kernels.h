#pragma once
// The math of an expert bank over tokens already sorted by bank position, as autograd nodes (private to core; the
// ExpertBank module owns the weights and the routing around them). Two kernels compute the same function:
//   - expert_loop: one matrix product per expert and projection, the experts in parallel on the CPU. Needs each
//     position's token count on the host.
//   - expert_grouped: one grouped GEMM (at::_grouped_mm) per projection over all experts, with the group offsets
//     on the device, so nothing waits for the device (CUDA, bf16).
//
// Why nodes of their own rather than autograd through per-expert matrix products: autograd would save every
// intermediate of every expert, and the weight gradient of a bank it reaches through per-expert rows is stacked
// from per-expert pieces, one bank-sized copy per step. Here the forward saves only the sorted input and the
// pre-activation projections; the backward recomputes the activation, writes the trainable experts' gradients
// straight into one tensor, and for frozen experts computes the input gradient only.
#include <ATen/core/Tensor.h>

#include <utility>
#include <vector>

#include "esft/nn/expert_bank.h"

namespace torch::autograd {
struct AutogradContext;
}

namespace esft::nn::detail {

// Expert weights in bank-position order: gate_up [R, 2I, H], down [R, H, I], biases [R, 2I] and [R, H] (undefined
// without spec.bias). The whole bank has R = E rows, the T trainable experts first; the trainable part is its first
// T rows, the parameters autograd differentiates.
struct BankWeights {
  at::Tensor gate_up, down, gate_up_bias, down_bias;
};

// gate_up [.., 2I] (gate columns first) -> [.., I], the spec's activation.
at::Tensor expert_activation(const at::Tensor& gate_up, const ExpertBankSpec& spec);

// Recomputes the activation of `gate_up` and back-propagates `grad` through it: {activation, d gate_up}.
std::pair<at::Tensor, at::Tensor> expert_activation_backward(const at::Tensor& gate_up, const at::Tensor& grad,
                                                             const ExpertBankSpec& spec);

// A bias as an autograd node's input: the bias itself with spec.bias, else an empty tensor (a node's tensor
// arguments must be defined).
at::Tensor bias_input(const at::Tensor& bias, const ExpertBankSpec& spec, const at::Tensor& like);

// The spec, kept in (and read back from) an autograd node's saved data.
void save_spec(torch::autograd::AutogradContext* ctx, const ExpertBankSpec& spec);
ExpertBankSpec saved_spec(torch::autograd::AutogradContext* ctx);

// xs [M, H]: the tokens sorted by bank position, counts[p] rows for position p in order. Returns each row's expert
// output [M, H] (before the routing weight). Differentiable in xs and in `trainable`.
at::Tensor expert_loop(const at::Tensor& xs, const std::vector<int64_t>& counts, const BankWeights& trainable,
                       const BankWeights& bank, const ExpertBankSpec& spec);

// The same with the group ends on the device: offsets [E] int32, offsets[p] = the number of rows at positions
// <= p; positions [M] int64, each row's position (for the biases).
at::Tensor expert_grouped(const at::Tensor& xs, const at::Tensor& offsets, const at::Tensor& positions,
                          const BankWeights& trainable, const BankWeights& bank, const ExpertBankSpec& spec);

}  // namespace esft::nn::detail
