// The grouped kernel: each projection of every expert in one at::_grouped_mm over the sorted rows. The group ends
// stay on the device, so a layer never waits for it. _grouped_mm reads row p's weight from group p of a [E, K, N]
// tensor, and in its 2-d x 2-d form (the weight gradients) sums each group's rows into one [K, N] matrix.
#include <ATen/ATen.h>
#include <torch/autograd.h>

#include "expert_kernels.h"

namespace esft::nn::detail {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Each bias row summed over the rows of its position, in float32 (many rows meet in one sum), for the first
// `rows` positions.
at::Tensor bias_gradient(const at::Tensor& grad, const at::Tensor& positions, int64_t positions_total, int64_t rows) {
  auto sums = at::zeros({positions_total, grad.size(1)}, grad.options().dtype(at::kFloat));
  sums.index_add_(0, positions, grad.to(at::kFloat));
  return sums.narrow(0, 0, rows).to(grad.scalar_type());
}

class ExpertGrouped : public torch::autograd::Function<ExpertGrouped> {
 public:
  // Tensors autograd tracks: xs and the trainable rows (offsets and positions are integers, never differentiated).
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& xs, const at::Tensor& gate_up,
                            const at::Tensor& /*down*/, const at::Tensor& /*gate_up_bias*/,
                            const at::Tensor& /*down_bias*/, const at::Tensor& offsets, const at::Tensor& positions,
                            const BankWeights& bank, const ExpertBankSpec& spec) {
    auto gu = at::_grouped_mm(xs, bank.gate_up.transpose(1, 2), offsets);
    if (spec.bias) gu.add_(bank.gate_up_bias.index_select(0, positions));
    auto h = expert_activation(gu, spec);
    auto y = at::_grouped_mm(h, bank.down.transpose(1, 2), offsets);
    if (spec.bias) y.add_(bank.down_bias.index_select(0, positions));
    ctx->save_for_backward({xs, gu, offsets, positions, bank.gate_up, bank.down});
    ctx->saved_data["trainable"] = gate_up.size(0);
    save_spec(ctx, spec);
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const auto &xs = saved[0], &gu = saved[1], &offsets = saved[2], &positions = saved[3];
    const auto &bank_gate_up = saved[4], &bank_down = saved[5];
    const int64_t T = ctx->saved_data["trainable"].toInt();
    const auto spec = saved_spec(ctx);
    const auto gy = grad_outputs[0].contiguous();
    const int64_t H = spec.hidden, I = spec.intermediate;

    const auto gh = at::_grouped_mm(gy, bank_down, offsets);
    const auto activation = expert_activation_backward(gu, gh, spec);
    // The kernel reads rows of 16-byte aligned strides: keep both row-major (no-ops when they already are).
    const auto h = activation.first.contiguous(), ggu = activation.second.contiguous();

    at::Tensor gx, g_gate_up, g_down, g_gate_up_bias, g_down_bias;
    if (ctx->needs_input_grad(0)) gx = at::_grouped_mm(ggu, bank_gate_up, offsets);
    // The trainable experts are positions [0, T): groups past T are left out of the weight gradients.
    const auto trainable_ends = offsets.narrow(0, 0, T);
    // A group without rows must give a zero gradient; set it so rather than rely on the kernel for it.
    const auto idle = at::diff(trainable_ends, 1, 0, at::zeros({1}, offsets.options())).eq(0);
    const auto weight_gradient = [&](const at::Tensor& a, const at::Tensor& b, int64_t rows, int64_t cols) {
      if (T == 0) return at::empty({0, rows, cols}, gy.options());
      return at::_grouped_mm(a.t(), b, trainable_ends).masked_fill_(idle.view({T, 1, 1}), 0);
    };
    if (ctx->needs_input_grad(1)) g_gate_up = weight_gradient(ggu, xs, spec.first_width(), H);
    if (ctx->needs_input_grad(2)) g_down = weight_gradient(gy, h, H, I);
    if (spec.bias && ctx->needs_input_grad(3)) g_gate_up_bias = bias_gradient(ggu, positions, spec.num_experts, T);
    if (spec.bias && ctx->needs_input_grad(4)) g_down_bias = bias_gradient(gy, positions, spec.num_experts, T);
    return {gx, g_gate_up, g_down, g_gate_up_bias, g_down_bias, {}, {}, {}, {}};
  }
};

}  // namespace

at::Tensor expert_grouped(const at::Tensor& xs, const at::Tensor& offsets, const at::Tensor& positions,
                          const BankWeights& trainable, const BankWeights& bank, const ExpertBankSpec& spec) {
  return ExpertGrouped::apply(xs.contiguous(), trainable.gate_up, trainable.down,
                              bias_input(trainable.gate_up_bias, spec, xs), bias_input(trainable.down_bias, spec, xs),
                              offsets, positions, bank, spec);
}

}  // namespace esft::nn::detail
