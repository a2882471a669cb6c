// config.json as every family plugin reads it: the shared keys (ModelConfig), then each family's own keys and
// limits, building the model on the meta device (shapes without memory, so a config may ask for any size).
#include "esft/model/model_config.h"
#include "esft/model/model_family.h"
#include "fuzz_target.h"
#include "plugin_loader.h"

ESFT_FUZZ_TARGET(model_config) {
  static const auto families = [] {
    std::vector<std::shared_ptr<esft::ModelFamily>> out;
    const esft::host::PluginLoader loader(std::vector<std::filesystem::path>{ESFT_BIN_DIR});
    for (const auto& record : loader.discover()) out.push_back(loader.load(record.name));
    return out;
  }();
  const auto path = esft::fuzz::write_scratch_file("model/config.json", data);
  esft::fuzz::expect_only_clean_errors([&] {
    const auto config = esft::ModelConfig::load(path.parent_path());
    for (const auto& family : families) {
      esft::fuzz::expect_only_clean_errors(
          [&] { family->create(config, c10::Device(c10::kMeta), c10::kFloat); });
    }
  });
}
