// An ESFT adapter folder, applied to the tiny Qwen3-MoE test model as `eval --adapter` applies it: the input is
// `esft_adapter.json` and `model.safetensors` (the trained tensors, plain or as `key#i` slices), split at the
// first "\n--esft-fuzz-part--\n".
#include <ATen/ATen.h>

#include "esft/io/weights.h"
#include "esft/model/model_config.h"
#include "esft/pipeline/adapter_io.h"
#include "fuzz_target.h"
#include "plugin_loader.h"

ESFT_FUZZ_TARGET(adapter) {
  static const auto base = esft::fuzz::source_dir() / "tests" / "data" / "hf" / "qwen3_moe" / "model";
  static const auto model = [] {
    const auto family =
        esft::host::PluginLoader(std::vector<std::filesystem::path>{ESFT_BIN_DIR}).load("qwen3_moe");
    return esft::load_model(*family, esft::ModelConfig::load(base), c10::Device(c10::kCPU), c10::kFloat);
  }();
  const auto parts = esft::fuzz::split_parts(data, 2);
  const auto manifest = esft::fuzz::write_scratch_file("adapter/esft_adapter.json", parts[0]);
  esft::fuzz::write_scratch_file("adapter/model.safetensors", parts[1]);
  esft::fuzz::expect_only_clean_errors([&] {
    at::NoGradGuard no_grad;
    esft::pipeline::apply_adapter(*model, esft::pipeline::AdapterFolder::open(manifest.parent_path()), base);
  });
}
