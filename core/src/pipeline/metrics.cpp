#include "esft/pipeline/metrics.h"

#include <nlohmann/json.hpp>
#include <utf8proc.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <sstream>
#include <string_view>
#include <utility>

#include "esft/error.h"
#include "esft/tokenizer/utf8.h"

namespace esft::pipeline {

namespace {

using nlohmann::json;

constexpr std::pair<Metric, const char*> kMetricNames[] = {
    {Metric::Exact, "exact"}, {Metric::Intent, "intent"}, {Metric::RougeL, "rouge-l"}, {Metric::Accuracy, "accuracy"}, {Metric::F1, "f1"}};

// ---- Code points ----

std::u32string decode(std::string_view text) {
  std::string repaired;
  if (!tok::is_valid_utf8(text)) {  // next_code_point trusts its input
    repaired = tok::utf8_lossy(text);
    text = repaired;
  }
  std::u32string out;
  out.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) out += tok::next_code_point(text, pos);
  return out;
}

std::string encode(std::u32string_view cps) {
  std::string out;
  for (char32_t c : cps) tok::append_utf8(out, c);
  return out;
}

// Python's str.isspace(): White_Space plus the ASCII information separators, which Python also strips.
bool is_space(char32_t c) { return tok::is_unicode_whitespace(c) || (c >= 0x1C && c <= 0x1F); }

utf8proc_category_t category(char32_t c) { return utf8proc_category(static_cast<utf8proc_int32_t>(c)); }

bool is_punctuation(char32_t c) {
  // ASCII symbols such as '$' or '+' are Unicode S*, yet answers are compared without them too.
  if (c < 0x80) {
    return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) || (c >= 0x7B && c <= 0x7E);
  }
  const auto k = category(c);
  return k >= UTF8PROC_CATEGORY_PC && k <= UTF8PROC_CATEGORY_PO;
}

// Letters and combining marks: a capital followed by U+0301 is part of a word, not a choice label.
bool is_word_character(char32_t c) {
  const auto k = category(c);
  return k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_ME;
}

// Scripts written without spaces, where one code point is the unit ROUGE can match.
bool is_cjk(char32_t c) {
  static constexpr std::pair<char32_t, char32_t> kRanges[] = {
      {0x1100, 0x11FF},    // Hangul Jamo
      {0x2E80, 0x2FDF},    // CJK and Kangxi radicals
      {0x3040, 0x30FF},    // Hiragana, Katakana
      {0x3130, 0x318F},    // Hangul compatibility Jamo
      {0x31F0, 0x31FF},    // Katakana phonetic extensions
      {0x3400, 0x4DBF},    // CJK extension A
      {0x4E00, 0x9FFF},    // CJK unified ideographs
      {0xA960, 0xA97F},    // Hangul Jamo extended-A
      {0xAC00, 0xD7FF},    // Hangul syllables, Jamo extended-B
      {0xF900, 0xFAFF},    // CJK compatibility ideographs
      {0xFF66, 0xFFDC},    // halfwidth Katakana and Hangul
      {0x20000, 0x3FFFF},  // CJK extensions B and later (planes 2 and 3)
  };
  return std::any_of(std::begin(kRanges), std::end(kRanges),
                     [c](const auto& r) { return c >= r.first && c <= r.second; });
}

template <class Drop>
std::u32string_view strip(std::u32string_view s, Drop drop) {
  while (!s.empty() && drop(s.front())) s.remove_prefix(1);
  while (!s.empty() && drop(s.back())) s.remove_suffix(1);
  return s;
}

// ---- exact and rouge-l ----

std::u32string normalize(std::u32string_view text) {
  std::u32string out;
  bool space_pending = false;
  for (char32_t c : text) {
    if (is_punctuation(c)) continue;
    if (is_space(c)) {
      space_pending = !out.empty();
      continue;
    }
    if (space_pending) out += U' ';
    space_pending = false;
    out += (c >= U'A' && c <= U'Z') ? c + (U'a' - U'A') : c;
  }
  return out;
}

double exact_score(const std::string& completion, const std::string& answer) {
  return normalize(decode(completion)) == normalize(decode(answer)) ? 1.0 : 0.0;
}

size_t lcs_length(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  const auto& outer = a.size() >= b.size() ? a : b;
  const auto& inner = a.size() >= b.size() ? b : a;
  std::vector<size_t> row(inner.size() + 1, 0);  // row[j]: LCS of the outer prefix so far and inner[0, j)
  for (const auto& token : outer) {
    size_t diagonal = 0;
    for (size_t j = 1; j <= inner.size(); ++j) {
      const size_t above = row[j];
      row[j] = token == inner[j - 1] ? diagonal + 1 : std::max(above, row[j - 1]);
      diagonal = above;
    }
  }
  return row.back();
}

// ---- accuracy ----

double accuracy_score(const std::string& completion, const std::string& answer) {
  const std::string expected = choice_letter(answer);
  if (expected.empty()) return exact_score(completion, answer);
  return choice_letter(completion) == expected ? 1.0 : 0.0;
}

// ---- intent ----

bool is_period(char32_t c) { return c == U'.' || c == U'\u3002'; }

std::u32string_view first_nonempty_line(std::u32string_view text) {
  while (!text.empty()) {
    const size_t end = std::min(text.find(U'\n'), text.size());
    if (end > 0) return text.substr(0, end);
    text.remove_prefix(1);
  }
  return text;  // the reference raises IndexError here; an empty prediction scores 0 instead
}

// Python's repr(float): the shortest digits that read back as x, fixed notation for exponents -4..15.
std::string python_float_repr(double x) {
  char buffer[40];
  for (int digits = 1; digits <= 17; ++digits) {
    std::snprintf(buffer, sizeof buffer, "%.*e", digits - 1, x);
    if (std::strtod(buffer, nullptr) == x) break;
  }
  std::string text = buffer, sign;
  if (text[0] == '-') {
    sign = "-";
    text.erase(0, 1);
  }
  const size_t e = text.find('e');
  const int exponent = std::atoi(text.c_str() + e + 1);
  std::string mantissa = text.substr(0, e);
  mantissa.erase(std::remove(mantissa.begin(), mantissa.end(), '.'), mantissa.end());
  const int point = exponent + 1;  // digits before the decimal point
  const int n = static_cast<int>(mantissa.size());
  if (point > -4 && point <= 16) {
    if (point <= 0) return sign + "0." + std::string(-point, '0') + mantissa;
    if (point >= n) return sign + mantissa + std::string(point - n, '0') + ".0";
    return sign + mantissa.substr(0, point) + "." + mantissa.substr(point);
  }
  std::snprintf(buffer, sizeof buffer, "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
  return sign + mantissa.substr(0, 1) + (n > 1 ? "." + mantissa.substr(1) : "") + buffer;
}

std::string python_str(const json& v) {
  switch (v.type()) {
    case json::value_t::string: return v.get_ref<const std::string&>();
    case json::value_t::boolean: return v.get<bool>() ? "True" : "False";
    case json::value_t::null: return "None";
    case json::value_t::number_float: return python_float_repr(v.get<double>());
    default: return v.dump();  // integers exactly; a nested list or object approximately (not Python's repr)
  }
}

// Python's ==, where True == 1 and 1 == 1.0.
bool python_equal(const json& a, const json& b) {
  if (a.is_array() && b.is_array()) return std::equal(a.begin(), a.end(), b.begin(), b.end(), python_equal);
  if (a.is_object() && b.is_object()) {
    if (a.size() != b.size()) return false;
    for (auto it = a.begin(); it != a.end(); ++it) {
      const auto other = b.find(it.key());
      if (other == b.end() || !python_equal(*it, *other)) return false;
    }
    return true;
  }
  const auto numeric = [](const json& v) { return v.is_boolean() ? json(v.get<bool>() ? 1 : 0) : v; };
  return numeric(a) == numeric(b);
}

struct SlotValue {
  enum class Kind { String, List, Other } kind;
  std::vector<std::string> text;  // the string, or the sorted str() of the list's items
  bool operator==(const SlotValue& o) const { return kind == o.kind && text == o.text; }
};
using Slots = std::map<std::string, SlotValue>;

std::string without_spaces(std::string s) {
  s.erase(std::remove(s.begin(), s.end(), ' '), s.end());
  return s;
}

std::vector<std::string> sorted_items(const json& list, bool remove_spaces) {
  std::vector<std::string> items;
  for (const auto& item : list) items.push_back(remove_spaces ? without_spaces(python_str(item)) : python_str(item));
  std::sort(items.begin(), items.end());  // char_traits<char> orders bytes unsigned: code point order, as Python
  return items;
}

json field(const json& object, const char* key, json missing) {
  const auto it = object.find(key);
  return it == object.end() ? missing : *it;
}

// The reference would crash on these answers; we say which answer is malformed.
[[noreturn]] void bad_answer(const std::string& answer, const std::string& why) {
  throw Error("intent: the reference answer " + answer + " " + why);
}

json parse_answer(const std::string& text) {
  json answer = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!answer.is_object()) bad_answer(text, "is not a JSON object");
  if (!field(answer, "slots", json::object()).is_object()) bad_answer(text, "has \"slots\" that are not an object");
  return answer;
}

Slots answer_slots(const json& answer, const std::string& text) {
  const json raw = field(answer, "slots", json::object());  // range-for would not keep a temporary alive
  Slots slots;
  for (const auto& [key, v] : raw.items()) {
    if (v.is_object()) bad_answer(text, "has an object as the value of slot '" + key + "'");
    if (v.is_array()) {
      slots[key] = {SlotValue::Kind::List, sorted_items(v, false)};
    } else if (v.is_string()) {
      slots[key] = {SlotValue::Kind::String, {v.get<std::string>()}};
    } else {
      slots[key] = {SlotValue::Kind::Other, {}};  // a number or null: the prediction's strings never equal it
    }
  }
  return slots;
}

// nullopt where the reference's str.replace or dict.items would raise, which it scores 0.
std::optional<Slots> prediction_slots(const json& prediction) {
  const json raw = field(prediction, "slots", json::object());
  if (!raw.is_object()) return std::nullopt;
  Slots slots;
  for (const auto& [key, v] : raw.items()) {
    if (v.is_array()) {
      slots[key] = {SlotValue::Kind::List, sorted_items(v, true)};
    } else if (v.is_string()) {
      slots[key] = {SlotValue::Kind::String, {without_spaces(v.get<std::string>())}};
    } else {
      return std::nullopt;
    }
  }
  return slots;
}

double intent_score(const std::string& completion, const std::string& answer_text) {
  const json answer = parse_answer(answer_text);
  const Slots expected = answer_slots(answer, answer_text);
  const json prediction = json::parse(intent_post_process(completion), nullptr, /*allow_exceptions=*/false);
  if (!prediction.is_object()) return 0.0;
  const auto slots = prediction_slots(prediction);
  if (!slots) return 0.0;
  const bool same_intent = python_equal(field(prediction, "intent", ""), field(answer, "intent", ""));
  return same_intent && *slots == expected ? 1.0 : 0.0;
}

// SQuAD's token F1 over the normalised words without the articles a, an, the.
double f1_score(const std::string& completion, const std::string& answer) {
  auto words = [](const std::string& text) {
    std::map<std::string, int> counts;
    int total = 0;
    std::istringstream in(normalize_answer(text));
    for (std::string w; in >> w;) {
      if (w == "a" || w == "an" || w == "the") continue;
      ++counts[w];
      ++total;
    }
    return std::pair{counts, total};
  };
  const auto [c, nc] = words(completion);
  const auto [r, nr] = words(answer);
  if (nc == 0 || nr == 0) return nc == nr ? 1.0 : 0.0;
  int common = 0;
  for (const auto& [w, n] : c)
    if (auto it = r.find(w); it != r.end()) common += std::min(n, it->second);
  if (common == 0) return 0.0;
  const double precision = static_cast<double>(common) / nc, recall = static_cast<double>(common) / nr;
  return 2 * precision * recall / (precision + recall);
}

double score_one(Metric m, const std::string& completion, const std::string& answer) {
  switch (m) {
    case Metric::Exact: return exact_score(completion, answer);
    case Metric::RougeL: return rouge_l_f1(completion, answer);
    case Metric::Accuracy: return accuracy_score(completion, answer);
    case Metric::Intent: return intent_score(completion, answer);
    case Metric::F1: return f1_score(completion, answer);
  }
  return 0.0;
}

}  // namespace

Metric parse_metric(const std::string& name) {
  std::string valid;
  for (const auto& [metric, text] : kMetricNames) {
    if (name == text) return metric;
    valid += valid.empty() ? text : std::string(", ") + text;
  }
  throw Error("unknown metric '" + name + "' (valid: " + valid + ")");
}

const char* metric_name(Metric m) {
  for (const auto& [metric, text] : kMetricNames) {
    if (metric == m) return text;
  }
  return "unknown";
}

double score_completion(Metric m, const std::string& completion, const std::vector<std::string>& answers) {
  if (answers.empty()) throw Error(std::string(metric_name(m)) + ": a sample has no reference answer");
  if (m == Metric::Intent) return intent_score(completion, answers[0]);  // the reference scores answers[0] only
  double best = 0.0;
  for (const auto& answer : answers) best = std::max(best, score_one(m, completion, answer));
  return best;
}

std::string normalize_answer(const std::string& text) { return encode(normalize(decode(text))); }

std::vector<std::string> rouge_tokens(const std::string& text) {
  std::vector<std::string> tokens;
  std::u32string word;
  const auto flush = [&] {
    if (!word.empty()) tokens.push_back(encode(word));
    word.clear();
  };
  for (char32_t c : normalize(decode(text))) {
    if (c == U' ') {
      flush();
    } else if (is_cjk(c)) {
      flush();
      tokens.push_back(encode(std::u32string(1, c)));
    } else {
      word += c;
    }
  }
  flush();
  return tokens;
}

double rouge_l_f1(const std::string& candidate, const std::string& reference) {
  const auto c = rouge_tokens(candidate), r = rouge_tokens(reference);
  if (c.empty() || r.empty()) return c.empty() && r.empty() ? 1.0 : 0.0;
  const double lcs = static_cast<double>(lcs_length(c, r));
  if (lcs == 0) return 0.0;
  const double precision = lcs / static_cast<double>(c.size()), recall = lcs / static_cast<double>(r.size());
  return 2 * precision * recall / (precision + recall);
}

std::string choice_letter(const std::string& text) {
  const std::u32string cps = decode(text);
  for (size_t i = 0; i < cps.size(); ++i) {
    if (cps[i] < U'A' || cps[i] > U'Z') continue;
    const bool after_word = i > 0 && is_word_character(cps[i - 1]);
    const bool before_word = i + 1 < cps.size() && is_word_character(cps[i + 1]);
    if (!after_word && !before_word) return std::string(1, static_cast<char>(cps[i]));
  }
  return "";
}

std::string intent_post_process(const std::string& raw_prediction) {
  const std::u32string text = decode(raw_prediction);
  std::u32string_view pred = strip(text, is_space);
  if (pred.empty()) pred = U"None";
  pred = strip(pred, is_period);
  if (const size_t open = pred.find(U"```json"); open != std::u32string_view::npos) {
    pred.remove_prefix(open + 7);
    const size_t close = pred.find(U"```");
    pred = close == std::u32string_view::npos ? std::u32string_view(U"{}") : pred.substr(0, close);
  }
  if (pred.find(U'\n') != std::u32string_view::npos) pred = first_nonempty_line(pred);
  return encode(strip(pred, is_period));
}

std::string python_strip(const std::string& text) {
  const std::u32string cps = decode(text);
  return encode(strip(std::u32string_view(cps), is_space));
}

}  // namespace esft::pipeline
