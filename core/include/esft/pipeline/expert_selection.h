#pragma once
// Expert selection (shared/spec/ESFT.md §2): per MoE layer, the experts that together carry the top-p share of a
// task's routing, and the expert_config.json that records them.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "esft/pipeline/routing_stats.h"

namespace esft::pipeline {

enum class ScoreFunction {
  Token,  // count / (k * tokens): the share of routed slots
  Gate,   // gate_sum / tokens: the mean weight per token
};
ScoreFunction parse_score_function(const std::string& text);  // "token" | "gate"; esft::Error otherwise

// Per layer, each expert's score rounded to 4 decimals as the reference rounds (ties depend on it).
std::map<int, std::vector<double>> expert_scores(const RoutingStats& stats, ScoreFunction function);

// Python's round(x, 4): the correctly rounded decimal, ties to even on the exact binary value.
double round4(double x);

struct ExpertConfig {
  std::map<int, std::vector<int64_t>> experts;  // layer -> selected experts, in selection order
  bool shared_experts = false;
  bool non_expert_modules = false;

  nlohmann::json to_json() const;
  // Throws esft::Error, prefixed by `where`, for a malformed config.
  static ExpertConfig from_json(const nlohmann::json& j, const std::string& where);
  static ExpertConfig load(const std::filesystem::path& path);
};

// Per layer: experts by descending score (ties: ascending id), taken while the running total is below top_p (the
// one that crosses it is kept). Throws esft::Error for top_p outside (0, 1].
ExpertConfig select_experts(const RoutingStats& stats, ScoreFunction function, double top_p);

}  // namespace esft::pipeline
