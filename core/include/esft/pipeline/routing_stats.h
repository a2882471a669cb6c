#pragma once
// Routing statistics of a task (shared/spec/ESFT.md §1): per MoE layer, how often each expert was chosen and the
// sum of the weights it was applied with. Stored as scores.json; also read from the ESFT reference's text logs.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace esft::pipeline {

struct LayerRouting {
  std::vector<int64_t> token_count;  // [E] times each expert was chosen
  std::vector<double> gate_sum;      // [E] sum of its applied weights
  int64_t tokens = 0;                // tokens routed at this layer
};

struct RoutingStats {
  std::string model_type;
  int64_t num_experts = 0;
  int64_t top_k = 0;
  int64_t tokens = 0;
  std::map<int, LayerRouting> layers;  // Hugging Face decoder layer index -> statistics (MoE layers only)

  nlohmann::json to_json() const;  // {"format":"esft-scores","version":1,...}
  // Throws esft::Error, prefixed by `where`, for another format or version or inconsistent sizes.
  static RoutingStats from_json(const nlohmann::json& j, const std::string& where);
};

// The reference's logs: `expert_weights_{layer}.txt` (or .txt.gz) per MoE layer, a line per sequence with the
// chosen expert ids of all its tokens, a literal "\t\t", then their weights. `path` is a directory of them or of
// `rank_*` subdirectories of them (summed). The logs carry neither k nor E, so the caller gives both. Throws
// esft::Error naming file and line for a malformed line or an id outside [0, num_experts).
RoutingStats read_legacy_logs(const std::filesystem::path& path, int64_t top_k, int64_t num_experts);

// scores.json (a file, or a directory holding one) or legacy logs (as above; top_k and num_experts must be > 0).
RoutingStats load_routing_stats(const std::filesystem::path& path, int64_t top_k = 0, int64_t num_experts = 0);

}  // namespace esft::pipeline
