#pragma once
// A training method of `esft-host train --method NAME`: which tensors train, what a resumed run must share, and
// what the run leaves behind. The command (commands/train.cpp) does everything methods share: options, data,
// the Trainer, progress, interruption. A new method is a new implementation of this interface.
#include <nlohmann/json.hpp>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "../cli.h"
#include "esft/error.h"
#include "esft/pipeline/adapter_merge.h"
#include "esft/train/train_options.h"
#include "esft/train/trainer.h"

namespace esft::host {

struct TrainingRunInfo {
  std::filesystem::path model_dir, out;
  train::TrainOptions options;
  nlohmann::json fingerprint;
  std::vector<train::StepReport> steps;  // this invocation's steps (not those before a resume)
  train::Trainer::Outcome outcome = train::Trainer::Outcome::Finished;
  dist::Communicator* comm = &dist::solo();  // the run's processes
  bool expert_parallel = false;               // the experts are spread over them: finish runs on every rank
};

// What a run leaves: an adapter folder or a model directory, and its size.
struct TrainingOutput {
  std::string kind;  // "adapter" | "model"
  std::filesystem::path path;
  uint64_t bytes = 0;  // tensor data
};

class TrainingMethod {
 public:
  virtual ~TrainingMethod() = default;
  virtual std::string name() const = 0;
  // The settings a run starts from before --config and --steps.
  virtual train::TrainOptions defaults() const = 0;
  // Sets which parameters train (the others frozen; a method may add parameters, as LoRA does) under the run's
  // settings, and records what defines them in `fingerprint`.
  virtual void make_trainable(LoadedModel& model, const train::TrainOptions& options, nlohmann::json& fingerprint) = 0;
  // What trains, in words, after "trainable N of M parameters (x%)".
  virtual std::string trainable_summary(LoadedModel& model) const = 0;
  // After training: writes what the run leaves (an adapter, a model directory, a summary) and says where. Called on
  // rank 0 alone, or on every rank under expert parallelism (which methods other than esft refuse), where rank 0
  // gathers the experts and writes.
  virtual TrainingOutput finish(LoadedModel& model, train::Trainer& trainer, const TrainingRunInfo& run) = 0;
};

// "esft" (--expert-config required), "full" (every parameter of a pretrained model), "lora" (LoRA pairs, PEFT's
// format), "pretrain" (every parameter, from scratch) or "router" (Select-MoE's routers); all but esft refuse
// --expert-config. UsageError otherwise.
std::unique_ptr<TrainingMethod> make_training_method(const std::string& name, const po::variables_map& vm);

std::unique_ptr<TrainingMethod> make_esft_method(const po::variables_map& vm);      // esft.cpp
std::unique_ptr<TrainingMethod> make_full_method(const po::variables_map& vm);      // full.cpp
std::unique_ptr<TrainingMethod> make_lora_method(const po::variables_map& vm);      // lora.cpp
std::unique_ptr<TrainingMethod> make_pretrain_method(const po::variables_map& vm);  // pretrain.cpp
std::unique_ptr<TrainingMethod> make_router_method(const po::variables_map& vm);    // router.cpp

// The manifest of an adapter a method writes: the method, the family and model type, the base model and the hash
// of its config.json (from the run's fingerprint), the training dtype.
pipeline::AdapterManifest adapter_manifest(const std::string& method, const LoadedModel& model,
                                           const TrainingRunInfo& run);

// Refuses --expert-config and --adapter-format, which only --method esft uses, naming `method`.
void refuse_esft_options(const std::string& method, const po::variables_map& vm);

// "12.3 MiB" (two decimals under 10 MiB).
std::string mib_text(uint64_t bytes);

}  // namespace esft::host
