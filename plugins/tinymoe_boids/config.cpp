// config.json -> TinyMoESpec, with one clear error per value that cannot be built.
#include <algorithm>
#include <string>

#include "esft/error.h"
#include "tinymoe.h"

namespace tinymoe {

namespace {

[[noreturn]] void bad(const esft::ModelConfig& c, const std::string& what) {
  throw esft::Error(c.source + ": " + what);
}

// The limits every family applies (nn/decoder_config.cpp): sizes up to 2^24, depth up to 4096 blocks.
constexpr int64_t kMaxWidth = int64_t{1} << 24, kMaxLayers = 4096;

int64_t in_range(const esft::ModelConfig& c, const char* key, int64_t value, int64_t most) {
  if (value < 1 || value > most) {
    bad(c, std::string(key) + " must be in [1, " + std::to_string(most) + "], not " + std::to_string(value));
  }
  return value;
}
int64_t positive(const esft::ModelConfig& c, const char* key, int64_t value) { return in_range(c, key, value, kMaxWidth); }

// "all" | "none" | a block index | a list of block indices -> one flag per block.
std::vector<bool> moe_placement(const esft::ModelConfig& c, int64_t layers) {
  std::vector<bool> out(static_cast<size_t>(layers), false);
  const auto placement = c.has("moe_layers") ? c.raw.at("moe_layers") : nlohmann::json("all");
  auto index = [&](const nlohmann::json& v) {
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= layers) {
      bad(c, "moe_layers names block " + v.dump() + ", but the model has blocks 0.." + std::to_string(layers - 1));
    }
    out[static_cast<size_t>(v.get<int64_t>())] = true;
  };
  if (placement == "all") out.assign(out.size(), true);
  else if (placement == "none") {
  } else if (placement.is_number_integer()) index(placement);
  else if (placement.is_array() && !placement.empty()) {
    for (const auto& v : placement) index(v);
  } else {
    bad(c, "moe_layers must be \"all\", \"none\", a block index or a non-empty list of them, not " + placement.dump());
  }
  return out;
}

}  // namespace

TinyMoESpec read_spec(const esft::ModelConfig& c) {
  TinyMoESpec s;
  s.vocab_size = positive(c, "vocab_size", c.vocab_size);
  s.hidden = positive(c, "hidden_size", c.hidden_size);
  s.layers = in_range(c, "num_hidden_layers", c.num_hidden_layers, kMaxLayers);
  s.heads = positive(c, "num_attention_heads", c.num_attention_heads);
  if (s.hidden % s.heads != 0) {
    bad(c, "hidden_size " + std::to_string(s.hidden) + " is not a multiple of num_attention_heads " + std::to_string(s.heads));
  }
  s.ffn = positive(c, "intermediate_size", c.intermediate_size > 0 ? c.intermediate_size : 4 * s.hidden);
  s.max_positions = positive(c, "max_position_embeddings", c.max_position_embeddings);
  s.norm_eps = c.get<double>("layer_norm_eps", 1e-5);
  s.tie_word_embeddings = c.get<bool>("tie_word_embeddings", true);
  s.moe_layers = moe_placement(c, s.layers);
  s.dropout = c.get<double>("dropout", 0.0);
  if (!(s.dropout >= 0 && s.dropout < 1)) bad(c, "dropout must be in [0, 1), not " + c.raw.at("dropout").dump());
  const bool any_moe = std::find(s.moe_layers.begin(), s.moe_layers.end(), true) != s.moe_layers.end();
  if (any_moe) {
    s.router.num_experts = positive(c, "num_experts", c.num_experts);
    s.router.top_k = c.get<int64_t>("num_experts_per_tok", 1);
    if (s.router.top_k < 1 || s.router.top_k > s.router.num_experts) {
      bad(c, "num_experts_per_tok " + std::to_string(s.router.top_k) + " is outside [1, " +
                 std::to_string(s.router.num_experts) + "] (num_experts)");
    }
    if (c.has("capacity_factor")) {
      s.router.capacity_factor = c.require<double>("capacity_factor");
      if (!(s.router.capacity_factor > 0)) {
        bad(c, "capacity_factor must be > 0 (leave it out for no limit), not " + c.raw.at("capacity_factor").dump());
      }
    }
    s.router.jitter = c.get<double>("router_jitter", 0.0);
    if (!(s.router.jitter >= 0)) bad(c, "router_jitter must be >= 0, not " + c.raw.at("router_jitter").dump());
  }
  return s;
}

}  // namespace tinymoe
