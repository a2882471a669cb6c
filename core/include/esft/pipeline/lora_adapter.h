#pragma once
// LoRA adapters in PEFT's format, so that PEFT, vLLM and the Hugging Face ecosystem load what `train --method
// lora` writes, and esft loads theirs:
//   adapter_config.json        peft_type LORA, r, lora_alpha, lora_dropout, use_rslora, target_modules (the adapted
//                              linear layers, by full module name), target_parameters (routers' `weight`, expert
//                              banks' `gate_up_proj` / `down_proj`), base_model_name_or_path;
//   adapter_model.safetensors  `base_model.model.<module>.lora_A.weight` [r, in] and `lora_B.weight` [out, r]. An
//                              expert bank's pairs (nn/lora.h for the layout) sit on `<bank>` and, where both of its
//                              tensors are adapted, gate_up_proj's one level down on `<bank>.base_layer` (PEFT nests
//                              one wrapper per parameter, the first parameter innermost).
// Module names are the model's own, which are transformers' (checkpoint keys come from them).
#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>
#include <vector>

#include "esft/io/safetensors.h"
#include "esft/model/moe_causal_lm.h"
#include "esft/nn/lora.h"

namespace esft::pipeline {

inline constexpr const char* kPeftConfigFile = "adapter_config.json";
inline constexpr const char* kPeftWeightsFile = "adapter_model.safetensors";
// What esft adds beside PEFT's files (PEFT warns about keys it does not know in its config): the method, family,
// base config hash, steps and settings of the run.
inline constexpr const char* kEsftLoraFile = "esft_lora.json";

// What `train --method lora` adapts. Each target is PEFT's kind of name: a module whose full name equals it or
// ends with "." + it; "all-linear" is every linear layer but lm_head. A name may pick
//   - linear layers (attention projections, shared experts, dense MLPs): LoRA on the input path;
//   - routers (`gate`, gpt-oss' `router`): LoRA on the router weight;
//   - expert banks (`experts`: both tensors; `experts.gate_up_proj` or `experts.down_proj`: one): one pair per
//     routed expert.
struct LoraConfig {
  nn::LoraSpec spec;
  std::vector<std::string> targets = {"all-linear"};

  nlohmann::json to_json() const;
};

// One adapted place in the model.
struct LoraTarget {
  enum class Kind { Linear, Router, ExpertGateUp, ExpertDown };
  Kind kind;
  std::string module;  // full module name (the bank's, for expert tensors)
};

// Freezes every parameter of `model` (experts included) and attaches a LoRA pair to every target of `config`, the
// only tensors that then train. "all-linear" passes over linear layers narrower than the rank, listing them in
// `skipped`. Throws esft::Error for a target that matches nothing, a rank < 1 or larger than a named target's
// dimensions, dropout with router or expert targets, or a model whose experts cannot take LoRA.
std::vector<LoraTarget> attach_lora(MoECausalLM& model, const LoraConfig& config,
                                    std::vector<std::string>* skipped = nullptr);

// The attached pairs under PEFT's key names (contiguous CPU copies).
NamedTensors peft_lora_tensors(MoECausalLM& model, const std::vector<LoraTarget>& targets);

// Writes `dir` (adapter_config.json, adapter_model.safetensors) into a temporary sibling that replaces it when
// complete. `base_model` goes to base_model_name_or_path; `extra` to esft_lora.json.
// Returns the tensor bytes written.
uint64_t save_peft_lora_adapter(MoECausalLM& model, const std::vector<LoraTarget>& targets, const LoraConfig& config,
                                const std::filesystem::path& dir, const std::string& base_model,
                                const nlohmann::json& extra = nlohmann::json::object());

// True when `dir` holds a PEFT adapter (adapter_config.json).
bool is_peft_adapter(const std::filesystem::path& dir);

// A PEFT LoRA folder as read: its config and its tensors by key.
struct PeftLoraAdapter {
  std::filesystem::path dir;
  nlohmann::json config;
  nlohmann::json esft = nlohmann::json::object();  // esft_lora.json, when the adapter is esft's
  LoraConfig lora;  // spec from the config; targets: target_modules, then target_parameters
  std::vector<std::string> target_parameters;  // as written: which expert tensors a bank's nested pairs adapt
  NamedTensors tensors;
  // Throws esft::Error for a folder that is not a PEFT LoRA adapter (peft_type), or that uses what esft does not
  // build (DoRA, rank_pattern / alpha_pattern, LoRA biases, fan_in_fan_out, modules_to_save).
  static PeftLoraAdapter open(const std::filesystem::path& dir);
};

// Adds each pair's scaling * B A into the weight it adapts (the model is then the merged model). Throws esft::Error
// naming the key for a tensor whose module the model lacks or whose shape differs. Returns the number of adapted
// places.
int64_t fold_peft_lora_adapter(MoECausalLM& model, const PeftLoraAdapter& adapter);

// Folds every attached pair into its weight and removes it (after training: the model is then a plain one again).
void fold_attached_lora(MoECausalLM& model);

}  // namespace esft::pipeline
