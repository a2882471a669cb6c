#pragma once
// Training settings. Defaults are the ESFT reference's configs/base.yaml (shared/spec/ESFT.md §4); every field can
// be set in a TOML file whose keys are the field names (top level, or under a [train] table).
#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace esft::train {

enum class LrSchedule { Constant, Cosine };

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
  int64_t batch_size = 1;
  int64_t gradient_accumulation_steps = 16;
  double max_grad_norm = 1.0;  // 0 = no clipping (the norm is still reported)
  double aux_loss_coef = 0;    // load-balancing loss weight; it only reaches trainable routers
  // data
  int64_t seq_length = 4096;
  bool packing = true;
  double random_concat_ratio = 0.2;
  double eval_fraction = 0.02;  // rows held out for the eval loss
  uint64_t seed = 5934875;
  // bookkeeping
  int64_t eval_steps = 100;  // 0 = only at the end
  int64_t save_steps = 100;  // 0 = only at the end
  int64_t keep_checkpoints = 2;
  int64_t log_steps = 10;    // progress lines when stderr is not a terminal

  // Reads a TOML file over the defaults. Throws esft::Error naming the file, key and problem for an unknown key
  // (a typo must not silently train with a default), a value of the wrong type, or a value out of range.
  static TrainOptions load_toml(const std::filesystem::path& path, TrainOptions defaults);
  // The same from TOML text; `where` names it in messages.
  static TrainOptions parse_toml(const std::string& text, const std::string& where, TrainOptions defaults);
  static std::vector<std::string> keys();  // the setting names, sorted
  void validate() const;  // throws esft::Error for values out of range
  nlohmann::json to_json() const;
};

const char* schedule_name(LrSchedule s);
// The multiplier of learning_rate for update `step` (0-based), as transformers' schedules compute it: warmup
// from 0 linearly over warmup_steps, then 1 (constant) or 0.5 * (1 + cos(pi * progress)) (cosine).
double lr_factor(const TrainOptions& o, int64_t step);

}  // namespace esft::train
