// The pictures of an ESFT run and the numbers written beside them: the routing map of `scores` (routing.csv equals
// the statistics), the selection map and coverage curves of `select` (selection.csv equals what select chose), the
// loss picture of `train` (loss.csv equals metrics.jsonl), and the self-contained report.html of `run`.
#include "doctest_torch.h"

#include <cmath>
#include <fstream>
#include <sstream>

#include "esft/error.h"
#include "plot/loss_picture.h"
#include "plot/routing_pictures.h"
#include "run/html_report.h"
#include "test_support.h"

namespace {

using test_support::read_bytes;
using test_support::TempDir;
using test_support::write_bytes;
namespace fs = std::filesystem;

std::pair<int, int> png_size(const fs::path& png) { return test_support::png_size(read_bytes(png)); }

std::vector<std::vector<std::string>> csv_rows(const fs::path& path) {
  std::ifstream in(path);
  std::vector<std::vector<std::string>> rows;
  for (std::string line; std::getline(in, line);) {
    std::vector<std::string> cells;
    std::stringstream s(line);
    for (std::string cell; std::getline(s, cell, ',');) cells.push_back(cell);
    if (!line.empty() && line.back() == ',') cells.emplace_back();
    rows.push_back(cells);
  }
  return rows;
}

// 3 MoE layers (1, 3, 5) of 6 experts, top-2, with a clear preference per layer.
esft::pipeline::RoutingStats three_layers() {
  esft::pipeline::RoutingStats s;
  s.model_type = "qwen3_moe";
  s.num_experts = 6;
  s.top_k = 2;
  s.tokens = 100;
  for (int layer : {1, 3, 5}) {
    esft::pipeline::LayerRouting r;
    r.tokens = 100;
    for (int e = 0; e < 6; ++e) {
      r.token_count.push_back(((e + layer) % 6 + 1) * 200 / 21);
      r.gate_sum.push_back(0.5 * r.token_count.back() + 0.25 * e);
    }
    s.layers[layer] = r;
  }
  return s;
}

}  // namespace

TEST_CASE("pictures: experts_covering counts the largest shares that reach a fraction") {
  using esft::host::experts_covering;
  CHECK(experts_covering({0.1, 0.5, 0.2, 0.2}, 0.5) == 1);
  CHECK(experts_covering({0.1, 0.5, 0.2, 0.2}, 0.8) == 3);
  CHECK(experts_covering({1, 1, 1, 1}, 0.5) == 2);  // exactly half counts, despite rounding
  CHECK(experts_covering({3, 1}, 1.0) == 2);
  CHECK(experts_covering({0, 0}, 0.5) == 0);
}

TEST_CASE("pictures: the routing map's numbers are the statistics, in both orders") {
  TempDir dir;
  const auto stats = three_layers();
  for (const auto order : {esft::host::ExpertOrder::Id, esft::host::ExpertOrder::Sorted}) {
    esft::host::write_routing_pictures(stats, dir.path, order);
    CHECK(png_size(dir / "routing.png") == std::pair{1100, 270});
    const auto svg = read_bytes(dir / "routing.svg");
    CHECK(svg.find("share of routed tokens") != std::string::npos);
    CHECK(svg.find("share of gate mass") != std::string::npos);
  }
  const auto rows = csv_rows(dir / "routing.csv");
  REQUIRE(rows.size() == 1 + 3 * 6);
  CHECK(rows[0] == std::vector<std::string>{"layer", "expert", "token_count", "token_share", "gate_sum", "gate_share"});
  size_t i = 1;
  for (const auto& [layer, r] : stats.layers)
    for (int e = 0; e < 6; ++e, ++i) {
      CHECK(std::stoi(rows[i][0]) == layer);
      CHECK(std::stoi(rows[i][1]) == e);
      CHECK(std::stoll(rows[i][2]) == r.token_count[e]);
      CHECK(std::stod(rows[i][3]) == doctest::Approx(r.token_count[e] / 200.0).epsilon(1e-9));
      CHECK(std::stod(rows[i][4]) == doctest::Approx(r.gate_sum[e]).epsilon(1e-9));
      CHECK(std::stod(rows[i][5]) == doctest::Approx(r.gate_sum[e] / 100.0).epsilon(1e-9));
    }
  CHECK_THROWS_WITH_AS(esft::host::parse_expert_order("random"), "--expert-order must be id or sorted, got 'random'",
                       esft::UsageError);
}

TEST_CASE("pictures: the selection map and coverage curves show what select chose") {
  TempDir dir;
  const auto stats = three_layers();
  auto other = stats;
  other.layers.erase(5);
  std::vector<esft::host::SelectedTask> tasks;
  for (const auto& [name, s] : {std::pair{"intent", stats}, std::pair{"law", other}}) {
    tasks.push_back({name, s, esft::pipeline::select_experts(s, esft::pipeline::ScoreFunction::Token, 0.5)});
  }
  esft::host::write_selection_pictures(tasks, esft::pipeline::ScoreFunction::Token, 0.5, dir.path, "");
  CHECK(png_size(dir / "selection.png").first == 1100);
  CHECK(png_size(dir / "intent.coverage.png") == std::pair{1000, 560});
  CHECK(fs::exists(dir / "law.coverage.svg"));
  CHECK(read_bytes(dir / "intent.coverage.svg").find("top-p 0.5") != std::string::npos);

  const auto rows = csv_rows(dir / "selection.csv");
  REQUIRE(rows.size() == 1 + 5 * 6);  // 3 + 2 layers of 6 experts
  CHECK(rows[0] == std::vector<std::string>{"task", "layer", "rank", "expert", "score", "cumulative", "selected"});
  for (size_t i = 1; i < rows.size(); ++i) {
    const auto& task = rows[i][0] == "intent" ? tasks[0] : tasks[1];
    const int layer = std::stoi(rows[i][1]);
    const int64_t expert = std::stoll(rows[i][3]);
    const auto& chosen = task.config.experts.at(layer);
    const bool selected = std::find(chosen.begin(), chosen.end(), expert) != chosen.end();
    CHECK(rows[i][6] == (selected ? "1" : "0"));
    // Selected experts are the first ranks, and the score is the one select ranked by.
    CHECK(selected == (std::stoul(rows[i][2]) <= chosen.size()));
    CHECK(std::stod(rows[i][4]) == esft::pipeline::expert_scores(task.stats, esft::pipeline::ScoreFunction::Token).at(layer)[expert]);
  }
  // Another expert count cannot share the picture.
  tasks[1].stats.num_experts = 8;
  CHECK_THROWS_WITH_AS(esft::host::write_selection_pictures(tasks, esft::pipeline::ScoreFunction::Token, 0.5, dir.path, "x."),
                       doctest::Contains("different numbers of experts"), esft::Error);
}

TEST_CASE("pictures: the loss picture follows metrics.jsonl, the last line of a step winning") {
  TempDir dir;
  write_bytes(dir / "metrics.jsonl",
              "{\"step\":1,\"loss\":3.5,\"lr\":0.0001}\n"
              "{\"step\":2,\"loss\":3.0,\"lr\":0.0002}\n"
              "{\"step\":2,\"eval_loss\":3.25,\"eval_ppl\":25.8}\n"
              "{\"step\":3,\"loss\":2.5,\"lr\":0.0002}\n"
              "{\"step\":3,\"loss\":2.25,\"lr\":0.0002}\n");
  esft::host::write_loss_picture(dir.path);
  CHECK(png_size(dir / "loss.png") == std::pair{900, 520});
  CHECK(read_bytes(dir / "loss.svg").find("learning rate (right axis)") != std::string::npos);
  CHECK(read_bytes(dir / "loss.csv") == "step,loss,lr,eval_loss\n1,3.5,0.0001,\n2,3,0.0002,3.25\n3,2.25,0.0002,\n");

  write_bytes(dir / "metrics.jsonl", "{\"step\":1,\"loss\":3.5}\nnot json\n");
  CHECK_THROWS_WITH_AS(esft::host::write_loss_picture(dir.path), doctest::Contains("metrics.jsonl:2: not JSON"),
                       esft::Error);
  write_bytes(dir / "metrics.jsonl", "");
  CHECK_THROWS_WITH_AS(esft::host::write_loss_picture(dir.path), doctest::Contains("has no step yet"), esft::Error);
}

TEST_CASE("pictures: report.html embeds every picture and the summary, and loads nothing from outside") {
  using esft::host::run::base64;
  CHECK(base64("") == "");
  CHECK(base64("f") == "Zg==");
  CHECK(base64("fo") == "Zm8=");
  CHECK(base64("foo") == "Zm9v");
  CHECK(base64("foobar") == "Zm9vYmFy");
  CHECK(base64(std::string("\xff\x00\x10", 3)) == "/wAQ");

  TempDir dir;
  fs::create_directories(dir / "intent" / "scores");
  fs::create_directories(dir / ".stamps");
  esft::host::write_routing_pictures(three_layers(), dir / "intent" / "scores", esft::host::ExpertOrder::Id);
  write_bytes(dir / ".stamps" / "hidden.png", "not a picture of the run");
  esft::host::run::write_html_report(dir.path, "esft run <demo>", {{"task", "metric"}, {"intent", "0.5 & more"}});
  const auto html = read_bytes(dir / "report.html");
  CHECK(html.rfind("<!DOCTYPE html>", 0) == 0);
  CHECK(html.find("<title>esft run &lt;demo&gt;</title>") != std::string::npos);
  CHECK(html.find("<td>0.5 &amp; more</td>") != std::string::npos);
  CHECK(html.find("<h2>Routing statistics</h2>") != std::string::npos);
  CHECK(html.find("<code>intent/scores/routing.png</code>") != std::string::npos);
  CHECK(html.find("data:image/png;base64," + base64(read_bytes(dir / "intent" / "scores" / "routing.png"))) !=
        std::string::npos);
  CHECK(html.find("hidden.png") == std::string::npos);
  // Nothing from outside: no http(s) URL, no external script or stylesheet.
  CHECK(html.find("http") == std::string::npos);
  CHECK(html.find("<script") == std::string::npos);
  CHECK(html.find("<link") == std::string::npos);
}
