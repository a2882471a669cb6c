#include <ATen/ATen.h>
#include <torch/autograd.h>

#include "esft/error.h"
#include "expert_kernels.h"

namespace esft::nn::detail {

at::Tensor expert_activation(const at::Tensor& gu, const ExpertBankSpec& spec) {
  if (spec.activation == ExpertActivation::PlainSiLU) return at::silu(gu);
  const int64_t I = spec.intermediate;
  auto gate = gu.narrow(-1, 0, I);
  auto up = gu.narrow(-1, I, I);
  switch (spec.activation) {
    case ExpertActivation::SiLU: return at::silu(gate) * up;
    case ExpertActivation::PlainSiLU: break;  // handled above
    case ExpertActivation::ClampedSwiGLU: {
      // Same op order as transformers' GptOssExperts._apply_gate.
      const double limit = spec.swiglu_limit;
      gate = gate.clamp_max(limit);
      up = up.clamp(-limit, limit);
      auto glu = gate * at::sigmoid(gate * spec.swiglu_alpha);
      return (up + 1) * glu;
    }
  }
  throw Error("unknown expert activation");
}

std::pair<at::Tensor, at::Tensor> expert_activation_backward(const at::Tensor& gate_up, const at::Tensor& grad,
                                                             const ExpertBankSpec& spec) {
  // Recomputing the activation costs less than keeping it for backward.
  at::AutoGradMode enable(true);
  auto leaf = gate_up.detach().requires_grad_(true);
  auto h = expert_activation(leaf, spec);
  auto d_gate_up = torch::autograd::grad({h}, {leaf}, {grad})[0];
  return {h.detach(), d_gate_up};
}

at::Tensor bias_input(const at::Tensor& bias, const ExpertBankSpec& spec, const at::Tensor& like) {
  return spec.bias ? bias : at::empty({0}, like.options());
}

void save_spec(torch::autograd::AutogradContext* ctx, const ExpertBankSpec& spec) {
  ctx->saved_data["experts"] = spec.num_experts;
  ctx->saved_data["hidden"] = spec.hidden;
  ctx->saved_data["intermediate"] = spec.intermediate;
  ctx->saved_data["bias"] = spec.bias;
  ctx->saved_data["activation"] = static_cast<int64_t>(spec.activation);
  ctx->saved_data["limit"] = spec.swiglu_limit;
  ctx->saved_data["alpha"] = spec.swiglu_alpha;
}

ExpertBankSpec saved_spec(torch::autograd::AutogradContext* ctx) {
  ExpertBankSpec spec;
  spec.num_experts = ctx->saved_data["experts"].toInt();
  spec.hidden = ctx->saved_data["hidden"].toInt();
  spec.intermediate = ctx->saved_data["intermediate"].toInt();
  spec.bias = ctx->saved_data["bias"].toBool();
  spec.activation = static_cast<ExpertActivation>(ctx->saved_data["activation"].toInt());
  spec.swiglu_limit = ctx->saved_data["limit"].toDouble();
  spec.swiglu_alpha = ctx->saved_data["alpha"].toDouble();
  return spec;
}

}  // namespace esft::nn::detail
