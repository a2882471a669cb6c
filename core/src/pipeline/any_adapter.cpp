#include "esft/pipeline/any_adapter.h"

#include "esft/error.h"
#include "esft/io/sha256.h"
#include "esft/pipeline/adapter_io.h"

namespace esft::pipeline {

namespace fs = std::filesystem;

AnyAdapter AnyAdapter::open(const fs::path& dir) {
  AnyAdapter a;
  a.dir_ = dir;
  if (is_peft_adapter(dir)) a.lora_ = PeftLoraAdapter::open(dir);
  else a.esft_ = AdapterFolder::open(dir);
  return a;
}

void AnyAdapter::check_base(const fs::path& base_dir) const {
  if (esft_) return esft_->check_base(base_dir);
  const auto& extra = lora_->esft;
  if (!extra.is_object() || !extra.contains("base_config_sha256")) return;  // PEFT's own adapters record no hash
  if (extra["base_config_sha256"] != sha256_file_hex(base_dir / "config.json")) {
    throw Error(dir_.string() + " was trained on another base model (" +
                lora_->config.value("base_model_name_or_path", std::string("?")) + "), not " + base_dir.string());
  }
}

std::string AnyAdapter::apply(MoECausalLM& model, const fs::path& base_dir) const {
  if (esft_) return "applied " + std::to_string(apply_adapter(model, *esft_, base_dir)) + " adapter tensors from " + dir_.string();
  check_base(base_dir);
  return "folded " + std::to_string(fold_peft_lora_adapter(model, *lora_)) + " LoRA pairs from " + dir_.string();
}

}  // namespace esft::pipeline
