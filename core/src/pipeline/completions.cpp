#include "esft/pipeline/completions.h"

#include <algorithm>
#include <cctype>

#include "esft/error.h"
#include "esft/io/json_file.h"

namespace esft::pipeline {

namespace {

using nlohmann::json;

const std::string& string_field(const json& object, const char* key, const std::string& where) {
  const auto it = object.find(key);
  if (it == object.end() || !it->is_string()) throw Error(where + ": needs \"" + key + "\", a string");
  return it->get_ref<const std::string&>();
}

// One Python string literal ('...' or "..."), with the escapes Python's repr writes, from `text` at `pos`.
std::string python_string(const std::string& text, size_t& pos, const std::string& where) {
  const char quote = text[pos++];
  std::string out;
  while (pos < text.size() && text[pos] != quote) {
    char c = text[pos++];
    if (c != '\\') {
      out += c;
      continue;
    }
    if (pos >= text.size()) break;
    c = text[pos++];
    switch (c) {
      case 'n': out += '\n'; break;
      case 't': out += '\t'; break;
      case 'r': out += '\r'; break;
      case '\\': case '\'': case '"': out += c; break;
      case 'x': case 'u': case 'U': {
        const size_t digits = c == 'x' ? 2 : c == 'u' ? 4 : 8;
        if (pos + digits > text.size() ||
            !std::all_of(text.begin() + static_cast<std::ptrdiff_t>(pos),
                         text.begin() + static_cast<std::ptrdiff_t>(pos + digits),
                         [](unsigned char h) { return std::isxdigit(h) != 0; }))
          throw Error(where + ": a malformed \\" + std::string(1, c) + " escape in the answers list");
        const auto code = static_cast<uint32_t>(std::stoul(text.substr(pos, digits), nullptr, 16));
        if (code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF))
          throw Error(where + ": an escape names no Unicode character in the answers list");
        pos += digits;
        // UTF-8 of the code point.
        if (code < 0x80) out += static_cast<char>(code);
        else if (code < 0x800) out += static_cast<char>(0xC0 | (code >> 6)), out += static_cast<char>(0x80 | (code & 0x3F));
        else if (code < 0x10000)
          out += static_cast<char>(0xE0 | (code >> 12)), out += static_cast<char>(0x80 | ((code >> 6) & 0x3F)),
              out += static_cast<char>(0x80 | (code & 0x3F));
        else
          out += static_cast<char>(0xF0 | (code >> 18)), out += static_cast<char>(0x80 | ((code >> 12) & 0x3F)),
              out += static_cast<char>(0x80 | ((code >> 6) & 0x3F)), out += static_cast<char>(0x80 | (code & 0x3F));
        break;
      }
      default: out += '\\', out += c;  // Python keeps unknown escapes as written
    }
  }
  if (pos >= text.size()) throw Error(where + ": an unterminated string in the answers list");
  ++pos;  // the closing quote
  return out;
}

std::vector<std::string> python_string_list(const std::string& text, const std::string& where) {
  std::vector<std::string> out;
  size_t pos = text.find_first_not_of(" \t\n");
  if (pos == std::string::npos || text[pos] != '[') throw Error(where + ": answers must be a list of strings");
  ++pos;
  auto skip_space = [&] { while (pos < text.size() && (text[pos] == ' ' || text[pos] == '\n' || text[pos] == '\t')) ++pos; };
  skip_space();
  if (pos < text.size() && text[pos] == ']') return out;
  while (true) {
    skip_space();
    if (pos >= text.size() || (text[pos] != '\'' && text[pos] != '"'))
      throw Error(where + ": answers must be a list of strings");
    out.push_back(python_string(text, pos, where));
    skip_space();
    if (pos < text.size() && text[pos] == ',') {
      ++pos;
      continue;
    }
    if (pos < text.size() && text[pos] == ']') break;
    throw Error(where + ": answers must be a list of strings");
  }
  if (text.find_first_not_of(" \t\n", pos + 1) != std::string::npos) throw Error(where + ": text after the answers list");
  return out;
}

}  // namespace

std::vector<std::string> answers_from_json_value(const json& value, const std::string& where) {
  std::vector<std::string> out;
  if (value.is_string()) {
    out = python_string_list(value.get<std::string>(), where);
  } else if (value.is_array()) {
    for (const auto& a : value) {
      if (!a.is_string()) throw Error(where + ": answers must be strings");
      out.push_back(a.get<std::string>());
    }
  } else {
    throw Error(where + ": answers must be a list of strings");
  }
  if (out.empty()) throw Error(where + ": the answers list is empty");
  return out;
}

std::vector<SavedCompletion> read_completions(const std::filesystem::path& path) {
  std::vector<SavedCompletion> out;
  for_each_json_line(path, [&](const nlohmann::json& j, const std::string& where) {
    SavedCompletion c;
    c.origin = where;
    if (j.contains("example")) {  // the reference's
      const auto& e = j.at("example");
      if (!e.is_object()) throw Error(where + ": \"example\" must be an object");
      c.prompt = string_field(e, "prompt", where + ": example");
      c.completion = string_field(e, "raw_prediction", where + ": example");
      if (!e.contains("raw_answers")) throw Error(where + ": example: needs \"raw_answers\", a list of strings");
      c.answers = answers_from_json_value(e.at("raw_answers"), where + ": example.raw_answers");
    } else if (j.contains("completion")) {  // esft's
      c.prompt = j.contains("prompt") ? string_field(j, "prompt", where) : std::string();
      c.completion = string_field(j, "completion", where);
      if (!j.contains("answers")) throw Error(where + ": needs \"answers\", a list of strings");
      c.answers = answers_from_json_value(j.at("answers"), where + ": answers");
    } else {
      throw Error(where + ": neither a reference completion ({\"example\": {\"prompt\", \"raw_prediction\", "
                  "\"raw_answers\"}, \"score\"}) nor an esft one ({\"completion\", \"answers\"})");
    }
    if (j.contains("score") && !j.at("score").is_null()) {
      if (!j.at("score").is_number()) throw Error(where + ": \"score\" must be a number");
      c.recorded_score = j.at("score").get<double>();
    }
    out.push_back(std::move(c));
  });
  if (out.empty()) throw Error(path.string() + " holds no completions");
  return out;
}

}  // namespace esft::pipeline
