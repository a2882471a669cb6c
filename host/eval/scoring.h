#pragma once
// How eval turns completions into scores, whatever the metric: a local one (pipeline/metrics.h), record by record,
// or an LLM judge (pipeline/judge.h) asked about every completion at once, in parallel (judge_client.h).
#include <optional>
#include <string>
#include <vector>

#include "../cli.h"
#include "esft/pipeline/judge.h"
#include "esft/pipeline/metrics.h"
#include "judge_client.h"

namespace esft::host::eval {

struct ScoreRequest {
  std::string completion;
  std::vector<std::string> answers;
};

struct RecordScore {
  double score = 0;
  std::string judge_reply;  // judge metrics: the judge's text
  std::string judge_error;  // judge metrics: why no reply came (scored 0, as the reference does)
};

class CompletionScorer {
 public:
  // From --metric and the --judge-* options. Throws esft::Error for an unknown metric or a judge metric in a build
  // without libcurl, UsageError for judge options without a judge metric, a judge metric without --judge-url and
  // --judge-model, settings out of range, or a --judge-key-env variable that is not set.
  explicit CompletionScorer(const po::variables_map& vm);

  const std::string& name() const { return name_; }
  bool is_judge() const { return judge_.has_value(); }
  // A local metric's score of one completion (not for judge metrics).
  double score_one(const ScoreRequest& request) const;
  // Every request's score; a judge metric reports progress on stderr and, after its requests, how many failed.
  std::vector<RecordScore> score_all(const std::vector<ScoreRequest>& requests) const;

 private:
  std::string name_;
  std::optional<pipeline::Metric> local_;
  std::optional<pipeline::JudgeTask> judge_;
  JudgeEndpoint endpoint_;
};

// The --judge-* options, for eval's option list; whether any was given.
void add_judge_options(po::options_description& d);
bool judge_options_given(const po::variables_map& vm);

}  // namespace esft::host::eval
