// The router method (Select-MoE's stage 1, shared/spec/VARIANTS.md §1): on a model with trash cans (convert), only
// the router rows train, all E+T of them, with the language-modelling loss plus the config's constraint_weight times
// the trash-mass constraint (RouterObjective adds it) and, when aux_loss_coef > 0, load balancing. The run leaves
// OUT/adapter/ holding the routers, which apply, merge and evaluate like any adapter.
#include <iostream>
#include <sstream>

#include "esft/io/weights.h"
#include "esft/model/trash_constraint.h"
#include "esft/pipeline/adapter_io.h"
#include "esft/pipeline/trainable.h"
#include "esft/runtime.h"
#include "method.h"

namespace esft::host {

namespace fs = std::filesystem;

namespace {

class RouterMethod final : public TrainingMethod {
 public:
  std::string name() const override { return "router"; }

  train::TrainOptions defaults() const override {
    train::TrainOptions o;
    o.learning_rate = 1e-4;
    o.epochs = 4;
    o.batch_size = 4;
    o.gradient_accumulation_steps = 1;
    o.seq_length = 512;
    o.aux_loss_coef = 0;
    o.weight_decay = 0;
    return o;
  }

  void make_trainable(LoadedModel& m, const train::TrainOptions&, nlohmann::json& fingerprint) override {
    if (!trash_constraint_of(*m.model)) {
      throw Error("--method router trains the routers of a Select-MoE model, and " + m.config.source +
                  " has no trash experts (make one with esft-host convert)");
    }
    pipeline::train_only_roles(*m.model, m.family->naming(), {Role::ROUTER});
    fingerprint["method"] = "router";
  }

  std::string trainable_summary(LoadedModel& m) const override {
    const auto layers = m.model->moe_layers();
    std::ostringstream out;
    out << "the routers of " << layers.size() << " MoE layers (" << layers.front()->num_experts() << " experts + "
        << layers.front()->trash_experts() << " trash cans each)";
    return out.str();
  }

  TrainingOutput finish(LoadedModel& m, train::Trainer& trainer, const TrainingRunInfo& run) override {
    const auto manifest = adapter_manifest("router", m, run);
    pipeline::ExpertConfig none;  // no expert trains
    for (auto* layer : m.model->moe_layers()) none.experts[layer->layer_index()] = {};
    const auto adapter = pipeline::save_adapter(*m.model, run.out / "adapter", manifest, none,
                                                {{"steps", trainer.step()}, {"train_options", run.options.to_json()}});
    train::RoutingFigures figures;
    for (const auto& s : run.steps) figures.add(s.routing);
    std::cout << "adapter    " << (run.out / "adapter").string() << ": " << adapter.tensors << " router tensors, "
              << mib_text(adapter.bytes);
    if (figures.constraint) std::cout << "; mean trash constraint over the run " << *figures.constraint;
    std::cout << "\n";
    return {"adapter", run.out / "adapter", adapter.bytes};
  }
};

}  // namespace

std::unique_ptr<TrainingMethod> make_router_method(const po::variables_map& vm) {
  refuse_esft_options("router", vm);
  return std::make_unique<RouterMethod>();
}

}  // namespace esft::host
