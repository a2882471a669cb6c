#include "sorted_experts.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/autograd.h>

#include "esft/error.h"

namespace esft::nn::detail {

at::Tensor expert_activation(const at::Tensor& gu, const ExpertBankSpec& spec) {
  const int64_t I = spec.intermediate;
  auto gate = gu.narrow(-1, 0, I);
  auto up = gu.narrow(-1, I, I);
  switch (spec.activation) {
    case ExpertActivation::SiLU: return at::silu(gate) * up;
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

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// One expert's rows and weights during a pass.
struct ExpertRows {
  int64_t expert, offset, count;
  bool trainable;
  int64_t row;  // in its half
};

std::vector<ExpertRows> expert_rows(const std::vector<int64_t>& counts, const std::vector<int64_t>& slot) {
  std::vector<ExpertRows> out;
  int64_t offset = 0;
  for (size_t e = 0; e < counts.size(); ++e) {
    if (counts[e] > 0) {
      const int64_t s = slot[e];
      out.push_back({static_cast<int64_t>(e), offset, counts[e], s >= 0, s >= 0 ? s : -s - 1});
    }
    offset += counts[e];
  }
  return out;
}

// Runs fn(rows[i]) for every expert. On the CPU the experts run in parallel, one thread each, rather than one after
// another with every small matrix product split across the threads: the products are too small to split well, and
// the threads would meet at a barrier after each. Each expert writes only its own rows, so the order is free.
template <typename Fn>
void for_each_expert(const std::vector<ExpertRows>& rows, const at::Tensor& like, Fn&& fn) {
  if (!like.is_cpu()) {
    for (const auto& r : rows) fn(r);
    return;
  }
  at::parallel_for(0, static_cast<int64_t>(rows.size()), 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) fn(rows[static_cast<size_t>(i)]);
  });
}

at::Tensor row_of(const at::Tensor& t, int64_t row) { return t.defined() ? t[row] : at::Tensor(); }

// out = a @ b, written into `out` (a view into a larger tensor).
void mm_into(at::Tensor out, const at::Tensor& a, const at::Tensor& b) { at::mm_out(out, a, b); }
// out = the column sums of a.
void sum_rows_into(at::Tensor out, const at::Tensor& a) { at::sum_out(out, a, at::IntArrayRef{0}); }

// out = a @ w.t() (+ bias), written into `out`, as at::linear computes it.
void linear_into(at::Tensor out, const at::Tensor& a, const at::Tensor& w, const at::Tensor& bias) {
  if (bias.defined()) at::addmm_out(out, bias, a, w.t());
  else at::mm_out(out, a, w.t());
}

class SortedExperts : public torch::autograd::Function<SortedExperts> {
 public:
  // Tensor arguments autograd tracks: xs and the trainable half. The frozen half is a constant.
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& xs, const at::Tensor& gate_up,
                            const at::Tensor& down, const at::Tensor& gate_up_bias, const at::Tensor& down_bias,
                            const BankHalf& frozen, const std::vector<int64_t>& counts,
                            const std::vector<int64_t>& slot, const ExpertBankSpec& spec) {
    const BankHalf trainable{gate_up, down, spec.bias ? gate_up_bias : at::Tensor(), spec.bias ? down_bias : at::Tensor()};
    const auto rows = expert_rows(counts, slot);
    const int64_t M = xs.size(0), H = spec.hidden, I = spec.intermediate;
    auto gu = at::empty({M, 2 * I}, xs.options());
    for_each_expert(rows, xs, [&](const ExpertRows& r) {
      const auto& half = r.trainable ? trainable : frozen;
      linear_into(gu.narrow(0, r.offset, r.count), xs.narrow(0, r.offset, r.count), half.gate_up[r.row],
                  row_of(half.gate_up_bias, r.row));
    });
    auto h = expert_activation(gu, spec);
    auto y = at::empty({M, H}, xs.options());
    for_each_expert(rows, xs, [&](const ExpertRows& r) {
      const auto& half = r.trainable ? trainable : frozen;
      linear_into(y.narrow(0, r.offset, r.count), h.narrow(0, r.offset, r.count), half.down[r.row],
                  row_of(half.down_bias, r.row));
    });
    ctx->save_for_backward({xs, gu, gate_up, down, frozen.gate_up, frozen.down});
    ctx->saved_data["counts"] = c10::IValue(counts);
    ctx->saved_data["slot"] = c10::IValue(slot);
    ctx->saved_data["bias"] = spec.bias;
    ctx->saved_data["activation"] = static_cast<int64_t>(spec.activation);
    ctx->saved_data["limit"] = spec.swiglu_limit;
    ctx->saved_data["alpha"] = spec.swiglu_alpha;
    ctx->saved_data["hidden"] = H;
    ctx->saved_data["intermediate"] = I;
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const auto &xs = saved[0], &gu = saved[1];
    const BankHalf trainable{saved[2], saved[3], {}, {}};
    const BankHalf frozen{saved[4], saved[5], {}, {}};
    const auto counts = ctx->saved_data["counts"].toIntVector();
    const auto slot = ctx->saved_data["slot"].toIntVector();
    const bool bias = ctx->saved_data["bias"].toBool();
    ExpertBankSpec spec;
    spec.activation = static_cast<ExpertActivation>(ctx->saved_data["activation"].toInt());
    spec.swiglu_limit = ctx->saved_data["limit"].toDouble();
    spec.swiglu_alpha = ctx->saved_data["alpha"].toDouble();
    spec.hidden = ctx->saved_data["hidden"].toInt();
    spec.intermediate = ctx->saved_data["intermediate"].toInt();
    const auto rows = expert_rows(counts, slot);
    const auto gy = grad_outputs[0].contiguous();
    const int64_t M = xs.size(0), I = spec.intermediate;

    // Gradient of the activation's output, expert by expert, then the activation's backward over all rows at once
    // (recomputing it: cheaper than keeping it).
    auto gh = at::empty({M, I}, gy.options());
    for_each_expert(rows, gy, [&](const ExpertRows& r) {
      const auto& half = r.trainable ? trainable : frozen;
      mm_into(gh.narrow(0, r.offset, r.count), gy.narrow(0, r.offset, r.count), half.down[r.row]);
    });
    at::Tensor h, ggu;
    {
      at::AutoGradMode enable(true);
      auto gu_leaf = gu.detach().requires_grad_(true);
      auto h_graph = expert_activation(gu_leaf, spec);
      ggu = torch::autograd::grad({h_graph}, {gu_leaf}, {gh})[0];
      h = h_graph.detach();
    }

    const bool want_x = ctx->needs_input_grad(0);
    const bool want_gate_up = ctx->needs_input_grad(1), want_down = ctx->needs_input_grad(2);
    const bool want_gate_up_bias = bias && ctx->needs_input_grad(3), want_down_bias = bias && ctx->needs_input_grad(4);
    at::Tensor gx, g_gate_up, g_down, g_gate_up_bias, g_down_bias;
    if (want_x) gx = at::empty_like(xs);
    // Trainable experts without tokens this step keep a zero gradient row; the others are written whole.
    std::vector<char> written(trainable.gate_up.size(0), 0);  // not vector<bool>: experts set theirs concurrently
    if (want_gate_up) g_gate_up = at::empty_like(trainable.gate_up);
    if (want_down) g_down = at::empty_like(trainable.down);
    if (want_gate_up_bias) g_gate_up_bias = at::empty({trainable.gate_up.size(0), 2 * I}, gy.options());
    if (want_down_bias) g_down_bias = at::empty({trainable.down.size(0), spec.hidden}, gy.options());
    for_each_expert(rows, gy, [&](const ExpertRows& r) {
      const auto x_rows = xs.narrow(0, r.offset, r.count);
      const auto gy_rows = gy.narrow(0, r.offset, r.count);
      const auto ggu_rows = ggu.narrow(0, r.offset, r.count);
      const auto& half = r.trainable ? trainable : frozen;
      if (want_x) mm_into(gx.narrow(0, r.offset, r.count), ggu_rows, half.gate_up[r.row]);
      if (!r.trainable) return;
      written[r.row] = 1;
      if (want_down) mm_into(g_down[r.row], gy_rows.t(), h.narrow(0, r.offset, r.count));
      if (want_gate_up) mm_into(g_gate_up[r.row], ggu_rows.t(), x_rows);
      if (want_down_bias) sum_rows_into(g_down_bias[r.row], gy_rows);
      if (want_gate_up_bias) sum_rows_into(g_gate_up_bias[r.row], ggu_rows);
    });
    for (size_t row = 0; row < written.size(); ++row) {
      if (written[row]) continue;
      for (auto* g : {&g_gate_up, &g_down, &g_gate_up_bias, &g_down_bias})
        if (g->defined()) (*g)[static_cast<int64_t>(row)].zero_();
    }
    return {gx, g_gate_up, g_down, g_gate_up_bias, g_down_bias, {}, {}, {}, {}};
  }
};

}  // namespace

at::Tensor sorted_experts(const at::Tensor& xs, const std::vector<int64_t>& counts, const std::vector<int64_t>& slot,
                          const BankHalf& trainable, const BankHalf& frozen, const ExpertBankSpec& spec) {
  // Autograd's custom nodes need defined tensors: an empty one stands for a missing bias.
  const auto none = at::empty({0}, xs.options());
  const auto or_none = [&](const at::Tensor& t) { return spec.bias ? t : none; };
  return SortedExperts::apply(xs.contiguous(), trainable.gate_up, trainable.down, or_none(trainable.gate_up_bias),
                              or_none(trainable.down_bias), frozen, counts, slot, spec);
}

}  // namespace esft::nn::detail
