#include "scoring.h"

#include <cstdlib>
#include <iostream>

#include "esft/error.h"

namespace esft::host::eval {

void add_judge_options(po::options_description& d) {
  d.add_options()
      ("judge-url", po::value<std::string>(),
       "judge metrics: an OpenAI-compatible endpoint, e.g. https://api.openai.com/v1 (POST .../chat/completions)")
      ("judge-model", po::value<std::string>(), "judge metrics: the judge model's name (the reference: gpt-4-1106-preview)")
      ("judge-key-env", po::value<std::string>(),
       "judge metrics: the environment variable holding the API key (sent as a Bearer token)")
      ("judge-concurrency", po::value<int>()->default_value(4), "judge metrics: requests in flight at once")
      ("judge-tries", po::value<int>()->default_value(5), "judge metrics: tries per request (the reference's 5)")
      ("judge-backoff", po::value<double>()->default_value(2.0),
       "judge metrics: seconds before the second try, doubled before each next one");
}

bool judge_options_given(const po::variables_map& vm) {
  return vm.count("judge-url") || vm.count("judge-model") || vm.count("judge-key-env") ||
         !vm["judge-concurrency"].defaulted() || !vm["judge-tries"].defaulted() || !vm["judge-backoff"].defaulted();
}

CompletionScorer::CompletionScorer(const po::variables_map& vm) : name_(vm["metric"].as<std::string>()) {
  judge_ = pipeline::judge_task_of_metric(name_);
  if (!judge_) {
    if (judge_options_given(vm))
      throw UsageError("the --judge-* options apply to the judge metrics (judge-summary, judge-law, judge-translation)");
    try {
      local_ = pipeline::parse_metric(name_);
    } catch (const Error& e) {
      throw Error(std::string(e.what()) + "; or a judge metric: judge-summary, judge-law, judge-translation");
    }
    return;
  }
  if (!judge_available()) throw Error(kJudgeUnavailable);
  if (!vm.count("judge-url") || !vm.count("judge-model"))
    throw UsageError("--metric " + name_ + " needs --judge-url and --judge-model (an OpenAI-compatible endpoint)");
  endpoint_.url = vm["judge-url"].as<std::string>();
  endpoint_.model = vm["judge-model"].as<std::string>();
  if (vm.count("judge-key-env")) {
    const auto var = vm["judge-key-env"].as<std::string>();
    const char* key = std::getenv(var.c_str());
    if (!key || !*key) throw UsageError("--judge-key-env: the environment variable " + var + " is not set");
    endpoint_.api_key = key;
  }
  endpoint_.concurrency = vm["judge-concurrency"].as<int>();
  endpoint_.max_tries = vm["judge-tries"].as<int>();
  endpoint_.first_backoff_seconds = vm["judge-backoff"].as<double>();
  if (endpoint_.concurrency < 1 || endpoint_.concurrency > 64 || endpoint_.max_tries < 1 || endpoint_.max_tries > 20 ||
      !(endpoint_.first_backoff_seconds >= 0 && endpoint_.first_backoff_seconds <= 300))
    throw UsageError("--judge-concurrency must be from 1 to 64, --judge-tries from 1 to 20, --judge-backoff from 0 to "
                     "300 seconds");
}

double CompletionScorer::score_one(const ScoreRequest& r) const {
  return pipeline::score_completion(*local_, r.completion, r.answers);
}

std::vector<RecordScore> CompletionScorer::score_all(const std::vector<ScoreRequest>& requests) const {
  std::vector<RecordScore> out(requests.size());
  if (!judge_) {
    for (size_t i = 0; i < requests.size(); ++i) out[i].score = score_one(requests[i]);
    return out;
  }
  std::vector<std::string> prompts;
  for (const auto& r : requests) {
    if (r.answers.empty()) throw Error("a record without answers cannot be judged");
    prompts.push_back(pipeline::judge_prompt(*judge_, pipeline::judge_prediction(*judge_, r.completion), r.answers[0]));
  }
  const auto replies = ask_judge(endpoint_, pipeline::judge_system_prompt(), prompts, [](size_t done, size_t total) {
    std::cerr << "\rjudge: " << done << "/" << total << std::flush;
  });
  if (!replies.empty()) std::cerr << "\n";
  size_t failed = 0, unscored = 0;
  for (size_t i = 0; i < replies.size(); ++i) {
    out[i].judge_reply = replies[i].text;
    out[i].judge_error = replies[i].error;
    if (!replies[i].error.empty()) {
      ++failed;
      continue;
    }
    if (auto s = pipeline::judge_score(*judge_, replies[i].text)) out[i].score = *s;
    else ++unscored;
  }
  if (failed > 0) {
    std::cerr << "judge: " << failed << " of " << replies.size() << " requests failed after " << endpoint_.max_tries
              << " tries (scored 0, as the reference does; their errors are in --out): first error: "
              << [&] { for (const auto& r : replies) if (!r.error.empty()) return r.error; return std::string(); }()
              << "\n";
  }
  if (unscored > 0) std::cerr << "judge: " << unscored << " replies hold no score in the expected form (scored 0)\n";
  return out;
}

}  // namespace esft::host::eval
