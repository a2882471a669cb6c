// The esft method (shared/spec/ESFT.md §4): only what the expert config selects trains; the run leaves
// OUT/adapter/ with those tensors alone.
#include <iomanip>
#include <iostream>
#include <sstream>

#include "esft/dist/collectives.h"
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
  EsftMethod(pipeline::ExpertConfig config, pipeline::AdapterFormat format) : config_(std::move(config)), format_(format) {}
  std::string name() const override { return "esft"; }
  train::TrainOptions defaults() const override { return {}; }

  void make_trainable(LoadedModel& m, const train::TrainOptions&, nlohmann::json& fingerprint) override {
    if (format_ == pipeline::AdapterFormat::Reference && !m.family->naming().per_expert_tensors()) {
      throw Error("--adapter-format reference: the ESFT reference's adapters hold one tensor per expert, and " +
                  m.family->name() + " stores its experts fused; use --adapter-format esft");
    }
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

  TrainingOutput finish(LoadedModel& m, train::Trainer& trainer, const TrainingRunInfo& run) override {
    // Under expert parallelism each rank holds its own experts' tensors: rank 0 gathers them all.
    auto tensors = pipeline::trained_checkpoint_tensors(*m.model);
    if (run.expert_parallel) tensors = dist::gather_named_tensors(*run.comm, tensors);
    if (!run.comm->is_root()) return {};
    pipeline::AdapterSummary adapter;
    if (format_ == pipeline::AdapterFormat::Reference) {
      pipeline::save_reference_adapter(run.out / "adapter", tensors, config_);
      adapter.tensors = static_cast<int64_t>(tensors.size());
      for (const auto& t : tensors) adapter.bytes += t.second.nbytes();
    } else {
      adapter = pipeline::save_adapter_tensors(tensors, run.out / "adapter", adapter_manifest("esft", m, run), config_,
                                               {{"steps", trainer.step()}, {"train_options", run.options.to_json()}});
    }
    const auto base_bytes = Checkpoint::open(run.model_dir).total_bytes();
    std::cout << "adapter    " << (run.out / "adapter").string() << " (" << pipeline::adapter_format_name(format_)
              << " format): " << adapter.tensors << " tensors, " << mib_text(adapter.bytes) << " (the full model: "
              << mib_text(base_bytes) << ", " << std::setprecision(1) << std::fixed
              << 100.0 * static_cast<double>(adapter.bytes) / static_cast<double>(base_bytes) << "%)\n";
    return {"adapter", run.out / "adapter", adapter.bytes};
  }

 private:
  pipeline::ExpertConfig config_;
  pipeline::AdapterFormat format_;
};

}  // namespace

std::unique_ptr<TrainingMethod> make_esft_method(const po::variables_map& vm) {
  if (!vm.count("expert-config")) throw UsageError("--method esft needs --expert-config (from select)");
  pipeline::AdapterFormat format = pipeline::AdapterFormat::Esft;
  try {
    format = pipeline::parse_adapter_format(vm["adapter-format"].as<std::string>());
  } catch (const Error& e) {
    throw UsageError(std::string("--adapter-format: ") + e.what());
  }
  return std::make_unique<EsftMethod>(pipeline::ExpertConfig::load(vm["expert-config"].as<std::string>()), format);
}

}  // namespace esft::host
