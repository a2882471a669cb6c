// The pretrain method (training from scratch; shared/spec/VARIANTS.md §2-3): every parameter trains, with the
// language-modelling loss plus what the routers add (router_mode). The run leaves OUT/model/, a complete model
// directory with the weights of the best evaluation (the last weights when there was none), and OUT/summary.json
// with that model's validation loss and routing figures and the run's throughput and memory.
#include <cmath>
#include <iomanip>
#include <iostream>

#include "../model_writer.h"
#include "esft/error.h"
#include "esft/io/atomic_file.h"
#include "esft/io/json_file.h"
#include "esft/io/safetensors.h"
#include "esft/pipeline/trainable.h"
#include "esft/runtime.h"
#include "method.h"

namespace esft::host {

namespace fs = std::filesystem;

namespace {

nlohmann::json optional_json(const std::optional<double>& v) {
  return v && std::isfinite(*v) ? nlohmann::json(*v) : nlohmann::json(nullptr);
}

const char* outcome_name(train::Trainer::Outcome o) {
  switch (o) {
    case train::Trainer::Outcome::Finished: return "finished";
    case train::Trainer::Outcome::EarlyStopped: return "early_stopped";
    case train::Trainer::Outcome::Interrupted: return "interrupted";
  }
  return "?";
}

class PretrainMethod final : public TrainingMethod {
 public:
  std::string name() const override { return "pretrain"; }
  train::TrainOptions defaults() const override { return train::pretrain_defaults(); }

  void make_trainable(LoadedModel& m, const train::TrainOptions&, nlohmann::json& fingerprint) override {
    pipeline::apply_expert_config(*m.model, m.family->naming(), pipeline::everything_config(*m.model));
    fingerprint["method"] = "pretrain";
  }

  std::string trainable_summary(LoadedModel&) const override { return "every parameter (training from scratch)"; }

  TrainingOutput finish(LoadedModel& m, train::Trainer& trainer, const TrainingRunInfo& run) override {
    const auto best = trainer.load_best();
    const auto model_out = run.out / "model";
    std::error_code ec;
    fs::remove_all(model_out, ec);  // a model from an earlier, shorter invocation of this run
    const auto config = read_json_file(run.model_dir / "config.json");
    write_model_directory(*m.model, config, tokenizer_files(run.model_dir), model_out, "esft-host train --method pretrain");

    // The shipped model's own figures: one more pass over the eval rows.
    const auto eval = trainer.evaluate();
    train::RoutingFigures train_figures;
    double tokens_per_s = 0;
    for (const auto& s : run.steps) {
      train_figures.add(s.routing);
      tokens_per_s += s.tokens_per_s;
    }
    if (!run.steps.empty()) tokens_per_s /= static_cast<double>(run.steps.size());

    nlohmann::json shares = nlohmann::json::object();
    if (eval) {
      for (const auto& [layer, pairs] : eval->routing.expert_pairs) {
        double total = 0;
        for (double c : pairs) total += c;
        std::vector<double> share;
        for (double c : pairs) share.push_back(total > 0 ? c / total : 0);
        shares[std::to_string(layer)] = share;
      }
    }
    const nlohmann::json summary = {
        {"method", "pretrain"},
        {"model", model_out.string()},
        {"model_type", m.config.model_type},
        {"outcome", outcome_name(run.outcome)},
        {"steps", trainer.step()},
        {"best_step", best ? nlohmann::json(best->step) : nlohmann::json(nullptr)},
        {"val_loss", eval ? nlohmann::json(eval->loss) : nlohmann::json(nullptr)},
        {"val_ppl", eval ? nlohmann::json(eval->ppl()) : nlohmann::json(nullptr)},
        {"tokens_per_sec", tokens_per_s},
        {"peak_mem_mb", peak_memory_mib(m.device)},
        {"device", m.device.str()},
        {"dtype", dtype_label(m.dtype)},
        {"router_mode", train::router_mode_name(run.options.router_mode)},
        {"eval_routing",
         {{"drop_fraction", optional_json(eval ? eval->routing.drop_fraction() : std::nullopt)},
          {"utilisation_entropy", optional_json(eval ? eval->routing.utilisation_entropy(false) : std::nullopt)},
          {"utilisation_entropy_norm", optional_json(eval ? eval->routing.utilisation_entropy(true) : std::nullopt)},
          {"overuse_rate", optional_json(eval ? eval->routing.overuse_rate() : std::nullopt)},
          {"expert_share", shares}}},
        {"train_routing",
         {{"aux", optional_json(train_figures.aux)},
          {"drop_fraction", optional_json(train_figures.drop_fraction())},
          {"boids_cohesion", optional_json(train_figures.boids_cohesion)},
          {"boids_separation", optional_json(train_figures.boids_separation)},
          {"boids_alignment", optional_json(train_figures.boids_alignment)}}},
        {"train_options", run.options.to_json()}};
    write_text_atomically(run.out / "summary.json", summary.dump(2) + "\n");

    std::cout << "model      " << model_out.string() << " (weights of "
              << (best ? "the best evaluation, step " + std::to_string(best->step) : "the last step") << ")\n";
    if (eval) {
      std::cout << "validation loss " << std::fixed << std::setprecision(4) << eval->loss << ", PPL "
                << std::setprecision(3) << eval->ppl();
      if (auto d = eval->routing.drop_fraction()) std::cout << ", dropped " << std::setprecision(2) << 100 * *d << "%";
      if (auto h = eval->routing.utilisation_entropy(true))
        std::cout << ", utilisation entropy " << std::setprecision(3) << *h << " of ln E";
      std::cout << "\n";
    }
    std::cout << "summary    " << (run.out / "summary.json").string() << "\n";
    return {"model", model_out, Checkpoint::open(model_out).total_bytes()};
  }
};

}  // namespace

std::unique_ptr<TrainingMethod> make_pretrain_method(const po::variables_map& vm) {
  refuse_esft_options("pretrain", vm);
  return std::make_unique<PretrainMethod>();
}

}  // namespace esft::host
