#include "esft/model/model_config.h"

#include <fstream>
#include <initializer_list>

#include "esft/error.h"
#include "esft/io/json_file.h"

namespace esft {

namespace {

// The first of several spellings of one key that is present (and not null) in `j`.
const nlohmann::json* first_of(const nlohmann::json& j, std::initializer_list<const char*> keys) {
  for (const char* k : keys) {
    auto it = j.find(k);
    if (it != j.end() && !it->is_null()) return &*it;
  }
  return nullptr;
}

template <typename T>
T read(const nlohmann::json& j, std::initializer_list<const char*> keys, T fallback, const std::string& source) {
  const auto* v = first_of(j, keys);
  if (!v) return fallback;
  if (auto value = json_get<T>(*v)) return *value;
  throw Error(std::string("config key '") + *keys.begin() + "' has the wrong type (" + source + ")");
}

}  // namespace

ModelConfig ModelConfig::load(const std::filesystem::path& model_dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(model_dir, ec)) throw Error("model directory not found: " + model_dir.string());
  const auto path = model_dir / "config.json";
  std::ifstream in(path);
  if (!in) throw Error("cannot read " + path.string() + ": no such file");
  nlohmann::json j;
  try {
    in >> j;
  } catch (const nlohmann::json::exception& e) {
    throw Error("malformed JSON in " + path.string() + ": " + e.what());
  }
  auto config = from_json(std::move(j), path.string());
  config.model_dir = model_dir;
  return config;
}

ModelConfig ModelConfig::from_json(nlohmann::json raw, std::string source) {
  if (!raw.is_object()) throw Error("config is not a JSON object (" + source + ")");
  ModelConfig c;
  c.raw = std::move(raw);
  c.source = std::move(source);
  const auto& j = c.raw;
  const auto& src = c.source;
  c.model_type = read<std::string>(j, {"model_type"}, "", src);
  if (c.model_type.empty()) throw Error("config.json has no model_type (" + src + ")");

  c.vocab_size = read<int64_t>(j, {"vocab_size"}, 0, src);
  c.hidden_size = read<int64_t>(j, {"hidden_size"}, 0, src);
  c.num_hidden_layers = read<int64_t>(j, {"num_hidden_layers"}, 0, src);
  c.num_attention_heads = read<int64_t>(j, {"num_attention_heads"}, 0, src);
  c.num_key_value_heads = read<int64_t>(j, {"num_key_value_heads"}, c.num_attention_heads, src);
  c.head_dim = read<int64_t>(j, {"head_dim"}, 0, src);
  if (c.head_dim == 0 && c.num_attention_heads > 0) c.head_dim = c.hidden_size / c.num_attention_heads;
  c.intermediate_size = read<int64_t>(j, {"intermediate_size"}, 0, src);
  c.moe_intermediate_size = read<int64_t>(j, {"moe_intermediate_size"}, 0, src);
  c.num_experts = read<int64_t>(j, {"num_experts", "num_local_experts", "n_routed_experts"}, 0, src);
  c.num_experts_per_tok = read<int64_t>(j, {"num_experts_per_tok", "experts_per_token"}, 0, src);
  c.rms_norm_eps = read<double>(j, {"rms_norm_eps"}, 1e-6, src);
  c.tie_word_embeddings = read<bool>(j, {"tie_word_embeddings"}, false, src);
  c.norm_topk_prob = read<bool>(j, {"norm_topk_prob"}, false, src);
  c.router_aux_loss_coef = read<double>(j, {"router_aux_loss_coef"}, 0.0, src);
  c.max_position_embeddings = read<int64_t>(j, {"max_position_embeddings"}, 0, src);
  if (const auto* bos = first_of(j, {"bos_token_id"})) c.bos_token_id = json_get<int64_t>(*bos);
  if (const auto* eos = first_of(j, {"eos_token_id"})) {
    if (eos->is_array()) {
      c.eos_token_ids = read<std::vector<int64_t>>(j, {"eos_token_id"}, {}, src);
    } else if (auto id = json_get<int64_t>(*eos)) {
      c.eos_token_ids.push_back(*id);
    }
  }

  // Rope settings: transformers v5 nests everything in `rope_parameters`; Hub configs have `rope_theta` at the top
  // level and scaling in `rope_scaling` (with `type` or `rope_type`).
  const auto* params = first_of(j, {"rope_parameters", "rope_scaling"});
  if (params && !params->is_object()) throw Error("config key 'rope_parameters' must be an object (" + src + ")");
  const nlohmann::json empty = nlohmann::json::object();
  const auto& rp = params ? *params : empty;
  c.rope.parameters = rp;
  c.rope.type = read<std::string>(rp, {"rope_type", "type"}, "default", src);
  c.rope.theta = read<double>(j, {"rope_theta"}, read<double>(rp, {"rope_theta"}, 10000.0, src), src);
  c.rope.partial_rotary_factor =
      read<double>(j, {"partial_rotary_factor"}, read<double>(rp, {"partial_rotary_factor"}, 1.0, src), src);
  return c;
}

void ModelConfig::missing(const std::string& key) const {
  throw Error("config key '" + key + "' is required for model_type '" + model_type + "' (" + source + ")");
}

void ModelConfig::wrong_type(const std::string& key) const {
  throw Error("config key '" + key + "' has the wrong type (" + source + ")");
}

}  // namespace esft
