#pragma once
// config.json -> ModelConfig. Real Hub configs and transformers-v5 configs spell some keys differently
// (`rope_theta` vs `rope_parameters.rope_theta`, `num_experts` vs `num_local_experts`, `rope_scaling` vs
// `rope_parameters`); every accessor here accepts all spellings, so families never see the difference.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "esft/io/json_file.h"

namespace esft {

struct RopeConfig {
  std::string type = "default";  // rope_type ("default", "yarn", ...); families refuse types they do not implement
  double theta = 10000.0;
  double partial_rotary_factor = 1.0;
  nlohmann::json parameters = nlohmann::json::object();  // the whole rope_parameters / rope_scaling object
};

class ModelConfig {
 public:
  // Reads DIR/config.json. Throws esft::Error for a missing file, malformed JSON, or a missing model_type.
  static ModelConfig load(const std::filesystem::path& model_dir);
  // `source` names where the JSON came from, for error messages.
  static ModelConfig from_json(nlohmann::json raw, std::string source);

  nlohmann::json raw;  // kept whole, for round-tripping into merged checkpoints
  std::string source;  // path of config.json (or a description)
  std::filesystem::path model_dir;

  std::string model_type;
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;  // defaults to num_attention_heads
  int64_t head_dim = 0;             // explicit `head_dim`, else hidden_size / num_attention_heads
  int64_t intermediate_size = 0;    // dense MLP size (0 when absent)
  int64_t moe_intermediate_size = 0;
  int64_t num_experts = 0;          // num_experts | num_local_experts | n_routed_experts
  int64_t num_experts_per_tok = 0;  // num_experts_per_tok | experts_per_token
  double rms_norm_eps = 1e-6;
  bool tie_word_embeddings = false;
  bool norm_topk_prob = false;
  double router_aux_loss_coef = 0.0;
  int64_t max_position_embeddings = 0;
  std::vector<int64_t> eos_token_ids;  // eos_token_id may be an int, a list, or null
  std::optional<int64_t> bos_token_id;
  RopeConfig rope;

  bool has(const std::string& key) const { return raw.contains(key) && !raw.at(key).is_null(); }
  // Typed access to a family-specific key; a present key of the wrong type is an error naming key and file.
  template <typename T>
  T get(const std::string& key, T fallback) const {
    if (!has(key)) return fallback;
    return convert<T>(key);
  }
  template <typename T>
  T require(const std::string& key) const {
    if (!has(key)) missing(key);
    return convert<T>(key);
  }

 private:
  template <typename T>
  T convert(const std::string& key) const {
    if (auto value = json_get<T>(raw.at(key))) return *value;  // integers exactly: 2.5 is not a layer count
    wrong_type(key);
  }
  [[noreturn]] void missing(const std::string& key) const;
  [[noreturn]] void wrong_type(const std::string& key) const;
};

}  // namespace esft
