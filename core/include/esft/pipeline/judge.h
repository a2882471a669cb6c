#pragma once
// LLM-as-judge metrics of the ESFT reference (deepseek-ai/ESFT benchmarks.py, its GPT4Evaluator) for its summary,
// law and translation tasks: what the judge is asked and how its reply becomes a score. The requests themselves
// go to an OpenAI-compatible endpoint (host/eval/judge_client.h).
//   prediction  summary, law: the completion stripped of whitespace (Python's str.strip), "None" when empty;
//               translation: the same, then the text before the first blank line ("\n\n").
//   prompt      the reference's template for the task with {prediction} and {ground_truth} (answers[0]) filled
//               in, after the reference's system message.
//   score       the first match of the task's pattern in the reply, divided by 10: summary and law
//               `总分是：(\d+\.\d+|\d+)分`, translation `score: *?(\d+\.\d+|\d+) *?point`; no match scores 0, as
//               in the reference. Digits are ASCII or fullwidth (Python's \d also takes other scripts' digits,
//               which no judge writes here).
#include <optional>
#include <string>

namespace esft::pipeline {

enum class JudgeTask { Summary, Law, Translation };

// "judge-summary" | "judge-law" | "judge-translation" -> the task; nullopt for any other metric name.
std::optional<JudgeTask> judge_task_of_metric(const std::string& metric);

const char* judge_system_prompt();
std::string judge_prediction(JudgeTask task, const std::string& completion);
std::string judge_prompt(JudgeTask task, const std::string& prediction, const std::string& ground_truth);
// The reply's score in [0, 10] / 10 as the reference reads it; nullopt when the pattern does not match.
std::optional<double> judge_score(JudgeTask task, const std::string& reply);

}  // namespace esft::pipeline
