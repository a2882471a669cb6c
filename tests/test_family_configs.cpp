// Every family refuses config values it does not implement, naming the key and the file, instead of building a
// model that runs wrong math. Models are built on the meta device: only the config reading is exercised.
#include "doctest_torch.h"

#include <fstream>
#include <functional>

#include "esft/error.h"
#include "esft/model/model_config.h"
#include "plugin_loader.h"

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

struct FamilyCase {
  const char* plugin;
  const char* fixture;
};
const FamilyCase kFamilies[] = {{"qwen3_moe", "qwen3_moe"}, {"qwen2_moe", "qwen2_moe"}, {"olmoe_select", "olmoe"},
                                {"glm4_moe", "glm4_moe"},   {"gpt_oss", "gpt_oss"},     {"deepseek_v2", "deepseek_v2"}};

json fixture_config(const std::string& fixture) {
  std::ifstream in(fs::path(ESFT_TEST_DATA_DIR) / "hf" / fixture / "model" / "config.json");
  return json::parse(in);
}

// Builds the family's model from the fixture config after `edit`; returns the error message ("" if none).
std::string build_error(const std::string& plugin, const std::string& fixture, const std::function<void(json&)>& edit) {
  esft::host::PluginLoader loader(std::vector<fs::path>{ESFT_BIN_DIR});
  auto family = loader.load(plugin);
  auto raw = fixture_config(fixture);
  edit(raw);
  try {
    auto config = esft::ModelConfig::from_json(raw, "edited/config.json");
    family->create(config, c10::Device(c10::kMeta), c10::kFloat);
  } catch (const esft::Error& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& text, const std::string& needle) { return text.find(needle) != std::string::npos; }

}  // namespace

TEST_CASE("family configs: the fixture configs build") {
  for (const auto& f : kFamilies) CHECK_MESSAGE(build_error(f.plugin, f.fixture, [](json&) {}) == "", f.plugin);
}

TEST_CASE("family configs: an unknown rope_type is refused by every family") {
  for (const auto& f : kFamilies) {
    const auto error = build_error(f.plugin, f.fixture, [](json& c) { c["rope_parameters"]["rope_type"] = "longrope"; });
    CHECK_MESSAGE(contains(error, "rope_type 'longrope'"), f.plugin, ": ", error);
    CHECK_MESSAGE(contains(error, "edited/config.json"), f.plugin, ": ", error);
  }
}

TEST_CASE("family configs: an activation other than silu is refused by every family") {
  for (const auto& f : kFamilies) {
    const auto error = build_error(f.plugin, f.fixture, [](json& c) { c["hidden_act"] = "gelu"; });
    CHECK_MESSAGE(contains(error, "hidden_act 'gelu'"), f.plugin, ": ", error);
  }
}

TEST_CASE("family configs: glm4_moe refuses expert groups that do not fit") {
  CHECK(contains(build_error("glm4_moe", "glm4_moe", [](json& c) { c["n_group"] = 3; }), "n_group 3"));
  CHECK(contains(build_error("glm4_moe", "glm4_moe", [](json& c) { c["topk_group"] = 3; }), "topk_group 3"));
  CHECK(contains(build_error("glm4_moe", "glm4_moe", [](json& c) { c["first_k_dense_replace"] = -1; }),
                 "first_k_dense_replace"));
}

TEST_CASE("family configs: deepseek_v2 refuses routers, attention and MLPs it does not implement") {
  const auto error = [](const std::function<void(json&)>& edit) { return build_error("deepseek_v2", "deepseek_v2", edit); };
  CHECK(contains(error([](json& c) { c["topk_method"] = "noaux_tc"; }), "topk_method 'noaux_tc'"));
  CHECK(contains(error([](json& c) { c["scoring_func"] = "sigmoid"; }), "scoring_func 'sigmoid'"));
  CHECK(contains(error([](json& c) { c["num_key_value_heads"] = 2; }), "num_key_value_heads"));
  CHECK(contains(error([](json& c) { c["mlp_bias"] = true; }), "mlp_bias"));
  CHECK(contains(error([](json& c) { c["qk_rope_head_dim"] = 7; }), "qk_rope_head_dim"));
  CHECK(contains(error([](json& c) { c["kv_lora_rank"] = 0; }), "kv_lora_rank"));
  CHECK(contains(error([](json& c) { c.erase("v_head_dim"); }), "v_head_dim"));
  CHECK(contains(error([](json& c) { c["moe_layer_freq"] = 0; }), "moe_layer_freq"));
  // group_limited_greedy needs groups that divide the experts and hold the top-k.
  CHECK(contains(error([](json& c) { c["topk_method"] = "group_limited_greedy"; c["n_group"] = 3; }), "n_group 3"));
  CHECK(contains(error([](json& c) { c["topk_method"] = "group_limited_greedy"; c["n_group"] = 8; c["topk_group"] = 1; }),
                 "topk_group 1"));
  CHECK(contains(error([](json& c) { c["topk_method"] = "noaux_tc"; }), "edited/config.json"));
}

TEST_CASE("family configs: gpt_oss refuses unknown layer types and a missing window") {
  CHECK(contains(build_error("gpt_oss", "gpt_oss",
                             [](json& c) { c["layer_types"] = {"sliding_attention", "chunked_attention"}; }),
                 "layer type 'chunked_attention'"));
  CHECK(contains(build_error("gpt_oss", "gpt_oss", [](json& c) { c["layer_types"] = {"full_attention"}; }),
                 "layer_types has 1 entries for 2 layers"));
  CHECK(contains(build_error("gpt_oss", "gpt_oss", [](json& c) { c.erase("sliding_window"); }), "sliding_window"));
  CHECK(contains(build_error("gpt_oss", "gpt_oss", [](json& c) { c["rope_parameters"]["truncate"] = "no"; }),
                 "truncate"));
}

TEST_CASE("family configs: qwen families refuse sliding-window attention") {
  for (const char* plugin : {"qwen2_moe", "qwen3_moe"}) {
    CHECK(contains(build_error(plugin, plugin, [](json& c) { c["use_sliding_window"] = true; }), "use_sliding_window"));
  }
}

TEST_CASE("family configs: sizes no model can have are refused by every family, naming the key") {
  // Before, a negative size reached LibTorch (at::empty: "negative dimension") and a negative layer count became a
  // 2^64-entry vector; check_decoder_spec now refuses them for every family, before anything is built.
  const std::pair<const char*, json> edits[] = {
      {"hidden_size", -64},        {"hidden_size", 0},           {"vocab_size", 0},
      {"num_hidden_layers", 0},    {"num_hidden_layers", -3},    {"num_hidden_layers", 100000},
      {"num_attention_heads", 0},  {"num_experts_per_tok", 99},  {"num_experts_per_tok", 0},
      {"hidden_size", int64_t{1} << 40}};
  for (const auto& f : kFamilies) {
    for (const auto& edit : edits) {
      const std::string key = edit.first;
      const auto error = build_error(f.plugin, f.fixture, [&](json& c) { c[key] = edit.second; });
      const std::string plugin = f.plugin;
      CHECK_MESSAGE(contains(error, key), plugin, " with ", key, " = ", edit.second.dump(), ": ", error);
      CHECK_MESSAGE(contains(error, "edited/config.json"), plugin, ": ", error);
    }
  }
  for (const char* key : {"moe_intermediate_size", "head_dim"}) {
    const auto error = build_error("qwen3_moe", "qwen3_moe", [&](json& c) { c[key] = -8; });
    CHECK_MESSAGE(contains(error, key), key, ": ", error);
  }
}
