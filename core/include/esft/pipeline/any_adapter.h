#pragma once
// What `--adapter` takes in eval, generate and select-data: an ESFT adapter (esft's format or the ESFT
// reference's, adapter_folder.h) or a PEFT LoRA adapter (lora_adapter.h), told apart by their files.
#include <filesystem>
#include <optional>
#include <string>

#include "esft/model/moe_causal_lm.h"
#include "esft/pipeline/adapter_folder.h"
#include "esft/pipeline/lora_adapter.h"

namespace esft::pipeline {

class AnyAdapter {
 public:
  // Reads the folder (before the model is loaded, to fail fast). Throws esft::Error for a folder of no known format.
  static AnyAdapter open(const std::filesystem::path& dir);

  // Throws esft::Error unless the adapter belongs on `base_dir`: by the base config's hash where the adapter records
  // one (esft adapters, esft's LoRA adapters); otherwise names and shapes are checked when it is applied.
  void check_base(const std::filesystem::path& base_dir) const;
  // Applies it to a freshly loaded base model (LoRA: folded into the weights) and says what it did, in one line.
  std::string apply(MoECausalLM& model, const std::filesystem::path& base_dir) const;

  const std::filesystem::path& dir() const { return dir_; }
  const std::optional<AdapterFolder>& esft() const { return esft_; }
  const std::optional<PeftLoraAdapter>& lora() const { return lora_; }

 private:
  std::filesystem::path dir_;
  std::optional<AdapterFolder> esft_;
  std::optional<PeftLoraAdapter> lora_;
};

}  // namespace esft::pipeline
