#pragma once
// The c10d process group of a multi-process run, behind dist::Communicator: rendezvous through PyTorch's TCPStore at
// MASTER_ADDR:MASTER_PORT (rank 0 serves it), then ProcessGroupNCCL when the run's device is a GPU and the build
// has CUDA, ProcessGroupGloo otherwise. PyTorch's own engine, as torch.distributed uses it.
#include <c10/core/Device.h>

#include <chrono>

#include "../cli.h"
#include "distributed/environment.h"
#include "esft/dist/communicator.h"
#include "esft/nn/expert_parallel.h"

namespace esft::host {

// Joins the run the environment describes (read_distributed_env), once per process; later calls return the same
// group. Without such an environment it returns dist::solo(). A CUDA device without an index ("auto" or "cuda")
// becomes cuda:LOCAL_RANK in `global.device`, one GPU per process. Throws esft::Error when the rendezvous fails
// within --dist-timeout.
dist::Communicator& join_process_group(GlobalOptions& global);

// Shuts down the group join_process_group made, if any (main calls it before returning).
void leave_process_group();

// `--expert-parallel` of scores and train: the group to spread every MoE layer's experts over, or null when not
// asked. Throws UsageError when asked in a run of one process (call it before any output exists).
dist::Communicator* expert_group(dist::Communicator& comm, bool expert_parallel);
// open_model, each rank building and loading only its block of every layer's experts when `experts` is a group
// (nn::ExpertParallelScope). Inline: the commands link it with open_model, which this library does not.
inline LoadedModel open_model_on(const GlobalOptions& global, const std::filesystem::path& model_dir,
                                 dist::Communicator* experts) {
  nn::ExpertParallelScope placement(experts);
  return open_model(global, model_dir);
}

// The group of `env` on `device` (tests and benchmarks make their own).
std::unique_ptr<dist::Communicator> make_process_group(const DistributedEnv& env, const c10::Device& device,
                                                       std::chrono::seconds timeout);

}  // namespace esft::host
