#include "run/html_report.h"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <vector>

#include "esft/error.h"
#include "esft/io/atomic_file.h"
#include "plot/plot.h"

namespace esft::host::run {

namespace fs = std::filesystem;

namespace {

using plot::xml_escaped;

std::string file_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot read " + path.string());
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// The text of the SVG twin's <desc> (what the picture shows, in words), for the caption and alt text.
std::string description_of(const fs::path& png) {
  auto svg = png;
  svg.replace_extension(".svg");
  if (!fs::exists(svg)) return "";
  const auto text = file_bytes(svg);
  const auto begin = text.find("<desc>"), end = text.find("</desc>");
  if (begin == std::string::npos || end == std::string::npos || end < begin) return "";
  // Already XML-escaped in the SVG: kept as it is.
  return text.substr(begin + 6, end - begin - 6);
}

const char* kStyle = R"css(
body { font-family: sans-serif; margin: 2em auto; max-width: 1150px; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.9em; } th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; }
th { background: #f4f4f4; } td { text-align: right; } td:first-child, td:nth-child(2) { text-align: left; }
figure { margin: 1em 0 2em; } img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; margin-top: 0.3em; } code { font-size: 0.95em; }
)css";

}  // namespace

std::string base64(const std::string& bytes) {
  static const char* table = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const uint32_t v = (uint32_t(uint8_t(bytes[i])) << 16) | (uint32_t(uint8_t(bytes[i + 1])) << 8) | uint8_t(bytes[i + 2]);
    out += table[(v >> 18) & 63], out += table[(v >> 12) & 63], out += table[(v >> 6) & 63], out += table[v & 63];
  }
  if (i + 1 == bytes.size()) {
    const uint32_t v = uint32_t(uint8_t(bytes[i])) << 16;
    out += table[(v >> 18) & 63], out += table[(v >> 12) & 63], out += "==";
  } else if (i + 2 == bytes.size()) {
    const uint32_t v = (uint32_t(uint8_t(bytes[i])) << 16) | (uint32_t(uint8_t(bytes[i + 1])) << 8);
    out += table[(v >> 18) & 63], out += table[(v >> 12) & 63], out += table[(v >> 6) & 63], out += '=';
  }
  return out;
}

void write_html_report(const fs::path& output_dir, const std::string& title, const TextTable& summary) {
  // Every picture under the output folder, in the order of the pipeline: routing maps (scores), selections and
  // coverage curves (select), loss curves (train), then anything else; by path within each.
  static const std::pair<const char*, const char*> kinds[] = {{"routing", "Routing statistics"},
                                                              {"selection", "Selected experts"},
                                                              {"coverage", "Coverage per layer"},
                                                              {"loss", "Training"}};
  std::vector<std::vector<fs::path>> pictures(std::size(kinds) + 1);
  for (auto it = fs::recursive_directory_iterator(output_dir); it != fs::recursive_directory_iterator(); ++it) {
    const auto name = it->path().filename().string();
    if (it->is_directory() && !name.empty() && name[0] == '.') {  // staging and stamp folders
      it.disable_recursion_pending();
      continue;
    }
    if (!it->is_regular_file() || it->path().extension() != ".png") continue;
    const auto stem = it->path().stem().string();  // "routing", "expert_config.selection", "intent.coverage"
    size_t kind = std::size(kinds);
    for (size_t k = 0; k < std::size(kinds); ++k) {
      const std::string word = kinds[k].first;
      if (stem == word || (stem.size() > word.size() && stem.compare(stem.size() - word.size() - 1, std::string::npos, "." + word) == 0))
        kind = k;
    }
    pictures[kind].push_back(it->path());
  }
  std::string html = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>" + xml_escaped(title) +
                     "</title>\n<style>" + kStyle + "</style>\n</head>\n<body>\n<h1>" + xml_escaped(title) + "</h1>\n";
  html += "<p>Output folder <code>" + xml_escaped(output_dir.string()) + "</code>. Every picture below is also a PNG and an SVG "
          "there, with the numbers behind it in a CSV file beside it.</p>\n";
  if (!summary.empty()) {
    html += "<h2>Summary</h2>\n<table>\n<tr>";
    for (const auto& cell : summary.front()) html += "<th>" + xml_escaped(cell) + "</th>";
    html += "</tr>\n";
    for (size_t r = 1; r < summary.size(); ++r) {
      html += "<tr>";
      for (const auto& cell : summary[r]) html += "<td>" + xml_escaped(cell) + "</td>";
      html += "</tr>\n";
    }
    html += "</table>\n";
  }
  for (size_t k = 0; k < pictures.size(); ++k) {
    auto& files = pictures[k];
    if (files.empty()) continue;
    std::sort(files.begin(), files.end());
    html += std::string("<h2>") + (k < std::size(kinds) ? kinds[k].second : "Other pictures") + "</h2>\n";
    for (const auto& file : files) {
      const auto relative = fs::relative(file, output_dir).generic_string();
      const auto description = description_of(file);
      html += "<figure><img src=\"data:image/png;base64," + base64(file_bytes(file)) + "\" alt=\"" +
              (description.empty() ? xml_escaped(relative) : description) + "\">\n<figcaption><code>" + xml_escaped(relative) +
              "</code>" + (description.empty() ? "" : ": " + description) + "</figcaption></figure>\n";
    }
  }
  html += "</body>\n</html>\n";
  write_text_atomically(output_dir / "report.html", html);
}

}  // namespace esft::host::run
