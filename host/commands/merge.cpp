// `esft-host merge`: base checkpoint + adapter -> a complete Hugging Face checkpoint (shared/spec/ESFT.md §5).
// An ESFT adapter merges on checkpoint tensors by name only, so it needs no model weights in memory; the family's
// plugin builds the model on the meta device only to check the adapter's expert config against it. A LoRA adapter
// (PEFT's format) changes every weight it adapts by scaling * B A: the base model is loaded, the pairs folded in,
// and the model written.
#include <iostream>

#include "../cli.h"
#include "esft/error.h"
#include "esft/pipeline/adapter_io.h"
#include "esft/pipeline/adapter_merge.h"
#include "esft/pipeline/any_adapter.h"
#include "../model_writer.h"
#include "esft/runtime.h"

namespace esft::host {

namespace {

namespace fs = std::filesystem;

int merge_lora(const GlobalOptions& global, const pipeline::MergeOptions& options) {
  std::error_code ec;
  if (fs::exists(options.out_dir, ec) && fs::equivalent(options.out_dir, options.base_dir, ec))
    throw Error("--out is the base model directory; choose another");
  if (fs::exists(options.out_dir, ec) && (!fs::is_directory(options.out_dir, ec) || !fs::is_empty(options.out_dir, ec)))
    throw Error("output directory " + options.out_dir.string() + " exists and is not empty");
  const auto adapter = pipeline::AnyAdapter::open(options.adapter_dir);
  adapter.check_base(options.base_dir);
  std::cout << "loading " << options.base_dir.string() << std::endl;
  auto m = open_model(global, options.base_dir);
  std::cout << adapter.apply(*m.model, options.base_dir) << std::endl;
  const auto params = write_model_like_base(*m.model, options.base_dir, options.out_dir, "esft-host merge (LoRA)",
                                            options.max_shard_bytes);
  std::cout << "merged: " << params << " parameters, in the base checkpoint's dtypes\n"
            << "wrote " << options.out_dir.string() << "\n";
  return 0;
}

}  // namespace

Command merge_command() {
  Command c;
  c.name = "merge";
  c.summary = "merge an adapter (ESFT or LoRA) into its base model: a complete Hugging Face checkpoint";
  c.usage = "merge --model BASE_DIR --adapter ADAPTER_DIR --out OUT_DIR [--max-shard-size 5GB]";
  c.add_options = [](po::options_description& d) {
    d.add_options()
        ("model", po::value<std::string>()->required(), "base model directory the adapter was trained on")
        ("adapter", po::value<std::string>()->required(),
         "adapter directory: OUT/adapter of train (esft_adapter.json, model.safetensors; or a LoRA adapter in PEFT's "
         "format, adapter_config.json), or an ESFT reference adapter (expert_cfg.json, *.safetensors)")
        ("out", po::value<std::string>()->required(), "output directory: must not exist or be empty")
        ("max-shard-size", po::value<std::string>()->default_value("5GB"),
         "largest shard: bytes, or with a unit: 500MB, 5GB (powers of 10), 2GiB (powers of 2)");
  };
  c.run = [](const GlobalOptions& global, const po::variables_map& vm) {
    const auto size_text = vm["max-shard-size"].as<std::string>();
    const auto max_shard = pipeline::parse_byte_size(size_text);
    if (!max_shard) {
      throw UsageError("--max-shard-size: '" + size_text + "' is not a size (expected e.g. 5GB, 500MB, 2GiB or bytes)");
    }
    pipeline::MergeOptions options;
    options.base_dir = vm["model"].as<std::string>();
    options.adapter_dir = vm["adapter"].as<std::string>();
    options.out_dir = vm["out"].as<std::string>();
    options.max_shard_bytes = *max_shard;
    options.progress = [](const std::string& line) { std::cout << line << std::endl; };  // flushed: merges are long

    if (pipeline::is_peft_adapter(options.adapter_dir)) return merge_lora(global, options);

    {  // experts the model does not have are refused before anything is read or written
      const auto adapter = pipeline::AdapterFolder::open(options.adapter_dir);
      if (adapter.expert_config()) {
        const auto config = ModelConfig::load(options.base_dir);
        auto shapes = resolve_family(global, config)->create(config, c10::Device(c10::kMeta), c10::kFloat);
        pipeline::check_adapter_experts(adapter, *shapes);
      }
    }

    const auto report = pipeline::merge_adapter(options);
    std::cout << "merged: " << report.tensors_copied << " tensors copied, " << report.tensors_replaced << " replaced";
    if (report.slices_replaced > 0) {
      std::cout << ", " << report.slices_replaced << " slices replaced in " << report.tensors_sliced << " fused";
    }
    std::cout << "; " << report.shards.size() << " shard(s), " << pipeline::format_bytes(report.bytes) << "; "
              << report.files_copied.size() << " other file(s) copied\n"
              << "wrote " << options.out_dir.string() << "\n";
    return 0;
  };
  return c;
}

}  // namespace esft::host
