// config.json parsing: the Hub's spellings and transformers-v5's must give the same ModelConfig.
#include "doctest_torch.h"

#include "esft/error.h"
#include "esft/io/json_file.h"
#include "esft/model/model_config.h"
#include "esft/nn/rotary.h"

using esft::ModelConfig;
using nlohmann::json;

TEST_CASE("model config: Hub and transformers-v5 spellings agree") {
  const json hub = {{"model_type", "qwen3_moe"}, {"hidden_size", 2048}, {"num_hidden_layers", 48},
                    {"num_attention_heads", 32}, {"num_key_value_heads", 4}, {"head_dim", 128},
                    {"num_experts", 128}, {"num_experts_per_tok", 8}, {"moe_intermediate_size", 768},
                    {"rope_theta", 1000000.0}, {"vocab_size", 151936}, {"eos_token_id", 151645}};
  const json v5 = {{"model_type", "qwen3_moe"}, {"hidden_size", 2048}, {"num_hidden_layers", 48},
                   {"num_attention_heads", 32}, {"num_key_value_heads", 4}, {"head_dim", 128},
                   {"num_local_experts", 128}, {"num_experts_per_tok", 8}, {"moe_intermediate_size", 768},
                   {"rope_parameters", {{"rope_theta", 1000000.0}, {"rope_type", "default"}}},
                   {"vocab_size", 151936}, {"eos_token_id", json::array({151645, 151643})}};
  const auto a = ModelConfig::from_json(hub, "hub");
  const auto b = ModelConfig::from_json(v5, "v5");
  CHECK(a.num_experts == 128);
  CHECK(b.num_experts == 128);
  CHECK(a.rope.theta == 1000000.0);
  CHECK(b.rope.theta == 1000000.0);
  CHECK(a.rope.type == "default");
  CHECK(b.rope.type == "default");
  CHECK(a.head_dim == 128);
  CHECK(a.eos_token_ids == std::vector<int64_t>{151645});
  CHECK(b.eos_token_ids == std::vector<int64_t>({151645, 151643}));
}

TEST_CASE("model config: rope_scaling (Hub) and rope_parameters (v5) carry the rope type and partial factor") {
  const auto hub = ModelConfig::from_json(
      {{"model_type", "x"}, {"rope_theta", 150000.0}, {"rope_scaling", {{"type", "yarn"}, {"factor", 32.0}}},
       {"partial_rotary_factor", 0.5}},
      "hub");
  CHECK(hub.rope.type == "yarn");
  CHECK(hub.rope.parameters.at("factor").get<double>() == 32.0);
  CHECK(hub.rope.partial_rotary_factor == 0.5);
  const auto v5 = ModelConfig::from_json(
      {{"model_type", "x"}, {"rope_parameters", {{"rope_type", "yarn"}, {"rope_theta", 150000.0}, {"partial_rotary_factor", 0.5}}}},
      "v5");
  CHECK(v5.rope.type == "yarn");
  CHECK(v5.rope.theta == 150000.0);
  CHECK(v5.rope.partial_rotary_factor == 0.5);
}

TEST_CASE("model config: head_dim defaults to hidden / heads, kv heads to heads") {
  const auto c = ModelConfig::from_json({{"model_type", "x"}, {"hidden_size", 64}, {"num_attention_heads", 4}}, "t");
  CHECK(c.head_dim == 16);
  CHECK(c.num_key_value_heads == 4);
}

TEST_CASE("model config: errors name the key and the file") {
  CHECK_THROWS_WITH_AS(ModelConfig::from_json({{"hidden_size", 64}}, "cfg.json"),
                       doctest::Contains("no model_type"), esft::Error);
  CHECK_THROWS_WITH_AS(ModelConfig::from_json({{"model_type", "x"}, {"hidden_size", "big"}}, "cfg.json"),
                       doctest::Contains("'hidden_size' has the wrong type (cfg.json)"), esft::Error);
  const auto c = ModelConfig::from_json({{"model_type", "x"}, {"decoder_sparse_step", "two"}}, "cfg.json");
  CHECK_THROWS_WITH_AS(c.get<int64_t>("decoder_sparse_step", 1), doctest::Contains("decoder_sparse_step"), esft::Error);
  CHECK_THROWS_WITH_AS(c.require<int64_t>("moe_intermediate_size"), doctest::Contains("moe_intermediate_size"),
                       esft::Error);
  CHECK_THROWS_WITH_AS(ModelConfig::load("/nonexistent/model"), doctest::Contains("model directory not found"),
                       esft::Error);
}

TEST_CASE("rotary: an unsupported rope_type fails loudly instead of running wrong math") {
  const auto c = ModelConfig::from_json({{"model_type", "qwen3_moe"}, {"rope_scaling", {{"rope_type", "longrope"}}}}, "t");
  CHECK_THROWS_WITH_AS(esft::nn::rope_spec_from_config(c, 64), doctest::Contains("rope_type 'longrope'"), esft::Error);
}

TEST_CASE("model config: integers are read exactly (2.5 and 1e40 are wrong types, not truncated or overflowed)") {
  for (const json& bad : {json(2.5), json(1e40), json(-1e40), json(18446744073709551615ULL)}) {
    CAPTURE(bad.dump());
    CHECK_THROWS_WITH_AS(ModelConfig::from_json({{"model_type", "x"}, {"hidden_size", bad}}, "cfg.json"),
                         doctest::Contains("'hidden_size' has the wrong type (cfg.json)"), esft::Error);
    const auto c = ModelConfig::from_json({{"model_type", "x"}, {"n_group", bad}, {"mlp_only_layers", {1, bad}}}, "c");
    CHECK_THROWS_AS(c.get<int64_t>("n_group", 1), esft::Error);
    CHECK_THROWS_AS(c.get<std::vector<int64_t>>("mlp_only_layers", {}), esft::Error);
  }
  CHECK_THROWS_WITH_AS(ModelConfig::from_json({{"model_type", "x"}, {"eos_token_id", {1, "two"}}}, "cfg.json"),
                       doctest::Contains("'eos_token_id' has the wrong type"), esft::Error);
  CHECK(ModelConfig::from_json({{"model_type", "x"}, {"eos_token_id", {1, 2}}}, "c").eos_token_ids ==
        std::vector<int64_t>{1, 2});
}

TEST_CASE("json numbers: json_get takes integers in range only, parse_index digits only") {
  CHECK(esft::json_get<int32_t>(json(7)) == 7);
  CHECK(esft::json_get<int32_t>(json(-7)) == -7);
  CHECK_FALSE(esft::json_get<int32_t>(json(3000000000LL)).has_value());
  CHECK_FALSE(esft::json_get<int64_t>(json(1.0)).has_value());
  CHECK_FALSE(esft::json_get<int64_t>(json("1")).has_value());
  CHECK(esft::json_get<std::vector<int64_t>>(json({1, 2})) == std::vector<int64_t>{1, 2});
  CHECK_FALSE(esft::json_get<std::vector<int64_t>>(json({1, 2.5})).has_value());
  CHECK(esft::json_get<double>(json(2)) == 2.0);
  CHECK(esft::parse_index("012") == 12);
  for (const char* bad : {"", "-1", "1a", " 1", "1234567890123456789"}) CHECK_FALSE(esft::parse_index(bad).has_value());
}
