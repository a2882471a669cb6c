// The lora method (the ESFT paper's LoRA baseline): every weight of the model frozen, LoRA pairs on the targets of
// the lora_* settings train. The run leaves OUT/adapter/ in PEFT's format (adapter_config.json,
// adapter_model.safetensors; pipeline/lora_adapter.h), which PEFT loads onto the transformers model and which
// merge, eval and generate take directly.
#include <ATen/ATen.h>

#include <iomanip>
#include <iostream>
#include <map>
#include <set>
#include <sstream>

#include "esft/io/safetensors.h"
#include "esft/pipeline/lora_adapter.h"
#include "method.h"

namespace esft::host {

namespace fs = std::filesystem;

namespace {

const char* kind_name(pipeline::LoraTarget::Kind kind) {
  switch (kind) {
    case pipeline::LoraTarget::Kind::Linear: return "linear layers";
    case pipeline::LoraTarget::Kind::Router: return "routers";
    case pipeline::LoraTarget::Kind::ExpertGateUp: return "expert gate_up banks";
    case pipeline::LoraTarget::Kind::ExpertDown: return "expert down banks";
  }
  return "?";
}

class LoraMethod final : public TrainingMethod {
 public:
  std::string name() const override { return "lora"; }

  train::TrainOptions defaults() const override {
    train::TrainOptions o;
    o.learning_rate = 1e-4;  // LoRA's usual rate; the pairs start at B = 0, so a full model's 1e-5 barely moves them
    o.weight_decay = 0;
    return o;
  }

  void make_trainable(LoadedModel& m, const train::TrainOptions& options, nlohmann::json& fingerprint) override {
    config_.spec.rank = options.lora_rank;
    config_.spec.alpha = options.lora_alpha;
    config_.spec.dropout = options.lora_dropout;
    config_.spec.rslora = options.lora_rslora;
    config_.targets = options.lora_targets;
    at::manual_seed(options.seed);  // the pairs' starting A
    targets_ = pipeline::attach_lora(*m.model, config_, &skipped_);
    fingerprint["method"] = "lora";
    fingerprint["lora"] = config_.to_json();
  }

  std::string trainable_summary(LoadedModel&) const override {
    std::map<std::string, int> count;
    for (const auto& t : targets_) ++count[kind_name(t.kind)];
    std::ostringstream out;
    out << "LoRA rank " << config_.spec.rank << ", alpha " << config_.spec.alpha << " on";
    bool first = true;
    for (const auto& [kind, n] : count) out << (first ? " " : ", ") << n << " " << kind, first = false;
    if (!skipped_.empty()) {
      out << "; all-linear passed over " << skipped_.size() << " layer(s) narrower than the rank (" << skipped_.front()
          << (skipped_.size() > 1 ? ", ..." : "") << ")";
    }
    return out.str();
  }

  TrainingOutput finish(LoadedModel& m, train::Trainer& trainer, const TrainingRunInfo& run) override {
    const auto best = trainer.load_best();
    const nlohmann::json extra = {{"method", "lora"},
                                  {"family", m.family->name()},
                                  {"model_type", m.config.model_type},
                                  {"base_config_sha256", run.fingerprint["base_config_sha256"]},
                                  {"steps", trainer.step()},
                                  {"best_step", best ? nlohmann::json(best->step) : nlohmann::json(nullptr)},
                                  {"train_options", run.options.to_json()}};
    warn_if_peft_misreads(m);
    const auto base = fs::absolute(run.model_dir).lexically_normal().string();
    const auto bytes = pipeline::save_peft_lora_adapter(*m.model, targets_, config_, run.out / "adapter", base, extra);
    const auto base_bytes = Checkpoint::open(run.model_dir).total_bytes();
    std::cout << "adapter    " << (run.out / "adapter").string() << " (PEFT LoRA): " << 2 * targets_.size()
              << " tensors, " << mib_text(bytes) << " (the full model: " << mib_text(base_bytes) << ", "
              << std::setprecision(1) << std::fixed
              << 100.0 * static_cast<double>(bytes) / static_cast<double>(base_bytes) << "%)"
              << (best ? "; weights of the best evaluation, step " + std::to_string(best->step) : std::string()) << "\n";
    return {"adapter", run.out / "adapter", bytes};
  }

 private:
  // PEFT 0.21 under transformers 5 rewrites the config of an adapter for the MoE families whose experts transformers
  // 4 kept as linear layers: a target named gate_proj, up_proj or down_proj is taken for those experts and moved to
  // the fused expert tensors (with twice the rank), so LoRA on shared experts or dense MLPs does not load there.
  void warn_if_peft_misreads(const LoadedModel& m) const {
    static const std::set<std::string> converted = {"qwen2_moe", "qwen3_moe", "olmoe", "glm4_moe", "deepseek_v2",
                                                    "deepseek_v3"};
    if (!converted.count(m.config.model_type)) return;
    int n = 0;
    for (const auto& t : targets_) {
      const auto leaf = t.module.substr(t.module.rfind('.') + 1);
      if (t.kind == pipeline::LoraTarget::Kind::Linear && (leaf == "gate_proj" || leaf == "up_proj" || leaf == "down_proj")) ++n;
    }
    if (n == 0) return;
    std::cerr << "esft-host: warning: " << n << " adapted layers are named gate_proj/up_proj/down_proj (shared experts or "
              << "dense MLPs); PEFT 0.21 under transformers 5 takes such names in a " << m.config.model_type
              << " model for its routed experts and will not load this adapter (esft's eval, generate and merge do; "
              << "leave them out of lora_targets for PEFT)\n";
  }

  pipeline::LoraConfig config_;
  std::vector<pipeline::LoraTarget> targets_;
  std::vector<std::string> skipped_;
};

}  // namespace

std::unique_ptr<TrainingMethod> make_lora_method(const po::variables_map& vm) {
  refuse_esft_options("lora", vm);
  return std::make_unique<LoraMethod>();
}

}  // namespace esft::host
