#pragma once
// Writing a complete model directory (config.json, model.safetensors under checkpoint names, tokenizer files) that
// every command loads: what `init` and `train --method pretrain` leave behind.
#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>
#include <vector>

#include "esft/io/safetensors.h"
#include "esft/model/moe_causal_lm.h"

namespace esft::host {

inline constexpr uint64_t kModelShardBytes = uint64_t{5} << 30;  // one file up to this size, else shards of it

struct ShippedFile {
  std::filesystem::path source;
  std::string name;  // its name in the model directory
};

// Writes `model`'s weights (its checkpoint bindings, as they are: dtype kept, copied to the CPU), `config` as
// config.json and a copy of each of `files` (tokenizer.json, tokenizer_config.json, ...) into `out`. Everything
// goes into a sibling staging folder first and is renamed into place at the end, so a failure leaves no partial
// directory. `out` must not exist or be an empty directory. Returns the number of parameters written.
int64_t write_model_directory(MoECausalLM& model, const nlohmann::json& config,
                              const std::vector<ShippedFile>& files, const std::filesystem::path& out,
                              const std::string& producer, uint64_t max_shard_bytes = kModelShardBytes);

// The same from checkpoint tensors under their names (a converted checkpoint): one model.safetensors up to 5 GB,
// else shards of max_shard_bytes with model.safetensors.index.json. Returns the number of parameters written.
int64_t write_model_directory(const NamedTensors& tensors, const nlohmann::json& config,
                              const std::vector<ShippedFile>& files, const std::filesystem::path& out,
                              const std::string& producer, uint64_t max_shard_bytes = kModelShardBytes);

// A trained or merged copy of the model in `base_dir` (train --method full, merge of a LoRA adapter): the model's
// weights cast back to each base tensor's dtype (whatever dtype the model ran in), the base tensors the model leaves
// out (skips_checkpoint_key: glm4_moe's next-token-prediction layers) copied unchanged, the base config (without its
// quantization_config when the base stored quantized tensors that the model holds dequantized: gpt-oss' MXFP4),
// and the tokenizer files. Returns the number of parameters written.
int64_t write_model_like_base(MoECausalLM& model, const std::filesystem::path& base_dir,
                              const std::filesystem::path& out, const std::string& producer,
                              uint64_t max_shard_bytes = kModelShardBytes);

// The tokenizer files of a model directory that a copy of it needs (those present of tokenizer.json,
// tokenizer_config.json, special_tokens_map.json, generation_config.json).
std::vector<ShippedFile> tokenizer_files(const std::filesystem::path& model_dir);

}  // namespace esft::host
