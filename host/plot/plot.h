#pragma once
// Pictures for experiment reports, drawn with cairo: loss curves (LineChart), a metric over two swept settings
// (Heatmap), expert utilisation per layer (BarChart) and routing maps of one or more tasks (HeatmapGrid). `save` writes each as `<stem>.png` and `<stem>.svg` from
// one drawing, so the two never disagree. Bad input (no data, sizes that do not match) and unwritable files throw
// esft::Error naming the file.
#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace esft::plot {

// One curve: y against x, point by point. A NaN (or, on a log axis, a non-positive y) leaves a gap.
struct Series {
  std::string name;
  std::vector<double> x, y;
};

struct LineChart {
  std::string title, x_label, y_label;
  std::vector<Series> series;
  bool log_y = false;
  // Curves on a second y axis at the right, with its own scale (a learning rate next to losses); drawn dotted.
  std::vector<Series> right_series;
  std::string right_label;
  std::optional<double> reference_line;  // a dashed horizontal line on the left axis, e.g. top-p
  std::string reference_label = "reference";
};

// values[row][col]: rows go with y_ticks (the first row on top), columns with x_ticks. NaN cells are drawn as "n/a".
struct Heatmap {
  std::string title, x_label, y_label;
  std::vector<std::string> x_ticks, y_ticks;
  std::vector<std::vector<double>> values;
  std::string value_label;  // what the colour bar measures, e.g. "PPL"
  bool lower_is_better = true;
};

// One bar of every group, e.g. one expert's share in every layer: values[g] belongs to groups[g].
struct BarSeries {
  std::string name;
  std::vector<double> values;
};

struct BarChart {
  std::string title, x_label, y_label;
  std::vector<std::string> groups;       // along the x axis, e.g. layers
  std::vector<BarSeries> bars;           // within each group, e.g. experts
  std::optional<double> reference_line;  // a dashed horizontal line, e.g. the uniform share 1/E
  std::string reference_label = "reference";
};

// Several heatmaps side by side on one colour scale, for comparing tasks: rows and columns are many and thin (layers
// x experts), so cells carry no numbers; marked cells get a dot, and each row may have a note at its right.
struct HeatmapPanel {
  std::string title;
  std::vector<std::string> row_ticks;       // one per row, e.g. layer numbers
  std::vector<std::vector<double>> values;  // [row][column]; NaN cells are grey
  std::vector<std::vector<bool>> marked;    // empty, or the shape of values
  std::vector<std::string> row_notes;       // empty, or one per row
  std::string notes_heading;                // above the notes column
};

struct HeatmapGrid {
  std::string title, x_label, y_label;
  std::string value_label;                 // what the colour bar measures
  std::string marked_label;                // legend of the dots, e.g. "selected"
  std::vector<HeatmapPanel> panels;        // laid out in rows of up to `columns_of_panels`
  size_t columns_of_panels = 3;
  std::vector<std::string> x_ticks;        // the columns, shared by every panel
};

// Pixels of the PNG (the SVG has the same size in px).
struct Size {
  int width = 800;
  int height = 500;
};

void save(const LineChart& chart, const std::filesystem::path& stem, Size size = {});
void save(const Heatmap& chart, const std::filesystem::path& stem, Size size = {});
void save(const BarChart& chart, const std::filesystem::path& stem, Size size = {});
void save(const HeatmapGrid& chart, const std::filesystem::path& stem, Size size = {});

// Text for XML and HTML: & < > " as entities (the SVG's title and description, report.html).
std::string xml_escaped(const std::string& s);

// A number for the CSV files beside the pictures: 10 significant digits, "" for NaN (an empty cell).
std::string csv_number(double v);

// Round tick values (multiples of 1, 2, 2.5 or 5 times a power of ten) inside [lo, hi], as many as fit in
// max_ticks with the finest such step: nice_ticks(0, 1, 6) is 0, 0.2, ..., 1. {lo} when lo == hi.
std::vector<double> nice_ticks(double lo, double hi, int max_ticks);

// The cell the heatmap outlines, as {row, col}: the lowest value (highest when !lower_is_better), the first in
// reading order on ties; nullopt when every cell is NaN.
std::optional<std::pair<std::size_t, std::size_t>> best_cell(const Heatmap& chart);

}  // namespace esft::plot
