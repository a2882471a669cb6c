// The per-expert kernel: one matrix product per expert and projection, written into the rows of one output.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/autograd.h>

#include "expert_kernels.h"

namespace esft::nn::detail {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The rows of one bank position during a pass.
struct PositionRows {
  int64_t position, offset, count;
};

std::vector<PositionRows> position_rows(const std::vector<int64_t>& counts) {
  std::vector<PositionRows> out;
  int64_t offset = 0;
  for (size_t p = 0; p < counts.size(); ++p) {
    if (counts[p] > 0) out.push_back({static_cast<int64_t>(p), offset, counts[p]});
    offset += counts[p];
  }
  return out;
}

// Runs fn(rows[i]) for every position with tokens. On the CPU the experts run in parallel, one thread each, rather
// than one after another with every small matrix product split across the threads: the products are too small to
// split well, and the threads would meet at a barrier after each. Each expert writes only its own rows, so the order
// is free.
template <typename Fn>
void for_each_expert(const std::vector<PositionRows>& rows, const at::Tensor& like, Fn&& fn) {
  if (!like.is_cpu()) {
    for (const auto& r : rows) fn(r);
    return;
  }
  at::parallel_for(0, static_cast<int64_t>(rows.size()), 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) fn(rows[static_cast<size_t>(i)]);
  });
}

at::Tensor row_of(const at::Tensor& t, int64_t row) { return t.defined() ? t[row] : at::Tensor(); }

// out = a @ b, written into `out` (a view into a larger tensor: the _out functions take it by reference).
void mm_into(at::Tensor out, const at::Tensor& a, const at::Tensor& b) { at::mm_out(out, a, b); }
// out = the column sums of a.
void sum_rows_into(at::Tensor out, const at::Tensor& a) { at::sum_out(out, a, at::IntArrayRef{0}); }

// out = a @ w.t() (+ bias), written into `out`, as at::linear computes it.
void linear_into(at::Tensor out, const at::Tensor& a, const at::Tensor& w, const at::Tensor& bias) {
  if (bias.defined()) at::addmm_out(out, bias, a, w.t());
  else at::mm_out(out, a, w.t());
}

class ExpertLoop : public torch::autograd::Function<ExpertLoop> {
 public:
  // Tensors autograd tracks: xs and the trainable rows. The bank (which includes them) is read, not differentiated.
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& xs, const at::Tensor& gate_up,
                            const at::Tensor& down, const at::Tensor& /*gate_up_bias*/, const at::Tensor& /*down_bias*/,
                            const BankWeights& bank, const std::vector<int64_t>& counts, const ExpertBankSpec& spec) {
    const auto rows = position_rows(counts);
    const int64_t M = xs.size(0);
    auto gu = at::empty({M, spec.first_width()}, xs.options());
    for_each_expert(rows, xs, [&](const PositionRows& r) {
      linear_into(gu.narrow(0, r.offset, r.count), xs.narrow(0, r.offset, r.count), bank.gate_up[r.position],
                  row_of(bank.gate_up_bias, r.position));
    });
    auto h = expert_activation(gu, spec);
    auto y = at::empty({M, spec.hidden}, xs.options());
    for_each_expert(rows, xs, [&](const PositionRows& r) {
      linear_into(y.narrow(0, r.offset, r.count), h.narrow(0, r.offset, r.count), bank.down[r.position],
                  row_of(bank.down_bias, r.position));
    });
    ctx->save_for_backward({xs, gu, bank.gate_up, bank.down});
    ctx->saved_data["counts"] = c10::IValue(counts);
    ctx->saved_data["trainable"] = gate_up.size(0);
    save_spec(ctx, spec);
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const auto &xs = saved[0], &gu = saved[1], &bank_gate_up = saved[2], &bank_down = saved[3];
    const auto rows = position_rows(ctx->saved_data["counts"].toIntVector());
    const int64_t T = ctx->saved_data["trainable"].toInt();
    const auto spec = saved_spec(ctx);
    const auto gy = grad_outputs[0].contiguous();
    const int64_t M = xs.size(0), I = spec.intermediate;

    // Gradient of the activation's output, expert by expert, then the activation's backward over all rows at once.
    auto gh = at::empty({M, I}, gy.options());
    for_each_expert(rows, gy, [&](const PositionRows& r) {
      mm_into(gh.narrow(0, r.offset, r.count), gy.narrow(0, r.offset, r.count), bank_down[r.position]);
    });
    const auto activation = expert_activation_backward(gu, gh, spec);
    const at::Tensor &h = activation.first, &ggu = activation.second;

    const bool want_x = ctx->needs_input_grad(0);
    const bool want_gate_up = ctx->needs_input_grad(1), want_down = ctx->needs_input_grad(2);
    const bool want_gate_up_bias = spec.bias && ctx->needs_input_grad(3);
    const bool want_down_bias = spec.bias && ctx->needs_input_grad(4);
    at::Tensor gx, g_gate_up, g_down, g_gate_up_bias, g_down_bias;
    if (want_x) gx = at::empty_like(xs);
    // Trainable experts without tokens this step keep a zero gradient row; the others are written whole.
    std::vector<char> written(static_cast<size_t>(T), 0);  // not vector<bool>: experts set theirs concurrently
    if (want_gate_up) g_gate_up = at::empty({T, spec.first_width(), spec.hidden}, gy.options());
    if (want_down) g_down = at::empty({T, spec.hidden, I}, gy.options());
    if (want_gate_up_bias) g_gate_up_bias = at::empty({T, spec.first_width()}, gy.options());
    if (want_down_bias) g_down_bias = at::empty({T, spec.hidden}, gy.options());
    for_each_expert(rows, gy, [&](const PositionRows& r) {
      const auto x_rows = xs.narrow(0, r.offset, r.count);
      const auto gy_rows = gy.narrow(0, r.offset, r.count);
      const auto ggu_rows = ggu.narrow(0, r.offset, r.count);
      if (want_x) mm_into(gx.narrow(0, r.offset, r.count), ggu_rows, bank_gate_up[r.position]);
      if (r.position >= T) return;  // a frozen expert: input gradient only
      written[static_cast<size_t>(r.position)] = 1;
      if (want_down) mm_into(g_down[r.position], gy_rows.t(), h.narrow(0, r.offset, r.count));
      if (want_gate_up) mm_into(g_gate_up[r.position], ggu_rows.t(), x_rows);
      if (want_down_bias) sum_rows_into(g_down_bias[r.position], gy_rows);
      if (want_gate_up_bias) sum_rows_into(g_gate_up_bias[r.position], ggu_rows);
    });
    for (int64_t p = 0; p < T; ++p) {
      if (written[static_cast<size_t>(p)]) continue;
      for (auto* g : {&g_gate_up, &g_down, &g_gate_up_bias, &g_down_bias})
        if (g->defined()) (*g)[p].zero_();
    }
    return {gx, g_gate_up, g_down, g_gate_up_bias, g_down_bias, {}, {}, {}};
  }
};

}  // namespace

at::Tensor expert_loop(const at::Tensor& xs, const std::vector<int64_t>& counts, const BankWeights& trainable,
                       const BankWeights& bank, const ExpertBankSpec& spec) {
  return ExpertLoop::apply(xs.contiguous(), trainable.gate_up, trainable.down,
                           bias_input(trainable.gate_up_bias, spec, xs), bias_input(trainable.down_bias, spec, xs),
                           bank, counts, spec);
}

}  // namespace esft::nn::detail
