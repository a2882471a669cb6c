// The report pictures, drawn with cairo's toy text API in a sans-serif face. Each chart is one drawing function of
// (cairo context, width, height), run once on an image surface for the PNG and once on an SVG surface. Layout is
// measured from the text itself: margins hold the widest tick label, x labels turn 45 degrees or thin out when
// they would touch, and legends go where they cover the fewest data points.
#include "plot/plot.h"

#include <cairo-svg.h>
#include <cairo.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <tuple>

#include "esft/error.h"

namespace esft::plot {

namespace fs = std::filesystem;

namespace {

constexpr double kPi = 3.14159265358979323846;

// ---- colours -------------------------------------------------------------------------------------------------

struct Rgb {
  double r, g, b;
};

constexpr Rgb hex(unsigned v) { return {((v >> 16) & 255) / 255.0, ((v >> 8) & 255) / 255.0, (v & 255) / 255.0}; }

const Rgb kInk = hex(0x222222), kMuted = hex(0x5A5A5A), kAxis = hex(0x8C8C8C), kGrid = hex(0xE4E4E4),
          kBand = hex(0xF4F4F4), kMissing = hex(0xDADADA), kWhite = hex(0xFFFFFF);

// Tableau 10 (chosen to stay apart under the common colour vision deficiencies), then its lighter Tableau 20
// partners, which bars need when there are more than ten experts.
const Rgb kPalette[] = {hex(0x4E79A7), hex(0xF28E2B), hex(0xE15759), hex(0x76B7B2), hex(0x59A14F),
                        hex(0xEDC948), hex(0xB07AA1), hex(0xFF9DA7), hex(0x9C755F), hex(0xBAB0AC),
                        hex(0xA0CBE8), hex(0xFFBE7D), hex(0xFF9D9A), hex(0x86BCB6), hex(0x8CD17D),
                        hex(0xF1CE63), hex(0xD4A6C8), hex(0xFABFD2), hex(0xD7B5A6), hex(0x79706E)};
constexpr size_t kStrongColours = 10;
constexpr size_t kColours = sizeof kPalette / sizeof kPalette[0];

// Viridis at nine evenly spaced points; between them it is interpolated linearly in sRGB, as cairo's gradients
// are, so the colour bar shows exactly the cells' mapping.
const Rgb kViridis[] = {hex(0x440154), hex(0x472D7B), hex(0x3B528B), hex(0x2C728E), hex(0x21908C),
                        hex(0x27AD81), hex(0x5DC863), hex(0xAADC32), hex(0xFDE725)};
constexpr size_t kViridisStops = sizeof kViridis / sizeof kViridis[0];

Rgb viridis(double t) {
  t = std::clamp(t, 0.0, 1.0) * (kViridisStops - 1);
  const size_t i = std::min(static_cast<size_t>(t), kViridisStops - 2);
  const double f = t - static_cast<double>(i);
  const Rgb &a = kViridis[i], &b = kViridis[i + 1];
  return {a.r + f * (b.r - a.r), a.g + f * (b.g - a.g), a.b + f * (b.b - a.b)};
}

// WCAG relative luminance; below 0.179 white text contrasts more than black.
bool is_dark(Rgb c) {
  const auto linear = [](double v) { return v <= 0.04045 ? v / 12.92 : std::pow((v + 0.055) / 1.055, 2.4); };
  return 0.2126 * linear(c.r) + 0.7152 * linear(c.g) + 0.0722 * linear(c.b) < 0.179;
}

void set_colour(cairo_t* cr, Rgb c, double alpha = 1) { cairo_set_source_rgba(cr, c.r, c.g, c.b, alpha); }

// A line series: ten strong colours, then the same ones dashed.
struct LineStyle {
  Rgb colour;
  bool dashed;
};
LineStyle line_style(size_t i) { return {kPalette[i % kStrongColours], (i / kStrongColours) % 2 == 1}; }

// ---- text ----------------------------------------------------------------------------------------------------

constexpr double kTitleSize = 16, kLabelSize = 13, kTickSize = 11, kMargin = 16;

void set_font(cairo_t* cr, double size, bool bold = false) {
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL,
                         bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, size);
}

double text_width(cairo_t* cr, const std::string& s) {
  cairo_text_extents_t e;
  cairo_text_extents(cr, s.c_str(), &e);
  return e.x_advance;
}

// Height of a capital letter in the current font: the unit of vertical text placement.
double cap_height(cairo_t* cr) {
  cairo_text_extents_t e;
  cairo_text_extents(cr, "H", &e);
  return -e.y_bearing;
}

double descent(cairo_t* cr) {
  cairo_font_extents_t e;
  cairo_font_extents(cr, &e);
  return e.descent;
}

// Draws `s` so that the point (ax, ay) of its box lies at (x, y), turned by `angle` about that point. ax runs over
// the advance width (0 left, 1 right); ay over the capital height (0 top of the capitals, 1 the baseline), which
// centres digits and capitals by eye.
void draw_text(cairo_t* cr, const std::string& s, double x, double y, double ax, double ay, double angle = 0) {
  const double w = text_width(cr, s), cap = cap_height(cr);
  cairo_save(cr);
  cairo_translate(cr, x, y);
  cairo_rotate(cr, angle);
  cairo_move_to(cr, -ax * w, (1 - ay) * cap);
  cairo_show_text(cr, s.c_str());
  cairo_restore(cr);
}

// `s` cut to `max_width` with an ellipsis, whole UTF-8 characters at a time.
std::string fit(cairo_t* cr, const std::string& s, double max_width) {
  if (text_width(cr, s) <= max_width) return s;
  std::string cut = s;
  while (!cut.empty()) {
    do cut.pop_back();
    while (!cut.empty() && (static_cast<unsigned char>(cut.back()) & 0xC0) == 0x80);
    if (text_width(cr, cut + "\u2026") <= max_width) break;
  }
  return cut + "\u2026";
}

// ---- numbers -------------------------------------------------------------------------------------------------

// `v` with `decimals` decimals; millions and above as "1.5M", "2G".
std::string number_text(double v, int decimals) {
  char buf[64];
  const double a = std::fabs(v);
  if (a >= 1e6) {
    const bool giga = a >= 1e9;
    const double m = v / (giga ? 1e9 : 1e6);
    std::snprintf(buf, sizeof buf, "%.*g%s", 4, m, giga ? "G" : "M");
  } else {
    std::snprintf(buf, sizeof buf, "%.*f", decimals, v + 0.0);  // + 0.0: no "-0"
  }
  return buf;
}

// The fewest decimals that show every value of `values` exactly (up to 10).
int decimals_for(const std::vector<double>& values) {
  for (int d = 0; d < 10; ++d) {
    const double scale = std::pow(10.0, d);
    bool exact = true;
    for (double v : values)
      exact = exact && std::fabs(std::round(v * scale) - v * scale) < 1e-6 * std::max(1.0, std::fabs(v * scale));
    if (exact) return d;
  }
  return 10;
}

// Tick labels: on a linear axis with one number of decimals for all (0.5, 1.0, 1.5), on a log axis each alone.
std::vector<std::string> tick_labels(const std::vector<double>& ticks, bool each_alone) {
  std::vector<std::string> out;
  const int common = decimals_for(ticks);
  for (double t : ticks) out.push_back(number_text(t, each_alone ? decimals_for({t}) : common));
  return out;
}

// A cell value with `digits` significant digits (at least; large integers keep all theirs).
std::string significant(double v, int digits) {
  if (std::isnan(v)) return "n/a";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  if (v == 0) return "0";
  const int magnitude = static_cast<int>(std::floor(std::log10(std::fabs(v))));
  char buf[64];
  if (magnitude >= 6 || magnitude < -3)
    std::snprintf(buf, sizeof buf, "%.*e", digits - 1, v);
  else
    std::snprintf(buf, sizeof buf, "%.*f", std::max(0, digits - 1 - magnitude), v);
  return buf;
}

// Ticks of a log axis: powers of ten when at least two lie in range (with 2x and 5x between them when there is
// room), otherwise round linear values, which still read well on less than a decade.
std::vector<double> log_ticks(double lo, double hi, int max_ticks) {
  const int k0 = static_cast<int>(std::ceil(std::log10(lo) - 1e-9)),
            k1 = static_cast<int>(std::floor(std::log10(hi) + 1e-9));
  const int powers = k1 - k0 + 1;
  if (powers < 2) return nice_ticks(lo, hi, max_ticks);
  std::vector<double> ticks;
  const int every = (powers + max_ticks - 1) / max_ticks;
  const bool between = every == 1 && powers * 3 <= max_ticks;
  for (int k = k0 - 1; k <= k1; ++k) {
    const double p = std::pow(10.0, k);
    for (double m : {1.0, 2.0, 5.0}) {
      if ((m != 1 && !between) || (m == 1 && (k - k0) % every != 0)) continue;
      const double t = m * p;
      if (t >= lo * (1 - 1e-9) && t <= hi * (1 + 1e-9)) ticks.push_back(t);
    }
  }
  return ticks;
}

// ---- geometry ------------------------------------------------------------------------------------------------

struct Box {
  double x, y, w, h;
  double right() const { return x + w; }
  double bottom() const { return y + h; }
  bool contains(double px, double py) const { return px >= x && px <= right() && py >= y && py <= bottom(); }
};

// Maps values in [lo, hi] to pixels in [from, to], linearly or by log10.
struct Scale {
  double lo, hi, from, to;
  bool log = false;
  double operator()(double v) const {
    const double t = log ? (std::log10(v) - std::log10(lo)) / (std::log10(hi) - std::log10(lo)) : (v - lo) / (hi - lo);
    return from + t * (to - from);
  }
};

// Half-pixel positions keep one-pixel lines sharp.
double crisp(double v) { return std::floor(v) + 0.5; }

// [lo, hi] widened by `pad` of its span on both sides (in log10 on a log axis); a single value gets a span.
std::pair<double, double> padded(double lo, double hi, double pad, bool log) {
  if (log) {
    const auto [l, h] = padded(std::log10(lo), std::log10(hi), pad, false);
    return {std::pow(10.0, l), std::pow(10.0, h)};
  }
  if (lo == hi) {
    const double d = lo == 0 ? 1 : std::fabs(lo) * 0.05;
    return {lo - d, hi + d};
  }
  const double d = (hi - lo) * pad;
  return {lo - d, hi + d};
}

void draw_line(cairo_t* cr, double x0, double y0, double x1, double y1, Rgb colour, double width = 1) {
  set_colour(cr, colour);
  cairo_set_line_width(cr, width);
  cairo_move_to(cr, x0, y0);
  cairo_line_to(cr, x1, y1);
  cairo_stroke(cr);
}

// ---- shared parts of a chart ---------------------------------------------------------------------------------

// White page, the font settings, the title; returns where the chart below it starts.
double begin_page(cairo_t* cr, double width, const std::string& title) {
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  // Unhinted metrics: text measures the same on the PNG and the SVG surface, so both get one layout.
  cairo_font_options_t* options = cairo_font_options_create();
  cairo_font_options_set_hint_metrics(options, CAIRO_HINT_METRICS_OFF);
  cairo_font_options_set_hint_style(options, CAIRO_HINT_STYLE_NONE);
  cairo_set_font_options(cr, options);
  cairo_font_options_destroy(options);
  if (title.empty()) return kMargin;
  set_font(cr, kTitleSize, true);
  set_colour(cr, kInk);
  draw_text(cr, fit(cr, title, width - 2 * kMargin), width / 2, kMargin + 2, 0.5, 0);
  return kMargin + 2 + cap_height(cr) + 16;
}

// The y axis's label, turned to read upwards, centred on the plot at the left edge of the page.
void draw_y_label(cairo_t* cr, const std::string& label, const Box& plot) {
  if (label.empty()) return;
  set_font(cr, kLabelSize);
  set_colour(cr, kInk);
  draw_text(cr, fit(cr, label, plot.h + 40), kMargin, plot.y + plot.h / 2, 0.5, 0, -kPi / 2);
}

void draw_x_label(cairo_t* cr, const std::string& label, const Box& plot, double y) {
  if (label.empty()) return;
  set_font(cr, kLabelSize);
  set_colour(cr, kInk);
  draw_text(cr, fit(cr, label, plot.w + 60), plot.x + plot.w / 2, y, 0.5, 1);
}

// Room left of the plot for the y label and the widest tick label.
double left_margin(cairo_t* cr, const std::string& y_label, const std::vector<std::string>& tick_texts) {
  set_font(cr, kTickSize);
  double widest = 0;
  for (const auto& t : tick_texts) widest = std::max(widest, text_width(cr, t));
  set_font(cr, kLabelSize);
  const double label = y_label.empty() ? 0 : cap_height(cr) + descent(cr) + 10;
  return kMargin + label + widest + 8;
}

// Horizontal grid lines at the y ticks, their labels left of the plot.
void draw_y_ticks(cairo_t* cr, const Box& plot, const Scale& y, const std::vector<double>& ticks,
                  const std::vector<std::string>& texts) {
  set_font(cr, kTickSize);
  for (size_t i = 0; i < ticks.size(); ++i) {
    const double py = crisp(y(ticks[i]));
    draw_line(cr, plot.x, py, plot.right(), py, kGrid);
    set_colour(cr, kMuted);
    draw_text(cr, texts[i], plot.x - 8, py, 1, 0.5);
  }
}

// The left and bottom edges of the plot.
void draw_axes(cairo_t* cr, const Box& plot) {
  draw_line(cr, crisp(plot.x), plot.y, crisp(plot.x), plot.bottom(), kAxis);
  draw_line(cr, plot.x, crisp(plot.bottom()), plot.right(), crisp(plot.bottom()), kAxis);
}

// How category labels (bar groups, heatmap columns) fit under their slots: level, or turned 45 degrees (every
// `every`-th one when even that crowds), and how far below the axis they reach.
struct CategoryFit {
  std::vector<std::string> texts;
  bool turned = false;
  size_t every = 1;
  double depth = 0;
  double overhang = 0;  // how far turned labels reach left of the first slot
};

CategoryFit fit_categories(cairo_t* cr, const std::vector<std::string>& labels, double slot) {
  set_font(cr, kTickSize);
  CategoryFit f;
  double widest = 0;
  for (const auto& l : labels) widest = std::max(widest, text_width(cr, l));
  const double cap = cap_height(cr);
  if (widest <= slot - 6) {
    f.texts = labels;
    f.depth = cap + descent(cr);
    return f;
  }
  f.turned = true;
  widest = 0;
  for (const auto& l : labels) {
    f.texts.push_back(fit(cr, l, 130));
    widest = std::max(widest, text_width(cr, f.texts.back()));
  }
  // Turned labels stand cap * sqrt(2) apart along the axis at the least.
  f.every = static_cast<size_t>(std::max(1.0, std::ceil((cap + descent(cr) + 3) * std::sqrt(2.0) / slot)));
  f.depth = (widest + cap) / std::sqrt(2.0);
  for (size_t i = 0; i < f.texts.size(); i += f.every)
    f.overhang =
        std::max(f.overhang, text_width(cr, f.texts[i]) / std::sqrt(2.0) - 3 - (static_cast<double>(i) + 0.5) * slot);
  return f;
}

// Category labels under the slots whose centres `centre(i)` gives, `top` pixels being the axis.
void draw_categories(cairo_t* cr, const CategoryFit& f, const std::function<double(size_t)>& centre, double top) {
  set_font(cr, kTickSize);
  set_colour(cr, kMuted);
  for (size_t i = 0; i < f.texts.size(); i += f.every) {
    if (f.turned)
      draw_text(cr, f.texts[i], centre(i) + 3, top + 2, 1, 0, -kPi / 4);
    else
      draw_text(cr, f.texts[i], centre(i), top, 0.5, 0);
  }
}

// ---- legends -------------------------------------------------------------------------------------------------

enum class Swatch { Line, Dashed, Block };

struct LegendItem {
  std::string name;
  Rgb colour;
  Swatch swatch;
};

struct Legend {
  std::vector<LegendItem> items;
  size_t rows = 0, cols = 0;
  double column_width = 0, w = 0, h = 0;
};

constexpr double kLegendRow = 17, kLegendPad = 8, kSwatchWidth = 22, kLegendColumnGap = 14;

// As many rows as fit in max_height, then more columns.
Legend layout_legend(cairo_t* cr, std::vector<LegendItem> items, double max_height) {
  set_font(cr, kTickSize);
  Legend l;
  double widest = 0;
  for (auto& item : items) {
    item.name = fit(cr, item.name, 200);
    widest = std::max(widest, text_width(cr, item.name));
  }
  l.items = std::move(items);
  const size_t n = l.items.size();
  const auto fitting = static_cast<size_t>(std::max(1.0, std::floor((max_height - 2 * kLegendPad + 4) / kLegendRow)));
  l.cols = (n + fitting - 1) / fitting;
  l.rows = (n + l.cols - 1) / l.cols;
  l.column_width = kSwatchWidth + 6 + widest;
  l.w = 2 * kLegendPad + l.cols * l.column_width + (l.cols - 1) * kLegendColumnGap;
  l.h = 2 * kLegendPad + l.rows * kLegendRow - 4;
  return l;
}

void draw_legend(cairo_t* cr, const Legend& l, double x, double y) {
  cairo_rectangle(cr, crisp(x), crisp(y), std::round(l.w), std::round(l.h));
  set_colour(cr, kWhite, 0.92);
  cairo_fill_preserve(cr);
  set_colour(cr, hex(0xCCCCCC));
  cairo_set_line_width(cr, 1);
  cairo_stroke(cr);
  set_font(cr, kTickSize);
  for (size_t i = 0; i < l.items.size(); ++i) {
    const auto& item = l.items[i];
    const double cx = x + kLegendPad + static_cast<double>(i / l.rows) * (l.column_width + kLegendColumnGap);
    const double cy = y + kLegendPad - 2 + (static_cast<double>(i % l.rows) + 0.5) * kLegendRow;
    set_colour(cr, item.colour);
    if (item.swatch == Swatch::Block) {
      cairo_rectangle(cr, cx + 5, cy - 5, 12, 10);
      cairo_fill(cr);
    } else {
      const double dash[] = {5, 3};
      cairo_set_dash(cr, dash, item.swatch == Swatch::Dashed ? 2 : 0, 0);
      draw_line(cr, cx, cy, cx + kSwatchWidth, cy, item.colour, 2);
      cairo_set_dash(cr, nullptr, 0, 0);
    }
    set_colour(cr, kInk);
    draw_text(cr, item.name, cx + kSwatchWidth + 6, cy, 0, 0.5);
  }
}

// ---- saving --------------------------------------------------------------------------------------------------

using Drawing = std::function<void(cairo_t*, double width, double height)>;
using Surface = std::unique_ptr<cairo_surface_t, decltype(&cairo_surface_destroy)>;
using Context = std::unique_ptr<cairo_t, decltype(&cairo_destroy)>;

std::string both_files(const fs::path& stem) { return stem.string() + ".{png,svg}"; }

[[noreturn]] void bad_input(const fs::path& stem, const std::string& why) {
  throw Error("cannot plot " + both_files(stem) + ": " + why);
}

void check(cairo_status_t status, const fs::path& file) {
  if (status != CAIRO_STATUS_SUCCESS)
    throw Error("cannot draw " + file.string() + ": " + cairo_status_to_string(status));
}

cairo_status_t append_bytes(void* closure, const unsigned char* data, unsigned int length) {
  static_cast<std::string*>(closure)->append(reinterpret_cast<const char*>(data), length);
  return CAIRO_STATUS_SUCCESS;
}

void draw_on(cairo_surface_t* surface, const Drawing& draw, Size size, const fs::path& file) {
  check(cairo_surface_status(surface), file);
  Context cr(cairo_create(surface), cairo_destroy);
  draw(cr.get(), size.width, size.height);
  check(cairo_status(cr.get()), file);
}

// Through a temporary file, so that a reader never sees half a picture.
void write_file(const fs::path& file, const std::string& bytes) {
  fs::path partial = file;
  partial += ".partial";
  {
    std::ofstream out(partial, std::ios::binary | std::ios::trunc);
    if (!out) throw Error("cannot write " + file.string() + ": " + std::strerror(errno));
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.close();
    if (!out) {
      std::error_code ignored;
      fs::remove(partial, ignored);
      throw Error("cannot write " + file.string() + ": write failed");
    }
  }
  std::error_code ec;
  fs::rename(partial, file, ec);
  if (ec) {
    std::error_code ignored;
    fs::remove(partial, ignored);
    throw Error("cannot write " + file.string() + ": " + ec.message());
  }
}


// Writes stem.png and stem.svg. Cairo draws SVG text as glyph outlines, so the SVG also gets a <title> and a
// <desc> in words: the file stays searchable (which run is in it) and readable to screen readers.
void save_drawing(const fs::path& stem, Size size, const std::string& title, const std::string& description,
                  const Drawing& draw) {
  if (size.width < 100 || size.height < 100)
    bad_input(stem, "size " + std::to_string(size.width) + "x" + std::to_string(size.height) + " is below 100x100");
  fs::path png = stem, svg = stem;
  png += ".png";
  svg += ".svg";

  std::string png_bytes;
  {
    Surface surface(cairo_image_surface_create(CAIRO_FORMAT_ARGB32, size.width, size.height), cairo_surface_destroy);
    draw_on(surface.get(), draw, size, png);
    cairo_surface_flush(surface.get());
    check(cairo_surface_write_to_png_stream(surface.get(), append_bytes, &png_bytes), png);
  }
  std::string svg_bytes;
  {
    Surface surface(cairo_svg_surface_create_for_stream(append_bytes, &svg_bytes, size.width, size.height),
                    cairo_surface_destroy);
    cairo_svg_surface_set_document_unit(surface.get(), CAIRO_SVG_UNIT_PX);
    draw_on(surface.get(), draw, size, svg);
    cairo_surface_finish(surface.get());
    check(cairo_surface_status(surface.get()), svg);
  }
  const size_t open = svg_bytes.find("<svg");
  const size_t end = open == std::string::npos ? open : svg_bytes.find('>', open);
  if (end == std::string::npos) throw Error("cannot draw " + svg.string() + ": cairo wrote no <svg> element");
  svg_bytes.insert(end + 1,
                   "\n<title>" + xml_escaped(title) + "</title>\n<desc>" + xml_escaped(description) + "</desc>");

  write_file(png, png_bytes);
  write_file(svg, svg_bytes);
}

// Text from the caller, made safe to draw: cairo refuses invalid UTF-8, and a line break would draw as a box.
std::string clean(const std::string& s) { return one_line_utf8(s); }

std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

// ---- line chart ----------------------------------------------------------------------------------------------

bool drawable(const LineChart& c, double x, double y) {
  return std::isfinite(x) && std::isfinite(y) && (!c.log_y || y > 0);
}

// The y range of `series`, padded; {+inf, -inf} when no point is drawable.
std::pair<double, double> y_range(const LineChart& c, const std::vector<Series>& series, double& x_lo, double& x_hi,
                                  std::vector<size_t>& points) {
  double lo = HUGE_VAL, hi = -HUGE_VAL;
  for (const auto& s : series) {
    size_t n = 0;
    for (size_t i = 0; i < s.x.size(); ++i)
      if (drawable(c, s.x[i], s.y[i])) {
        ++n;
        x_lo = std::min(x_lo, s.x[i]), x_hi = std::max(x_hi, s.x[i]);
        lo = std::min(lo, s.y[i]), hi = std::max(hi, s.y[i]);
      }
    points.push_back(n);
  }
  return {lo, hi};
}

void draw_line_chart(cairo_t* cr, const LineChart& c, double width, double height) {
  const double top = begin_page(cr, width, clean(c.title));

  double x_lo = HUGE_VAL, x_hi = -HUGE_VAL;
  std::vector<size_t> points;  // drawable points per series, left then right
  auto [y_lo, y_hi] = y_range(c, c.series, x_lo, x_hi, points);
  if (c.reference_line) y_lo = std::min(y_lo, *c.reference_line), y_hi = std::max(y_hi, *c.reference_line);
  LineChart right_axis;  // the right series are never on a log axis
  auto [r_lo, r_hi] = y_range(right_axis, c.right_series, x_lo, x_hi, points);
  const bool has_right = r_lo <= r_hi;
  std::tie(x_lo, x_hi) = padded(x_lo, x_hi, 0.02, false);
  std::tie(y_lo, y_hi) = padded(y_lo, y_hi, 0.05, c.log_y);
  // The right axis starts at 0 (a learning rate's scale, not its wiggle), unless its values go below.
  if (has_right) std::tie(r_lo, r_hi) = padded(std::min(r_lo, 0.0), r_hi, 0.05, false);

  std::vector<LegendItem> items;
  for (size_t s = 0; s < c.series.size(); ++s) {
    const auto style = line_style(s);
    items.push_back({clean(c.series[s].name) + (points[s] ? "" : " (no data)"), style.colour,
                     style.dashed ? Swatch::Dashed : Swatch::Line});
  }
  for (size_t s = 0; s < c.right_series.size(); ++s) {
    const size_t i = c.series.size() + s;
    items.push_back({clean(c.right_series[s].name) + (points[i] ? " (right axis)" : " (no data)"),
                     line_style(i).colour, Swatch::Dashed});
  }
  if (c.reference_line) items.push_back({clean(c.reference_label), kMuted, Swatch::Dashed});
  // Up to eight entries sit inside the plot; more would hide the curves, so they go to its right.
  const bool legend_outside = items.size() > 8;
  set_font(cr, kLabelSize);
  const double bottom = kMargin + (c.x_label.empty() ? 0 : cap_height(cr) + descent(cr) + 8) + 24;
  Legend legend = layout_legend(cr, items, legend_outside ? height - top - bottom : (height - top - bottom) * 0.6);

  const int y_max_ticks = std::clamp(static_cast<int>((height - top - bottom) / 45), 2, 10);
  const auto y_ticks = c.log_y ? log_ticks(y_lo, y_hi, y_max_ticks) : nice_ticks(y_lo, y_hi, y_max_ticks);
  const auto y_texts = tick_labels(y_ticks, c.log_y);
  std::vector<double> r_ticks;
  std::vector<std::string> r_texts;
  double right_axis_room = 0;
  if (has_right) {
    r_ticks = nice_ticks(r_lo, r_hi, y_max_ticks);
    r_texts = tick_labels(r_ticks, false);
    set_font(cr, kTickSize);
    for (const auto& t : r_texts) right_axis_room = std::max(right_axis_room, text_width(cr, t));
    set_font(cr, kLabelSize);
    right_axis_room += 12 + (c.right_label.empty() ? 0 : cap_height(cr) + descent(cr) + 10);
  }
  const double left = left_margin(cr, c.y_label, y_texts);
  const double right = kMargin + 10 + right_axis_room + (legend_outside ? legend.w + 12 : 0);
  const Box plot{left, top, width - left - right, height - top - bottom};
  const Scale x{x_lo, x_hi, plot.x, plot.right()};
  const Scale y{y_lo, y_hi, plot.bottom(), plot.y, c.log_y};
  const Scale ry{r_lo, r_hi, plot.bottom(), plot.y};

  // As many x ticks as fit with a gap between their labels.
  set_font(cr, kTickSize);
  std::vector<double> x_ticks;
  std::vector<std::string> x_texts;
  for (int max_ticks = std::clamp(static_cast<int>(plot.w / 60), 2, 12); max_ticks >= 2; --max_ticks) {
    x_ticks = nice_ticks(x_lo, x_hi, max_ticks);
    x_texts = tick_labels(x_ticks, false);
    double widest = 0;
    for (const auto& t : x_texts) widest = std::max(widest, text_width(cr, t));
    if (x_ticks.size() < 2 || (widest + 18) * static_cast<double>(x_ticks.size()) <= plot.w) break;
  }

  draw_y_ticks(cr, plot, y, y_ticks, y_texts);
  for (size_t i = 0; i < x_ticks.size(); ++i) {
    const double px = crisp(x(x_ticks[i]));
    draw_line(cr, px, plot.y, px, plot.bottom(), kGrid);
    draw_line(cr, px, plot.bottom(), px, plot.bottom() + 4, kAxis);
    set_colour(cr, kMuted);
    draw_text(cr, x_texts[i], px, plot.bottom() + 8, 0.5, 0);
  }
  draw_axes(cr, plot);
  draw_y_label(cr, clean(c.y_label), plot);
  draw_x_label(cr, clean(c.x_label), plot, height - kMargin);
  if (has_right) {
    draw_line(cr, crisp(plot.right()), plot.y, crisp(plot.right()), plot.bottom(), kAxis);
    set_font(cr, kTickSize);
    for (size_t i = 0; i < r_ticks.size(); ++i) {
      const double py = crisp(ry(r_ticks[i]));
      draw_line(cr, plot.right(), py, plot.right() + 4, py, kAxis);
      set_colour(cr, kMuted);
      draw_text(cr, r_texts[i], plot.right() + 7, py, 0, 0.5);
    }
    if (!c.right_label.empty()) {
      set_font(cr, kLabelSize);
      set_colour(cr, kInk);
      draw_text(cr, fit(cr, clean(c.right_label), plot.h), plot.right() + right_axis_room - descent(cr),
                plot.y + plot.h / 2, 0.5, 1, kPi / 2);
    }
  }

  // The curves, clipped to the plot. A point between two gaps gets a dot, or it would not show; short series get
  // dots throughout, so that a handful of evaluations read as measurements.
  std::vector<std::pair<double, double>> drawn;  // pixel points, for placing the legend
  cairo_save(cr);
  cairo_rectangle(cr, plot.x, plot.y - 2, plot.w + 2, plot.h + 2);
  cairo_clip(cr);
  cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
  cairo_set_line_cap(cr, CAIRO_LINE_CAP_ROUND);
  if (c.reference_line) {
    const double py = y(*c.reference_line);
    const double dash[] = {6, 4};
    cairo_set_dash(cr, dash, 2, 0);
    draw_line(cr, plot.x, py, plot.right(), py, kMuted, 1.4);
    cairo_set_dash(cr, nullptr, 0, 0);
  }
  for (size_t s = 0; s < c.series.size() + c.right_series.size(); ++s) {
    const bool on_right = s >= c.series.size();
    const auto& series = on_right ? c.right_series[s - c.series.size()] : c.series[s];
    const Scale& sy = on_right ? ry : y;
    const LineChart& rules = on_right ? right_axis : c;  // what counts as drawable
    auto style = line_style(s);
    style.dashed = style.dashed || on_right;
    const bool dots = points[s] <= 25;
    std::vector<std::pair<double, double>> run;
    const auto flush = [&] {
      if (run.size() > 1) {
        cairo_move_to(cr, run[0].first, run[0].second);
        for (size_t i = 1; i < run.size(); ++i) cairo_line_to(cr, run[i].first, run[i].second);
        const double dash[] = {7, 4};
        cairo_set_dash(cr, dash, style.dashed ? 2 : 0, 0);
        set_colour(cr, style.colour);
        cairo_set_line_width(cr, 1.8);
        cairo_stroke(cr);
        cairo_set_dash(cr, nullptr, 0, 0);
      }
      for (const auto& [px, py] : run)
        if (dots || run.size() == 1) {
          cairo_arc(cr, px, py, 2.8, 0, 2 * kPi);
          set_colour(cr, style.colour);
          cairo_fill(cr);
        }
      for (size_t i = 0; i < run.size(); ++i) {
        drawn.push_back(run[i]);
        if (i + 1 < run.size())  // the segment too, or a legend could sit across a sparse curve
          for (int k = 1; k < 4; ++k)
            drawn.emplace_back(run[i].first + k * (run[i + 1].first - run[i].first) / 4,
                               run[i].second + k * (run[i + 1].second - run[i].second) / 4);
      }
      run.clear();
    };
    for (size_t i = 0; i < series.x.size(); ++i) {
      if (drawable(rules, series.x[i], series.y[i]))
        run.emplace_back(x(series.x[i]), sy(series.y[i]));
      else
        flush();
    }
    flush();
  }
  cairo_restore(cr);

  if (legend_outside) {
    draw_legend(cr, legend, plot.right() + 12 + 10, plot.y);
    return;
  }
  // Inside: the corner that covers the fewest curve points, top right on a tie.
  const double inset = 10;
  const Box corners[] = {{plot.right() - inset - legend.w, plot.y + inset, legend.w, legend.h},
                         {plot.x + inset, plot.y + inset, legend.w, legend.h},
                         {plot.x + inset, plot.bottom() - inset - legend.h, legend.w, legend.h},
                         {plot.right() - inset - legend.w, plot.bottom() - inset - legend.h, legend.w, legend.h}};
  const Box* best = &corners[0];
  size_t best_covered = SIZE_MAX;
  for (const auto& corner : corners) {
    size_t covered = 0;
    for (const auto& [px, py] : drawn) covered += corner.contains(px, py);
    if (covered < best_covered) best_covered = covered, best = &corner;
  }
  draw_legend(cr, legend, best->x, best->y);
}

// ---- heatmap -------------------------------------------------------------------------------------------------

// A vertical viridis bar in `bar` for values [lo, hi], its ticks right of it and `label` turned along the page's
// right edge.
void draw_colour_bar(cairo_t* cr, const Box& bar, double lo, double hi, int max_ticks, const std::string& label,
                     double page_width) {
  cairo_pattern_t* gradient = cairo_pattern_create_linear(0, bar.bottom(), 0, bar.y);
  for (size_t i = 0; i < kViridisStops; ++i) {
    const Rgb s = kViridis[i];
    cairo_pattern_add_color_stop_rgb(gradient, static_cast<double>(i) / (kViridisStops - 1), s.r, s.g, s.b);
  }
  cairo_rectangle(cr, bar.x, bar.y, bar.w, bar.h);
  cairo_set_source(cr, gradient);
  cairo_fill(cr);
  cairo_pattern_destroy(gradient);
  cairo_rectangle(cr, crisp(bar.x), crisp(bar.y), std::round(bar.w), std::round(bar.h) - 1);
  cairo_set_line_width(cr, 1);
  set_colour(cr, kAxis);
  cairo_stroke(cr);
  const Scale scale{lo, hi, bar.bottom(), bar.y};
  const auto ticks = nice_ticks(lo, hi, std::clamp(static_cast<int>(bar.h / 36), 2, max_ticks));
  const auto texts = tick_labels(ticks, false);
  set_font(cr, kTickSize);
  for (size_t i = 0; i < ticks.size(); ++i) {
    const double py = crisp(scale(ticks[i]));
    draw_line(cr, bar.right(), py, bar.right() + 4, py, kAxis);
    set_colour(cr, kMuted);
    draw_text(cr, texts[i], bar.right() + 7, py, 0, 0.5);
  }
  if (!label.empty()) {
    set_font(cr, kLabelSize);
    set_colour(cr, kInk);
    draw_text(cr, fit(cr, label, bar.h), page_width - kMargin - descent(cr), bar.y + bar.h / 2, 0.5, 1, -kPi / 2);
  }
}

void draw_heatmap(cairo_t* cr, const Heatmap& c, double width, double height) {
  double top = begin_page(cr, width, clean(c.title));
  const size_t rows = c.values.size(), cols = c.x_ticks.size();
  double v_lo = HUGE_VAL, v_hi = -HUGE_VAL;
  for (const auto& row : c.values)
    for (double v : row)
      if (std::isfinite(v)) v_lo = std::min(v_lo, v), v_hi = std::max(v_hi, v);
  const bool any = v_lo <= v_hi;
  const auto best = best_cell(c);
  const std::string value_label = clean(c.value_label);

  // What the outline means, under the title.
  if (best) {
    set_font(cr, kTickSize);
    set_colour(cr, kMuted);
    const double v = c.values[best->first][best->second];
    const std::string note = std::string("outlined: ") + (c.lower_is_better ? "lowest" : "highest") +
                             (value_label.empty() ? "" : " " + value_label) + " (" + significant(v, 4) + ")";
    draw_text(cr, fit(cr, note, width - 2 * kMargin), width / 2, top - 8, 0.5, 0);
    top += cap_height(cr) + 6;
  }

  // Right: the colour bar, its tick labels and its label.
  const double bar_gap = 18, bar_width = 16;
  const auto [bar_lo, bar_hi] = any ? padded(v_lo, v_hi, 0, false) : std::pair{0.0, 1.0};
  set_font(cr, kLabelSize);
  const double bottom_label = c.x_label.empty() ? 0 : cap_height(cr) + descent(cr) + 8;
  const double value_label_room = value_label.empty() ? 0 : cap_height(cr) + descent(cr) + 10;
  // Its ticks for the tallest grid, to size the margin; a shorter grid gets fewer of them (no wider) below.
  const int bar_max_ticks = std::clamp(static_cast<int>((height - top - 80) / 36), 2, 8);
  set_font(cr, kTickSize);
  double widest_bar_text = 0;
  if (any)
    for (const auto& t : tick_labels(nice_ticks(bar_lo, bar_hi, bar_max_ticks), false))
      widest_bar_text = std::max(widest_bar_text, text_width(cr, t));
  const double right = kMargin + value_label_room + widest_bar_text + 10 + bar_width + bar_gap;

  // Left: the row labels, every k-th when the rows are too thin for them all.
  std::vector<std::string> y_texts;
  for (const auto& t : c.y_ticks) y_texts.push_back(fit(cr, clean(t), 160));
  double left = left_margin(cr, c.y_label, y_texts);

  // The grid gets the rest, with cells no more than three times as wide as tall (or the reverse), centred.
  // Turned column labels may reach past the left edge of the page: then the grid moves right.
  std::vector<std::string> x_texts;
  for (const auto& t : c.x_ticks) x_texts.push_back(clean(t));
  double avail_w = 0, avail_h = 0, cell_w = 0, cell_h = 0;
  CategoryFit x_fit;
  for (int pass = 0; pass < 2; ++pass) {
    avail_w = width - left - right;
    cell_w = avail_w / static_cast<double>(cols);
    x_fit = fit_categories(cr, x_texts, cell_w);
    avail_h = height - top - kMargin - bottom_label - x_fit.depth - 8;
    cell_h = avail_h / static_cast<double>(rows);
    cell_w = std::min(cell_w, 3 * cell_h);
    cell_h = std::min(cell_h, 3 * cell_w);
    const double grid_x = left + (avail_w - cell_w * static_cast<double>(cols)) / 2;
    if (grid_x - x_fit.overhang >= kMargin / 2) break;
    left += kMargin / 2 + x_fit.overhang + 2 - grid_x;
  }
  const double grid_w = cell_w * static_cast<double>(cols), grid_h = cell_h * static_cast<double>(rows);
  const Box grid{left + (avail_w - grid_w) / 2, top + (avail_h - grid_h) / 2, grid_w, grid_h};

  // The cells: colour, value, the best one outlined.
  const double text_size = std::min(13.0, cell_h * 0.38);
  for (size_t r = 0; r < rows; ++r)
    for (size_t col = 0; col < cols; ++col) {
      const double v = c.values[r][col];
      const Box cell{grid.x + static_cast<double>(col) * cell_w, grid.y + static_cast<double>(r) * cell_h, cell_w,
                     cell_h};
      const Rgb fill = !std::isfinite(v) ? kMissing : viridis(v_hi > v_lo ? (v - v_lo) / (v_hi - v_lo) : 0.5);
      set_colour(cr, fill);
      cairo_rectangle(cr, cell.x + 0.75, cell.y + 0.75, cell.w - 1.5, cell.h - 1.5);
      cairo_fill(cr);
      const bool is_best = best && best->first == r && best->second == col;
      const std::string text = significant(v, 4);
      set_font(cr, text_size, is_best);
      const double size = std::min(text_size, text_size * (cell.w - 8) / text_width(cr, text));
      if (size >= 6) {
        set_font(cr, size, is_best);
        set_colour(cr, !std::isfinite(v) ? kMuted : is_dark(fill) ? kWhite : kInk);
        draw_text(cr, text, cell.x + cell.w / 2, cell.y + cell.h / 2, 0.5, 0.5);
      }
    }
  if (best) {
    const Box cell{grid.x + static_cast<double>(best->second) * cell_w,
                   grid.y + static_cast<double>(best->first) * cell_h, cell_w, cell_h};
    cairo_set_line_width(cr, 3);
    set_colour(cr, kInk);
    cairo_rectangle(cr, cell.x + 2.25, cell.y + 2.25, cell.w - 4.5, cell.h - 4.5);
    cairo_stroke(cr);
    cairo_set_line_width(cr, 1.2);
    set_colour(cr, kWhite);
    cairo_rectangle(cr, cell.x + 4.4, cell.y + 4.4, cell.w - 8.8, cell.h - 8.8);
    cairo_stroke(cr);
  }

  // Row and column labels, axis labels.
  set_font(cr, kTickSize);
  const auto row_every = static_cast<size_t>(std::max(1.0, std::ceil((cap_height(cr) + 4) / cell_h)));
  set_colour(cr, kMuted);
  for (size_t r = 0; r < rows; r += row_every)
    draw_text(cr, y_texts[r], grid.x - 8, grid.y + (static_cast<double>(r) + 0.5) * cell_h, 1, 0.5);
  draw_categories(
      cr, x_fit, [&](size_t i) { return grid.x + (static_cast<double>(i) + 0.5) * cell_w; }, grid.bottom() + 8);
  draw_y_label(cr, clean(c.y_label), grid);
  draw_x_label(cr, clean(c.x_label), grid, grid.bottom() + 8 + x_fit.depth + 8 + cap_height(cr));

  if (any) draw_colour_bar(cr, {grid.right() + bar_gap, grid.y, bar_width, grid.h}, bar_lo, bar_hi, bar_max_ticks,
                          value_label, width);
}

// ---- heatmap grid --------------------------------------------------------------------------------------------

void draw_heatmap_grid(cairo_t* cr, const HeatmapGrid& c, double width, double height) {
  double top = begin_page(cr, width, clean(c.title));
  double v_lo = HUGE_VAL, v_hi = -HUGE_VAL;
  bool any_marked = false;
  for (const auto& p : c.panels) {
    for (const auto& row : p.values)
      for (double v : row)
        if (std::isfinite(v)) v_lo = std::min(v_lo, v), v_hi = std::max(v_hi, v);
    for (const auto& row : p.marked)
      for (bool m : row) any_marked = any_marked || m;
  }
  const bool any = v_lo <= v_hi;
  // Shares start at 0: the colour of a cell then reads as its size, the same in every panel.
  const double bar_lo = any ? std::min(0.0, v_lo) : 0.0, bar_hi = any && v_hi > bar_lo ? v_hi : bar_lo + 1;

  // What the dots mean, under the title.
  const auto dot_radius = [](double cell_w, double cell_h) { return std::clamp(std::min(cell_w, cell_h) * 0.24, 1.6, 5.0); };
  const auto draw_dot = [&](double x, double y, double r) {
    cairo_new_path(cr);  // a fresh path, or the arc would join the last point drawn
    cairo_arc(cr, x, y, r, 0, 2 * kPi);
    set_colour(cr, kWhite);
    cairo_fill_preserve(cr);
    cairo_set_line_width(cr, std::max(0.8, r * 0.35));
    set_colour(cr, kInk);
    cairo_stroke(cr);
  };
  if (any_marked && !c.marked_label.empty()) {
    set_font(cr, kTickSize);
    const std::string note = clean(c.marked_label);
    const double w = text_width(cr, note) + 14;
    draw_dot(width / 2 - w / 2 + 4, top - 8 + cap_height(cr) / 2, 4);
    set_colour(cr, kMuted);
    draw_text(cr, note, width / 2 - w / 2 + 14, top - 8, 0, 0);
    top += cap_height(cr) + 6;
  }

  // Right of the page: the colour bar.
  const double bar_gap = 18, bar_width = 16;
  set_font(cr, kLabelSize);
  const double value_label_room = c.value_label.empty() ? 0 : cap_height(cr) + descent(cr) + 10;
  const double x_label_room = c.x_label.empty() ? 0 : cap_height(cr) + descent(cr) + 8;
  const double y_label_room = c.y_label.empty() ? 0 : cap_height(cr) + descent(cr) + 8;
  set_font(cr, kTickSize);
  double widest_bar_text = 0;
  for (const auto& t : tick_labels(nice_ticks(bar_lo, bar_hi, 8), false))
    widest_bar_text = std::max(widest_bar_text, text_width(cr, t));
  const double right = kMargin + value_label_room + widest_bar_text + 10 + bar_width + bar_gap;
  const double left = kMargin + y_label_room;

  // Panels in rows of up to columns_of_panels.
  const size_t n = c.panels.size();
  const size_t per_row = std::max<size_t>(1, std::min(c.columns_of_panels, n));
  const size_t panel_rows = (n + per_row - 1) / per_row;
  const double slot_w = (width - left - right) / static_cast<double>(per_row);
  const double slot_h = (height - top - kMargin - x_label_room) / static_cast<double>(panel_rows);
  const double cap = cap_height(cr), title_room = cap + descent(cr) + 8, gap = 24;
  double row_tick_w = 0, notes_w = 0;
  for (const auto& p : c.panels) {
    for (const auto& t : p.row_ticks) row_tick_w = std::max(row_tick_w, text_width(cr, clean(t)));
    for (const auto& t : p.row_notes) notes_w = std::max(notes_w, text_width(cr, clean(t)));
    if (!p.row_notes.empty()) notes_w = std::max(notes_w, text_width(cr, clean(p.notes_heading)));
  }
  const double col_tick_room = cap + descent(cr) + 8;
  const double grid_w = slot_w - gap - row_tick_w - 8 - (notes_w > 0 ? notes_w + 10 : 0);
  const size_t cols = c.x_ticks.size();
  const double cell_w = grid_w / static_cast<double>(cols);
  // Column labels: every k-th, k a round step (1, 2, 5, 10, ...), so that they never touch.
  double widest_col = 0;
  for (const auto& t : c.x_ticks) widest_col = std::max(widest_col, text_width(cr, clean(t)));
  size_t every = 1;
  for (size_t k : {1, 2, 4, 5, 8, 10, 16, 20, 25, 32, 50, 64, 100, 128, 200, 256})
    if ((every = k) * cell_w >= widest_col + 6) break;

  Box first_grid{0, 0, 0, 0};
  double grids_bottom = 0;
  for (size_t i = 0; i < n; ++i) {
    const auto& p = c.panels[i];
    const double sx = left + static_cast<double>(i % per_row) * slot_w, sy = top + static_cast<double>(i / per_row) * slot_h;
    const size_t rows = p.values.size();
    // Cells may be thin either way (128 experts, 48 layers); only a handful of rows is kept from growing tall.
    const double cell_h = std::min((slot_h - title_room - col_tick_room - gap) / static_cast<double>(rows), 40.0);
    const Box grid{sx + row_tick_w + 8, sy + title_room, grid_w, cell_h * static_cast<double>(rows)};
    if (i == 0) first_grid = grid;
    grids_bottom = std::max(grids_bottom, grid.bottom());
    set_font(cr, kLabelSize, true);
    set_colour(cr, kInk);
    draw_text(cr, fit(cr, clean(p.title), grid.w), grid.x, sy + cap + 2, 0, 1);
    for (size_t r = 0; r < rows; ++r)
      for (size_t col = 0; col < cols; ++col) {
        const double v = p.values[r][col];
        const Rgb fill = !std::isfinite(v) ? kMissing : viridis((v - bar_lo) / (bar_hi - bar_lo));
        set_colour(cr, fill);
        const double inset = cell_w > 12 && cell_h > 12 ? 0.5 : 0;  // thin cells without gaps, or gaps are all one sees
        cairo_rectangle(cr, grid.x + static_cast<double>(col) * cell_w + inset, grid.y + static_cast<double>(r) * cell_h + inset,
                        cell_w - 2 * inset, cell_h - 2 * inset);
        cairo_fill(cr);
      }
    for (size_t r = 0; r < p.marked.size(); ++r)
      for (size_t col = 0; col < p.marked[r].size(); ++col)
        if (p.marked[r][col])
          draw_dot(grid.x + (static_cast<double>(col) + 0.5) * cell_w, grid.y + (static_cast<double>(r) + 0.5) * cell_h,
                   dot_radius(cell_w, cell_h));
    // Row labels and notes, every k-th when rows are thin.
    set_font(cr, kTickSize);
    const auto row_every = static_cast<size_t>(std::max(1.0, std::ceil((cap + 4) / cell_h)));
    set_colour(cr, kMuted);
    for (size_t r = 0; r < rows; r += row_every) {
      const double py = grid.y + (static_cast<double>(r) + 0.5) * cell_h;
      draw_text(cr, clean(p.row_ticks[r]), grid.x - 8, py, 1, 0.5);
      if (r < p.row_notes.size()) draw_text(cr, clean(p.row_notes[r]), grid.right() + 10, py, 0, 0.5);
    }
    if (!p.row_notes.empty() && !p.notes_heading.empty()) {
      set_colour(cr, kInk);
      draw_text(cr, clean(p.notes_heading), grid.right() + 10, grid.y - 5, 0, 1);
    }
    set_colour(cr, kMuted);
    for (size_t col = 0; col < cols; col += every)
      draw_text(cr, clean(c.x_ticks[col]), grid.x + (static_cast<double>(col) + 0.5) * cell_w, grid.bottom() + 6, 0.5, 0);
  }
  // Axis labels once, for the whole page.
  set_font(cr, kLabelSize);
  set_colour(cr, kInk);
  if (!c.x_label.empty())
    draw_text(cr, fit(cr, clean(c.x_label), width - left - right), left + (width - left - right) / 2,
              height - kMargin - descent(cr), 0.5, 1);
  if (!c.y_label.empty())
    draw_text(cr, fit(cr, clean(c.y_label), height - top), kMargin + cap_height(cr), top + (height - top) / 2, 0.5, 1,
              -kPi / 2);
  if (any) {
    const double bar_top = first_grid.y, bar_h = std::max(60.0, grids_bottom - bar_top);
    draw_colour_bar(cr, {width - right + bar_gap, bar_top, bar_width, bar_h}, bar_lo, bar_hi, 8, clean(c.value_label),
                    width);
  }
}

// ---- bar chart -----------------------------------------------------------------------------------------------

void draw_bar_chart(cairo_t* cr, const BarChart& c, double width, double height) {
  const double top = begin_page(cr, width, clean(c.title));
  const size_t groups = c.groups.size(), bars = c.bars.size();

  double v_lo = 0, v_hi = 0;
  for (const auto& b : c.bars)
    for (double v : b.values)
      if (std::isfinite(v)) v_lo = std::min(v_lo, v), v_hi = std::max(v_hi, v);
  if (c.reference_line) v_lo = std::min(v_lo, *c.reference_line), v_hi = std::max(v_hi, *c.reference_line);
  if (v_lo == v_hi) v_hi = 1;
  const double span = v_hi - v_lo;
  if (v_hi > 0) v_hi += span * 0.05;
  if (v_lo < 0) v_lo -= span * 0.05;

  std::vector<LegendItem> items;
  for (size_t b = 0; b < bars; ++b) items.push_back({clean(c.bars[b].name), kPalette[b % kColours], Swatch::Block});
  if (c.reference_line)
    items.push_back({clean(c.reference_label) + " (" + significant(*c.reference_line, 3) + ")", kInk, Swatch::Dashed});

  set_font(cr, kLabelSize);
  const double x_label_room = c.x_label.empty() ? 0 : cap_height(cr) + descent(cr) + 8;
  const int y_max_ticks = std::clamp(static_cast<int>((height - top - 80) / 45), 2, 10);
  const auto y_ticks = nice_ticks(v_lo, v_hi, y_max_ticks);
  const auto y_texts = tick_labels(y_ticks, false);
  double left = left_margin(cr, c.y_label, y_texts);
  const Legend legend = layout_legend(cr, items, height - top - kMargin - x_label_room - 30);
  std::vector<std::string> group_texts;
  for (const auto& g : c.groups) group_texts.push_back(clean(g));
  // Turned group labels may reach past the left edge of the page: then the plot moves right.
  double plot_w = 0, slot = 0;
  CategoryFit x_fit;
  for (int pass = 0; pass < 2; ++pass) {
    plot_w = width - left - kMargin - legend.w - 16;
    slot = plot_w / static_cast<double>(groups);
    x_fit = fit_categories(cr, group_texts, slot);
    if (left - x_fit.overhang >= kMargin / 2) break;
    left = kMargin / 2 + x_fit.overhang + 2;
  }
  const Box plot{left, top, plot_w, height - top - kMargin - x_label_room - x_fit.depth - 8};
  const Scale y{v_lo, v_hi, plot.bottom(), plot.y};

  // Every other group on a light band, so that many bars still group by eye.
  for (size_t g = 1; g < groups; g += 2) {
    cairo_rectangle(cr, plot.x + static_cast<double>(g) * slot, plot.y, slot, plot.h);
    set_colour(cr, kBand);
    cairo_fill(cr);
  }
  draw_y_ticks(cr, plot, y, y_ticks, y_texts);

  const double bar_w = slot * 0.84 / static_cast<double>(bars);
  const double zero = y(0);
  for (size_t g = 0; g < groups; ++g)
    for (size_t b = 0; b < bars; ++b) {
      const double v = c.bars[b].values[g];
      if (!std::isfinite(v)) continue;
      const double x0 = plot.x + (static_cast<double>(g) + 0.08) * slot + static_cast<double>(b) * bar_w;
      cairo_rectangle(cr, x0, std::min(zero, y(v)), bar_w, std::fabs(y(v) - zero));
      set_colour(cr, kPalette[b % kColours]);
      if (bar_w >= 5) {  // a hairline between neighbours
        cairo_fill_preserve(cr);
        set_colour(cr, kWhite);
        cairo_set_line_width(cr, 0.8);
        cairo_stroke(cr);
      } else {
        cairo_fill(cr);
      }
    }
  draw_axes(cr, plot);
  if (v_lo < 0) draw_line(cr, plot.x, crisp(zero), plot.right(), crisp(zero), kAxis);
  if (c.reference_line) {
    const double dash[] = {6, 4};
    cairo_set_dash(cr, dash, 2, 0);
    draw_line(cr, plot.x, y(*c.reference_line), plot.right(), y(*c.reference_line), kInk, 1.5);
    cairo_set_dash(cr, nullptr, 0, 0);
  }

  draw_categories(
      cr, x_fit, [&](size_t i) { return plot.x + (static_cast<double>(i) + 0.5) * slot; }, plot.bottom() + 8);
  draw_y_label(cr, clean(c.y_label), plot);
  draw_x_label(cr, clean(c.x_label), plot, height - kMargin);
  draw_legend(cr, legend, plot.right() + 16, plot.y);
}

}  // namespace

// ---- public --------------------------------------------------------------------------------------------------

std::string xml_escaped(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string csv_number(double v) {
  if (std::isnan(v)) return "";
  std::ostringstream s;
  s.precision(10);
  s << v;
  return s.str();
}

std::vector<double> nice_ticks(double lo, double hi, int max_ticks) {
  if (!std::isfinite(lo) || !std::isfinite(hi) || lo > hi)
    throw Error("nice_ticks: [" + std::to_string(lo) + ", " + std::to_string(hi) + "] is not a finite range");
  if (max_ticks < 2) throw Error("nice_ticks: max_ticks is " + std::to_string(max_ticks) + ", below 2");
  if (lo == hi) return {lo};
  // The finest step m * 10^e (m in 1, 2, 2.5, 5) that leaves at most max_ticks multiples in range. A tick is
  // (i * m) / 10^-e or (i * m) * 10^e, products and quotients of exact numbers, so 0.3 prints as 0.3.
  int e = static_cast<int>(std::floor(std::log10((hi - lo) / max_ticks))) - 1;
  for (;; ++e) {
    for (double m : {1.0, 2.0, 2.5, 5.0}) {
      const double p = std::pow(10.0, std::abs(e));
      const double step = e >= 0 ? m * p : m / p;
      const double first = std::ceil(lo / step - 1e-9), last = std::floor(hi / step + 1e-9);
      if (last - first + 1 > max_ticks) continue;
      std::vector<double> ticks;
      for (double i = first; i <= last; ++i) ticks.push_back((e >= 0 ? i * m * p : i * m / p) + 0.0);
      return ticks;
    }
  }
}

std::optional<std::pair<std::size_t, std::size_t>> best_cell(const Heatmap& chart) {
  std::optional<std::pair<std::size_t, std::size_t>> best;
  double best_value = 0;
  for (size_t r = 0; r < chart.values.size(); ++r)
    for (size_t c = 0; c < chart.values[r].size(); ++c) {
      const double v = chart.values[r][c];
      if (!std::isfinite(v)) continue;
      if (!best || (chart.lower_is_better ? v < best_value : v > best_value)) best = {r, c}, best_value = v;
    }
  return best;
}

void save(const LineChart& chart, const fs::path& stem, Size size) {
  if (chart.series.empty()) bad_input(stem, "the line chart has no series");
  bool any = false;
  std::vector<std::string> names;
  for (const auto& s : chart.series) {
    if (s.x.size() != s.y.size())
      bad_input(stem, "series '" + s.name + "' has " + std::to_string(s.x.size()) + " x values but " +
                          std::to_string(s.y.size()) + " y values");
    for (size_t i = 0; i < s.x.size() && !any; ++i) any = drawable(chart, s.x[i], s.y[i]);
    names.push_back(clean(s.name));
  }
  if (!any)
    bad_input(stem, std::string("no series has a point to draw (every value is NaN") +
                        (chart.log_y ? " or not positive on the log axis)" : ")"));
  for (const auto& s : chart.right_series) {
    if (s.x.size() != s.y.size())
      bad_input(stem, "series '" + s.name + "' has " + std::to_string(s.x.size()) + " x values but " +
                          std::to_string(s.y.size()) + " y values");
    names.push_back(clean(s.name) + " (right axis)");
  }
  if (chart.reference_line && !std::isfinite(*chart.reference_line))
    bad_input(stem, "the reference line is at " + std::to_string(*chart.reference_line));
  save_drawing(stem, size, clean(chart.title),
               "Line chart. x: " + clean(chart.x_label) + "; y: " + clean(chart.y_label) +
                   (chart.log_y ? " (log)" : "") + "; series: " + joined(names) +
                   (chart.reference_line ? "; dashed line: " + clean(chart.reference_label) + " at " +
                                               significant(*chart.reference_line, 4)
                                         : ""),
               [&](cairo_t* cr, double w, double h) { draw_line_chart(cr, chart, w, h); });
}

void save(const Heatmap& chart, const fs::path& stem, Size size) {
  if (chart.values.empty() || chart.x_ticks.empty()) bad_input(stem, "the heatmap has no cells");
  if (chart.values.size() != chart.y_ticks.size())
    bad_input(stem, "the heatmap has " + std::to_string(chart.values.size()) + " rows of values but " +
                        std::to_string(chart.y_ticks.size()) + " y_ticks");
  for (size_t r = 0; r < chart.values.size(); ++r)
    if (chart.values[r].size() != chart.x_ticks.size())
      bad_input(stem, "row " + std::to_string(r) + " of the heatmap has " + std::to_string(chart.values[r].size()) +
                          " values but there are " + std::to_string(chart.x_ticks.size()) + " x_ticks");
  std::string description = "Heatmap. x: " + clean(chart.x_label) + " (" + clean(joined(chart.x_ticks)) +
                            "); y: " + clean(chart.y_label) + " (" + clean(joined(chart.y_ticks)) +
                            "); cells: " + clean(chart.value_label);
  if (const auto best = best_cell(chart))
    description += std::string("; ") + (chart.lower_is_better ? "lowest " : "highest ") +
                   significant(chart.values[best->first][best->second], 4) + " at " + clean(chart.x_label) + "=" +
                   clean(chart.x_ticks[best->second]) + ", " + clean(chart.y_label) + "=" +
                   clean(chart.y_ticks[best->first]);
  save_drawing(stem, size, clean(chart.title), description,
               [&](cairo_t* cr, double w, double h) { draw_heatmap(cr, chart, w, h); });
}

void save(const HeatmapGrid& chart, const fs::path& stem, Size size) {
  if (chart.panels.empty() || chart.x_ticks.empty()) bad_input(stem, "the heatmap grid has no panels or no columns");
  std::vector<std::string> titles;
  for (const auto& p : chart.panels) {
    const auto where = "panel '" + p.title + "'";
    if (p.values.empty() || p.values.size() != p.row_ticks.size())
      bad_input(stem, where + " has " + std::to_string(p.values.size()) + " rows of values and " +
                          std::to_string(p.row_ticks.size()) + " row ticks");
    for (const auto& row : p.values)
      if (row.size() != chart.x_ticks.size())
        bad_input(stem, where + " has a row of " + std::to_string(row.size()) + " values for " +
                            std::to_string(chart.x_ticks.size()) + " columns");
    if (!p.marked.empty() && p.marked.size() != p.values.size()) bad_input(stem, where + ": marks do not match its rows");
    for (size_t r = 0; r < p.marked.size(); ++r)
      if (p.marked[r].size() != p.values[r].size()) bad_input(stem, where + ": marks do not match its columns");
    if (!p.row_notes.empty() && p.row_notes.size() != p.values.size())
      bad_input(stem, where + ": " + std::to_string(p.row_notes.size()) + " row notes for " +
                          std::to_string(p.values.size()) + " rows");
    titles.push_back(clean(p.title));
  }
  save_drawing(stem, size, clean(chart.title),
               "Heatmaps on one colour scale (" + clean(chart.value_label) + "). x: " + clean(chart.x_label) +
                   "; y: " + clean(chart.y_label) + "; panels: " + joined(titles),
               [&](cairo_t* cr, double w, double h) { draw_heatmap_grid(cr, chart, w, h); });
}

void save(const BarChart& chart, const fs::path& stem, Size size) {
  if (chart.groups.empty()) bad_input(stem, "the bar chart has no groups");
  if (chart.bars.empty()) bad_input(stem, "the bar chart has no bars");
  std::vector<std::string> names;
  for (const auto& b : chart.bars) {
    if (b.values.size() != chart.groups.size())
      bad_input(stem, "bars '" + b.name + "' have " + std::to_string(b.values.size()) + " values but there are " +
                          std::to_string(chart.groups.size()) + " groups");
    names.push_back(clean(b.name));
  }
  if (chart.reference_line && !std::isfinite(*chart.reference_line))
    bad_input(stem, "the reference line is at " + std::to_string(*chart.reference_line));
  save_drawing(stem, size, clean(chart.title),
               "Bar chart. x: " + clean(chart.x_label) + " (" + clean(joined(chart.groups)) +
                   "); y: " + clean(chart.y_label) + "; bars: " + joined(names),
               [&](cairo_t* cr, double w, double h) { draw_bar_chart(cr, chart, w, h); });
}

}  // namespace esft::plot
