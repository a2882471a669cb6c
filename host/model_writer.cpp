#include "model_writer.h"

#include <ATen/ATen.h>

#include <map>
#include <set>

#include "esft/error.h"
#include "esft/io/json_file.h"
#include "esft/io/atomic_file.h"
#include "esft/io/safetensors.h"

namespace esft::host {

namespace fs = std::filesystem;

int64_t write_model_directory(MoECausalLM& model, const nlohmann::json& config, const std::vector<ShippedFile>& files,
                              const fs::path& out, const std::string& producer, uint64_t max_shard_bytes) {
  NamedTensors tensors;
  for (const auto& b : model.checkpoint_bindings()) tensors.emplace_back(b.key(), b.value().detach().cpu().contiguous());
  return write_model_directory(tensors, config, files, out, producer, max_shard_bytes);
}

int64_t write_model_directory(const NamedTensors& tensors, const nlohmann::json& config,
                              const std::vector<ShippedFile>& files, const fs::path& out, const std::string& producer,
                              uint64_t max_shard_bytes) {
  std::error_code ec;
  if (fs::exists(out, ec) && (!fs::is_directory(out, ec) || !fs::is_empty(out, ec)))
    throw Error("output directory " + out.string() + " exists and is not empty");
  int64_t parameters = 0;
  uint64_t bytes = 0;
  for (const auto& [name, t] : tensors) {
    parameters += t.numel();
    bytes += static_cast<uint64_t>(t.nbytes());
  }
  const std::map<std::string, std::string> metadata = {{"format", "pt"}, {"producer", producer}};
  const fs::path staging = out.parent_path() / ("." + out.filename().string() + ".partial");
  fs::remove_all(staging, ec);
  fs::create_directories(staging);
  try {
    if (bytes <= max_shard_bytes) save_safetensors(staging / "model.safetensors", tensors, metadata);
    else save_sharded_safetensors(staging, tensors, max_shard_bytes, metadata);
    write_text_atomically(staging / "config.json", config.dump(2) + "\n");
    for (const auto& f : files) fs::copy_file(f.source, staging / f.name);
    fs::remove(out, ec);  // an empty directory, if any
    fs::rename(staging, out);
  } catch (...) {
    fs::remove_all(staging, ec);
    throw;
  }
  return parameters;
}

int64_t write_model_like_base(MoECausalLM& model, const fs::path& base_dir, const fs::path& out,
                              const std::string& producer, uint64_t max_shard_bytes) {
  const auto base = Checkpoint::open(base_dir);
  NamedTensors tensors;
  std::set<std::string> written;
  bool dequantized = false;  // a tensor the base stores under other names (quantized blocks and scales)
  for (const auto& b : model.checkpoint_bindings()) {
    auto t = b.value().detach();
    if (base.contains(b.key())) t = t.to(to_scalar_type(base.info(b.key()).dtype));
    else dequantized = true;
    tensors.emplace_back(b.key(), t.cpu().contiguous());
    written.insert(b.key());
  }
  for (const auto& key : base.keys()) {
    if (!written.count(key) && model.skips_checkpoint_key(key)) tensors.emplace_back(key, base.load(key));
  }
  auto config = read_json_file(base_dir / "config.json");
  if (dequantized && config.contains("quantization_config")) config.erase("quantization_config");
  return write_model_directory(tensors, config, tokenizer_files(base_dir), out, producer, max_shard_bytes);
}

std::vector<ShippedFile> tokenizer_files(const fs::path& model_dir) {
  std::vector<ShippedFile> out;
  std::error_code ec;
  for (const char* name : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"})
    if (fs::is_regular_file(model_dir / name, ec)) out.push_back({model_dir / name, name});
  return out;
}

}  // namespace esft::host
