#include "esft/nn/expert_bank.h"

#include <ATen/ATen.h>

#include <string>

#include "esft/error.h"

namespace esft::nn {

ExpertBank::ExpertBank(const ExpertBankSpec& spec, int layer, const ParamNaming& naming,
                       const at::TensorOptions& options)
    : spec_(spec),
      layer_(layer),
      gate_pattern_(naming.pattern(Role::EXPERT_GATE)),
      up_pattern_(naming.pattern(Role::EXPERT_UP)),
      down_pattern_(naming.pattern(Role::EXPERT_DOWN)) {
  const int64_t E = spec.num_experts, H = spec.hidden, I = spec.intermediate;
  gate_up_.trainable = register_parameter("gate_up", at::empty({E, 2 * I, H}, options));
  down_.trainable = register_parameter("down", at::empty({E, H, I}, options));
  gate_up_.frozen = register_buffer("frozen_gate_up", at::empty({0, 2 * I, H}, options));
  down_.frozen = register_buffer("frozen_down", at::empty({0, H, I}, options));
  slot_.resize(E);
  for (int64_t e = 0; e < E; ++e) slot_[e] = e;
}

at::Tensor ExpertBank::row(const Split& w, int64_t expert) const {
  const int64_t s = slot_.at(expert);
  return s >= 0 ? w.trainable[s] : w.frozen[-s - 1];
}

at::Tensor ExpertBank::gate_up(int64_t expert) const { return row(gate_up_, expert); }
at::Tensor ExpertBank::down(int64_t expert) const { return row(down_, expert); }

at::Tensor ExpertBank::forward(const at::Tensor& x, const at::Tensor& idx, const at::Tensor& weight) const {
  const int64_t k = idx.size(1), E = spec_.num_experts, I = spec_.intermediate;
  auto flat_idx = idx.reshape({-1});
  // Sort the N*k (token, slot) pairs by expert once; each expert then works on one contiguous block.
  auto order = at::argsort(flat_idx);
  auto token_of = at::div(order, k, "floor");
  auto counts = at::bincount(flat_idx, {}, E).cpu();  // the one host sync of the per-expert loop
  const auto* count = counts.data_ptr<int64_t>();
  auto xs = x.index_select(0, token_of);

  std::vector<at::Tensor> outputs;
  int64_t offset = 0;
  for (int64_t e = 0; e < E; ++e) {
    if (count[e] == 0) continue;
    auto block = xs.narrow(0, offset, count[e]);
    auto gu = at::linear(block, gate_up(e));
    auto h = at::silu(gu.narrow(-1, 0, I)) * gu.narrow(-1, I, I);
    outputs.push_back(at::linear(h, down(e)));
    offset += count[e];
  }
  auto y = at::zeros_like(x);
  if (outputs.empty()) return y;
  auto w = weight.reshape({-1}).index_select(0, order).unsqueeze(1);
  return y.index_add(0, token_of, at::cat(outputs, 0) * w);
}

void ExpertBank::set_trainable_experts(const std::vector<int64_t>& experts) {
  const int64_t E = spec_.num_experts;
  std::vector<bool> trainable(E, false);
  for (int64_t e : experts) {
    if (e < 0 || e >= E) {
      throw Error("expert " + std::to_string(e) + " of layer " + std::to_string(layer_) + " is out of range (the layer has " +
                  std::to_string(E) + " experts)");
    }
    if (trainable[e]) throw Error("expert " + std::to_string(e) + " of layer " + std::to_string(layer_) + " is listed twice");
    trainable[e] = true;
  }
  resplit(gate_up_, trainable);
  resplit(down_, trainable);
  int64_t t = 0, f = 0;
  for (int64_t e = 0; e < E; ++e) slot_[e] = trainable[e] ? t++ : -(++f);
}

void ExpertBank::resplit(Split& w, const std::vector<bool>& trainable) {
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> train_rows, frozen_rows;
  for (int64_t e = 0; e < spec_.num_experts; ++e) (trainable[e] ? train_rows : frozen_rows).push_back(row(w, e));
  auto stacked = [&](const std::vector<at::Tensor>& rows) {
    if (!rows.empty()) return at::stack(rows);
    auto sizes = w.trainable.sizes().vec();
    sizes[0] = 0;
    return at::empty(sizes, w.trainable.options());
  };
  auto train = stacked(train_rows);
  auto frozen = stacked(frozen_rows);
  w.trainable.mutable_grad() = at::Tensor();  // a gradient of the old shape would be meaningless
  w.trainable.set_data(train);
  w.frozen.set_data(frozen);
}

std::vector<int64_t> ExpertBank::trainable_experts() const {
  std::vector<int64_t> out;
  for (int64_t e = 0; e < spec_.num_experts; ++e)
    if (slot_[e] >= 0) out.push_back(e);
  return out;
}

CheckpointBindings ExpertBank::bindings() const {
  CheckpointBindings out;
  const int64_t I = spec_.intermediate;
  for (int64_t e = 0; e < spec_.num_experts; ++e) {
    const int64_t s = slot_[e];
    const bool train = s >= 0;
    const int64_t r = train ? s : -s - 1;
    const auto& gate_up = train ? gate_up_.trainable : gate_up_.frozen;
    const auto& down = train ? down_.trainable : down_.frozen;
    out.push_back({format_pattern(gate_pattern_, layer_, e), gate_up,
                   [r, I](const at::Tensor& t) { return t[r].narrow(0, 0, I); }});
    out.push_back({format_pattern(up_pattern_, layer_, e), gate_up,
                   [r, I](const at::Tensor& t) { return t[r].narrow(0, I, I); }});
    out.push_back({format_pattern(down_pattern_, layer_, e), down, [r](const at::Tensor& t) { return t[r]; }});
  }
  return out;
}

}  // namespace esft::nn
