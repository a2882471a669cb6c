#pragma once
// The model configurations the benchmark programs share: one larger random configuration per family (about a
// tenth of a Qwen3-30B-A3B layer in width, four layers deep), with random weights, plus the machine's name.
#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <string>
#include <vector>

#include "esft/model/moe_causal_lm.h"

namespace esft::bench {

using json = nlohmann::json;

// The shared sizes: about a tenth of a Qwen3-30B-A3B layer in width, four layers deep.
inline json base_config() {
  return {{"hidden_size", 512},          {"num_hidden_layers", 4},    {"num_attention_heads", 8},
          {"num_key_value_heads", 2},    {"head_dim", 64},            {"vocab_size", 8192},
          {"num_experts_per_tok", 4},    {"moe_intermediate_size", 256}, {"intermediate_size", 1024},
          {"rms_norm_eps", 1e-6},        {"max_position_embeddings", 4096}, {"hidden_act", "silu"},
          {"rope_parameters", {{"rope_type", "default"}, {"rope_theta", 10000.0}}}, {"dtype", "float32"}};
}

struct FamilyCase {
  std::string plugin;
  std::string note;  // what the family adds to the shared sizes
  json config;
};

inline std::vector<FamilyCase> family_cases() {
  std::vector<FamilyCase> out;
  auto with = [](json extra) {
    auto c = base_config();
    c.update(extra);
    return c;
  };
  out.push_back({"qwen3_moe", "64 experts, q/k norm",
                 with({{"model_type", "qwen3_moe"}, {"num_experts", 64}, {"norm_topk_prob", true}})});
  out.push_back({"qwen2_moe", "64 experts + gated shared expert 1024",
                 with({{"model_type", "qwen2_moe"}, {"num_experts", 64}, {"shared_expert_intermediate_size", 1024}})});
  out.push_back({"olmoe_select", "64 experts, full-width q/k norm",
                 with({{"model_type", "olmoe"}, {"num_experts", 64}, {"intermediate_size", 256}})});
  out.push_back({"glm4_moe", "64 experts in 8 groups, shared 256, layer 0 dense",
                 with({{"model_type", "glm4_moe"}, {"n_routed_experts", 64}, {"n_group", 8}, {"topk_group", 4},
                       {"n_shared_experts", 1}, {"first_k_dense_replace", 1}, {"routed_scaling_factor", 2.5},
                       {"use_qk_norm", true}, {"attention_bias", true}, {"partial_rotary_factor", 0.5}})});
  out.push_back({"gpt_oss", "64 experts (I=256, biases), sinks, window 128, YaRN",
                 with({{"model_type", "gpt_oss"}, {"num_local_experts", 64}, {"intermediate_size", 256},
                       {"sliding_window", 128}, {"attention_bias", true},
                       {"rope_parameters", {{"rope_type", "yarn"}, {"rope_theta", 150000.0}, {"factor", 32.0},
                                            {"original_max_position_embeddings", 4096}, {"truncate", false}}}})});
  return out;
}

// Qwen3-30B-A3B's own sizes (its config.json on the Hub), four layers deep instead of 48: the GPU geometry of the
// performance goals (`esft-bench-steps --geometry qwen3-30b-a3b`).
inline FamilyCase qwen3_30b_a3b_case() {
  const json config = {{"model_type", "qwen3_moe"},      {"hidden_size", 2048},        {"num_hidden_layers", 4},
                       {"num_attention_heads", 32},      {"num_key_value_heads", 4},   {"head_dim", 128},
                       {"vocab_size", 151936},           {"num_experts", 128},         {"num_experts_per_tok", 8},
                       {"moe_intermediate_size", 768},   {"intermediate_size", 6144},  {"norm_topk_prob", true},
                       {"rms_norm_eps", 1e-6},           {"max_position_embeddings", 40960}, {"hidden_act", "silu"},
                       {"rope_parameters", {{"rope_type", "default"}, {"rope_theta", 1000000.0}}},
                       {"dtype", "bfloat16"}};
  return {"qwen3_moe", "Qwen3-30B-A3B sizes, 4 of its 48 layers", config};
}

inline std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown CPU";
}

inline void randomize(esft::MoECausalLM& model) {
  at::NoGradGuard no_grad;
  for (const auto& b : model.checkpoint_bindings()) {
    const bool norm = b.key().find("norm") != std::string::npos;
    auto values = norm ? at::ones(b.shape()) : at::randn(b.shape()) * 0.02;
    b.assign(values);
  }
}

}  // namespace esft::bench
