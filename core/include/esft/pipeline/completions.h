#pragma once
// Saved completions, for scoring without a model (`eval --rescore`). Two line formats, told apart per line:
//   - the ESFT reference's results/completions/*.jsonl: {"example": {"prompt", "raw_prediction", "raw_answers"},
//     "score"} (its scores: the intent metric, or an LLM judge's points / 10);
//   - esft's own `eval --out` lines: {"origin", "prompt", "completion", "answers", "score"}.
#include <nlohmann/json.hpp>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace esft::pipeline {

struct SavedCompletion {
  std::string origin;      // FILE:LINE
  std::string prompt;
  std::string completion;  // the raw prediction, as generated
  std::vector<std::string> answers;
  std::optional<double> recorded_score;  // the score the file holds, if any
};

// Reads a JSON-lines file (gzip allowed); blank lines are skipped. Throws esft::Error naming file and line for a
// line that is neither format, a missing or mistyped field, or a file with no records.
std::vector<SavedCompletion> read_completions(const std::filesystem::path& path);

// An answers field: a list of strings, or the string of a Python-style list of strings ("['a', \"b\"]"), as some
// exports of the reference's evaluation files hold. Throws esft::Error, prefixed by `where`, for anything else.
std::vector<std::string> answers_from_json_value(const nlohmann::json& value, const std::string& where);

}  // namespace esft::pipeline
