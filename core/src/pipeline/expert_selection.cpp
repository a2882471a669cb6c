#include "esft/pipeline/expert_selection.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <numeric>

#include "esft/error.h"
#include "esft/io/json_file.h"

namespace esft::pipeline {

ScoreFunction parse_score_function(const std::string& text) {
  if (text == "token") return ScoreFunction::Token;
  if (text == "gate") return ScoreFunction::Gate;
  throw Error("score function '" + text + "' is not token or gate");
}

double round4(double x) {
  // printf rounds the exact binary value correctly (ties to even), which is what Python's round() computes.
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.4f", x);
  return std::strtod(buffer, nullptr);
}

std::map<int, std::vector<double>> expert_scores(const RoutingStats& stats, ScoreFunction function) {
  std::map<int, std::vector<double>> out;
  for (const auto& [layer, r] : stats.layers) {
    std::vector<double> scores(static_cast<size_t>(stats.num_experts), 0.0);
    if (r.tokens > 0) {
      const double tokens = static_cast<double>(r.tokens);
      for (int64_t e = 0; e < stats.num_experts; ++e) {
        scores[e] = function == ScoreFunction::Token
                        ? round4(static_cast<double>(r.token_count[e]) / (static_cast<double>(stats.top_k) * tokens))
                        : round4(r.gate_sum[e] / tokens);
      }
    }
    out[layer] = std::move(scores);
  }
  return out;
}

nlohmann::json ExpertConfig::to_json() const {
  nlohmann::json e = nlohmann::json::object();
  for (const auto& [layer, list] : experts) e[std::to_string(layer)] = list;
  return {{"experts", e}, {"shared_experts", shared_experts}, {"non_expert_modules", non_expert_modules}};
}

ExpertConfig ExpertConfig::from_json(const nlohmann::json& j, const std::string& where) {
  ExpertConfig c;
  try {
    for (const auto& item : j.at("experts").items()) {
      const auto& key = item.key();
      const auto layer = parse_index(key);
      if (!layer || *layer > std::numeric_limits<int>::max()) {
        throw Error(where + ": layer key '" + key + "' is not a layer index");
      }
      auto experts = json_get<std::vector<int64_t>>(item.value());
      if (!experts) throw Error(where + ": layer " + key + ": experts must be a list of integers");
      c.experts[static_cast<int>(*layer)] = std::move(*experts);
    }
    c.shared_experts = j.value("shared_experts", false);
    c.non_expert_modules = j.value("non_expert_modules", false);
  } catch (const nlohmann::json::exception& e) {
    throw Error(where + ": malformed expert config (" + e.what() + ")");
  }
  return c;
}

ExpertConfig ExpertConfig::load(const std::filesystem::path& path) { return from_json(read_json_file(path), path.string()); }

ExpertConfig select_experts(const RoutingStats& stats, ScoreFunction function, double top_p) {
  if (!(top_p > 0 && top_p <= 1)) throw Error("top_p must be in (0, 1]");
  ExpertConfig config;
  for (const auto& [layer, layer_scores] : expert_scores(stats, function)) {
    const std::vector<double>& scores = layer_scores;  // a lambda may not capture a structured binding in C++17
    std::vector<int64_t> order(scores.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return scores[a] > scores[b]; });
    double current = 0;
    auto& chosen = config.experts[layer];
    for (int64_t e : order) {
      if (current >= top_p) break;
      chosen.push_back(e);
      current += scores[e];
    }
  }
  return config;
}

}  // namespace esft::pipeline
