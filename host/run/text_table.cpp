#include "run/text_table.h"

#include <algorithm>
#include <iomanip>
#include <sstream>

namespace esft::host::run {

namespace {

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

}  // namespace

void print_text_table(std::ostream& out, const TextTable& rows) {
  if (rows.empty()) return;
  std::vector<size_t> width(rows.front().size(), 0);
  for (const auto& row : rows)
    for (size_t i = 0; i < row.size() && i < width.size(); ++i) width[i] = std::max(width[i], row[i].size());
  for (size_t k = 0; k < rows.size(); ++k) {
    out << "|";
    for (size_t i = 0; i < rows[k].size(); ++i)
      out << " " << std::left << std::setw(static_cast<int>(width[i])) << rows[k][i] << " |";
    out << "\n";
    if (k == 0) {
      out << "|";
      for (size_t w : width) out << std::string(w + 2, '-') << "|";
      out << "\n";
    }
  }
}

std::string csv_text(const TextTable& rows) {
  std::ostringstream csv;
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) csv << (i ? "," : "") << csv_field(row[i]);
    csv << "\n";
  }
  return csv.str();
}

}  // namespace esft::host::run
