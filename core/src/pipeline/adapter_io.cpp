#include "esft/pipeline/adapter_io.h"

#include <ATen/ATen.h>

#include "esft/error.h"
#include "esft/io/atomic_file.h"
#include "esft/io/safetensors.h"
#include "esft/pipeline/trainable.h"

namespace esft::pipeline {

namespace fs = std::filesystem;

AdapterSummary save_adapter(MoECausalLM& model, const fs::path& dir, const AdapterManifest& manifest,
                            const ExpertConfig& config, const nlohmann::json& extra) {
  return save_adapter_tensors(trained_checkpoint_tensors(model), dir, manifest, config, extra);
}

AdapterSummary save_adapter_tensors(const NamedTensors& tensors, const fs::path& dir, const AdapterManifest& manifest,
                                    const ExpertConfig& config, const nlohmann::json& extra) {
  AdapterSummary summary;
  summary.tensors = static_cast<int64_t>(tensors.size());
  for (const auto& t : tensors) summary.bytes += t.second.nbytes();

  nlohmann::json j = {{"format", manifest.format},
                      {"version", manifest.version},
                      {"method", manifest.method},
                      {"family", manifest.family},
                      {"model_type", manifest.model_type},
                      {"base_model", manifest.base_model},
                      {"base_config_sha256", manifest.base_config_sha256},
                      {"dtype", manifest.dtype},
                      {"tensors", summary.tensors},
                      {"bytes", summary.bytes}};
  for (const auto& [k, v] : extra.items()) j[k] = v;

  AtomicDirectory partial(dir);
  save_safetensors(partial.path() / kAdapterWeightsFile, tensors, {{"format", "pt"}, {"esft", kAdapterFormat}});
  write_text_atomically(partial.path() / "expert_config.json", config.to_json().dump(2) + "\n");
  write_text_atomically(partial.path() / kAdapterManifestFile, j.dump(2) + "\n");
  partial.commit(/*replace=*/true);
  return summary;
}

void check_adapter_experts(const AdapterFolder& adapter, MoECausalLM& model) {
  if (!adapter.expert_config()) return;
  try {
    check_expert_config(*adapter.expert_config(), moe_layer_sizes(model));
  } catch (const Error& e) {
    const char* file = adapter.format() == AdapterFormat::Reference ? kReferenceExpertConfigFile : "expert_config.json";
    throw Error((adapter.dir() / file).string() + ": " + e.what());
  }
}

int64_t apply_adapter(MoECausalLM& model, const AdapterFolder& adapter, const fs::path& base_dir) {
  adapter.check_base(base_dir);
  check_adapter_experts(adapter, model);
  return load_trained_tensors(model, adapter.tensors(), adapter.dir().string());
}

}  // namespace esft::pipeline
