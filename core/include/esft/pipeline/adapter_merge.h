#pragma once
// ESFT adapters (shared/spec/ESFT.md §4-5): the manifest the trainer writes next to the trained tensors, and the
// merge of an adapter into its base checkpoint, giving a complete Hugging Face checkpoint.
//
// An adapter directory holds `model.safetensors` (the trained tensors under their checkpoint names, in the training
// dtype; of a tensor stored fused, such as gpt-oss' `experts.gate_up_proj [E, H, 2I]`, only the trained experts,
// as slices `{key}#{i}` along dim 0), `esft_adapter.json` (this manifest) and `expert_config.json`.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace esft::pipeline {

inline constexpr const char* kAdapterManifestFile = "esft_adapter.json";
inline constexpr const char* kAdapterWeightsFile = "model.safetensors";
inline constexpr const char* kAdapterFormat = "esft-adapter";
inline constexpr int kAdapterVersion = 1;

// `esft_adapter.json`. Keys other than these are ignored.
struct AdapterManifest {
  std::string format = kAdapterFormat;  // required, must be "esft-adapter"
  int version = kAdapterVersion;        // required, must be 1
  std::string base_config_sha256;       // required: sha256 hex of the base model's config.json bytes
  // Optional strings (empty when absent): "esft", family plugin, config model_type, the base model path as the
  // trainer was given it, training dtype ("float32" | "bfloat16").
  std::string method, family, model_type, base_model, dtype;

  // Throws esft::Error, prefixed by `where`, for a malformed manifest.
  static AdapterManifest from_json(const nlohmann::json& j, const std::string& where);
  // Reads `adapter_dir/esft_adapter.json`; throws esft::Error when it is missing or malformed.
  static AdapterManifest load(const std::filesystem::path& adapter_dir);
};

// Throws esft::Error unless `base_dir/config.json` hashes to the manifest's base_config_sha256 (the adapter was
// trained on another base model otherwise); the message names the adapter, its recorded base and `base_dir`.
void check_adapter_base(const AdapterManifest& manifest, const std::filesystem::path& adapter_dir,
                        const std::filesystem::path& base_dir);

// Slice `index` (along dim 0) of the fused checkpoint tensor `key`, as the adapter names it: "{key}#{index}".
std::string adapter_slice_name(const std::string& key, int64_t index);
// Splits "{key}#{index}" (index: decimal, no sign, no leading zeros); false for a name that is not a slice name.
bool parse_adapter_slice_name(const std::string& name, std::string& key, int64_t& index);

// transformers' default shard size: 5 GB (decimal, as `max_shard_size="5GB"`).
inline constexpr uint64_t kDefaultMaxShardBytes = 5'000'000'000ULL;

// "1000000", "500MB", "5GB", "2GiB", "64KiB", "1TB" (case-insensitive; KB/MB/GB/TB are powers of 10, KiB/MiB/GiB/TiB
// powers of 2; a bare "B" suffix is allowed) -> bytes. nullopt for anything else, zero or overflow.
std::optional<uint64_t> parse_byte_size(std::string_view text);

// "1.23 GB", "512 B": decimal units, for progress lines.
std::string format_bytes(uint64_t bytes);

struct MergeOptions {
  std::filesystem::path base_dir;     // Hugging Face model directory (model.safetensors or an index with shards)
  std::filesystem::path adapter_dir;  // adapter directory, esft's format or the ESFT reference's (adapter_folder.h)
  std::filesystem::path out_dir;      // must not exist, or be an empty directory; never the base directory
  uint64_t max_shard_bytes = kDefaultMaxShardBytes;
  std::function<void(const std::string&)> progress;  // one line per step (no newline); may be empty
};

struct MergeReport {
  std::size_t tensors_copied = 0;    // base tensors written byte-identical
  std::size_t tensors_replaced = 0;  // base tensors replaced whole by an adapter tensor
  std::size_t tensors_sliced = 0;    // fused base tensors with some slices replaced
  std::size_t slices_replaced = 0;   // adapter `{key}#{i}` tensors applied
  std::vector<std::string> shards;   // shard file names written
  uint64_t bytes = 0;                // tensor data bytes written
  std::vector<std::string> files_copied;  // other top-level files of the base copied (config.json, tokenizer, ...)
};

// Base checkpoint + adapter -> `out_dir`: every base tensor the adapter does not touch byte-identical (dtype, shape,
// bytes); a touched one replaced by the adapter's tensor (or slices) cast to the base tensor's dtype; sharded
// `model-0000i-of-0000n.safetensors` + `model.safetensors.index.json`; every other regular top-level file of the
// base copied byte for byte. Everything is checked before anything is written, and the output is built in a
// temporary sibling directory renamed into place at the end, so an error (esft::Error) leaves no output behind.
MergeReport merge_adapter(const MergeOptions& options);

}  // namespace esft::pipeline
