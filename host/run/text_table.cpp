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

TextTable parse_csv_text(const std::string& text) {
  TextTable rows;
  std::vector<std::string> row;
  std::string field;
  bool quoted = false, any = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') field += '"', ++i;
      else if (c == '"') quoted = false;
      else field += c;
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      row.push_back(std::move(field)), field.clear();
    } else if (c == '\n') {
      row.push_back(std::move(field)), field.clear();
      rows.push_back(std::move(row)), row.clear();
      any = false;
      continue;
    } else if (c != '\r') {
      field += c;
    }
    any = true;
  }
  if (any) row.push_back(std::move(field)), rows.push_back(std::move(row));
  return rows;
}

}  // namespace esft::host::run
