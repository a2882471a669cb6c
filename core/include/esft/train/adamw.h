#pragma once
// AdamW as torch.optim.AdamW computes it (decoupled weight decay, bias-corrected moments, eps outside the square
// root), written out so that its state is plain named tensors that a checkpoint stores and restores exactly.
// Parameters kept in a narrower dtype than float32 (bfloat16 on GPU) get a float32 master copy: at lr 1e-5 most
// updates are below bfloat16's resolution and would otherwise be lost. Moments are always float32.
//
// Weight decay applies to matrices only: biases and norm weights (1-D tensors) do not decay, as in transformers'
// Trainer.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "esft/io/safetensors.h"

namespace esft::train {

struct AdamWSettings {
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.1;
};

class AdamW {
 public:
  AdamW(std::vector<std::pair<std::string, at::Tensor>> params, AdamWSettings settings);

  // One update with learning rate `lr` from the parameters' .grad() (a parameter without one is skipped, as torch
  // does).
  void step(double lr);
  int64_t steps() const { return steps_; }

  // The state under stable names (`exp_avg.<param>`, `exp_avg_sq.<param>`, `master.<param>`): the live tensors,
  // which the next step changes (save them, or copy them to keep them).
  NamedTensors state() const;
  // Restores state() output saved after `steps` updates. `local_part` (optional) maps a stored tensor of the named
  // parameter to the part of it this process holds (expert parallelism stores whole tensors, each rank holds
  // rows). Throws esft::Error for a missing or misshapen tensor.
  using LocalPart = std::function<at::Tensor(const std::string& param, const at::Tensor& stored)>;
  void load_state(const SafetensorsFile& file, int64_t steps, const LocalPart& local_part = {});
  uint64_t state_bytes() const;  // moments and master copies

 private:
  struct Slot {
    std::string name;
    at::Tensor param, exp_avg, exp_avg_sq, master;  // master undefined for float32 parameters
    at::Tensor step;                                 // the step count as the fused kernel reads it (float32, 0-d)
    bool decay;
  };
  std::vector<Slot> slots_;
  AdamWSettings settings_;
  int64_t steps_ = 0;
};

// The global L2 norm of the parameters' gradients (in float32), and, when max_norm > 0 and it is larger, scales
// them by max_norm / (norm + 1e-6) as torch.nn.utils.clip_grad_norm_ does. Returns the norm before clipping.
double clip_grad_norm(const std::vector<at::Tensor>& params, double max_norm);
// The pieces of clip_grad_norm, for gradients spread over processes: the squared norm of these gradients (float64),
// and the scaling of them for a global norm `norm` (a no-op unless max_norm > 0 and norm is larger).
double grad_norm_squared(const std::vector<at::Tensor>& params);
void clip_grads_to(const std::vector<at::Tensor>& params, double max_norm, double norm);

}  // namespace esft::train
