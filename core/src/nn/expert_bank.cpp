#include "esft/nn/expert_bank.h"

#include <ATen/ATen.h>

#include <string>

#include "esft/error.h"
#include "sorted_experts.h"

namespace esft::nn {

namespace {
// The pattern of `role`, which must (per-expert layout) or must not (fused layout) name one expert.
std::string expert_pattern(const ParamNaming& naming, Role role, bool per_expert) {
  const auto& p = naming.pattern(role);
  if ((p.find("{expert}") != std::string::npos) != per_expert) {
    throw Error(std::string("naming pattern '") + p + "' of " + role_name(role) + (per_expert ? " lacks" : " has") +
                " an {expert} placeholder, against the expert bank's checkpoint layout");
  }
  return p;
}
}  // namespace

ExpertBank::ExpertBank(const ExpertBankSpec& spec, int layer, const ParamNaming& naming,
                       const at::TensorOptions& options)
    : spec_(spec), layer_(layer) {
  const int64_t E = spec.num_experts, H = spec.hidden, I = spec.intermediate;
  if (spec.layout == ExpertCheckpointLayout::FusedInterleaved) {
    gate_up_pattern_ = expert_pattern(naming, Role::EXPERT_GATE_UP, false);
    down_pattern_ = expert_pattern(naming, Role::EXPERT_DOWN, false);
    if (spec.bias) {
      gate_up_bias_pattern_ = expert_pattern(naming, Role::EXPERT_GATE_UP_BIAS, false);
      down_bias_pattern_ = expert_pattern(naming, Role::EXPERT_DOWN_BIAS, false);
    }
  } else {
    if (spec.bias) throw Error("expert biases are only supported in the fused interleaved checkpoint layout");
    gate_pattern_ = expert_pattern(naming, Role::EXPERT_GATE, true);
    up_pattern_ = expert_pattern(naming, Role::EXPERT_UP, true);
    down_pattern_ = expert_pattern(naming, Role::EXPERT_DOWN, true);
  }
  gate_up_ = make_split("gate_up", {2 * I, H}, options);
  down_ = make_split("down", {H, I}, options);
  if (spec.bias) {
    gate_up_bias_ = make_split("gate_up_bias", {2 * I}, options);
    down_bias_ = make_split("down_bias", {H}, options);
  }
  slot_.resize(E);
  for (int64_t e = 0; e < E; ++e) slot_[e] = e;
}

ExpertBank::Split ExpertBank::make_split(const std::string& name, std::vector<int64_t> row_shape,
                                         const at::TensorOptions& options) {
  row_shape.insert(row_shape.begin(), spec_.num_experts);
  Split s;
  s.trainable = register_parameter(name, at::empty(row_shape, options));
  row_shape[0] = 0;
  s.frozen = register_buffer("frozen_" + name, at::empty(row_shape, options));
  return s;
}

ExpertBank::Row ExpertBank::row(const Split& w, int64_t expert) const {
  const int64_t s = slot_.at(expert);
  return s >= 0 ? Row{w.trainable, s} : Row{w.frozen, -s - 1};
}

at::Tensor ExpertBank::row_value(const Split& w, int64_t expert) const {
  const auto r = row(w, expert);
  return r.tensor[r.index];
}

at::Tensor ExpertBank::forward(const at::Tensor& x, const at::Tensor& idx, const at::Tensor& weight) const {
  const int64_t k = idx.size(1), E = spec_.num_experts;
  auto flat_idx = idx.reshape({-1});
  // Sort the N*k (token, slot) pairs by expert once; each expert then works on one contiguous block.
  auto order = at::argsort(flat_idx);
  auto token_of = at::div(order, k, "floor");
  const auto counts_tensor = at::bincount(flat_idx, {}, E).cpu();  // the one host sync of the per-expert loop
  const std::vector<int64_t> counts(counts_tensor.data_ptr<int64_t>(), counts_tensor.data_ptr<int64_t>() + E);
  auto xs = x.index_select(0, token_of);
  auto ys = detail::sorted_experts(xs, counts, slot_, {gate_up_.trainable, down_.trainable, gate_up_bias_.trainable,
                                                       down_bias_.trainable},
                                   {gate_up_.frozen, down_.frozen, gate_up_bias_.frozen, down_bias_.frozen}, spec_);
  // The weights may be float32 while x is not (sigmoid routers): weigh in the wider type, then cast, as HF does.
  auto w = weight.reshape({-1}).index_select(0, order).unsqueeze(1);
  return at::zeros_like(x).index_add(0, token_of, (ys * w).to(x.scalar_type()));
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
  if (spec_.bias) {
    resplit(gate_up_bias_, trainable);
    resplit(down_bias_, trainable);
  }
  int64_t t = 0, f = 0;
  for (int64_t e = 0; e < E; ++e) slot_[e] = trainable[e] ? t++ : -(++f);
  ++*splits_;
}

void ExpertBank::resplit(Split& w, const std::vector<bool>& trainable) {
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> train_rows, frozen_rows;
  for (int64_t e = 0; e < spec_.num_experts; ++e) (trainable[e] ? train_rows : frozen_rows).push_back(row_value(w, e));
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
  return spec_.layout == ExpertCheckpointLayout::FusedInterleaved ? fused_bindings() : per_expert_bindings();
}

std::function<at::Tensor(const at::Tensor&)> ExpertBank::guarded(std::function<at::Tensor(const at::Tensor&)> select) const {
  std::shared_ptr<const int64_t> splits = splits_;
  return [splits, made = *splits_, layer = layer_, select = std::move(select)](const at::Tensor& t) {
    if (*splits != made) {
      throw Error("expert bindings of layer " + std::to_string(layer) +
                  " were made before set_trainable_experts moved the experts; take the bindings again");
    }
    return select(t);
  };
}

CheckpointBindings ExpertBank::per_expert_bindings() const {
  CheckpointBindings out;
  const int64_t I = spec_.intermediate;
  for (int64_t e = 0; e < spec_.num_experts; ++e) {
    const auto gu = row(gate_up_, e);
    const auto dn = row(down_, e);
    const int64_t r = gu.index;
    out.emplace_back(format_pattern(gate_pattern_, layer_, e), gu.tensor,
                     guarded([r, I](const at::Tensor& t) { return t[r].narrow(0, 0, I); }));
    out.emplace_back(format_pattern(up_pattern_, layer_, e), gu.tensor,
                     guarded([r, I](const at::Tensor& t) { return t[r].narrow(0, I, I); }));
    out.emplace_back(format_pattern(down_pattern_, layer_, e), dn.tensor,
                     guarded([r](const at::Tensor& t) { return t[r]; }));
  }
  return out;
}

CheckpointBindings ExpertBank::fused_bindings() const {
  const int64_t H = spec_.hidden, I = spec_.intermediate;
  std::vector<BoundPart> gate_up, down, gate_up_bias, down_bias;
  for (int64_t e = 0; e < spec_.num_experts; ++e) {
    const int64_t r = row(gate_up_, e).index;  // every Split puts expert e in the same row
    // Checkpoint [H, 2I] with column 2j = gate j and 2j+1 = up j is our [2I, H] row seen as [2, I, H] -> [H, I, 2].
    gate_up.push_back({row(gate_up_, e).tensor,
                       guarded([r, I, H](const at::Tensor& t) { return t[r].view({2, I, H}).permute({2, 1, 0}); }),
                       {H, 2 * I}});
    down.push_back({row(down_, e).tensor, guarded([r](const at::Tensor& t) { return t[r].t(); }), {}});  // [I, H]
    if (spec_.bias) {
      gate_up_bias.push_back({row(gate_up_bias_, e).tensor,
                              guarded([r, I](const at::Tensor& t) { return t[r].view({2, I}).t(); }), {2 * I}});
      down_bias.push_back({row(down_bias_, e).tensor, guarded([r](const at::Tensor& t) { return t[r]; }), {}});
    }
  }
  CheckpointBindings out;
  out.push_back(CheckpointBinding::stacked(format_pattern(gate_up_pattern_, layer_, -1), std::move(gate_up)));
  out.push_back(CheckpointBinding::stacked(format_pattern(down_pattern_, layer_, -1), std::move(down)));
  if (spec_.bias) {
    out.push_back(CheckpointBinding::stacked(format_pattern(gate_up_bias_pattern_, layer_, -1), std::move(gate_up_bias)));
    out.push_back(CheckpointBinding::stacked(format_pattern(down_bias_pattern_, layer_, -1), std::move(down_bias)));
  }
  return out;
}

}  // namespace esft::nn
