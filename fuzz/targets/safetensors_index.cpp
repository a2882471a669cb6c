// model.safetensors.index.json of a sharded checkpoint, next to two real shards (tensors "a" and "b" in
// model-00001-of-00002.safetensors, "c" in model-00002-of-00002.safetensors): weight_map entries, file names that
// try to leave the folder, tensors missing from or repeated across shards.
#include <ATen/ATen.h>

#include "esft/io/safetensors.h"
#include "fuzz_target.h"

ESFT_FUZZ_TARGET(safetensors_index) {
  static const bool shards = [] {
    const auto dir = esft::fuzz::scratch_dir() / "sharded";
    std::filesystem::create_directories(dir);
    esft::save_safetensors(dir / "model-00001-of-00002.safetensors",
                           {{"a", at::arange(6, at::kFloat).view({2, 3})}, {"b", at::ones({4}, at::kBFloat16)}});
    esft::save_safetensors(dir / "model-00002-of-00002.safetensors", {{"c", at::zeros({1}, at::kLong)}});
    return true;
  }();
  (void)shards;
  esft::fuzz::write_scratch_file("sharded/model.safetensors.index.json", data);
  esft::fuzz::expect_only_clean_errors([&] {
    const auto checkpoint = esft::Checkpoint::open(esft::fuzz::scratch_dir() / "sharded");
    for (const auto& key : checkpoint.keys()) checkpoint.load(key);
  });
}
