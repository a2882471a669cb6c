#pragma once
// Training settings. Defaults are the ESFT reference's configs/base.yaml (shared/spec/ESFT.md §4); every field can
// be set in a TOML file whose keys are the field names (top level, or under a [train] table).
#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "esft/model/boids_losses.h"

namespace esft::train {

enum class LrSchedule { Constant, Cosine };

// What the routers add to the loss (shared/spec/VARIANTS.md §2-3): nothing; the load-balancing loss
// (aux_loss_coef * aux); or that plus the Boids terms. The figures (aux, drops, Boids terms) are reported in every mode.
enum class RouterMode { None, Normal, Boids };

struct TrainOptions {
  // optimizer (AdamW)
  double learning_rate = 1e-5;
  double adam_beta1 = 0.9;
  double adam_beta2 = 0.95;
  double adam_epsilon = 1e-8;
  double weight_decay = 0.1;
  // schedule: linear warmup, then constant or cosine decay to 0 (transformers' constant_with_warmup / cosine)
  LrSchedule lr_scheduler = LrSchedule::Constant;
  int64_t warmup_steps = 0;
  // steps and batches: one step = gradient_accumulation_steps micro-batches of batch_size rows
  int64_t steps = 500;
  double epochs = 0;  // > 0: steps = ceil(epochs * training rows / rows per step), set by train once rows are known
  int64_t batch_size = 1;
  int64_t gradient_accumulation_steps = 16;
  double max_grad_norm = 1.0;  // 0 = no clipping (the norm is still reported)
  double aux_loss_coef = 0;    // load-balancing loss weight; it only reaches trainable routers
  RouterMode router_mode = RouterMode::Normal;
  BoidsSettings boids;         // boids_cohesion, boids_separation, boids_alignment, boids_tau, boids_k_nn, boids_warmup_frac
  bool boids_all_layers = false;  // boids_layers = "last" (the last MoE layer) | "all"
  // data
  int64_t seq_length = 4096;
  bool packing = true;
  bool stream_packing = false;  // packing_style = "esft" (the reference's windows) | "stream" (data::stream_samples)
  double random_concat_ratio = 0.2;
  double eval_fraction = 0.02;  // rows held out for the eval loss
  int64_t max_eval_rows = 0;    // evaluate on the first this many eval rows; 0 = all
  uint64_t seed = 5934875;
  // bookkeeping
  int64_t eval_steps = 100;  // 0 = only at the end
  int64_t save_steps = 100;  // 0 = only at the end
  int64_t keep_checkpoints = 2;
  int64_t log_steps = 10;    // progress lines when stderr is not a terminal
  // the best evaluation and early stopping
  bool keep_best = false;             // keep the trainable tensors of the lowest eval loss in checkpoints/best/
  int64_t early_stop_patience = 0;    // stop after this many evaluations without improvement; 0 = never
  double early_stop_min_delta = 0;    // an improvement is a drop of the eval loss by more than this

  // LoRA (`train --method lora` only; the other methods ignore these): rank, alpha (scaling alpha / rank, or
  // alpha / sqrt(rank) with lora_rslora), dropout on the adapted linear layers' input, and what to adapt
  // (pipeline/lora_adapter.h: "all-linear", module names such as "q_proj", "gate", "experts").
  int64_t lora_rank = 8;
  double lora_alpha = 16;
  double lora_dropout = 0;
  bool lora_rslora = false;
  std::vector<std::string> lora_targets = {"all-linear"};
  // Reads a TOML file over the defaults. Throws esft::Error naming the file, key and problem for an unknown key
  // (a typo must not silently train with a default), a value of the wrong type, or a value out of range.
  static TrainOptions load_toml(const std::filesystem::path& path, TrainOptions defaults);
  // The same from TOML text; `where` names it in messages.
  static TrainOptions parse_toml(const std::string& text, const std::string& where, TrainOptions defaults);
  static std::vector<std::string> keys();  // the setting names, sorted
  void validate() const;  // throws esft::Error for values out of range
  nlohmann::json to_json() const;
};

// Training from scratch (`train --method pretrain`): the TinyMoE reference's settings (shared/spec/VARIANTS.md §2):
// AdamW lr 3e-4, betas (0.9, 0.95), weight decay 0.01, cosine with 1% warmup, clip 1.0, 16 rows of 256 tokens,
// aux_loss_coef 0.01, stream packing, an evaluation every 200 steps with the best kept.
TrainOptions pretrain_defaults();

const char* schedule_name(LrSchedule s);
const char* router_mode_name(RouterMode m);
// The multiplier of learning_rate for update `step` (0-based), as transformers' schedules compute it: warmup
// from 0 linearly over warmup_steps, then 1 (constant) or 0.5 * (1 + cos(pi * progress)) (cosine).
double lr_factor(const TrainOptions& o, int64_t step);

}  // namespace esft::train
