#pragma once
// The tiny fixture models (tests/data/hf/<fixture>/model) loaded through their plugins, with what the training
// tests feed them: random labelled rows and small settings.
#include <ATen/ATen.h>

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "esft/data/batching.h"
#include "esft/data/samples.h"
#include "esft/io/weights.h"
#include "esft/model/model_family.h"
#include "esft/train/train_options.h"
#include "plugin_loader.h"

namespace tiny_models {

namespace fs = std::filesystem;

struct Tiny {
  std::shared_ptr<esft::ModelFamily> family;
  esft::ModelConfig config;
  std::shared_ptr<esft::MoECausalLM> model;
  fs::path dir;
};

inline Tiny load_tiny(const std::string& plugin, const std::string& fixture) {
  Tiny t;
  t.dir = fs::path(ESFT_TEST_DATA_DIR) / "hf" / fixture / "model";
  esft::host::PluginLoader loader(std::vector<fs::path>{ESFT_BIN_DIR});
  t.family = loader.load(plugin);
  t.config = esft::ModelConfig::load(t.dir);
  t.model = esft::load_model(*t.family, t.config, c10::Device(c10::kCPU), c10::kFloat);
  return t;
}

// Every checkpoint tensor of the model, copied, by checkpoint name.
inline std::map<std::string, at::Tensor> snapshot(esft::MoECausalLM& model) {
  std::map<std::string, at::Tensor> out;
  for (const auto& b : model.checkpoint_bindings()) out[b.key()] = b.value().detach().clone();
  return out;
}

inline bool bit_identical(const at::Tensor& a, const at::Tensor& b) {
  return a.sizes() == b.sizes() && a.scalar_type() == b.scalar_type() && at::equal(a, b);
}

// Deterministic rows of random token ids, labels on the second half of each row.
inline std::vector<esft::data::Row> random_rows(int n, int length, int64_t vocab, uint64_t seed) {
  esft::data::Random random(seed);
  std::vector<esft::data::Row> rows(static_cast<size_t>(n));
  for (auto& r : rows) {
    for (int t = 0; t < length; ++t) {
      const auto id = static_cast<int32_t>(random.below(static_cast<uint64_t>(vocab)));
      r.ids.push_back(id);
      r.labels.push_back(t >= length / 2 ? id : esft::data::kIgnoreIndex);
      r.attention_mask.push_back(1);
    }
  }
  return rows;
}

inline esft::train::TrainOptions small_options(int64_t steps) {
  esft::train::TrainOptions o;
  o.learning_rate = 1e-3;
  o.steps = steps;
  o.batch_size = 2;
  o.gradient_accumulation_steps = 2;
  o.seq_length = 16;
  o.save_steps = 0;
  o.eval_steps = 0;
  return o;
}


}  // namespace tiny_models
