#include "plot/loss_picture.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <map>

#include "esft/error.h"
#include "esft/io/atomic_file.h"
#include "plot/plot.h"

namespace esft::host {

namespace fs = std::filesystem;

void write_loss_picture(const fs::path& train_dir) {
  const auto metrics = train_dir / "metrics.jsonl";
  std::ifstream in(metrics);
  if (!in) throw Error("cannot read " + metrics.string());
  struct Row {
    double loss = NAN, lr = NAN, eval_loss = NAN;
  };
  std::map<int64_t, Row> rows;  // by step: a resumed run rewrote its later lines, so the last line of a step wins
  std::string line;
  for (size_t number = 1; std::getline(in, line); ++number) {
    if (line.empty()) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const std::exception& e) {
      throw Error(metrics.string() + ":" + std::to_string(number) + ": not JSON");
    }
    if (!j.is_object() || !j.contains("step") || !j["step"].is_number_integer())
      throw Error(metrics.string() + ":" + std::to_string(number) + ": no integer \"step\"");
    auto& r = rows[j["step"].get<int64_t>()];
    const auto read = [&j](const char* key, double& into) {
      if (j.contains(key) && j[key].is_number()) into = j[key].get<double>();
    };
    read("loss", r.loss);
    read("lr", r.lr);
    read("eval_loss", r.eval_loss);
  }
  if (rows.empty()) throw Error(metrics.string() + " has no step yet: nothing to draw");

  plot::Series train{"train loss", {}, {}}, eval{"eval loss", {}, {}}, lr{"learning rate", {}, {}};
  std::string csv = "step,loss,lr,eval_loss\n";
  for (const auto& [step, r] : rows) {
    const double x = static_cast<double>(step);
    if (!std::isnan(r.loss)) train.x.push_back(x), train.y.push_back(r.loss);
    if (!std::isnan(r.eval_loss)) eval.x.push_back(x), eval.y.push_back(r.eval_loss);
    if (!std::isnan(r.lr)) lr.x.push_back(x), lr.y.push_back(r.lr);
    csv += std::to_string(step) + "," + plot::csv_number(r.loss) + "," + plot::csv_number(r.lr) + "," + plot::csv_number(r.eval_loss) + "\n";
  }
  write_text_atomically(train_dir / "loss.csv", csv);

  plot::LineChart chart;
  chart.title = "Training loss of " + train_dir.filename().string() + " (" + std::to_string(rows.rbegin()->first) +
                " steps)";
  chart.x_label = "step";
  chart.y_label = "loss (cross-entropy)";
  if (!train.x.empty()) chart.series.push_back(std::move(train));
  if (!eval.x.empty()) chart.series.push_back(std::move(eval));
  if (chart.series.empty()) throw Error(metrics.string() + " has no loss yet: nothing to draw");
  if (!lr.x.empty()) {
    chart.right_series.push_back(std::move(lr));
    chart.right_label = "learning rate";
  }
  plot::save(chart, train_dir / "loss", {900, 520});
}

}  // namespace esft::host
