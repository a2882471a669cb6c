#include "esft/pipeline/judge.h"

#include <cstdlib>

#include "esft/pipeline/metrics.h"
#include "judge_prompts.h"

namespace esft::pipeline {

namespace {

const char* const kFullwidthZero = "\xEF\xBC\x90";  // U+FF10; U+FF10..U+FF19 share their first two bytes

// One decimal digit at `pos` (ASCII or fullwidth): its value and length in bytes, or -1.
int digit_at(const std::string& s, size_t pos, size_t& length) {
  if (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
    length = 1;
    return s[pos] - '0';
  }
  if (pos + 2 < s.size() && s.compare(pos, 2, kFullwidthZero, 2) == 0) {
    const auto third = static_cast<unsigned char>(s[pos + 2]);
    if (third >= 0x90 && third <= 0x99) {
      length = 3;
      return third - 0x90;
    }
  }
  return -1;
}

// \d+ at `pos`: appends the ASCII digits to `out` and returns the position after them (pos when none).
size_t digits(const std::string& s, size_t pos, std::string& out) {
  size_t length = 0;
  for (int d; (d = digit_at(s, pos, length)) >= 0; pos += length) out += static_cast<char>('0' + d);
  return pos;
}

// (\d+\.\d+|\d+) at `pos`, then `after` (which `skip` may precede): the number, or nullopt.
template <class Skip>
std::optional<double> number_then(const std::string& s, size_t pos, const std::string& after, Skip skip) {
  std::string whole;
  const size_t int_end = digits(s, pos, whole);
  if (int_end == pos) return std::nullopt;
  auto followed = [&](size_t at) { at = skip(at); return s.compare(at, after.size(), after) == 0; };
  if (int_end < s.size() && s[int_end] == '.') {  // the first alternative: \d+\.\d+
    std::string fraction;
    const size_t frac_end = digits(s, int_end + 1, fraction);
    if (frac_end > int_end + 1 && followed(frac_end)) return std::strtod((whole + "." + fraction).c_str(), nullptr);
  }
  if (followed(int_end)) return std::strtod(whole.c_str(), nullptr);
  return std::nullopt;
}

}  // namespace

std::optional<JudgeTask> judge_task_of_metric(const std::string& metric) {
  if (metric == "judge-summary") return JudgeTask::Summary;
  if (metric == "judge-law") return JudgeTask::Law;
  if (metric == "judge-translation") return JudgeTask::Translation;
  return std::nullopt;
}

const char* judge_system_prompt() { return judge_prompts::kSystem; }

std::string judge_prediction(JudgeTask task, const std::string& completion) {
  std::string pred = python_strip(completion);
  if (task == JudgeTask::Translation) pred = pred.substr(0, pred.find("\n\n"));
  return pred.empty() ? "None" : pred;
}

std::string judge_prompt(JudgeTask task, const std::string& prediction, const std::string& ground_truth) {
  const std::string tpl = task == JudgeTask::Summary ? judge_prompts::kSummary
                          : task == JudgeTask::Law   ? judge_prompts::kLaw
                                                     : judge_prompts::kTranslation;
  // str.format with the two fields: one pass, so braces inside the values stay as they are.
  std::string out;
  for (size_t i = 0; i < tpl.size();) {
    if (tpl.compare(i, 12, "{prediction}") == 0) out += prediction, i += 12;
    else if (tpl.compare(i, 14, "{ground_truth}") == 0) out += ground_truth, i += 14;
    else out += tpl[i++];
  }
  return out;
}

std::optional<double> judge_score(JudgeTask task, const std::string& reply) {
  const std::string head = task == JudgeTask::Translation ? "score:" : "\xE6\x80\xBB\xE5\x88\x86\xE6\x98\xAF\xEF\xBC\x9A";  // 总分是：
  const std::string tail = task == JudgeTask::Translation ? "point" : "\xE5\x88\x86";  // 分
  const bool spaces = task == JudgeTask::Translation;  // ` *?` around the number
  auto skip = [&](size_t at) {
    if (spaces) while (at < reply.size() && reply[at] == ' ') ++at;
    return at;
  };
  for (size_t at = reply.find(head); at != std::string::npos; at = reply.find(head, at + 1)) {
    if (auto n = number_then(reply, skip(at + head.size()), tail, skip)) return *n / 10.0;
  }
  return std::nullopt;
}

}  // namespace esft::pipeline
