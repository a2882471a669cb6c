#include "esft/nn/expert_bank.h"

#include <ATen/ATen.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>

#include "esft/dist/collectives.h"
#include "esft/error.h"
#include "esft/nn/expert_parallel.h"
#include "expert_kernels.h"

namespace esft::nn {

namespace {
ExpertKernel kernel_from_environment() {
  const char* v = std::getenv("ESFT_EXPERTS");
  if (v && std::strcmp(v, "loop") == 0) return ExpertKernel::Loop;
  if (v && std::strcmp(v, "grouped") == 0) return ExpertKernel::Grouped;
  return ExpertKernel::Auto;
}
std::atomic<ExpertKernel> current_kernel{kernel_from_environment()};
thread_local dist::Communicator* current_group = nullptr;
}  // namespace

ExpertParallelScope::ExpertParallelScope(dist::Communicator* group) : previous_(current_group) { current_group = group; }
ExpertParallelScope::~ExpertParallelScope() { current_group = previous_; }
dist::Communicator* expert_parallel_group() { return current_group; }

void set_expert_kernel(ExpertKernel kernel) { current_kernel = kernel; }
ExpertKernel expert_kernel() { return current_kernel; }

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
    : spec_(spec), layer_(layer), group_(expert_parallel_group()) {
  const int64_t E = spec.num_experts, H = spec.hidden, I = spec.intermediate;
  int64_t held = E;
  if (group_) {
    const int W = group_->world_size();
    if (spec.layout != ExpertCheckpointLayout::PerExpert) {
      throw Error("expert parallelism is built for checkpoints with one tensor per expert; this family keeps the "
                  "experts of a layer in fused tensors");
    }
    if (E % W != 0) {
      throw Error("expert parallelism over " + std::to_string(W) + " processes needs a number of experts per layer "
                  "that they divide evenly (layer " + std::to_string(layer) + " has " + std::to_string(E) + ")");
    }
    held = E / W;
    first_ = group_->rank() * held;
  }
  if (spec.layout == ExpertCheckpointLayout::PerExpert) {
    if (spec.bias) throw Error("expert biases are only supported in the fused checkpoint layouts");
    if (spec.gated()) gate_pattern_ = expert_pattern(naming, Role::EXPERT_GATE, true);
    up_pattern_ = expert_pattern(naming, Role::EXPERT_UP, true);
    down_pattern_ = expert_pattern(naming, Role::EXPERT_DOWN, true);
  } else {
    if (spec.layout == ExpertCheckpointLayout::FusedInterleaved && !spec.gated())
      throw Error("the fused interleaved expert layout interleaves gate and up columns: it needs a gated activation");
    gate_up_pattern_ = expert_pattern(naming, Role::EXPERT_GATE_UP, false);
    down_pattern_ = expert_pattern(naming, Role::EXPERT_DOWN, false);
    if (spec.bias) {
      gate_up_bias_pattern_ = expert_pattern(naming, Role::EXPERT_GATE_UP_BIAS, false);
      down_bias_pattern_ = expert_pattern(naming, Role::EXPERT_DOWN_BIAS, false);
    }
  }
  slot_.resize(static_cast<size_t>(held));
  for (int64_t i = 0; i < held; ++i) slot_[static_cast<size_t>(i)] = i;
  gate_up_ = make_split("gate_up", {spec.first_width(), H}, options);
  down_ = make_split("down", {H, I}, options);
  if (spec.bias) {
    gate_up_bias_ = make_split("gate_up_bias", {spec.first_width()}, options);
    down_bias_ = make_split("down_bias", {H}, options);
  }
  for (int64_t e = 0; e < E; ++e) all_trainable_.push_back(e);
  if (group_) {
    for (int64_t e = 0; e < E; ++e) {
      if (e >= first_ && e < first_ + held) continue;
      for (const auto* pattern : {&gate_pattern_, &up_pattern_, &down_pattern_})
        if (!pattern->empty()) elsewhere_.insert(format_pattern(*pattern, layer_, static_cast<int>(e)));
    }
  }
}

ExpertBank::Split ExpertBank::make_split(const std::string& name, std::vector<int64_t> row_shape,
                                         const at::TensorOptions& options) {
  const int64_t held = held_experts();
  row_shape.insert(row_shape.begin(), held);
  const auto whole = at::empty(row_shape, options);
  Split s;
  s.trainable = register_parameter(name, whole);
  // The rows after the last, detached: a view would hold its base (and so this storage) for the buffer's life, even
  // after re-splitting gives the buffer new storage, and a view of the parameter would tie the buffer to its graph.
  s.frozen = register_buffer("frozen_" + name, whole.narrow(0, held, 0).detach());
  return s;
}

ExpertBank::Row ExpertBank::row(const Split& w, int64_t expert) const {
  const int64_t s = slot_.at(static_cast<size_t>(expert - first_));
  return s >= 0 ? Row{w.trainable, s} : Row{w.frozen, -s - 1};
}

at::Tensor ExpertBank::row_value(const Split& w, int64_t expert) const {
  const auto r = row(w, expert);
  return r.tensor[r.index];
}

at::Tensor ExpertBank::whole(const Split& w) const {
  const auto &t = w.trainable, &f = w.frozen;
  auto sizes = t.sizes().vec();
  sizes[0] = held_experts();
  const int64_t row_numel = c10::multiply_integers(sizes.begin() + 1, sizes.end());
  const bool packed = t.is_contiguous() && f.is_contiguous() && t.storage().is_alias_of(f.storage()) &&
                      f.storage_offset() == t.storage_offset() + t.size(0) * row_numel;
  if (!packed) {
    // Module::to() gives every parameter and buffer storage of its own; the halves go back into one tensor.
    at::NoGradGuard no_grad;
    const auto joined = at::cat({t.detach(), f.detach()});
    t.set_data(joined.narrow(0, 0, t.size(0)));
    f.set_data(joined.narrow(0, t.size(0), f.size(0)));
  }
  return t.detach().as_strided(sizes, at::empty(sizes, at::kMeta).strides(), t.storage_offset());
}

const at::Tensor& ExpertBank::positions_on(const at::Device& device) const {
  if (!positions_.defined() || positions_.device() != device) {
    const int64_t T = static_cast<int64_t>(trainable_experts().size());
    std::vector<int64_t> position(slot_.size());
    for (size_t e = 0; e < slot_.size(); ++e) position[e] = slot_[e] >= 0 ? slot_[e] : T - slot_[e] - 1;
    positions_ = at::tensor(position, at::kLong).to(device);
  }
  return positions_;
}

bool ExpertBank::use_grouped_kernel(const at::Tensor& x) const {
  const auto dtype = gate_up_.trainable.scalar_type();
  const int64_t bytes = static_cast<int64_t>(gate_up_.trainable.element_size());
  const bool aligned = spec_.hidden * bytes % 16 == 0 && spec_.intermediate * bytes % 16 == 0;
  switch (expert_kernel()) {
    case ExpertKernel::Loop: return false;
    case ExpertKernel::Grouped:
      if (dtype != at::kFloat && dtype != at::kBFloat16 && dtype != at::kHalf) {
        throw Error(std::string("the grouped expert kernel runs in float32, bfloat16 or float16, not ") +
                    c10::toString(dtype));
      }
      if (!aligned) {
        throw Error("the grouped expert kernel needs hidden and intermediate sizes whose rows are multiples of 16 "
                    "bytes (layer " + std::to_string(layer_) + ": " + std::to_string(spec_.hidden) + " and " +
                    std::to_string(spec_.intermediate) + " of " + std::to_string(bytes) + " bytes each)");
      }
      return true;
    case ExpertKernel::Auto: return aligned && x.is_cuda() && x.scalar_type() == at::kBFloat16;
  }
  return false;
}

at::Tensor ExpertBank::forward(const at::Tensor& x, const at::Tensor& idx, const at::Tensor& weight) const {
  const auto token = at::arange(idx.size(0), idx.options()).repeat_interleave(idx.size(1));
  return forward_pairs(x, token, idx.reshape({-1}), weight.reshape({-1}));
}

at::Tensor ExpertBank::forward_pairs(const at::Tensor& x, const at::Tensor& token, const at::Tensor& expert,
                                     const at::Tensor& weight) const {
  if (group_) return exchanged_forward(x, token, expert, weight);
  // Sort the (token, expert) pairs by bank position once; each expert then works on one contiguous block.
  const auto position = positions_on(x.device()).index_select(0, expert);
  auto order = at::argsort(position);
  auto token_of = token.index_select(0, order);
  const auto ys = sorted_outputs(x.index_select(0, token_of), position.index_select(0, order));
  // The weights may be float32 while x is not (sigmoid routers): weigh in the wider type, then cast, as HF does.
  auto w = weight.index_select(0, order).unsqueeze(1);
  return at::zeros_like(x).index_add(0, token_of, (ys * w).to(x.scalar_type()));
}

at::Tensor ExpertBank::exchanged_forward(const at::Tensor& x, const at::Tensor& token, const at::Tensor& expert,
                                         const at::Tensor& weight) const {
  auto& group = *group_;
  const int64_t W = group.world_size(), held = held_experts();
  // The pairs by expert, so by owner: experts [r * held, (r + 1) * held) live on rank r.
  const auto order = at::argsort(expert, /*stable=*/true);
  const auto token_of = token.index_select(0, order);
  const auto expert_of = expert.index_select(0, order);
  const auto per_rank = at::bincount(at::div(expert_of, held, "floor"), {}, W).cpu();
  const std::vector<int64_t> send(per_rank.data_ptr<int64_t>(), per_rank.data_ptr<int64_t>() + W);
  const auto recv = dist::exchange_counts(group, send);
  // Out: each pair's row and expert; here: the pairs of every rank for the experts held here.
  const auto xs = dist::exchange_rows(group, x.index_select(0, token_of), send, recv);
  at::Tensor received_expert;
  {
    at::NoGradGuard no_grad;
    received_expert = at::empty({xs.size(0)}, expert_of.options());
    group.all_to_all(received_expert, expert_of.contiguous(), recv, send);
  }
  const auto position = positions_on(x.device()).index_select(0, received_expert - first_);
  const auto local_order = at::argsort(position);
  auto ys = sorted_outputs(xs.index_select(0, local_order), position.index_select(0, local_order))
                .index_select(0, at::argsort(local_order));  // back to the order the rows came in
  // Every rank's graph must hold the way back when any rank's does (trainable experts elsewhere, or a trainable
  // part before this layer), so that each rank runs the backward exchanges the others wait for. A rank whose own
  // outputs need no gradient gives them a leaf that absorbs one.
  const bool graph = at::GradMode::is_enabled() && (x.requires_grad() || !all_trainable_.empty());
  if (graph && !ys.requires_grad()) ys = ys.detach().requires_grad_();
  const auto back = dist::exchange_rows(group, ys, recv, send);
  auto w = weight.index_select(0, order).unsqueeze(1);
  return at::zeros_like(x).index_add(0, token_of, (back * w).to(x.scalar_type()));
}

at::Tensor ExpertBank::sorted_outputs(const at::Tensor& xs, const at::Tensor& sorted_position) const {
  const int64_t E = held_experts();
  const auto& x = xs;
  detail::BankWeights trainable{gate_up_.trainable, down_.trainable, gate_up_bias_.trainable, down_bias_.trainable};
  detail::BankWeights bank{whole(gate_up_), whole(down_), spec_.bias ? whole(gate_up_bias_) : at::Tensor(),
                           spec_.bias ? whole(down_bias_) : at::Tensor()};
  if (gate_up_lora || down_lora) {
    // Every expert is frozen, so the bank is in expert order: the kernels see whole + delta as one "trainable" bank
    // of E rows, and autograd carries its gradient on to the LoRA pairs. The biases stay frozen.
    if (gate_up_lora) bank.gate_up = bank.gate_up + gate_up_lora->delta().to(bank.gate_up.scalar_type());
    if (down_lora) bank.down = bank.down + down_lora->delta().to(bank.down.scalar_type());
    trainable = bank;
  }
  if (use_grouped_kernel(x)) {
    const auto ends = at::searchsorted(sorted_position, at::arange(E, sorted_position.options()), /*out_int32=*/true,
                                       /*right=*/true);
    return detail::expert_grouped(xs, ends, sorted_position, trainable, bank, spec_);
  }
  const auto counts_tensor = at::bincount(sorted_position, {}, E).cpu();  // the loop's one wait for the device
  const std::vector<int64_t> counts(counts_tensor.data_ptr<int64_t>(), counts_tensor.data_ptr<int64_t>() + E);
  return detail::expert_loop(xs, counts, trainable, bank, spec_);
}

void ExpertBank::add_lora(bool gate_up, bool down, const LoraSpec& spec) {
  if (spec_.layout == ExpertCheckpointLayout::FusedInterleaved) {
    throw Error("LoRA on gpt-oss' routed experts is not built (its checkpoint interleaves gate and up columns)");
  }
  if (group_) throw Error("LoRA on routed experts is not built for expert parallelism");
  if (!trainable_experts().empty()) throw Error("LoRA on the experts of layer " + std::to_string(layer_) + " needs every expert frozen");
  if ((gate_up && gate_up_lora) || (down && down_lora)) throw Error("a LoRA pair is attached already");
  if (spec.dropout > 0) throw Error("LoRA on routed experts takes no dropout (set lora dropout to 0)");
  const auto options = gate_up_.frozen.options();
  const int64_t E = held_experts();
  if (gate_up) attach_lora_pair(*this, "gate_up_lora", gate_up_lora, E, spec_.first_width(), spec_.hidden, spec, options);
  if (down) attach_lora_pair(*this, "down_lora", down_lora, E, spec_.hidden, spec_.intermediate, spec, options);
}

void ExpertBank::fold_lora() {
  // Every expert is frozen: the frozen halves hold the bank in expert order.
  fold_lora_pair(*this, "gate_up_lora", gate_up_lora, gate_up_.frozen);
  fold_lora_pair(*this, "down_lora", down_lora, down_.frozen);
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
  all_trainable_.clear();
  for (int64_t e = 0; e < E; ++e)
    if (trainable[e]) all_trainable_.push_back(e);
  trainable.erase(trainable.begin(), trainable.begin() + first_);  // the experts held here
  trainable.resize(static_cast<size_t>(held_experts()));
  resplit(gate_up_, trainable);
  resplit(down_, trainable);
  if (spec_.bias) {
    resplit(gate_up_bias_, trainable);
    resplit(down_bias_, trainable);
  }
  int64_t t = 0, f = 0;
  for (size_t i = 0; i < slot_.size(); ++i) slot_[i] = trainable[i] ? t++ : -(++f);
  positions_ = at::Tensor();
  ++*splits_;
}

void ExpertBank::resplit(Split& w, const std::vector<bool>& trainable) {
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> rows;  // trainable rows first: the bank's positions
  const auto held = static_cast<int64_t>(trainable.size());
  for (int64_t i = 0; i < held; ++i)
    if (trainable[i]) rows.push_back(row_value(w, first_ + i));
  const int64_t T = static_cast<int64_t>(rows.size());
  for (int64_t i = 0; i < held; ++i)
    if (!trainable[i]) rows.push_back(row_value(w, first_ + i));
  const auto joined = at::stack(rows);
  w.trainable.mutable_grad() = at::Tensor();  // a gradient of the old shape would be meaningless
  w.trainable.set_data(joined.narrow(0, 0, T));
  w.frozen.set_data(joined.narrow(0, T, joined.size(0) - T));
}

std::vector<int64_t> ExpertBank::trainable_experts() const {
  std::vector<int64_t> out;
  for (size_t i = 0; i < slot_.size(); ++i)
    if (slot_[i] >= 0) out.push_back(first_ + static_cast<int64_t>(i));
  return out;
}

std::vector<int64_t> ExpertBank::trainable_rows_per_rank() const {
  const int W = group_ ? group_->world_size() : 1;
  const int64_t held = held_experts();
  std::vector<int64_t> rows(static_cast<size_t>(W), 0);
  for (int64_t e : all_trainable_) ++rows[static_cast<size_t>(e / held)];
  return rows;
}

bool ExpertBank::held_elsewhere(const std::string& key) const { return elsewhere_.count(key) != 0; }

CheckpointBindings ExpertBank::bindings() const {
  return spec_.layout == ExpertCheckpointLayout::PerExpert ? per_expert_bindings() : fused_bindings();
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
  for (int64_t e = first_; e < first_ + held_experts(); ++e) {
    const auto gu = row(gate_up_, e);
    const auto dn = row(down_, e);
    const int64_t r = gu.index;
    const int64_t up_offset = spec_.gated() ? I : 0;  // gate rows first, where there is a gate
    if (spec_.gated()) {
      out.emplace_back(format_pattern(gate_pattern_, layer_, e), gu.tensor,
                       guarded([r, I](const at::Tensor& t) { return t[r].narrow(0, 0, I); }));
    }
    out.emplace_back(format_pattern(up_pattern_, layer_, e), gu.tensor,
                     guarded([r, I, up_offset](const at::Tensor& t) { return t[r].narrow(0, up_offset, I); }));
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
    const auto as_stored = guarded([r](const at::Tensor& t) { return t[r]; });
    if (spec_.layout == ExpertCheckpointLayout::Fused) {
      gate_up.push_back({row(gate_up_, e).tensor, as_stored, {}});
      down.push_back({row(down_, e).tensor, as_stored, {}});
      if (spec_.bias) {
        gate_up_bias.push_back({row(gate_up_bias_, e).tensor, as_stored, {}});
        down_bias.push_back({row(down_bias_, e).tensor, as_stored, {}});
      }
      continue;
    }
    // Checkpoint [H, 2I] with column 2j = gate j and 2j+1 = up j is our [2I, H] row seen as [2, I, H] -> [H, I, 2].
    gate_up.push_back({row(gate_up_, e).tensor,
                       guarded([r, I, H](const at::Tensor& t) { return t[r].view({2, I, H}).permute({2, 1, 0}); }),
                       {H, 2 * I}});
    down.push_back({row(down_, e).tensor, guarded([r](const at::Tensor& t) { return t[r].t(); }), {}});  // [I, H]
    if (spec_.bias) {
      gate_up_bias.push_back({row(gate_up_bias_, e).tensor,
                              guarded([r, I](const at::Tensor& t) { return t[r].view({2, I}).t(); }), {2 * I}});
      down_bias.push_back({row(down_bias_, e).tensor, as_stored, {}});
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

CheckpointBindings bindings_with_expert_banks(const torch::nn::Module& model) {
  CheckpointBindings out;
  std::vector<std::string> bank_prefixes;
  for (const auto& item : model.named_modules()) {
    if (const auto* bank = dynamic_cast<const ExpertBank*>(item.value().get())) {
      bank_prefixes.push_back(item.key() + ".");
      for (auto& b : bank->bindings()) out.push_back(std::move(b));
    }
  }
  auto in_bank = [&](const std::string& name) {
    for (const auto& prefix : bank_prefixes)
      if (name.compare(0, prefix.size(), prefix) == 0) return true;
    return false;
  };
  for (const auto& item : model.named_parameters()) {
    if (!in_bank(item.key())) out.emplace_back(item.key(), item.value());
  }
  for (const auto& item : model.named_buffers()) {
    if (!in_bank(item.key())) out.emplace_back(item.key(), item.value());
  }
  return out;
}

}  // namespace esft::nn
