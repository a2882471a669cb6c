#pragma once
// Select-MoE's conversion of an OLMoE model (shared/spec/VARIANTS.md §1): every MoE layer's router grows from
// [E, H] to [E+T, H]; rows 0..E-1 are the original bit for bit, rows E..E+T-1 are drawn from N(0, init_std) by a
// generator seeded with `seed` (layer by layer, in layer order). Every other tensor is the original, untouched.
// config.json becomes model_type "select_moe" with num_trash_experts, trash_init_std and the constraint settings.
#include <nlohmann/json.hpp>

#include <cstdint>

#include "esft/io/safetensors.h"
#include "esft/model/param_naming.h"
#include "esft/model/trash_constraint.h"

namespace esft::pipeline {

struct TrashConversionOptions {
  int64_t trash_experts = 0;  // T; 0 = the model's num_experts_per_tok
  uint64_t seed = 0;
  double init_std = 0.02;
  TrashConstraint constraint;  // written into the config for router pre-training
};

struct TrashConversion {
  nlohmann::json config;
  NamedTensors tensors;  // all of the checkpoint's; unchanged ones alias its files (keep `checkpoint` open)
  int64_t trash_experts = 0;
  int routers_grown = 0;
};

// Throws esft::Error for a model that is not OLMoE (an already converted one is named as such), T < 1, or a
// checkpoint whose routers do not have num_experts rows.
TrashConversion convert_to_select_moe(const Checkpoint& checkpoint, const nlohmann::json& config,
                                      const ParamNaming& naming, const TrashConversionOptions& options);

}  // namespace esft::pipeline
