#include "run/comparison.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <iostream>
#include <map>
#include <sstream>

#include "esft/io/atomic_file.h"
#include "plot/plot.h"
#include "run/text_table.h"

namespace esft::host::run {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

std::string fixed(double v, int precision) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(precision) << v;
  return out.str();
}

std::vector<std::string> header(const ComparisonNames& n) {
  std::vector<std::string> h = {"task", "method", "metric", "task value"};
  if (!n.general_metric.empty()) h.push_back("general " + n.general_metric);
  for (const char* c : {"trainable params", "trainable %", "train time s", "output MiB"}) h.push_back(c);
  return h;
}

std::vector<std::string> cells(const ComparisonRow& r, const ComparisonNames& n) {
  auto opt = [](const std::optional<double>& v) { return v ? fixed(*v, 4) : std::string("-"); };
  std::vector<std::string> c = {r.task, r.method, r.metric, opt(r.task_metric)};
  if (!n.general_metric.empty()) c.push_back(opt(r.general_metric));
  c.push_back(r.trainable >= 0 ? std::to_string(r.trainable) : "-");
  c.push_back(r.trainable >= 0 && r.parameters > 0
                  ? fixed(100.0 * static_cast<double>(r.trainable) / static_cast<double>(r.parameters), 2)
                  : "-");
  c.push_back(r.train_seconds >= 0 ? fixed(r.train_seconds, 1) : "-");
  c.push_back(r.output_bytes >= 0 ? fixed(static_cast<double>(r.output_bytes) / 1048576.0, 3) : "-");
  return c;
}

TextTable comparison_table(const std::vector<ComparisonRow>& rows, const ComparisonNames& names) {
  TextTable table = {header(names)};
  for (const auto& r : rows) table.push_back(cells(r, names));
  return table;
}

}  // namespace

void print_comparison(const std::vector<ComparisonRow>& rows, const ComparisonNames& names) {
  std::cout << "\ncomparison (the ESFT paper's table: task metric, general ability, cost)\n";
  print_text_table(std::cout, comparison_table(rows, names));
}

void write_comparison(const fs::path& dir, const std::vector<ComparisonRow>& rows, const ComparisonNames& names) {
  json j = json::array();
  auto opt = [](const std::optional<double>& v) { return v ? json(*v) : json(); };
  auto known = [](auto v) { return v >= 0 ? json(v) : json(); };
  for (const auto& r : rows) {
    j.push_back({{"task", r.task}, {"method", r.method}, {"task_metric", r.metric},
                 {"task_value", opt(r.task_metric)}, {"general_metric", names.general_metric},
                 {"general_value", opt(r.general_metric)}, {"trainable_parameters", known(r.trainable)},
                 {"parameters", known(r.parameters)}, {"train_seconds", known(r.train_seconds)},
                 {"output_bytes", known(r.output_bytes)}});
  }
  write_text_atomically(dir / "compare.csv", csv_text(comparison_table(rows, names)));
  write_text_atomically(dir / "compare.json", j.dump(2) + "\n");

  // One picture per task: each measure as a group, each method a bar, scaled to the measure's largest value so
  // that a metric near 1, a parameter count and a file size share an axis. The table has the numbers.
  std::map<std::string, std::vector<const ComparisonRow*>> by_task;
  for (const auto& r : rows) by_task[r.task].push_back(&r);
  for (const auto& [task, list] : by_task) {
    struct Measure {
      std::string name;
      std::vector<double> values;
    };
    std::vector<Measure> measures = {{list.front()->metric, {}}};
    if (!names.general_metric.empty()) measures.push_back({"general " + names.general_metric, {}});
    for (const char* m : {"trainable params", "train time", "output size"}) measures.push_back({m, {}});
    for (const auto* r : list) {
      size_t k = 0;
      measures[k++].values.push_back(r->task_metric.value_or(NAN));
      if (!names.general_metric.empty()) measures[k++].values.push_back(r->general_metric.value_or(NAN));
      measures[k++].values.push_back(r->trainable >= 0 ? static_cast<double>(r->trainable) : NAN);
      measures[k++].values.push_back(r->train_seconds >= 0 ? r->train_seconds : NAN);
      measures[k++].values.push_back(r->output_bytes >= 0 ? static_cast<double>(r->output_bytes) : NAN);
    }
    plot::BarChart chart;
    chart.title = task + ": methods compared (each measure divided by its largest value)";
    chart.x_label = "measure (for a loss, lower is better)";
    chart.y_label = "relative to the largest";
    for (const auto& m : measures) chart.groups.push_back(m.name);
    for (size_t i = 0; i < list.size(); ++i) {
      plot::BarSeries bars{list[i]->method, {}};
      for (const auto& m : measures) {
        double largest = 0;
        for (double v : m.values)
          if (std::isfinite(v)) largest = std::max(largest, std::fabs(v));
        const double v = m.values[i];
        bars.values.push_back(std::isfinite(v) && largest > 0 ? v / largest : 0.0);
      }
      chart.bars.push_back(std::move(bars));
    }
    plot::save(chart, dir / ("compare-" + task), {900, 500});
  }
}

}  // namespace esft::host::run
