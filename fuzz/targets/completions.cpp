// A completions file for `eval --rescore` (the ESFT reference's {"example": {...}, "score"} lines or esft's own
// eval --out lines), read and scored with the reference's intent metric, the judge's score patterns and ROUGE-L.
#include "esft/pipeline/completions.h"
#include "esft/pipeline/judge.h"
#include "esft/pipeline/metrics.h"
#include "fuzz_target.h"

ESFT_FUZZ_TARGET(completions) {
  const auto path = esft::fuzz::write_scratch_file("completions.jsonl", data);
  esft::fuzz::expect_only_clean_errors([&] {
    for (const auto& c : esft::pipeline::read_completions(path)) {
      esft::pipeline::score_completion(esft::pipeline::Metric::RougeL, c.completion, c.answers);
      esft::pipeline::judge_score(esft::pipeline::JudgeTask::Summary, c.completion);
      esft::pipeline::judge_score(esft::pipeline::JudgeTask::Translation, c.completion);
      esft::pipeline::judge_prompt(esft::pipeline::JudgeTask::Law,
                                   esft::pipeline::judge_prediction(esft::pipeline::JudgeTask::Law, c.completion),
                                   c.answers.front());
      esft::pipeline::score_completion(esft::pipeline::Metric::Intent, c.completion, c.answers);
    }
  });
}
