#include "plot/routing_pictures.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <sstream>

#include "esft/error.h"
#include "esft/io/atomic_file.h"
#include "plot/plot.h"

namespace esft::host {

namespace fs = std::filesystem;

namespace {

// Panels side by side while experts are few; one above the other when each needs the page's width.
size_t panels_per_row(int64_t num_experts, size_t panels) {
  return num_experts > 32 ? 1 : std::min<size_t>(3, panels);
}

// Taller pictures for more layers; experts share the width.
plot::Size map_size(size_t layers, size_t panel_rows) {
  const double per_panel = std::clamp(60.0 + 13.0 * static_cast<double>(layers), 180.0, 700.0);
  return {1100, static_cast<int>(std::min(1600.0, 90 + per_panel * static_cast<double>(panel_rows)))};
}

// Per layer (in layer order), each expert's share of the layer: routed slots (count / (k * tokens)) or gate mass
// (gate_sum / tokens); NaN where the layer saw no tokens.
std::vector<std::vector<double>> shares(const pipeline::RoutingStats& stats, bool gate) {
  std::vector<std::vector<double>> out;
  for (const auto& entry : stats.layers) {
    const auto& r = entry.second;
    std::vector<double> row(static_cast<size_t>(stats.num_experts), NAN);
    const double tokens = static_cast<double>(r.tokens);
    if (r.tokens > 0)
      for (size_t e = 0; e < row.size(); ++e)
        row[e] = gate ? r.gate_sum[e] / tokens : static_cast<double>(r.token_count[e]) / (static_cast<double>(stats.top_k) * tokens);
    out.push_back(std::move(row));
  }
  return out;
}

std::vector<std::string> layer_ticks(const pipeline::RoutingStats& stats) {
  std::vector<std::string> out;
  for (const auto& entry : stats.layers) out.push_back(std::to_string(entry.first));
  return out;
}

std::vector<std::string> column_ticks(int64_t num_experts, ExpertOrder order) {
  std::vector<std::string> out;
  for (int64_t e = 0; e < num_experts; ++e) out.push_back(std::to_string(order == ExpertOrder::Id ? e : e + 1));
  return out;
}

// "3 / 5": the experts that cover 50% and 80% of a layer; "-" for a layer that saw no tokens (NaN shares).
std::string coverage_note(const std::vector<double>& row) {
  if (row.empty() || std::any_of(row.begin(), row.end(), [](double v) { return std::isnan(v); })) return "-";
  return std::to_string(experts_covering(row, 0.5)) + " / " + std::to_string(experts_covering(row, 0.8));
}

}  // namespace

ExpertOrder parse_expert_order(const std::string& text) {
  if (text == "id") return ExpertOrder::Id;
  if (text == "sorted") return ExpertOrder::Sorted;
  throw UsageError("--expert-order must be id or sorted, got '" + text + "'");
}

int64_t experts_covering(std::vector<double> shares, double share) {
  std::sort(shares.begin(), shares.end(), std::greater<double>());
  const double total = std::accumulate(shares.begin(), shares.end(), 0.0);
  if (!(total > 0)) return 0;
  double sum = 0;
  for (size_t i = 0; i < shares.size(); ++i) {
    sum += shares[i];
    if (sum >= share * total * (1 - 1e-12)) return static_cast<int64_t>(i + 1);
  }
  return static_cast<int64_t>(shares.size());
}

void write_routing_pictures(const pipeline::RoutingStats& stats, const fs::path& dir, ExpertOrder order) {
  if (stats.layers.empty()) throw Error("no MoE layer in the statistics: nothing to draw (" + dir.string() + ")");
  const auto tokens = shares(stats, false), gates = shares(stats, true);

  // The numbers first, always in id order.
  std::string csv = "layer,expert,token_count,token_share,gate_sum,gate_share\n";
  size_t row = 0;
  for (const auto& [layer, r] : stats.layers) {
    for (int64_t e = 0; e < stats.num_experts; ++e) {
      csv += std::to_string(layer) + "," + std::to_string(e) + "," + std::to_string(r.token_count[e]) + "," +
             plot::csv_number(tokens[row][e]) + "," + plot::csv_number(r.gate_sum[e]) + "," + plot::csv_number(gates[row][e]) + "\n";
    }
    ++row;
  }
  write_text_atomically(dir / "routing.csv", csv);

  plot::HeatmapGrid grid;
  grid.title = "Routing of " + std::to_string(stats.tokens) + " tokens: " + std::to_string(stats.layers.size()) +
               " MoE layers, " + std::to_string(stats.num_experts) + " experts, top-" + std::to_string(stats.top_k);
  grid.x_label = order == ExpertOrder::Id ? "expert" : "experts of each layer, largest share first (rank)";
  grid.y_label = "layer";
  grid.value_label = "share of the layer";
  grid.x_ticks = column_ticks(stats.num_experts, order);
  grid.columns_of_panels = panels_per_row(stats.num_experts, 2);
  for (const bool gate : {false, true}) {
    plot::HeatmapPanel p;
    p.title = gate ? "share of gate mass" : "share of routed tokens";
    p.row_ticks = layer_ticks(stats);
    p.values = gate ? gates : tokens;
    p.notes_heading = "experts for 50% / 80%";
    for (auto& values : p.values) {
      p.row_notes.push_back(coverage_note(values));
      if (order == ExpertOrder::Sorted) std::sort(values.begin(), values.end(), std::greater<double>());
    }
    grid.panels.push_back(std::move(p));
  }
  plot::save(grid, dir / "routing", map_size(stats.layers.size(), 2 / grid.columns_of_panels));
}

void write_selection_pictures(const std::vector<SelectedTask>& tasks, pipeline::ScoreFunction function, double top_p,
                              const fs::path& dir, const std::string& prefix) {
  const bool gate = function == pipeline::ScoreFunction::Gate;
  plot::HeatmapGrid grid;
  grid.title = std::string("Selected experts (") + (gate ? "gate" : "token") + " scores, top-p " + plot::csv_number(top_p) + ")";
  grid.x_label = "expert";
  grid.y_label = "layer";
  grid.value_label = gate ? "gate score" : "token score";
  grid.marked_label = "selected";
  std::string csv = "task,layer,rank,expert,score,cumulative,selected\n";
  size_t most_layers = 0;
  for (const auto& task : tasks) {
    if (task.stats.layers.empty()) throw Error("task " + task.name + " has no MoE layer: nothing to draw");
    if (grid.x_ticks.empty()) grid.x_ticks = column_ticks(task.stats.num_experts, ExpertOrder::Id);
    if (static_cast<int64_t>(grid.x_ticks.size()) != task.stats.num_experts)
      throw Error("the tasks' statistics have different numbers of experts: they cannot share one picture");
    most_layers = std::max(most_layers, task.stats.layers.size());
    const auto scores = pipeline::expert_scores(task.stats, function);
    plot::HeatmapPanel p;
    p.title = task.name;
    p.notes_heading = "selected";
    plot::LineChart coverage;
    coverage.title = task.name + ": cumulative share of each layer";
    coverage.x_label = "experts, largest score first";
    coverage.y_label = std::string("cumulative ") + (gate ? "gate" : "token") + " score";
    coverage.reference_line = top_p;
    coverage.reference_label = "top-p " + plot::csv_number(top_p);
    for (const auto& [layer, layer_scores] : scores) {
      const auto chosen_it = task.config.experts.find(layer);
      const std::vector<int64_t> chosen = chosen_it == task.config.experts.end() ? std::vector<int64_t>{} : chosen_it->second;
      p.row_ticks.push_back(std::to_string(layer));
      p.values.push_back(layer_scores);
      std::vector<bool> marks(layer_scores.size(), false);
      for (int64_t e : chosen) marks.at(static_cast<size_t>(e)) = true;
      p.marked.push_back(marks);
      p.row_notes.push_back(std::to_string(chosen.size()));
      // Ranked as the selection ranks: score descending, ties by id.
      std::vector<int64_t> rank(layer_scores.size());
      std::iota(rank.begin(), rank.end(), 0);
      const std::vector<double>& s = layer_scores;
      std::stable_sort(rank.begin(), rank.end(), [&s](int64_t a, int64_t b) { return s[a] > s[b]; });
      plot::Series curve;
      curve.name = "layer " + std::to_string(layer);
      double cumulative = 0;
      for (size_t i = 0; i < rank.size(); ++i) {
        cumulative += s[rank[i]];
        curve.x.push_back(static_cast<double>(i + 1));
        curve.y.push_back(cumulative);
        csv += task.name + "," + std::to_string(layer) + "," + std::to_string(i + 1) + "," + std::to_string(rank[i]) +
               "," + plot::csv_number(s[rank[i]]) + "," + plot::csv_number(cumulative) + "," + (marks[rank[i]] ? "1" : "0") + "\n";
      }
      coverage.series.push_back(std::move(curve));
    }
    // Many experts: the curves are cut where the slowest layer has passed top-p by a margin, so the crossings (what
    // the selection decides) are not squeezed into the first few pixels.
    size_t shown = 0;
    for (const auto& curve : coverage.series) {
      size_t reach = curve.y.size();
      for (size_t i = 0; i < curve.y.size(); ++i)
        if (curve.y[i] >= std::min(1.0, top_p + 0.3)) {
          reach = i + 1;
          break;
        }
      shown = std::max(shown, reach);
    }
    shown = std::min(static_cast<size_t>(task.stats.num_experts), std::max<size_t>(8, (shown * 3 + 1) / 2));
    if (shown < static_cast<size_t>(task.stats.num_experts)) {
      for (auto& curve : coverage.series) curve.x.resize(shown), curve.y.resize(shown);
      coverage.title += " (first " + std::to_string(shown) + " of " + std::to_string(task.stats.num_experts) +
                        " experts)";
    }
    plot::save(coverage, dir / (task.name + ".coverage"), {1000, 560});
    grid.panels.push_back(std::move(p));
  }
  write_text_atomically(dir / (prefix + "selection.csv"), csv);
  grid.columns_of_panels = panels_per_row(tasks.front().stats.num_experts, tasks.size());
  const size_t panel_rows = (tasks.size() + grid.columns_of_panels - 1) / grid.columns_of_panels;
  plot::save(grid, dir / (prefix + "selection"), map_size(most_layers, panel_rows));
}

}  // namespace esft::host
