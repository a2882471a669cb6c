// The full method (full fine-tuning, the ESFT paper's FFT baseline): every parameter of a pretrained model trains,
// every routed expert included (the banks' split halves become one trainable tensor). The run leaves OUT/model/,
// a complete Hugging Face checkpoint (model.safetensors, or shards with an index, as merge writes), with the
// weights of the best evaluation when keep_best is set.
#include <iomanip>
#include <iostream>

#include "../model_writer.h"
#include "esft/io/safetensors.h"
#include "esft/pipeline/trainable.h"
#include "method.h"

namespace esft::host {

namespace fs = std::filesystem;

namespace {

class FullMethod final : public TrainingMethod {
 public:
  std::string name() const override { return "full"; }
  train::TrainOptions defaults() const override { return {}; }

  void make_trainable(LoadedModel& m, const train::TrainOptions&, nlohmann::json& fingerprint) override {
    pipeline::apply_expert_config(*m.model, m.family->naming(), pipeline::everything_config(*m.model));
    fingerprint["method"] = "full";
  }

  std::string trainable_summary(LoadedModel&) const override { return "every parameter (full fine-tuning)"; }

  TrainingOutput finish(LoadedModel& m, train::Trainer& trainer, const TrainingRunInfo& run) override {
    const auto best = trainer.load_best();
    const auto model_out = run.out / "model";
    std::error_code ec;
    fs::remove_all(model_out, ec);  // a model from an earlier, shorter invocation of this run
    write_model_like_base(*m.model, run.model_dir, model_out, "esft-host train --method full");
    const auto bytes = Checkpoint::open(model_out).total_bytes();
    std::cout << "model      " << model_out.string() << " (weights of "
              << (best ? "the best evaluation, step " + std::to_string(best->step) : "the last step")
              << "): " << mib_text(bytes) << "\n";
    return {"model", model_out, bytes};
  }
};

}  // namespace

std::unique_ptr<TrainingMethod> make_full_method(const po::variables_map& vm) {
  refuse_esft_options("full", vm);
  return std::make_unique<FullMethod>();
}

}  // namespace esft::host
