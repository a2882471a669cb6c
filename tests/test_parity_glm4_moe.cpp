// glm4_moe against transformers 5.17 (shared/fixtures/hf/glm4_moe: dense layer 0, sigmoid group-limited router
// with a non-zero e_score_correction_bias, shared expert, q/k norm, partial rotary).
#include "esft/error.h"
#include "family_parity.h"

TEST_CASE("glm4_moe: checkpoint keys equal the keys the plugin loads") {
  auto f = parity::load("glm4_moe", "glm4_moe");
  parity::check_key_sets(f);
}

TEST_CASE("glm4_moe: logits, hidden states, routing and losses match") {
  auto f = parity::load("glm4_moe", "glm4_moe");
  parity::check_forward(f);
}

TEST_CASE("glm4_moe: every gradient matches") {
  auto f = parity::load("glm4_moe", "glm4_moe");
  parity::check_all_gradients(f);
}

TEST_CASE("glm4_moe: ESFT freezing leaves the trainable experts' gradients unchanged") {
  auto f = parity::load("glm4_moe", "glm4_moe");
  parity::check_frozen_gradients(f);
}

TEST_CASE("glm4_moe: greedy generation with the KV cache matches") {
  auto f = parity::load("glm4_moe", "glm4_moe");
  parity::check_generation(f);
}

namespace {
// The glm4_moe fixture rewritten into `dir` with `extra` tensors added to its checkpoint.
void write_with_extra_tensors(const std::filesystem::path& dir, const esft::NamedTensors& extra) {
  const auto fixture = std::filesystem::path(ESFT_TEST_DATA_DIR) / "hf" / "glm4_moe" / "model";
  std::filesystem::copy_file(fixture / "config.json", dir / "config.json");
  const esft::SafetensorsFile original(fixture / "model.safetensors");
  esft::NamedTensors tensors = extra;
  for (const auto& info : original.tensors()) tensors.emplace_back(info.name, original.load(info.name));
  esft::save_safetensors(dir / "model.safetensors", tensors);
}
}  // namespace

TEST_CASE("glm4_moe: next-token-prediction layers in the checkpoint are skipped, other stray tensors are not") {
  // The fixture's config declares num_nextn_predict_layers = 1: layer 3 may be in the checkpoint, layer 4 may not.
  auto f = parity::load("glm4_moe", "glm4_moe");
  const esft::SafetensorsFile ref(f.dir / "reference.safetensors");
  auto ids = ref.load("input_ids");
  auto mask = ref.load("attention_mask");

  {
    // Real GLM-4.5 checkpoints store layer num_hidden_layers (here 3) with extra projections and a full MoE block.
    test_support::TempDir dir;
    write_with_extra_tensors(dir.path, {{"model.layers.3.eh_proj.weight", at::ones({64, 128})},
                                        {"model.layers.3.enorm.weight", at::ones({64})},
                                        {"model.layers.3.mlp.experts.0.gate_proj.weight", at::ones({32, 64})}});
    auto config = esft::ModelConfig::load(dir.path);
    auto model = esft::load_model(*f.family, config, c10::Device(c10::kCPU), c10::kFloat);
    at::NoGradGuard no_grad;
    auto logits = model->forward(ids, mask, {}).logits;
    CHECK(parity::max_diff(logits, ref.load("logits"), mask.reshape({-1}).to(at::kBool)) <= parity::kValueTol);
  }
  for (const char* stray : {"model.layers.1.mlp.extra.weight", "model.layers.4.enorm.weight"}) {
    test_support::TempDir dir;
    write_with_extra_tensors(dir.path, {{stray, at::ones({4})}});
    auto config = esft::ModelConfig::load(dir.path);
    CHECK_THROWS_WITH_AS(esft::load_model(*f.family, config, c10::Device(c10::kCPU), c10::kFloat),
                         doctest::Contains(stray), esft::Error);
  }
}

TEST_CASE("glm4_moe: in bfloat16, logits, loss and gradients stay within the bfloat16 tolerances, with each expert kernel") {
  auto f = parity::load("glm4_moe", "glm4_moe");
  parity::check_bfloat16(f);
}
