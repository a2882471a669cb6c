#pragma once
// Expert parallelism, Megatron's placement: each MoE layer's E routed experts are cut into W contiguous blocks of
// E / W, rank r holding experts [r E / W, (r + 1) E / W); attention, norms, routers and shared experts are
// replicated, and each rank runs its own tokens. In every MoE layer a rank sends each (token, expert) pair's row to
// the expert's rank, the owner runs its experts over what it received, and the outputs return the same way
// (dist::exchange_rows, differentiable, so the experts' gradients collect every rank's tokens on their owner).
//
// Families build their expert banks deep inside ModelFamily::create (through nn::MoELayer), so the placement is
// a scope rather than a parameter of every family: banks built on a thread while an ExpertParallelScope is alive
// there hold only their rank's block, and checkpoint loading reads only those experts' tensors.
#include "esft/dist/communicator.h"

namespace esft::nn {

class ExpertParallelScope {
 public:
  // `group`: the ranks the experts are spread over (null: every bank holds all its experts). It must outlive the
  // banks built in the scope.
  explicit ExpertParallelScope(dist::Communicator* group);
  ~ExpertParallelScope();
  ExpertParallelScope(const ExpertParallelScope&) = delete;
  ExpertParallelScope& operator=(const ExpertParallelScope&) = delete;

 private:
  dist::Communicator* previous_;
};

// The group of the innermost scope alive on this thread, or null.
dist::Communicator* expert_parallel_group();

}  // namespace esft::nn
