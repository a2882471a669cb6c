// The esft method (shared/spec/ESFT.md §4): only what the expert config selects trains; the run leaves
// OUT/adapter/ with those tensors alone.
#include <iomanip>
#include <iostream>
#include <sstream>

#include "esft/io/weights.h"
#include "esft/pipeline/adapter_io.h"
#include "esft/pipeline/trainable.h"
#include "esft/runtime.h"
#include "method.h"

namespace esft::host {

namespace fs = std::filesystem;

namespace {

class EsftMethod final : public TrainingMethod {
 public:
  explicit EsftMethod(pipeline::ExpertConfig config) : config_(std::move(config)) {}
  std::string name() const override { return "esft"; }
  train::TrainOptions defaults() const override { return {}; }

  void make_trainable(LoadedModel& m, nlohmann::json& fingerprint) override {
    pipeline::apply_expert_config(*m.model, m.family->naming(), config_);
    fingerprint["expert_config"] = config_.to_json();
  }

  std::string trainable_summary(LoadedModel& m) const override {
    size_t selected = 0, routed = 0;
    for (const auto& [layer, experts] : config_.experts) selected += experts.size();
    for (auto* layer : m.model->moe_layers()) routed += static_cast<size_t>(layer->num_experts());
    std::ostringstream out;
    out << selected << " of " << routed << " routed experts" << (config_.shared_experts ? " + shared experts" : "")
        << (config_.non_expert_modules ? " + non-expert modules" : "");
    return out.str();
  }

  void finish(LoadedModel& m, train::Trainer& trainer, const TrainingRunInfo& run) override {
    const auto manifest = adapter_manifest("esft", m, run);
    const auto adapter = pipeline::save_adapter(*m.model, run.out / "adapter", manifest, config_,
                                                {{"steps", trainer.step()}, {"train_options", run.options.to_json()}});
    const auto base_bytes = Checkpoint::open(run.model_dir).total_bytes();
    std::cout << "adapter    " << (run.out / "adapter").string() << ": " << adapter.tensors << " tensors, "
              << mib_text(adapter.bytes) << " (the full model: " << mib_text(base_bytes) << ", " << std::setprecision(1)
              << std::fixed << 100.0 * static_cast<double>(adapter.bytes) / static_cast<double>(base_bytes) << "%)\n";
  }

 private:
  pipeline::ExpertConfig config_;
};

}  // namespace

std::unique_ptr<TrainingMethod> make_esft_method(const po::variables_map& vm) {
  if (!vm.count("expert-config")) throw UsageError("--method esft needs --expert-config (from select)");
  return std::make_unique<EsftMethod>(pipeline::ExpertConfig::load(vm["expert-config"].as<std::string>()));
}

}  // namespace esft::host
