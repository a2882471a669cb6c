#pragma once
// The pictures of routing statistics and expert selection (the numbers behind each picture are written beside it
// as CSV, so a test or a spreadsheet reads what the picture shows):
//   scores: routing.{png,svg}, a layers x experts map of each expert's share of the task's routed tokens and of its
//           gate mass, with how many experts cover 50% and 80% of each layer; routing.csv
//   select: <prefix>selection.{png,svg}, the same map for each task on one colour scale with the selected experts
//           dotted; per task <name>.coverage.{png,svg}, each layer's cumulative share against the number of
//           experts, with the top-p line; <prefix>selection.csv
#include <filesystem>
#include <string>
#include <vector>

#include "esft/pipeline/expert_selection.h"
#include "esft/pipeline/routing_stats.h"

namespace esft::host {

// Columns in expert-id order, or per layer from the largest share down (then column j is the j-th largest).
enum class ExpertOrder { Id, Sorted };
ExpertOrder parse_expert_order(const std::string& text);  // "id" | "sorted"; UsageError otherwise

// The fewest experts whose shares, largest first, add up to at least `share` of `shares`' total (0 when it is 0).
int64_t experts_covering(std::vector<double> shares, double share);

// routing.{png,svg} and routing.csv in `dir`.
void write_routing_pictures(const pipeline::RoutingStats& stats, const std::filesystem::path& dir, ExpertOrder order);

struct SelectedTask {
  std::string name;
  pipeline::RoutingStats stats;
  pipeline::ExpertConfig config;
};

// <prefix>selection.{png,svg}, <prefix>selection.csv and <name>.coverage.{png,svg} per task, in `dir`; the scores
// are those the selection used (rounded as the reference rounds).
void write_selection_pictures(const std::vector<SelectedTask>& tasks, pipeline::ScoreFunction function, double top_p,
                              const std::filesystem::path& dir, const std::string& prefix);

}  // namespace esft::host
