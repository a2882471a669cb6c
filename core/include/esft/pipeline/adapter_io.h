#pragma once
// Writing an ESFT adapter from a trained model, and applying one (of esft's format or the ESFT reference's) to a
// freshly loaded base model, for eval and generation without a merge. The formats: adapter_folder.h.
#include <nlohmann/json.hpp>

#include <filesystem>

#include "esft/model/moe_causal_lm.h"
#include "esft/pipeline/adapter_folder.h"
#include "esft/pipeline/adapter_merge.h"
#include "esft/pipeline/expert_selection.h"

namespace esft::pipeline {

struct AdapterSummary {
  int64_t tensors = 0;
  uint64_t bytes = 0;  // tensor data in model.safetensors
};

// Writes `dir` (model.safetensors with the trained tensors, expert_config.json, esft_adapter.json with the
// manifest's fields plus `extra`) into a temporary sibling folder that replaces `dir` only when complete.
AdapterSummary save_adapter(MoECausalLM& model, const std::filesystem::path& dir, const AdapterManifest& manifest,
                            const ExpertConfig& config, const nlohmann::json& extra = nlohmann::json::object());
// The same from tensors already under checkpoint names (an adapter converted from another format).
AdapterSummary save_adapter_tensors(const NamedTensors& tensors, const std::filesystem::path& dir,
                                    const AdapterManifest& manifest, const ExpertConfig& config,
                                    const nlohmann::json& extra = nlohmann::json::object());

// The adapter's expert config against `model`: every layer one of its MoE layers, every expert one it has. Throws
// esft::Error naming the config file. Nothing to check for an adapter without an expert config (router adapters).
void check_adapter_experts(const AdapterFolder& adapter, MoECausalLM& model);

// Applies an adapter folder of either format (adapter_folder.h; open it before loading the model, to fail fast) to
// a freshly loaded base model: checks that it belongs on `base_dir` (esft: the config hash) and fits the model
// (check_adapter_experts), then copies its tensors in. Returns how many tensors it copied. Throws esft::Error for
// another base, experts the model lacks, or a tensor the model does not have or has in another shape.
int64_t apply_adapter(MoECausalLM& model, const AdapterFolder& adapter, const std::filesystem::path& base_dir);

}  // namespace esft::pipeline
