#include "distributed/environment.h"

#include <cstdlib>

#include "esft/error.h"
#include "esft/io/json_file.h"

namespace esft::host {

namespace {

int read_int(const std::function<const char*(const char*)>& get, const char* name, int low, int high) {
  const char* text = get(name);
  if (!text) throw Error(std::string(name) + " is not set, but the other variables of a multi-process run are");
  const auto value = parse_index(text);
  if (!value || *value < low || *value > high) {
    throw Error(std::string(name) + "='" + text + "' is not an integer in [" + std::to_string(low) + ", " +
                std::to_string(high) + "]");
  }
  return static_cast<int>(*value);
}

}  // namespace

std::string first_slurm_host(const std::string& nodelist) {
  // The first entry ends at the first comma outside brackets; a bracket holds ranges whose first number is ours.
  const auto bad = [&] { return Error("the SLURM node list '" + nodelist + "' is not one"); };
  if (nodelist.empty()) throw bad();
  const auto open = nodelist.find('['), comma = nodelist.find(',');
  if (open == std::string::npos || (comma != std::string::npos && comma < open)) {
    const auto host = nodelist.substr(0, comma);
    if (host.empty() || host.find(']') != std::string::npos) throw bad();
    return host;
  }
  const auto close = nodelist.find(']', open);
  if (close == std::string::npos || open == 0) throw bad();
  const auto ranges = nodelist.substr(open + 1, close - open - 1);
  const auto first = ranges.substr(0, ranges.find_first_of(",-"));
  if (first.empty() || first.find_first_not_of("0123456789") != std::string::npos) throw bad();
  // Any suffix after the bracket belongs to the name too ("n[1-2]-ib" -> "n1-ib").
  const auto suffix_end = nodelist.find(',', close);
  return nodelist.substr(0, open) + first + nodelist.substr(close + 1, suffix_end == std::string::npos ? std::string::npos : suffix_end - close - 1);
}

std::optional<DistributedEnv> read_distributed_env(const std::function<const char*(const char*)>& get_or_null) {
  const std::function<const char*(const char*)> get =
      get_or_null ? get_or_null : [](const char* name) -> const char* { return std::getenv(name); };
  constexpr int kMaxRanks = 1 << 20;
  DistributedEnv env;
  if (get("RANK") || get("WORLD_SIZE")) {
    env.source = "torchrun";
    env.world_size = read_int(get, "WORLD_SIZE", 1, kMaxRanks);
    env.rank = read_int(get, "RANK", 0, env.world_size - 1);
    env.local_rank = get("LOCAL_RANK") ? read_int(get, "LOCAL_RANK", 0, env.world_size - 1) : env.rank;
    if (!get("MASTER_ADDR")) throw Error("MASTER_ADDR is not set, but RANK and WORLD_SIZE are");
    env.master_addr = get("MASTER_ADDR");
    env.master_port = read_int(get, "MASTER_PORT", 1, 65535);
    const char* agent = get("TORCHELASTIC_USE_AGENT_STORE");
    env.agent_store = agent && std::string(agent) == "True";
  } else if (get("SLURM_PROCID") && get("SLURM_STEP_NUM_TASKS")) {
    // A task of an srun step. A batch script itself also has SLURM_PROCID=0 and SLURM_NTASKS, but no step: the
    // commands it runs without srun are one process each.
    env.source = "slurm";
    env.world_size = read_int(get, "SLURM_STEP_NUM_TASKS", 1, kMaxRanks);
    env.rank = read_int(get, "SLURM_PROCID", 0, env.world_size - 1);
    env.local_rank = get("SLURM_LOCALID") ? read_int(get, "SLURM_LOCALID", 0, env.world_size - 1) : 0;
    if (const char* addr = get("MASTER_ADDR")) {
      env.master_addr = addr;
    } else {
      const char* nodes = get("SLURM_STEP_NODELIST") ? get("SLURM_STEP_NODELIST")
                          : get("SLURM_JOB_NODELIST") ? get("SLURM_JOB_NODELIST")
                                                       : get("SLURM_NODELIST");
      if (!nodes) throw Error("neither MASTER_ADDR nor SLURM_STEP_NODELIST is set for this SLURM task");
      env.master_addr = first_slurm_host(nodes);
    }
    if (get("MASTER_PORT")) {
      env.master_port = read_int(get, "MASTER_PORT", 1, 65535);
    } else {
      // A port of the job's own, so that two jobs sharing a first node do not meet at one port.
      const int job = get("SLURM_JOB_ID") ? read_int(get, "SLURM_JOB_ID", 0, 2147483647) : 0;
      env.master_port = 20000 + job % 20000;
    }
  } else {
    return std::nullopt;
  }
  if (env.master_addr.empty()) throw Error("MASTER_ADDR is empty");
  return env;
}

}  // namespace esft::host
