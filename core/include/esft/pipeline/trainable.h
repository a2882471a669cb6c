#pragma once
// Which tensors train under an expert config (shared/spec/ESFT.md §3), as one rule that serves both the trainer
// (freezing a built model) and `params` (naming the tensors of a checkpoint without building the model):
//   - routed experts: the experts the config selects in their layer;
//   - shared experts (and qwen2_moe's shared-expert gate): with `shared_experts`;
//   - glm4_moe's e_score_correction_bias: never (it is a statistic, not a weight);
//   - everything else (embeddings, attention, norms, routers, dense MLPs, lm_head): with `non_expert_modules`.
// A fused checkpoint tensor (gpt-oss keeps all experts of a layer in one tensor) trains in slices along dim 0;
// an adapter stores such a slice as `{key}#{i}` (adapter_slice_name).
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "esft/io/safetensors.h"
#include "esft/model/moe_causal_lm.h"
#include "esft/model/param_naming.h"
#include "esft/pipeline/expert_selection.h"

namespace esft::pipeline {

// MoE layer (Hugging Face decoder index) -> its number of routed experts.
using MoELayerSizes = std::map<int, int64_t>;
MoELayerSizes moe_layer_sizes(MoECausalLM& model);

// Throws esft::Error for a config layer that is not an MoE layer, an MoE layer the config leaves out, an expert
// id outside [0, E) or one listed twice.
void check_expert_config(const ExpertConfig& config, const MoELayerSizes& layers);

bool is_routed_expert_role(Role role);

// What of one checkpoint tensor trains: all of it, or (fused expert tensors) the slices of some experts.
struct TensorTraining {
  bool whole = false;
  std::vector<int64_t> slices;  // dim-0 indices of a fused tensor, ascending
  bool any() const { return whole || !slices.empty(); }
};
// `match` is the naming table's match of the tensor's key; `fused_experts` its dim-0 size when the role is a fused
// expert tensor (all slices train when every expert of the layer is selected).
TensorTraining tensor_training(const NameMatch& match, const ExpertConfig& config, int64_t fused_experts = 0);

// Freezes `model` as the config says: checks the config, keeps the selected experts of each MoE layer trainable
// (ExpertBank::set_trainable_experts) and sets requires_grad on every other parameter by its role. Checkpoint
// bindings and optimizer state taken before are invalid afterwards.
void apply_expert_config(MoECausalLM& model, const ParamNaming& naming, const ExpertConfig& config);

// The expert config that trains everything: every expert of every MoE layer, the shared experts and every other
// module (full fine-tuning, training from scratch).
ExpertConfig everything_config(MoECausalLM& model);

// Freezes everything but the tensors of `roles` (routed expert roles excepted: every expert moves to buffers), e.g.
// {Role::ROUTER} for Select-MoE's router pre-training.
void train_only_roles(MoECausalLM& model, const ParamNaming& naming, const std::vector<Role>& roles);

// The parameters that train (requires_grad, not empty), under their module names.
std::vector<std::pair<std::string, at::Tensor>> trainable_parameters(MoECausalLM& model);

// The trained tensors under checkpoint names (whole, or `{key}#{i}` slices), copied to contiguous CPU tensors.
NamedTensors trained_checkpoint_tensors(MoECausalLM& model);

// Copies tensors saved by trained_checkpoint_tensors (an adapter's, under checkpoint names) into the model. Throws
// esft::Error, naming `source`, for a name the model does not bind or a shape that differs. Returns how many
// tensors it copied.
int64_t load_trained_tensors(MoECausalLM& model, const NamedTensors& tensors, const std::string& source);

}  // namespace esft::pipeline
