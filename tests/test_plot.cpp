// The report pictures: both files written (a PNG of the asked size, an SVG that names what it shows), bad input
// refused with the file's name, round tick values, and the heatmap's best cell.
#include "doctest_torch.h"

#include <cmath>
#include <string>
#include <vector>

#include "esft/error.h"
#include "plot/plot.h"
#include "test_support.h"

namespace {

using namespace esft::plot;
using test_support::png_size;
using test_support::read_bytes;
using test_support::TempDir;
using Ticks = std::vector<double>;

const double kNaN = std::nan("");

LineChart two_curves() {
  LineChart c;
  c.title = "Validation loss";
  c.x_label = "step";
  c.y_label = "loss";
  for (const char* name : {"switch-e8", "boids <k=1>"}) {
    Series s{name, {}, {}};
    for (int i = 0; i < 50; ++i) s.x.push_back(i * 10), s.y.push_back(2 + 5 * std::exp(-i / 10.0));
    s.y[20] = kNaN;
    c.series.push_back(s);
  }
  return c;
}

Heatmap ppl_grid() {
  Heatmap h;
  h.title = "Best PPL";
  h.x_label = "experts";
  h.y_label = "capacity";
  h.value_label = "PPL";
  h.x_ticks = {"4", "8", "16"};
  h.y_ticks = {"1.0", "1.5"};
  h.values = {{7.5, 7.1, kNaN}, {7.3, 6.95, 7.02}};
  return h;
}

HeatmapGrid two_tasks() {
  HeatmapGrid g;
  g.title = "Routing of two tasks";
  g.x_label = "expert";
  g.y_label = "layer";
  g.value_label = "share";
  g.marked_label = "selected";
  for (int e = 0; e < 16; ++e) g.x_ticks.push_back(std::to_string(e));
  for (const char* task : {"summary", "law <cn>"}) {
    HeatmapPanel p;
    p.title = task;
    p.notes_heading = "50% / 80%";
    for (int layer = 0; layer < 6; ++layer) {
      p.row_ticks.push_back(std::to_string(layer));
      std::vector<double> row;
      std::vector<bool> marks;
      for (int e = 0; e < 16; ++e) row.push_back(1.0 / (1 + (e + layer) % 16)), marks.push_back(e == layer);
      p.values.push_back(row);
      p.marked.push_back(marks);
      p.row_notes.push_back("2 / 5");
    }
    g.panels.push_back(p);
  }
  g.panels[1].values[2][3] = kNaN;
  return g;
}

BarChart shares() {
  BarChart b;
  b.title = "Expert utilisation";
  b.groups = {"0", "1", "2"};
  for (int e = 0; e < 4; ++e) b.bars.push_back({"expert " + std::to_string(e), {0.1 + 0.1 * e, 0.25, 0.4 - 0.1 * e}});
  b.reference_line = 0.25;
  return b;
}

void check_pictures(const std::filesystem::path& stem, const std::vector<std::string>& texts,
                    std::pair<int, int> size = {800, 500}) {
  const auto png = read_bytes(stem.string() + ".png");
  const auto svg = read_bytes(stem.string() + ".svg");
  REQUIRE(png.size() > 2000);
  CHECK(png.compare(0, 8, "\x89PNG\r\n\x1a\n") == 0);
  CHECK(png_size(png) == size);
  CHECK(svg.find("<svg") != std::string::npos);
  CHECK(svg.size() > 2000);
  for (const auto& t : texts) CHECK_MESSAGE(svg.find(t) != std::string::npos, t);
}

}  // namespace

TEST_CASE("plot: nice_ticks picks the finest round step that fits") {
  CHECK(nice_ticks(0, 1, 6) == Ticks{0, 0.2, 0.4, 0.6, 0.8, 1});
  CHECK(nice_ticks(0, 1, 11) == Ticks{0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1});
  CHECK(nice_ticks(0, 100, 5) == Ticks{0, 25, 50, 75, 100});
  CHECK(nice_ticks(6.9, 7.6, 5) == Ticks{7, 7.2, 7.4, 7.6});
  CHECK(nice_ticks(-3, 7, 6) == Ticks{-2, 0, 2, 4, 6});
  CHECK(nice_ticks(0.0011, 0.0042, 4) == Ticks{0.002, 0.003, 0.004});
  CHECK(nice_ticks(0, 3000, 8) == Ticks{0, 500, 1000, 1500, 2000, 2500, 3000});
  CHECK(nice_ticks(5, 5, 4) == Ticks{5});
  CHECK_THROWS_AS(nice_ticks(1, 0, 5), esft::Error);
  CHECK_THROWS_AS(nice_ticks(0, kNaN, 5), esft::Error);
  CHECK_THROWS_AS(nice_ticks(0, 1, 1), esft::Error);
}

TEST_CASE("plot: the heatmap's best cell skips NaN and follows lower_is_better") {
  auto h = ppl_grid();
  CHECK(best_cell(h) == std::pair<size_t, size_t>{1, 1});
  h.lower_is_better = false;
  CHECK(best_cell(h) == std::pair<size_t, size_t>{0, 0});
  h.values = {{7.0, 6.5}, {6.5, kNaN}};
  h.lower_is_better = true;
  CHECK(best_cell(h) == std::pair<size_t, size_t>{0, 1});  // the first in reading order on a tie
  h.values = {{kNaN, kNaN}};
  CHECK(!best_cell(h));
}

TEST_CASE("plot: each chart writes a PNG and an SVG that names its title and series") {
  TempDir dir;
  save(two_curves(), dir / "loss");
  check_pictures(dir / "loss", {"<title>Validation loss</title>", "switch-e8", "boids &lt;k=1&gt;"});

  save(ppl_grid(), dir / "heatmap");
  check_pictures(dir / "heatmap", {"<title>Best PPL</title>", "lowest 6.950 at experts=8, capacity=1.5"});

  save(shares(), dir / "bars");
  check_pictures(dir / "bars", {"<title>Expert utilisation</title>", "expert 0", "expert 3"});

  save(two_tasks(), dir / "grid", {1100, 600});
  check_pictures(dir / "grid", {"<title>Routing of two tasks</title>", "panels: summary, law &lt;cn&gt;"}, {1100, 600});

  // Loss and learning rate on two axes, and a reference line.
  auto with_lr = two_curves();
  with_lr.right_series.push_back({"learning rate", {0, 100, 490}, {0, 1e-4, 1e-5}});
  with_lr.right_label = "learning rate";
  with_lr.reference_line = 3.0;
  with_lr.reference_label = "target";
  save(with_lr, dir / "with_lr", {900, 520});
  check_pictures(dir / "with_lr", {"learning rate (right axis)"}, {900, 520});

  // A stem with dots keeps them: the suffix is added, not swapped in.
  save(shares(), dir / "run.lr=1e-3");
  CHECK(std::filesystem::exists(dir / "run.lr=1e-3.png"));
  CHECK(std::filesystem::exists(dir / "run.lr=1e-3.svg"));

  // An all-NaN heatmap still draws (every run failed is worth seeing); a log axis skips what it cannot show.
  auto missing = ppl_grid();
  for (auto& row : missing.values)
    for (auto& v : row) v = kNaN;
  save(missing, dir / "missing");
  auto log = two_curves();
  log.log_y = true;
  log.series[0].y[3] = -1;
  save(log, dir / "log");
  CHECK(read_bytes((dir / "log").string() + ".png").size() > 2000);
}

TEST_CASE("plot: bad input and unwritable files are refused with the file's name") {
  TempDir dir;
  const auto stem = dir / "chart";
  const std::string where = "cannot plot " + stem.string() + ".{png,svg}: ";

  auto lines = two_curves();
  lines.series[1].y.pop_back();
  CHECK_THROWS_WITH_AS(save(lines, stem), (where + "series 'boids <k=1>' has 50 x values but 49 y values").c_str(),
                       esft::Error);
  CHECK_THROWS_WITH_AS(save(LineChart{}, stem), (where + "the line chart has no series").c_str(), esft::Error);
  LineChart nans;
  nans.series = {{"a", {1, 2}, {kNaN, kNaN}}};
  CHECK_THROWS_WITH_AS(save(nans, stem), (where + "no series has a point to draw (every value is NaN)").c_str(),
                       esft::Error);

  auto map = ppl_grid();
  map.values[1].pop_back();
  CHECK_THROWS_WITH_AS(save(map, stem), (where + "row 1 of the heatmap has 2 values but there are 3 x_ticks").c_str(),
                       esft::Error);
  map = ppl_grid();
  map.y_ticks.pop_back();
  CHECK_THROWS_WITH_AS(save(map, stem), (where + "the heatmap has 2 rows of values but 1 y_ticks").c_str(),
                       esft::Error);

  auto bars = shares();
  bars.bars[2].values.push_back(0.1);
  CHECK_THROWS_WITH_AS(save(bars, stem), (where + "bars 'expert 2' have 4 values but there are 3 groups").c_str(),
                       esft::Error);
  CHECK_THROWS_WITH_AS(save(BarChart{}, stem), (where + "the bar chart has no groups").c_str(), esft::Error);

  auto grid = two_tasks();
  grid.panels[1].row_notes.pop_back();
  CHECK_THROWS_WITH_AS(save(grid, stem), (where + "panel 'law <cn>': 5 row notes for 6 rows").c_str(), esft::Error);
  grid = two_tasks();
  grid.panels[0].values[4].pop_back();
  CHECK_THROWS_WITH_AS(save(grid, stem), (where + "panel 'summary' has a row of 15 values for 16 columns").c_str(),
                       esft::Error);
  grid = two_tasks();
  grid.panels[0].marked[1].pop_back();
  CHECK_THROWS_WITH_AS(save(grid, stem), (where + "panel 'summary': marks do not match its columns").c_str(),
                       esft::Error);
  CHECK_THROWS_WITH_AS(save(HeatmapGrid{}, stem), (where + "the heatmap grid has no panels or no columns").c_str(),
                       esft::Error);
  auto lr = two_curves();
  lr.right_series.push_back({"lr", {1, 2}, {1}});
  CHECK_THROWS_WITH_AS(save(lr, stem), (where + "series 'lr' has 2 x values but 1 y values").c_str(), esft::Error);

  CHECK(!std::filesystem::exists(stem.string() + ".png"));
  CHECK(!std::filesystem::exists(stem.string() + ".svg"));

  const auto nowhere = dir / "no such folder" / "chart";
  CHECK_THROWS_WITH_AS(save(shares(), nowhere),
                       ("cannot write " + nowhere.string() + ".png: No such file or directory").c_str(), esft::Error);
}
