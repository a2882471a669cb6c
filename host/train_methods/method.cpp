#include "method.h"

#include "esft/runtime.h"

#include <iomanip>
#include <sstream>

namespace esft::host {

std::unique_ptr<TrainingMethod> make_training_method(const std::string& name, const po::variables_map& vm) {
  if (name == "esft") return make_esft_method(vm);
  if (name == "full") return make_full_method(vm);
  if (name == "lora") return make_lora_method(vm);
  if (name == "pretrain") return make_pretrain_method(vm);
  if (name == "router") return make_router_method(vm);
  throw UsageError("--method " + name + " is not a training method (esft, full, lora, pretrain, router)");
}

void refuse_esft_options(const std::string& method, const po::variables_map& vm) {
  if (vm.count("expert-config")) {
    throw UsageError("--expert-config is not used by --method " + method + " (it selects experts for --method esft); drop it");
  }
  if (!vm["adapter-format"].defaulted()) throw UsageError("--adapter-format applies to --method esft, not " + method);
}

pipeline::AdapterManifest adapter_manifest(const std::string& method, const LoadedModel& m,
                                           const TrainingRunInfo& run) {
  pipeline::AdapterManifest manifest;
  manifest.method = method;
  manifest.family = m.family->name();
  manifest.model_type = m.config.model_type;
  manifest.base_model = std::filesystem::absolute(run.model_dir).lexically_normal().string();
  manifest.base_config_sha256 = run.fingerprint["base_config_sha256"];
  manifest.dtype = dtype_label(m.dtype);
  return manifest;
}

std::string mib_text(uint64_t bytes) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(bytes < 10 * 1024 * 1024 ? 2 : 1) << static_cast<double>(bytes) / 1048576.0
      << " MiB";
  return out.str();
}

}  // namespace esft::host
