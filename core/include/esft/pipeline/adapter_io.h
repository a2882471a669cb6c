#pragma once
// Writing an ESFT adapter from a trained model, and applying one to a freshly loaded base model (for eval and
// generation without a merge). The format is described in adapter_merge.h.
#include <nlohmann/json.hpp>

#include <filesystem>

#include "esft/model/moe_causal_lm.h"
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

// Checks that the adapter was trained on `base_dir` (config.json hash) and copies its tensors into `model`.
// Returns how many tensors it copied. Throws esft::Error for another base or a tensor the model lacks.
int64_t apply_adapter(MoECausalLM& model, const std::filesystem::path& adapter_dir,
                      const std::filesystem::path& base_dir);

}  // namespace esft::pipeline
