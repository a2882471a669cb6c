// `params`: which checkpoint names an expert config trains, as a list, one regex, and Megatron ranks.
#include "doctest_torch.h"

#include <regex>
#include <set>

#include "esft/error.h"
#include "esft/pipeline/trainable_names.h"

namespace {

using esft::pipeline::ExpertConfig;
using esft::pipeline::NamedKey;

// A 2-layer checkpoint with 12 per-expert experts per layer (ids 1 and 10, 11 share digits), routers and the rest.
std::vector<NamedKey> twelve_expert_keys() {
  std::vector<NamedKey> keys = {{"model.embed_tokens.weight", {16, 8}}, {"model.norm.weight", {8}},
                                {"lm_head.weight", {16, 8}}};
  for (int l = 0; l < 2; ++l) {
    const auto p = "model.layers." + std::to_string(l) + ".";
    keys.push_back({p + "self_attn.q_proj.weight", {8, 8}});
    keys.push_back({p + "input_layernorm.weight", {8}});
    keys.push_back({p + "post_attention_layernorm.weight", {8}});
    keys.push_back({p + "mlp.gate.weight", {12, 8}});
    for (int e = 0; e < 12; ++e)
      for (const char* w : {"gate_proj", "up_proj", "down_proj"})
        keys.push_back({p + "mlp.experts." + std::to_string(e) + "." + w + ".weight", {4, 8}});
  }
  return keys;
}

std::set<std::string> regex_matches(const std::string& regex, const std::vector<NamedKey>& keys) {
  const std::regex re(regex);
  std::set<std::string> out;
  for (const auto& k : keys)
    if (std::regex_search(k.key, re)) out.insert(k.key);
  return out;
}

}  // namespace

TEST_CASE("params: the regex matches exactly the selected experts' tensors (1 never matches 10 or 11)") {
  const auto keys = twelve_expert_keys();
  const auto naming = esft::hf_moe_decoder_naming();
  ExpertConfig c;
  c.experts = {{0, {1, 5}}, {1, {10}}};
  const auto prefix = esft::pipeline::expert_prefix_pattern(naming);
  CHECK(prefix == "model.layers.{layer}.mlp.experts.{expert}.");
  const auto names = esft::pipeline::trainable_names(keys, naming, prefix, c);
  CHECK(names.expert_keys.size() == 9);
  CHECK(names.other_keys.empty());
  const auto regex = esft::pipeline::anchored_regex(prefix, names.experts, names.other_keys);
  CHECK(regex ==
        "^(?:model\\.layers\\.0\\.mlp\\.experts\\.(?:1|5)\\.|model\\.layers\\.1\\.mlp\\.experts\\.(?:10)\\.)");
  CHECK(regex_matches(regex, keys) == std::set<std::string>(names.expert_keys.begin(), names.expert_keys.end()));

  c.non_expert_modules = true;
  const auto wide = esft::pipeline::trainable_names(keys, naming, prefix, c);
  CHECK(wide.other_keys.size() == 3 + 2 * 4);  // embed, norm, lm_head; per layer attention, 2 norms, router
  std::set<std::string> expected(wide.expert_keys.begin(), wide.expert_keys.end());
  expected.insert(wide.other_keys.begin(), wide.other_keys.end());
  CHECK(regex_matches(esft::pipeline::anchored_regex(prefix, wide.experts, wide.other_keys), keys) == expected);

  ExpertConfig none;
  none.experts = {{0, {}}, {1, {}}};
  const auto empty = esft::pipeline::trainable_names(keys, naming, prefix, none);
  CHECK(regex_matches(esft::pipeline::anchored_regex(prefix, empty.experts, empty.other_keys), keys).empty());
}

TEST_CASE("params: --pattern auto finds the expert prefix from the keys") {
  std::vector<std::string> keys;
  for (const auto& k : twelve_expert_keys()) keys.push_back(k.key);
  CHECK(esft::pipeline::detect_expert_prefix_pattern(keys) == "model.layers.{layer}.mlp.experts.{expert}.");
  CHECK(esft::pipeline::detect_expert_prefix_pattern({"decoder.layers.3.mlp.experts.local_experts.2.linear_fc1.weight"}) ==
        "decoder.layers.{layer}.mlp.experts.local_experts.{expert}.");
  CHECK_THROWS_WITH_AS(esft::pipeline::detect_expert_prefix_pattern({"model.layers.0.mlp.experts.gate_up_proj"}),
                       doctest::Contains("no key names a single expert"), esft::Error);
  CHECK_THROWS_AS(esft::pipeline::check_expert_prefix_pattern("model.layers.{expert}.experts.{layer}."), esft::Error);
}

TEST_CASE("params: Megatron names with expert parallelism put experts in contiguous blocks per rank") {
  const auto keys = twelve_expert_keys();
  const auto naming = esft::hf_moe_decoder_naming();
  ExpertConfig c;
  c.experts = {{0, {0, 3, 4, 11}}, {1, {5, 6}}};
  const auto names = esft::pipeline::trainable_names(keys, naming, esft::pipeline::expert_prefix_pattern(naming), c);
  const auto ranks = esft::pipeline::megatron_ranks(names, c, 4);  // 3 experts per rank
  REQUIRE(ranks.size() == 4);
  CHECK(ranks[0].local_experts == std::map<int, std::vector<int64_t>>{{0, {0}}});
  CHECK(ranks[1].local_experts == std::map<int, std::vector<int64_t>>{{0, {0, 1}}, {1, {2}}});
  CHECK(ranks[2].local_experts == std::map<int, std::vector<int64_t>>{{1, {0}}});
  CHECK(ranks[3].local_experts == std::map<int, std::vector<int64_t>>{{0, {2}}});
  CHECK(ranks[3].prefixes == std::vector<std::string>{"decoder.layers.0.mlp.experts.local_experts.2."});
  CHECK(ranks[1].regex == "^(?:decoder\\.layers\\.0\\.mlp\\.experts\\.local_experts\\.(?:0|1)\\.|"
                          "decoder\\.layers\\.1\\.mlp\\.experts\\.local_experts\\.(?:2)\\.)");
  CHECK_THROWS_WITH_AS(esft::pipeline::megatron_ranks(names, c, 5), doctest::Contains("does not divide"), esft::Error);
  c.shared_experts = true;
  CHECK_THROWS_WITH_AS(esft::pipeline::megatron_ranks(names, c, 2), doctest::Contains("routed experts only"), esft::Error);
}

TEST_CASE("params: fused expert tensors train in slices named {key}#{i}") {
  const std::vector<NamedKey> keys = {{"model.layers.0.mlp.router.weight", {4, 8}},
                                      {"model.layers.0.mlp.experts.gate_up_proj", {4, 8, 6}},
                                      {"model.layers.0.mlp.experts.down_proj", {4, 3, 8}}};
  esft::ParamNaming naming({{esft::Role::ROUTER, "model.layers.{layer}.mlp.router.weight"},
                            {esft::Role::EXPERT_GATE_UP, "model.layers.{layer}.mlp.experts.gate_up_proj"},
                            {esft::Role::EXPERT_DOWN, "model.layers.{layer}.mlp.experts.down_proj"}});
  ExpertConfig c;
  c.experts = {{0, {3, 1}}};
  const auto names = esft::pipeline::trainable_names(keys, naming, "", c);
  CHECK(names.other_keys == std::vector<std::string>{"model.layers.0.mlp.experts.gate_up_proj#1",
                                                     "model.layers.0.mlp.experts.gate_up_proj#3",
                                                     "model.layers.0.mlp.experts.down_proj#1",
                                                     "model.layers.0.mlp.experts.down_proj#3"});
  c.experts = {{0, {0, 1, 2, 3}}};
  CHECK(esft::pipeline::trainable_names(keys, naming, "", c).other_keys ==
        std::vector<std::string>{"model.layers.0.mlp.experts.gate_up_proj", "model.layers.0.mlp.experts.down_proj"});
  c.experts = {{0, {4}}};
  CHECK_THROWS_WITH_AS(esft::pipeline::trainable_names(keys, naming, "", c), doctest::Contains("names expert 4"),
                       esft::Error);
}
