#pragma once
// An adapter folder of either format, read one way (shared/spec/ESFT.md §4):
//   esft       esft_adapter.json (the manifest, with the base config's hash), model.safetensors, expert_config.json
//              (adapter_merge.h describes it);
//   reference  the ESFT reference's (deepseek-ai/ESFT, and its released ESFT-{token,gate}-<task>-lite adapters):
//              expert_cfg.json and every *.safetensors of the folder, under the checkpoint's names, or without
//              their `model.` prefix (its v1 adapters, saved from the inner model: `layers.5.mlp.experts.12...`).
// Tensor names here are always checkpoint names (`model.` prefixed); esft's slices of fused tensors are `{key}#{i}`.
#include <ATen/core/Tensor.h>

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "esft/io/safetensors.h"
#include "esft/pipeline/adapter_merge.h"
#include "esft/pipeline/expert_selection.h"

namespace esft::pipeline {

enum class AdapterFormat { Esft, Reference };
const char* adapter_format_name(AdapterFormat format);  // "esft" | "reference"
// "esft" | "reference"; esft::Error naming both otherwise.
AdapterFormat parse_adapter_format(const std::string& name);

inline constexpr const char* kReferenceExpertConfigFile = "expert_cfg.json";

class AdapterFolder {
 public:
  // Reads the folder's manifest or expert config and the headers of its tensors. Throws esft::Error for a folder of
  // neither format (naming the files it looked for), a tensor stored twice (under both spellings, or in two files),
  // or a folder without tensors.
  static AdapterFolder open(const std::filesystem::path& dir);

  AdapterFormat format() const { return format_; }
  const std::filesystem::path& dir() const { return dir_; }
  const std::optional<AdapterManifest>& manifest() const { return manifest_; }  // esft folders only
  // The expert config it was trained with (esft: expert_config.json, which router adapters lack: empty then).
  const std::optional<ExpertConfig>& expert_config() const { return expert_config_; }

  std::vector<std::string> names() const;  // sorted
  bool contains(const std::string& name) const { return where_.count(name) != 0; }
  const TensorInfo& info(const std::string& name) const;
  at::Tensor load(const std::string& name) const;  // a copy
  std::string path_of(const std::string& name) const;  // the file holding it, for messages
  // Every tensor as views of the file mappings (read-only, valid while this lives), under checkpoint names.
  NamedTensors tensors() const;

  // Throws esft::Error unless the adapter belongs on `base_dir`: an esft folder by its manifest's config hash. A
  // reference folder records no base; its tensors' names and shapes are checked where they are applied.
  void check_base(const std::filesystem::path& base_dir) const;

 private:
  struct Entry {
    size_t file;
    std::string stored_name;
  };
  AdapterFormat format_ = AdapterFormat::Esft;
  std::filesystem::path dir_;
  std::optional<AdapterManifest> manifest_;
  std::optional<ExpertConfig> expert_config_;
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
  std::map<std::string, Entry> where_;
};

// The ESFT reference's folder from `tensors` (checkpoint names, whole tensors: the reference has no slices of fused
// tensors) and `config`: model.safetensors and expert_cfg.json, written into a temporary sibling that replaces
// `dir` when complete. Throws esft::Error for a slice name.
void save_reference_adapter(const std::filesystem::path& dir, const NamedTensors& tensors, const ExpertConfig& config);

}  // namespace esft::pipeline
