#pragma once
// Tables of text cells, header row first, as a pipeline prints them (`| a | b |` with a rule under the header) and
// writes them as CSV (fields quoted where they hold a comma, a quote or a line break: run names hold commas).
#include <ostream>
#include <string>
#include <vector>

namespace esft::host::run {

using TextTable = std::vector<std::vector<std::string>>;

void print_text_table(std::ostream& out, const TextTable& rows);
std::string csv_text(const TextTable& rows);
// The rows of CSV text as csv_text writes it (quoted fields with "" for a quote, line breaks inside quotes).
TextTable parse_csv_text(const std::string& text);

}  // namespace esft::host::run
