// `esft-host convert-adapter`: an adapter folder from one format to the other (pipeline/adapter_folder.h): the ESFT
// reference's released adapters (expert_cfg.json + *.safetensors) into esft's (with a manifest naming the base model
// and the hash of its config), and esft's into the reference's, for its own evaluation scripts. The tensors are
// copied unchanged, under checkpoint names.
#include <iostream>

#include <ATen/ATen.h>

#include "../cli.h"
#include "esft/error.h"
#include "esft/io/sha256.h"
#include "esft/pipeline/adapter_io.h"
#include "esft/runtime.h"

namespace esft::host {

namespace fs = std::filesystem;

namespace {

// Every tensor must be one the base model binds (whole, or a slice of a fused tensor), in its shape: a converted
// adapter is checked as thoroughly as an applied one, without loading any weights.
void check_tensors_fit(const pipeline::AdapterFolder& adapter, MoECausalLM& shapes) {
  std::map<std::string, std::vector<int64_t>> bound;
  for (const auto& b : shapes.checkpoint_bindings()) bound[b.key()] = b.shape();
  for (const auto& name : adapter.names()) {
    std::string key = name;
    int64_t slice = -1;
    if (!bound.count(key)) pipeline::parse_adapter_slice_name(name, key, slice);
    const auto it = bound.find(key);
    if (it == bound.end()) throw Error(adapter.path_of(name) + ": tensor '" + name + "' is not a tensor of this model");
    auto expected = it->second;
    if (slice >= 0) {
      if (expected.empty() || slice >= expected[0])
        throw Error(adapter.path_of(name) + ": '" + name + "' names a slice that '" + key + "' does not have");
      expected.erase(expected.begin());
    }
    if (adapter.info(name).shape != expected) {
      throw Error(adapter.path_of(name) + ": tensor '" + name + "' has shape " + shape_text(adapter.info(name).shape) +
                  " but the model's is " + shape_text(expected));
    }
  }
}

}  // namespace

Command convert_adapter_command() {
  Command c;
  c.name = "convert-adapter";
  c.summary = "convert an adapter between esft's format and the ESFT reference's (expert_cfg.json + safetensors)";
  c.usage = "convert-adapter --adapter DIR --model BASE_DIR --to esft|reference --out DIR";
  c.add_options = [](po::options_description& d) {
    d.add_options()
        ("adapter", po::value<std::string>()->required(), "adapter folder, either format")
        ("model", po::value<std::string>()->required(), "the base model it belongs to (config.json is enough)")
        ("to", po::value<std::string>()->required(), "esft | reference")
        ("out", po::value<std::string>()->required(), "new adapter folder: must not exist or be empty");
  };
  c.run = [](const GlobalOptions& global, const po::variables_map& vm) {
    pipeline::AdapterFormat to = pipeline::AdapterFormat::Esft;
    try {
      to = pipeline::parse_adapter_format(vm["to"].as<std::string>());
    } catch (const Error& e) {
      throw UsageError(std::string("--to: ") + e.what());
    }
    const fs::path model_dir = vm["model"].as<std::string>();
    // Without a trailing separator, so that "DIR/" is DIR itself, beside which the temporary folder is made.
    fs::path out = fs::absolute(vm["out"].as<std::string>()).lexically_normal();
    if (!out.has_filename() && out.has_parent_path() && out != out.root_path()) out = out.parent_path();
    check_output_path(out, "--out");
    std::error_code ec;
    if (fs::exists(out, ec) && (!fs::is_directory(out, ec) || !fs::is_empty(out, ec)))
      throw Error("--out " + out.string() + " exists and is not an empty folder");
    const auto adapter = pipeline::AdapterFolder::open(vm["adapter"].as<std::string>());
    adapter.check_base(model_dir);
    if (!adapter.expert_config()) {
      throw Error("the adapter " + adapter.dir().string() + " has no expert config (a router adapter?): only expert "
                  "adapters convert");
    }
    const auto config = ModelConfig::load(model_dir);
    const auto family = resolve_family(global, config);
    auto shapes = family->create(config, c10::Device(c10::kMeta), c10::kFloat);
    pipeline::check_adapter_experts(adapter, *shapes);
    check_tensors_fit(adapter, *shapes);

    const auto tensors = adapter.tensors();
    if (to == pipeline::AdapterFormat::Reference) {
      pipeline::save_reference_adapter(out, tensors, *adapter.expert_config());
    } else {
      pipeline::AdapterManifest manifest;
      manifest.method = "esft";
      manifest.family = family->name();
      manifest.model_type = config.model_type;
      manifest.base_model = fs::absolute(model_dir).lexically_normal().string();
      manifest.base_config_sha256 = sha256_file_hex(model_dir / "config.json");
      manifest.dtype = dtype_label(tensors.front().second.scalar_type());
      pipeline::save_adapter_tensors(tensors, out, manifest, *adapter.expert_config(),
                                     {{"converted_from", std::string(pipeline::adapter_format_name(adapter.format()))}});
    }
    std::cout << "converted " << tensors.size() << " tensors of " << adapter.dir().string() << " ("
              << pipeline::adapter_format_name(adapter.format()) << " format) to " << out.string() << " ("
              << pipeline::adapter_format_name(to) << " format)\n";
    return 0;
  };
  return c;
}

}  // namespace esft::host
