#include <fstream>
#include <iostream>

#include "cli.h"
#include "esft/error.h"
#include "esft/io/json_file.h"
#include "esft/io/weights.h"
#include "esft/nn/block_stack.h"
#include "esft/runtime.h"
#include "plugin_loader.h"

namespace esft::host {

std::shared_ptr<ModelFamily> resolve_family(const GlobalOptions& global, const ModelConfig& config) {
  PluginLoader loader(global.plugin_dir);
  if (!global.plugin) return loader.load_for_model_type(config.model_type);
  auto family = loader.load(*global.plugin);
  const auto types = family->model_types();
  if (std::find(types.begin(), types.end(), config.model_type) == types.end()) {
    throw Error("plugin '" + *global.plugin + "' does not serve model_type '" + config.model_type + "' (" +
                config.source + ")");
  }
  return family;
}

LoadedModel open_model(const GlobalOptions& global, const std::filesystem::path& model_dir) {
  LoadedModel m;
  m.config = ModelConfig::load(model_dir);
  std::vector<c10::Device> devices;
  for (const auto& d : split_commas(global.device)) devices.push_back(parse_device(d));
  if (devices.empty()) throw UsageError("--device is empty");
  m.device = devices.front();
  m.dtype = parse_dtype(global.dtype, m.device);
  m.family = resolve_family(global, m.config);
  if (devices.size() == 1) {
    m.model = load_model(*m.family, m.config, m.device, m.dtype);
    return m;
  }
  // The whole model fits none of the devices: it is built and loaded in host memory, then spread.
  m.model = load_model(*m.family, m.config, c10::Device(c10::kCPU), m.dtype);
  m.block_devices = nn::place_blocks(*m.model, devices);
  std::cerr << "esft-host: the layers spread over " << device_text(m) << "\n";
  return m;
}

std::string device_text(const LoadedModel& m) {
  if (m.block_devices.empty()) return m.device.str();
  // "cuda:0 (layers 0-23), cuda:1 (layers 24-47)"
  std::string text;
  size_t begin = 0;
  for (size_t i = 1; i <= m.block_devices.size(); ++i) {
    if (i < m.block_devices.size() && m.block_devices[i] == m.block_devices[begin]) continue;
    text += (text.empty() ? "" : ", ") + m.block_devices[begin].str() + " (layers " + std::to_string(begin) +
            (i - 1 > begin ? "-" + std::to_string(i - 1) : "") + ")";
    begin = i;
  }
  return text;
}

std::vector<int64_t> generation_stop_ids(const ModelConfig& config) {
  std::ifstream in(config.model_dir / "generation_config.json");
  if (in) {
    nlohmann::json j;
    try {
      in >> j;
    } catch (const nlohmann::json::exception& e) {
      throw Error("malformed JSON in " + (config.model_dir / "generation_config.json").string() + ": " + e.what());
    }
    auto it = j.find("eos_token_id");
    if (it != j.end() && !it->is_null()) {
      if (auto id = json_get<int64_t>(*it)) return {*id};
      if (auto ids = json_get<std::vector<int64_t>>(*it)) return *ids;
      throw Error("eos_token_id must be an integer or a list of integers (" +
                  (config.model_dir / "generation_config.json").string() + ")");
    }
  }
  return config.eos_token_ids;
}

void check_output_path(const std::filesystem::path& path, const std::string& flag) {
  const auto dir = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    throw Error(flag + " " + path.string() + ": directory " + dir.string() + " does not exist");
  }
}

}  // namespace esft::host
