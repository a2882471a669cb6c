// An experiment's report: one row per run from its train/summary.json, behaviour.json and task.json (summary.csv,
// summary.json, printed), and the pictures: the validation loss of every run on one plot, each run's expert
// utilisation per MoE layer, the runs' utilisation entropy per layer side by side, and the best-PPL heatmap over two
// swept settings.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "esft/error.h"
#include "esft/io/atomic_file.h"
#include "esft/io/json_file.h"
#include "experiment/experiment.h"
#include "plot/plot.h"
#include "run/html_report.h"

namespace esft::host::experiment {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// The table's columns: a header, where its value is in a run's record ({"train": train/summary.json, "behaviour":
// behaviour.json, "task": task.json}), and its printed precision.
struct Column {
  const char* header;
  std::vector<const char*> path;
  int precision;
};

const std::vector<Column>& columns() {
  static const std::vector<Column> c = {
      {"val_ppl", {"train", "val_ppl"}, 3},
      {"val_loss", {"train", "val_loss"}, 4},
      {"best_step", {"train", "best_step"}, 0},
      {"steps", {"train", "steps"}, 0},
      {"tokens_per_sec", {"train", "tokens_per_sec"}, 0},
      {"mem_mb", {"train", "peak_mem_mb"}, 0},
      {"drop_frac", {"train", "eval_routing", "drop_fraction"}, 4},
      {"util_entropy_norm", {"train", "eval_routing", "utilisation_entropy_norm"}, 4},
      {"overuse_rate", {"train", "eval_routing", "overuse_rate"}, 4},
      {"aux", {"train", "train_routing", "aux"}, 4},
      {"boids_cohesion", {"train", "train_routing", "boids_cohesion"}, 6},
      {"boids_separation", {"train", "train_routing", "boids_separation"}, 6},
      {"boids_alignment", {"train", "train_routing", "boids_alignment"}, 6},
      {"self_consistency", {"behaviour", "self_consistency"}, 4},
      {"embedding_variance", {"behaviour", "embedding_variance"}, 4},
      {"repetition", {"behaviour", "repetition"}, 4},
  };
  return c;
}

json at_path(const json& j, const std::vector<const char*>& path) {
  const json* v = &j;
  for (const char* k : path) {
    if (!v->is_object() || !v->contains(k)) return nullptr;
    v = &(*v)[k];
  }
  return *v;
}

std::string number_text(const json& v, int precision) {
  if (!v.is_number()) return "";
  std::ostringstream out;
  out << std::fixed << std::setprecision(precision) << v.get<double>();
  return out.str();
}

// metrics.csv's column `name` against its step column; NaN where a row leaves it empty.
plot::Series csv_series(const fs::path& csv, const std::string& name, const std::string& label) {
  plot::Series s;
  s.name = label;
  std::ifstream in(csv);
  std::string line;
  if (!std::getline(in, line)) return s;
  std::vector<std::string> header;
  for (std::stringstream row(line); std::getline(row, line, ',');) header.push_back(line);
  size_t column = header.size();
  for (size_t i = 0; i < header.size(); ++i)
    if (header[i] == name) column = i;
  if (column == header.size()) return s;
  while (std::getline(in, line)) {
    std::vector<std::string> cells;
    std::stringstream row(line);
    for (std::string cell; std::getline(row, cell, ',');) cells.push_back(cell);
    if (cells.empty()) continue;
    s.x.push_back(std::stod(cells[0]));
    s.y.push_back(column < cells.size() && !cells[column].empty() ? std::stod(cells[column]) : std::nan(""));
  }
  return s;
}

std::string label_of(const json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); }

// expert_share {"layer": [shares]} in layer order (JSON objects sort "10" before "2"); empty when absent.
std::vector<std::pair<int, json>> layers_in_order(const json& shares) {
  std::vector<std::pair<int, json>> out;
  if (!shares.is_object()) return out;
  for (const auto& item : shares.items()) out.emplace_back(std::stoi(item.key()), item.value());
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  return out;
}

using Table = std::vector<std::vector<std::string>>;

// Columns become rows: a few runs read best side by side, one column each.
Table transposed(const Table& t) {
  Table out(t.front().size());
  for (const auto& row : t)
    for (size_t i = 0; i < row.size(); ++i) out[i].push_back(row[i]);
  return out;
}

// The first column left-aligned, the others right-aligned, two spaces apart.
void print_table(const Table& table) {
  std::vector<size_t> widths(table.front().size(), 0);
  for (const auto& r : table)
    for (size_t i = 0; i < r.size(); ++i) widths[i] = std::max(widths[i], r[i].size());
  for (const auto& r : table) {
    for (size_t i = 0; i < r.size(); ++i)
      std::cout << (i ? "  " : "") << (i ? std::setw(static_cast<int>(widths[i])) : std::setw(0)) << std::right
                << (i ? r[i] : r[i] + std::string(widths[0] - r[i].size(), ' '));
    std::cout << "\n";
  }
}

}  // namespace

void write_report(const Experiment& x, const fs::path& output_dir) {
  const auto runs_dir = output_dir / "runs";
  // Each finished run's record: its train summary, behaviour figures and task score (when there).
  std::vector<std::pair<const RunSpec*, json>> done;
  for (const auto& r : x.runs) {
    const auto dir = runs_dir / r.name;
    if (!fs::exists(dir / "train" / "summary.json")) continue;
    json record = {{"train", read_json_file(dir / "train" / "summary.json")}};
    for (const char* part : {"behaviour", "task"})
      if (fs::exists(dir / (std::string(part) + ".json"))) record[part] = read_json_file(dir / (std::string(part) + ".json"));
    done.emplace_back(&r, std::move(record));
  }
  if (done.empty()) throw Error("no run of " + x.file.string() + " has finished: nothing to report");

  // summary.csv / summary.json / the printed table.
  auto table_columns = columns();
  std::string task_header;
  if (x.task) {
    task_header = "task_" + x.task->metric;
    table_columns.push_back({task_header.c_str(), {"task", "value"}, 4});
  }
  std::vector<std::string> swept;
  for (const auto& [key, value] : x.runs.front().swept.items()) swept.push_back(key);
  std::string csv = "run";
  for (const auto& k : swept) csv += "," + k;
  for (const auto& c : table_columns) csv += std::string(",") + c.header;
  csv += "\n";
  json rows = json::array();
  std::vector<std::vector<std::string>> table;
  table.push_back({"run"});
  for (const auto& c : table_columns) table.back().push_back(c.header);
  for (const auto& [run, record] : done) {
    json row = {{"run", run->name}, {"swept", run->swept}};
    std::string line = run->name;
    for (const auto& k : swept) line += "," + label_of(run->swept.value(k, json()));
    table.push_back({run->name});
    for (const auto& c : table_columns) {
      const auto v = at_path(record, c.path);
      row[c.header] = v;
      line += "," + (v.is_number() ? v.dump() : std::string());
      table.back().push_back(number_text(v, c.precision));
    }
    if (record.contains("behaviour")) row["behaviour"] = record["behaviour"];
    csv += line + "\n";
    rows.push_back(row);
  }
  write_text_atomically(output_dir / "summary.csv", csv);
  write_text_atomically(output_dir / "summary.json",
                        json{{"experiment", x.file.string()}, {"runs", rows}}.dump(2) + "\n");
  print_table(done.size() <= 4 ? transposed(table) : table);
  std::cout << "table      " << (output_dir / "summary.csv").string() << ", " << (output_dir / "summary.json").string()
            << "\n";

  // The validation loss of every run, on one plot.
  plot::LineChart curves;
  curves.title = "Validation loss";
  curves.x_label = "step";
  curves.y_label = "validation loss (nats/token)";
  for (const auto& [run, record] : done)
    curves.series.push_back(csv_series(runs_dir / run->name / "train" / "metrics.csv", "val_loss", run->name));
  plot::save(curves, output_dir / "loss_curves");
  std::vector<std::string> pictures = {"loss_curves"};

  // Each MoE run's expert shares per layer, against the uniform share.
  fs::create_directories(output_dir / "utilisation");
  for (const auto& [run, record] : done) {
    const auto shares = layers_in_order(at_path(record, {"train", "eval_routing", "expert_share"}));
    if (shares.empty()) continue;
    plot::BarChart bars;
    bars.title = "Expert utilisation: " + run->name;
    bars.x_label = "MoE layer";
    bars.y_label = "share of routed tokens";
    size_t experts = 0;
    for (const auto& [layer, share] : shares) experts = std::max(experts, share.size());
    for (size_t e = 0; e < experts; ++e) bars.bars.push_back({"expert " + std::to_string(e), {}});
    for (const auto& [layer, share] : shares) {
      bars.groups.push_back(std::to_string(layer));
      for (size_t e = 0; e < experts; ++e) bars.bars[e].values.push_back(e < share.size() ? share[e].get<double>() : 0.0);
    }
    bars.reference_line = 1.0 / static_cast<double>(experts);
    bars.reference_label = "uniform 1/E";
    plot::save(bars, output_dir / "utilisation" / run->name);
  }
  pictures.push_back("utilisation/<run>");

  // Every MoE run's utilisation entropy per layer (/ ln E) in one picture, a row per run: 1 is a perfectly even
  // spread. A heatmap with the values written in, as the modes differ in the second decimal.
  plot::Heatmap entropy;
  entropy.title = "Expert-utilisation entropy per layer (/ ln E)";
  entropy.x_label = "MoE layer";
  entropy.y_label = "run";
  entropy.value_label = "entropy / ln E";
  entropy.lower_is_better = false;
  for (const auto& [run, record] : done) {
    const auto shares = layers_in_order(at_path(record, {"train", "eval_routing", "expert_share"}));
    if (shares.empty()) continue;
    if (entropy.x_ticks.empty())
      for (const auto& [layer, share] : shares) entropy.x_ticks.push_back(std::to_string(layer));
    if (shares.size() != entropy.x_ticks.size()) continue;  // another placement of MoE layers: not comparable
    entropy.y_ticks.push_back(run->name);
    entropy.values.emplace_back();
    for (const auto& [layer, share] : shares) {
      double h = 0;
      for (const auto& p : share)
        if (p.get<double>() > 0) h -= p.get<double>() * std::log(p.get<double>());
      entropy.values.back().push_back(share.size() > 1 ? h / std::log(static_cast<double>(share.size())) : 1.0);
    }
  }
  if (!entropy.values.empty()) {
    plot::save(entropy, output_dir / "utilisation_entropy");
    pictures.push_back("utilisation_entropy");
  }

  // The best PPL over the two heatmap axes (the first run of each cell when variants repeat it).
  if (x.heatmap.size() == 2) {
    std::vector<json> xs, ys;
    auto index_of = [](std::vector<json>& axis, const json& v) {
      for (size_t i = 0; i < axis.size(); ++i)
        if (axis[i] == v) return i;
      axis.push_back(v);
      return axis.size() - 1;
    };
    for (const auto& r : x.runs) {
      index_of(xs, r.swept[x.heatmap[0]]);
      index_of(ys, r.swept[x.heatmap[1]]);
    }
    plot::Heatmap map;
    map.title = "Best validation PPL";
    map.x_label = x.heatmap[0];
    map.y_label = x.heatmap[1];
    map.value_label = "PPL";
    for (const auto& v : xs) map.x_ticks.push_back(label_of(v));
    for (const auto& v : ys) map.y_ticks.push_back(label_of(v));
    map.values.assign(ys.size(), std::vector<double>(xs.size(), std::nan("")));
    for (const auto& [run, record] : done) {
      auto& cell = map.values[index_of(ys, run->swept[x.heatmap[1]])][index_of(xs, run->swept[x.heatmap[0]])];
      const auto ppl = at_path(record, {"train", "val_ppl"});
      if (std::isnan(cell) && ppl.is_number()) cell = ppl.get<double>();
    }
    plot::save(map, output_dir / "heatmap");
    pictures.push_back("heatmap");
  }
  std::cout << "pictures   " << output_dir.string() << "/{";
  for (size_t i = 0; i < pictures.size(); ++i) std::cout << (i ? ", " : "") << pictures[i];
  std::cout << "}.png and .svg\n";
  run::write_html_report(output_dir, "esft experiment " + x.file.filename().string(), table);
  std::cout << "report     " << (output_dir / "report.html").string() << "\n";
}

}  // namespace esft::host::experiment
