// The ESFT reference's LLM-as-judge metrics: its prompts byte for byte, its post-processing and how a reply
// becomes a score.
#include "doctest_torch.h"

#include "esft/io/sha256.h"
#include "esft/pipeline/judge.h"

using esft::pipeline::JudgeTask;
using esft::pipeline::judge_prediction;
using esft::pipeline::judge_prompt;
using esft::pipeline::judge_score;

TEST_CASE("judge: the templates are the reference's, byte for byte") {
  // SHA-256 of SummaryTemplate, LawTemplate and TranslationTemplate in deepseek-ai/ESFT benchmarks.py (UTF-8).
  const std::pair<JudgeTask, const char*> expected[] = {
      {JudgeTask::Summary, "b7b11330233dbd42346392a4e1d24e3da23de7c2e6223e2c036d9bd3c5142d5b"},
      {JudgeTask::Law, "6eb8cd1bfe891ab0b50d92883ba44755d5f1905ecad70cf8340c098a06166ba7"},
      {JudgeTask::Translation, "c9ad8f05a8007cbce4a00866bd5bf4dc8270185a8375342ed76aa727be66ee75"}};
  for (const auto& e : expected) {
    const auto tpl = judge_prompt(e.first, "{prediction}", "{ground_truth}");
    CHECK(esft::sha256_hex(tpl) == e.second);
  }
  CHECK(std::string(esft::pipeline::judge_system_prompt()) ==
        "You are a helpful assistant. Follow the user's instructions carefully. Respond using markdown.");
}

TEST_CASE("judge: predictions are stripped, empty ones become None, translations end at the first blank line") {
  CHECK(judge_prediction(JudgeTask::Summary, " \n summary text\n\nmore \t") == "summary text\n\nmore");
  CHECK(judge_prediction(JudgeTask::Law, "  \n") == "None");
  CHECK(judge_prediction(JudgeTask::Translation, " first part\n\nsecond part") == "first part");
  CHECK(judge_prediction(JudgeTask::Translation, "\n\n") == "None");
}

TEST_CASE("judge: the prompt fills both fields once, leaving braces in the values alone") {
  const auto prompt = judge_prompt(JudgeTask::Translation, "a {ground_truth} b", "c {prediction} d");
  CHECK(prompt.find("Predicted answer: a {ground_truth} b\n\nReference answer: c {prediction} d\n\n") != std::string::npos);
}

TEST_CASE("judge: scores are the first match of the reference's patterns, divided by 10") {
  CHECK(judge_score(JudgeTask::Summary, "内容准确性扣1分，详细程度/完整性扣1.5分，总分是：7.5分。理由……") == 0.75);
  CHECK(judge_score(JudgeTask::Law, "相关性扣2分，总分是：8分，……总分是：9分") == 0.8);
  CHECK(judge_score(JudgeTask::Law, "总分是：８分") == 0.8);  // fullwidth digits, as Python's \d takes them
  CHECK_FALSE(judge_score(JudgeTask::Summary, "总分是：8.分").has_value());
  CHECK_FALSE(judge_score(JudgeTask::Summary, "总分: 8分").has_value());
  CHECK(judge_score(JudgeTask::Translation, "Content accuracy 6 points, ..., total score:   6.67  points") ==
        doctest::Approx(0.667));
  CHECK(judge_score(JudgeTask::Translation, "score:7point") == 0.7);
  CHECK_FALSE(judge_score(JudgeTask::Translation, "Total Score: 7 points").has_value());  // case-sensitive
  CHECK_FALSE(judge_score(JudgeTask::Translation, "score: 7. points").has_value());
  CHECK(judge_score(JudgeTask::Translation, "score: x, then score: 5 points") == 0.5);
  CHECK(esft::pipeline::judge_task_of_metric("judge-law") == JudgeTask::Law);
  CHECK_FALSE(esft::pipeline::judge_task_of_metric("rouge-l").has_value());
}
