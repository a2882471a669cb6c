#include "esft/io/json_file.h"

#include <fstream>
#include <sstream>

#include "esft/error.h"
#include "esft/tokenizer/tokenizer.h"

namespace esft {

nlohmann::json read_json_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw Error("cannot open " + path.string());
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw Error(path.string() + ": malformed JSON (" + e.what() + ")");
  }
}

void for_each_json_line(const std::filesystem::path& path,
                        const std::function<void(const nlohmann::json&, const std::string&)>& record) {
  std::istringstream in(tok::read_maybe_gzipped(path));  // bundled data files ship gzip-compressed
  int64_t line_no = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const auto where = path.string() + ":" + std::to_string(line_no);
    const auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) throw Error(where + ": not a JSON object");
    record(j, where);
  }
}

std::string json_excerpt(const nlohmann::json& value, size_t max_chars) {
  std::string text = value.dump();
  if (text.size() > max_chars) text = text.substr(0, max_chars) + "...";
  return text;
}

std::optional<int64_t> parse_index(std::string_view digits) {
  if (digits.empty() || digits.size() > 18 || digits.find_first_not_of("0123456789") != std::string_view::npos)
    return std::nullopt;
  int64_t value = 0;
  for (const char c : digits) value = value * 10 + (c - '0');
  return value;
}

namespace detail {

std::optional<int64_t> json_integer(const nlohmann::json& value, int64_t lowest, int64_t highest) {
  if (value.is_number_unsigned()) {  // nlohmann stores every non-negative integer literal as unsigned
    const uint64_t v = value.get<uint64_t>();
    if (v > static_cast<uint64_t>(highest)) return std::nullopt;
    return static_cast<int64_t>(v);
  }
  if (value.is_number_integer()) {
    const int64_t v = value.get<int64_t>();
    if (v < lowest || v > highest) return std::nullopt;
    return v;
  }
  return std::nullopt;
}

}  // namespace detail
}  // namespace esft
