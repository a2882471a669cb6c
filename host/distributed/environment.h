#pragma once
// Where this process stands in a multi-process run, read from the environment its launcher set: torchrun's and
// `esft-host launch`'s (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), or those of a task of an `srun` step
// (SLURM_PROCID, SLURM_STEP_NUM_TASKS, SLURM_LOCALID, the first host of SLURM_STEP_NODELIST; MASTER_ADDR and
// MASTER_PORT win when set). A batch script's own commands, outside srun, are single processes.
#include <functional>
#include <optional>
#include <string>

namespace esft::host {

struct DistributedEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  std::string master_addr;
  int master_port = 0;
  std::string source;  // "torchrun" (RANK/WORLD_SIZE) or "slurm"
  // torchrun's agent already serves the TCPStore at MASTER_ADDR:MASTER_PORT (TORCHELASTIC_USE_AGENT_STORE=True):
  // every rank joins it as a client, rank 0 included.
  bool agent_store = false;
};

// Reads the variables through `get` (nullptr for unset; std::getenv by default). Returns nullopt when neither set is
// present (a run of one process, no process group), and throws esft::Error naming the variable when one is
// malformed, out of range or missing from a set that is otherwise present.
std::optional<DistributedEnv> read_distributed_env(
    const std::function<const char*(const char*)>& get = nullptr);

// The first host of a SLURM node list: "gpu[03-05,7],cpu1" -> "gpu03". Throws esft::Error for an empty or
// malformed list.
std::string first_slurm_host(const std::string& nodelist);

}  // namespace esft::host
