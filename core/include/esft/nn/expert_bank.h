#pragma once
// The routed experts of one MoE layer, fused: gate_up [E, 2I, H] (gate rows first, then up rows) and down [E, H, I],
// so tokens are sorted by expert once and each expert runs one matrix product per projection.
//
// ESFT freezing splits the bank: the rows of trainable experts live in parameters (`gate_up`, `down`), the rest in
// buffers (`frozen_gate_up`, `frozen_down`) that never get a gradient or optimizer state. Backward through a frozen
// expert computes only the input gradient. A fresh bank has every expert trainable.
#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>

#include <vector>

#include "esft/checkpoint_binding.h"
#include "esft/param_naming.h"

namespace esft::nn {

struct ExpertBankSpec {
  int64_t num_experts = 0;
  int64_t hidden = 0;
  int64_t intermediate = 0;
};

class ExpertBank : public torch::nn::Module {
 public:
  // `naming` supplies the per-expert checkpoint names of layer `layer` (EXPERT_GATE, EXPERT_UP, EXPERT_DOWN).
  ExpertBank(const ExpertBankSpec& spec, int layer, const ParamNaming& naming, const at::TensorOptions& options);

  // x [N, H]; idx, weight [N, k] -> sum_k weight * expert_idx(x), [N, H].
  at::Tensor forward(const at::Tensor& x, const at::Tensor& idx, const at::Tensor& weight) const;

  // Keeps the given experts trainable and freezes the others (values unchanged). Throws esft::Error for an id
  // outside [0, E) or a repeated id.
  void set_trainable_experts(const std::vector<int64_t>& experts);
  std::vector<int64_t> trainable_experts() const;

  at::Tensor gate_up(int64_t expert) const;  // [2I, H]
  at::Tensor down(int64_t expert) const;     // [H, I]
  CheckpointBindings bindings() const;
  const ExpertBankSpec& spec() const { return spec_; }

 private:
  // One fused weight: rows of trainable experts (a parameter) and of frozen experts (a buffer). The handles stay
  // valid for the module's life: re-splitting and Module::to() change their data in place (set_data).
  struct Split {
    at::Tensor trainable;
    at::Tensor frozen;
  };
  at::Tensor row(const Split& w, int64_t expert) const;
  void resplit(Split& w, const std::vector<bool>& trainable);

  ExpertBankSpec spec_;
  int layer_;
  std::string gate_pattern_, up_pattern_, down_pattern_;
  // slot_[e] >= 0: row of the trainable parameters; slot_[e] < 0: row -slot_[e]-1 of the frozen buffers.
  std::vector<int64_t> slot_;
  Split gate_up_, down_;
};

}  // namespace esft::nn
