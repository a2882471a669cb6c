#pragma once
// The routed experts of one MoE layer, fused: gate_up [E, 2I, H] (gate rows first, then up rows; [E, I, H] of up
// rows alone for an ungated activation), down [E, H, I] and, for families with expert biases (gpt-oss, tinymoe),
// gate_up_bias [E, 2I] and down_bias [E, H]. Tokens are sorted by
// expert once and each expert runs one matrix product per projection.
//
// The checkpoint layout is part of the spec and the names come from the naming table: per-expert tensors
// (`experts.{expert}.gate_proj.weight`, most families) bind to row slices; gpt-oss' fused tensors
// (`experts.gate_up_proj [E, H, 2I]` with gate and up interleaved column by column, `experts.down_proj [E, I, H]`)
// bind as stacked strided views. The math never depends on the layout.
//
// ESFT freezing splits the bank: the rows of trainable experts live in parameters (`gate_up`, `down`, ...), the
// rest in buffers (`frozen_gate_up`, ...) that never get a gradient or optimizer state. Both halves are views of
// one tensor per weight, trainable rows first (the bank's positions), so a kernel can read the whole bank at once.
// Backward through a frozen expert computes only the input gradient; the trainable experts' gradients are written
// straight into one tensor (src/nn/expert_kernels.h). A fresh bank has every expert trainable.
//
// Under expert parallelism (expert_parallel.h) a bank holds one rank's contiguous block of experts: its tensors
// have that block's rows, its bindings name those experts alone, and forward sends each pair to its expert's rank.
#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>

#include <functional>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include "esft/dist/communicator.h"
#include "esft/model/checkpoint_binding.h"
#include "esft/model/param_naming.h"
#include "esft/nn/lora.h"

namespace esft::nn {

enum class ExpertCheckpointLayout {
  PerExpert,         // EXPERT_GATE, EXPERT_UP, EXPERT_DOWN per expert ({expert} in the names), [out, in] each
  FusedInterleaved,  // gpt-oss: EXPERT_GATE_UP [E, H, 2I] (gate = even columns), EXPERT_DOWN [E, I, H], biases
  Fused,             // the bank as it is in memory: EXPERT_GATE_UP [E, W, H] (W = first_width()), EXPERT_DOWN
                     // [E, H, I], biases [E, W] and [E, H] (tinymoe, whose checkpoints esft writes itself)
};

enum class ExpertActivation {
  SiLU,           // silu(gate) * up
  ClampedSwiGLU,  // gpt-oss: g = min(gate, limit); (clamp(up, -limit, limit) + 1) * g * sigmoid(alpha * g)
  PlainSiLU,      // silu(up), no gate: a GPT-style FFN (tinymoe); the first projection is `up` alone
};

// How the experts' matrix products run. Loop: one product per expert, the experts in parallel on the CPU; it needs
// the token counts on the host, one synchronisation per layer on a GPU. Grouped: one at::_grouped_mm per projection
// over all experts, nothing synchronised; it needs every weight row to be a multiple of 16 bytes (hidden and
// intermediate sizes multiples of 8 in bf16). Auto: Grouped on CUDA in bf16 where the sizes allow it, Loop
// elsewhere (on the CPU the loop is faster). Both give the same numbers within the parity tolerances, and the parity
// tests run both. Process-wide; the environment variable ESFT_EXPERTS=loop|grouped overrides Auto at start-up.
enum class ExpertKernel { Auto, Loop, Grouped };
void set_expert_kernel(ExpertKernel kernel);
ExpertKernel expert_kernel();

struct ExpertBankSpec {
  int64_t num_experts = 0;
  int64_t hidden = 0;
  int64_t intermediate = 0;
  bool bias = false;  // biases on gate_up and down (fused layouts only)
  ExpertCheckpointLayout layout = ExpertCheckpointLayout::PerExpert;
  ExpertActivation activation = ExpertActivation::SiLU;
  double swiglu_limit = 7.0;    // ClampedSwiGLU only
  double swiglu_alpha = 1.702;  // ClampedSwiGLU only

  bool gated() const { return activation != ExpertActivation::PlainSiLU; }
  // Rows of the first projection (`gate_up`): gate then up (2I) for gated activations, up alone (I) otherwise.
  int64_t first_width() const { return gated() ? 2 * intermediate : intermediate; }
};

class ExpertBank : public torch::nn::Module {
 public:
  // `naming` supplies the checkpoint names of layer `layer` for the spec's layout. Throws esft::Error when the
  // table lacks a role the layout needs, or its patterns disagree with the layout ({expert} present or not). Inside
  // an ExpertParallelScope the bank holds its rank's block of experts; it throws esft::Error when the experts do not
  // divide evenly over the ranks or the layout is fused.
  ExpertBank(const ExpertBankSpec& spec, int layer, const ParamNaming& naming, const at::TensorOptions& options);

  // x [N, H]; idx, weight [N, k] -> sum_k weight * expert_idx(x), [N, H].
  at::Tensor forward(const at::Tensor& x, const at::Tensor& idx, const at::Tensor& weight) const;
  // The same over explicit (token, expert, weight) pairs, flat [P] each: tokens may have fewer pairs than others
  // (Select-MoE's slots on trash cans are left out).
  at::Tensor forward_pairs(const at::Tensor& x, const at::Tensor& token, const at::Tensor& expert,
                           const at::Tensor& weight) const;

  // Keeps the given experts trainable and freezes the others (values unchanged). Throws esft::Error for an id
  // outside [0, E) or a repeated id. Under expert parallelism every rank passes the whole list; each keeps its own.
  void set_trainable_experts(const std::vector<int64_t>& experts);
  // The trainable experts this bank holds (layer-wide ids, ascending).
  std::vector<int64_t> trainable_experts() const;

  // Expert parallelism: the group the layer's experts are spread over (null when this bank holds them all), the
  // experts held here ([first_expert(), first_expert() + held_experts())), and each rank's number of trainable
  // experts: the rows of the trainable tensors, which in rank order make the one-process tensors.
  dist::Communicator* expert_group() const { return group_; }
  int64_t first_expert() const { return first_; }
  int64_t held_experts() const { return static_cast<int64_t>(slot_.size()); }
  std::vector<int64_t> trainable_rows_per_rank() const;
  // Whether `key` is a checkpoint tensor of an expert of this layer that another rank holds (loading skips it).
  bool held_elsewhere(const std::string& key) const;

  // Checkpoint bindings in the spec's layout: three per expert, or one stacked binding per fused tensor whose parts
  // are the experts in order. set_trainable_experts moves rows between tensors, so it invalidates earlier bindings
  // (using one then throws esft::Error) and any optimizer state of the bank's parameters: take both afresh.
  CheckpointBindings bindings() const;
  const ExpertBankSpec& spec() const { return spec_; }

  // LoRA on the bank's weights, one pair per expert in PEFT's layout for 3-D parameters (lora.h): on gate_up
  // (module `gate_up_lora`, [E, first_width, H]) and/or down (`down_lora`, [E, H, I]). Every expert must be frozen
  // (the forward then reads whole + delta in expert order). Throws esft::Error for a trainable expert, a pair already
  // attached, dropout, or gpt-oss' interleaved layout (not built: its checkpoint interleaves gate and up columns).
  void add_lora(bool gate_up, bool down, const LoraSpec& spec);
  // Adds the deltas into the frozen weights and removes the pairs.
  void fold_lora();
  std::shared_ptr<LoraPair> gate_up_lora, down_lora;  // null unless attached

 private:
  // One bank tensor: rows of trainable experts (a parameter) and of frozen experts (a buffer). The tensor handles
  // stay registered for the module's life: re-splitting and Module::to() change their data in place (set_data).
  struct Split {
    at::Tensor trainable;
    at::Tensor frozen;
  };
  struct Row {
    const at::Tensor& tensor;  // the Split half holding the expert
    int64_t index;             // its row there
  };
  Row row(const Split& w, int64_t expert) const;
  // The whole tensor of `w` [E, ...] in position order, a view of both halves' storage. Packs the halves into one
  // tensor again if something gave them separate storage (Module::to does).
  at::Tensor whole(const Split& w) const;
  // Each expert's bank position on `device` ([E] int64; rows [0, T) of the whole tensors are trainable).
  const at::Tensor& positions_on(const at::Device& device) const;
  bool use_grouped_kernel(const at::Tensor& x) const;
  // The experts' outputs (before the routing weights) for rows `xs` sorted by bank position `sorted_position`.
  at::Tensor sorted_outputs(const at::Tensor& xs, const at::Tensor& sorted_position) const;
  // forward_pairs under expert parallelism: pairs to their experts' ranks and back.
  at::Tensor exchanged_forward(const at::Tensor& x, const at::Tensor& token, const at::Tensor& expert,
                               const at::Tensor& weight) const;
  at::Tensor row_value(const Split& w, int64_t expert) const;
  Split make_split(const std::string& name, std::vector<int64_t> row_shape, const at::TensorOptions& options);
  void resplit(Split& w, const std::vector<bool>& trainable);
  CheckpointBindings per_expert_bindings() const;
  CheckpointBindings fused_bindings() const;
  // Wraps a row selector so that it throws once the bank has been re-split since the binding was made.
  std::function<at::Tensor(const at::Tensor&)> guarded(std::function<at::Tensor(const at::Tensor&)> select) const;

  ExpertBankSpec spec_;
  int layer_;
  std::string gate_pattern_, up_pattern_, down_pattern_;  // per-expert layout
  std::string gate_up_pattern_, gate_up_bias_pattern_, down_bias_pattern_;  // fused layout (+ down_pattern_)
  // slot_[e - first_] >= 0: row of the trainable parameters; < 0: row -slot-1 of the frozen buffers.
  std::vector<int64_t> slot_;
  dist::Communicator* group_ = nullptr;  // expert parallelism's group, or null
  int64_t first_ = 0;                     // the first expert held here
  std::vector<int64_t> all_trainable_;    // the layer's trainable experts on every rank
  std::unordered_set<std::string> elsewhere_;  // checkpoint keys of the experts other ranks hold

  mutable at::Tensor positions_;  // slot_ as bank positions, on the device of the last forward
  std::shared_ptr<int64_t> splits_ = std::make_shared<int64_t>(0);  // how many times the bank was re-split
  Split gate_up_, down_, gate_up_bias_, down_bias_;  // the biases are empty Splits without spec.bias
};

// A whole model's bindings: every parameter and buffer under its module path, except those of expert banks, which
// bind through their bank (per expert, or as stacked fused tensors).
CheckpointBindings bindings_with_expert_banks(const torch::nn::Module& model);

}  // namespace esft::nn
