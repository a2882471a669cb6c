// `eval --rescore`: saved completions scored without a model, in the ESFT reference's format and in esft's own, and
// the reference's evaluation files read as they are.
#include "cli_support.h"
#include "fake_judge.h"
#include "serve_process.h"

#include <fstream>

using namespace cli_support;

namespace {

void write_lines(const fs::path& path, const std::vector<std::string>& lines) {
  std::ofstream out(path);
  for (const auto& line : lines) out << line << "\n";
}

// Lines shaped as the reference's results/completions/*/intent.jsonl (our own text), with the scores its
// IntentEvaluator gives them: a fenced prediction with spaces in a slot, a wrong slot, and no JSON at all.
const std::vector<std::string> kReferenceIntentLines = {
    R"({"example": {"prompt": "User: turn on the lamp\n\nAssistant:", "raw_prediction": " ```json\n{\"intent\": \"Light-On\", \"slots\": {\"device\": \"desk lamp\"}}\n```。", "raw_answers": ["{\"intent\": \"Light-On\", \"slots\": {\"device\": \"desklamp\"}}"]}, "score": 1})",
    R"({"example": {"prompt": "User: alarm at 7\n\nAssistant:", "raw_prediction": " {\"intent\": \"Alarm-Set\", \"slots\": {\"time\": \"8\"}}。", "raw_answers": ["{\"intent\": \"Alarm-Set\", \"slots\": {\"time\": \"7\"}}"]}, "score": 0})",
    R"({"example": {"prompt": "User: hello\n\nAssistant:", "raw_prediction": " I cannot parse that.", "raw_answers": ["{\"intent\": \"Chat\", \"slots\": {}}"]}, "score": 0.0})",
};

}  // namespace

TEST_CASE("cli eval rescore: the reference's completions get the reference's scores, written per record") {
  TempDir tmp;
  write_lines(tmp / "intent.jsonl", kReferenceIntentLines);
  const Run r = run_host({"eval", "--rescore", (tmp / "intent.jsonl").string(), "--metric", "intent", "--out",
                          (tmp / "scores.jsonl").string(), "--result", (tmp / "result.json").string()});
  expect_success(r);
  INFO("stdout: ", r.out);
  CHECK(contains(r.out, "intent 0.3333  (3 records"));
  CHECK(contains(r.out, "ours are the same on 3 of 3 records"));
  std::ifstream scores(tmp / "scores.jsonl");
  std::vector<double> values;
  for (std::string line; std::getline(scores, line);) values.push_back(nlohmann::json::parse(line).at("score").get<double>());
  CHECK(values == std::vector<double>{1, 0, 0});
  std::ifstream result_file(tmp / "result.json");
  const auto result = nlohmann::json::parse(result_file);
  CHECK(result.at("agreeing_records") == 3);
  CHECK(result.at("value").get<double>() == doctest::Approx(1.0 / 3));
}

TEST_CASE("cli eval rescore: esft's own completions, and a recorded score that disagrees is reported") {
  TempDir tmp;
  write_lines(tmp / "out.jsonl",
              {R"({"origin": "a:1", "prompt": "Q", "completion": "The Answer.", "answers": ["the answer"], "score": 1.0})",
               R"({"origin": "a:2", "prompt": "Q", "completion": "no", "answers": ["yes"], "score": 1.0})"});
  const Run r = run_host({"eval", "--rescore", (tmp / "out.jsonl").string(), "--metric", "exact"});
  expect_success(r);
  CHECK(contains(r.out, "exact 0.5000  (2 records"));
  CHECK(contains(r.out, "ours are the same on 1 of 2 records (largest difference 1.000000)"));
}

TEST_CASE("cli eval rescore: bad files and options get one line and leave no output") {
  TempDir tmp;
  write_lines(tmp / "missing.jsonl",
              {kReferenceIntentLines[0], R"({"example": {"prompt": "p", "raw_answers": ["{}"]}, "score": 1})"});
  expect_error(run_host({"eval", "--rescore", (tmp / "missing.jsonl").string(), "--metric", "intent", "--out",
                         (tmp / "scores.jsonl").string()}),
               1, {"missing.jsonl:2", "raw_prediction"});
  CHECK_FALSE(fs::exists(tmp / "scores.jsonl"));
  write_lines(tmp / "neither.jsonl", {R"({"text": "hello"})"});
  expect_error(run_host({"eval", "--rescore", (tmp / "neither.jsonl").string(), "--metric", "exact"}), 1,
               {"neither.jsonl:1", "neither a reference completion"});
  write_lines(tmp / "ok.jsonl", {kReferenceIntentLines[0]});
  expect_error(run_host({"eval", "--rescore", (tmp / "ok.jsonl").string(), "--metric", "loss"}), 2, {"generation --metric"});
  expect_error(run_host({"eval", "--rescore", (tmp / "ok.jsonl").string(), "--metric", "intent", "--model", "m"}), 2,
               {"--model does not apply"});
  expect_error(run_host({"eval", "--metric", "intent"}), 2, {"--model and --data"});
}

#if ESFT_TEST_JUDGE

namespace {

// Two summaries in the reference's completions format; the fake judge gives 8 points to the one that says "good".
const std::vector<std::string> kSummaryLines = {
    R"({"example": {"prompt": "User: 请总结\n\nAssistant:", "raw_prediction": " a good summary\n", "raw_answers": ["the answer"]}, "score": 0.8})",
    R"({"example": {"prompt": "User: 请总结\n\nAssistant:", "raw_prediction": "  ", "raw_answers": ["the other answer"]}, "score": 0.3})",
};

std::string summary_judge(const nlohmann::json& request) {
  const auto user = request.at("messages").at(1).at("content").get<std::string>();
  const bool good = user.find("预测答案：a good summary\n参考答案：the answer") != std::string::npos;
  return std::string("内容准确性扣1分，详细程度/完整性扣1分，总分是：") + (good ? "8" : "3") + "分。理由：……";
}

}  // namespace

TEST_CASE("cli eval judge: the reference's prompts go to the endpoint, in parallel, and its replies become scores") {
  FakeJudge judge(summary_judge, /*fail_first=*/1);  // the first request fails: it is tried again
  TempDir tmp;
  write_lines(tmp / "summary.jsonl", kSummaryLines);
  const Run r = run_host({"eval", "--rescore", (tmp / "summary.jsonl").string(), "--metric", "judge-summary",
                          "--judge-url", judge.url(), "--judge-model", "judge-1", "--judge-key-env", "ESFT_TEST_JUDGE_KEY",
                          "--judge-concurrency", "2", "--judge-backoff", "0", "--out", (tmp / "scores.jsonl").string()},
                         {{"ESFT_TEST_JUDGE_KEY", "sekrit"}});
  expect_success(r);
  INFO("stdout: ", r.out, "\nstderr: ", r.err);
  CHECK(contains(r.out, "judge-summary 0.5500  (2 records"));
  CHECK(contains(r.out, "ours are the same on 2 of 2 records"));
  const auto requests = judge.requests();
  REQUIRE(requests.size() == 3);
  for (const auto& q : requests) {
    CHECK(q.authorization == "Bearer sekrit");
    CHECK(q.body.at("model") == "judge-1");
    CHECK(q.body.at("max_tokens") == 80);
    CHECK(q.body.at("messages").at(0).at("content") ==
          "You are a helpful assistant. Follow the user's instructions carefully. Respond using markdown.");
  }
  // The empty prediction is judged as "None", as the reference sends it.
  bool none_sent = false;
  for (const auto& q : requests)
    none_sent |= q.body.at("messages").at(1).at("content").get<std::string>().find("预测答案：None\n") != std::string::npos;
  CHECK(none_sent);
  std::ifstream scores(tmp / "scores.jsonl");
  std::string line;
  REQUIRE(std::getline(scores, line));
  CHECK(contains(nlohmann::json::parse(line).at("judge_reply").get<std::string>(), "总分是：8分"));
}

TEST_CASE("cli eval judge: end to end, with esft-host serve on the tiny model as the judge") {
  // The protocol against the real server (FakeJudge above stands in where failures must be made on purpose).
  const auto model = fs::path(ESFT_TEST_DATA_DIR).parent_path().parent_path() / "examples" / "tiny-model";
  ServeProcess judge(kHost, {"--model", model.string(), "--api-key-env", "ESFT_TEST_JUDGE_KEY"},
                     {{"ESFT_TEST_JUDGE_KEY", "sekrit"}});
  TempDir tmp;
  write_lines(tmp / "summary.jsonl", kSummaryLines);
  const Run r = run_host({"eval", "--rescore", (tmp / "summary.jsonl").string(), "--metric", "judge-summary",
                          "--judge-url", judge.url() + "/v1", "--judge-model", "tiny-model", "--judge-key-env",
                          "ESFT_TEST_JUDGE_KEY", "--judge-backoff", "0", "--out", (tmp / "scores.jsonl").string()},
                         {{"ESFT_TEST_JUDGE_KEY", "sekrit"}});
  expect_success(r);
  INFO("stdout: ", r.out, "\nstderr: ", r.err);
  CHECK(contains(r.out, "judge-summary"));
  CHECK_FALSE(contains(r.err, "failed"));
  std::ifstream scores(tmp / "scores.jsonl");
  int lines = 0;
  for (std::string line; std::getline(scores, line); ++lines) {
    const auto j = nlohmann::json::parse(line);
    CHECK(j.at("judge_reply").is_string());  // the random tiny model's words: no score in them, so 0
    CHECK_FALSE(j.contains("judge_error"));
  }
  CHECK(lines == 2);
  CHECK(judge.stop() == 0);
  const std::string log = judge.log();
  size_t answered = 0;
  for (size_t at = 0; (at = log.find("\"POST /v1/chat/completions\" 200", at)) != std::string::npos; ++at) ++answered;
  CHECK(answered == 2);
}

TEST_CASE("cli eval judge: requests that keep failing score 0 and say so, and missing options and keys are refused") {
  FakeJudge judge(summary_judge, /*fail_first=*/100);
  TempDir tmp;
  write_lines(tmp / "summary.jsonl", kSummaryLines);
  const Run r = run_host({"eval", "--rescore", (tmp / "summary.jsonl").string(), "--metric", "judge-law", "--judge-url",
                          judge.url(), "--judge-model", "m", "--judge-tries", "2", "--judge-backoff", "0", "--out",
                          (tmp / "scores.jsonl").string()});
  expect_success(r);
  CHECK(contains(r.out, "judge-law 0.0000"));
  CHECK(contains(r.err, "2 of 2 requests failed after 2 tries"));
  CHECK(contains(r.err, "HTTP 500"));
  CHECK(judge.requests().size() == 4);
  std::ifstream scores(tmp / "scores.jsonl");
  std::string line;
  REQUIRE(std::getline(scores, line));
  CHECK(contains(nlohmann::json::parse(line).at("judge_error").get<std::string>(), "HTTP 500"));

  const auto file = (tmp / "summary.jsonl").string();
  expect_error(run_host({"eval", "--rescore", file, "--metric", "judge-translation"}), 2, {"--judge-url and --judge-model"});
  expect_error(run_host({"eval", "--rescore", file, "--metric", "judge-law", "--judge-url", judge.url(), "--judge-model",
                         "m", "--judge-key-env", "ESFT_TEST_NO_SUCH_VARIABLE"}),
               2, {"ESFT_TEST_NO_SUCH_VARIABLE", "not set"});
  expect_error(run_host({"eval", "--rescore", file, "--metric", "exact", "--judge-url", judge.url()}), 2,
               {"--judge-* options apply to the judge metrics"});
}

TEST_CASE("cli eval judge: completions generated by a model are judged too, with the translation pattern") {
  FakeJudge judge([](const nlohmann::json&) { return std::string("Content accuracy 7 points, ..., total score: 6.5 points"); });
  TempDir tmp;
  const auto example = fs::path(ESFT_TEST_DATA_DIR).parent_path().parent_path() / "examples" / "tiny-deepseek-v2";
  const Run r = run_host({"--device", "cpu", "eval", "--model", (example / "model").string(), "--data",
                          (example / "task" / "eval.jsonl").string(), "--limit", "2", "--max-new-tokens", "4",
                          "--metric", "judge-translation", "--judge-url", judge.url(), "--judge-model", "m", "--out",
                          (tmp / "completions.jsonl").string()});
  expect_success(r);
  CHECK(contains(r.out, "judge-translation 0.6500  (2 records"));
  CHECK(judge.requests().size() == 2);
  std::ifstream completions(tmp / "completions.jsonl");
  int lines = 0;
  for (std::string line; std::getline(completions, line); ++lines) {
    const auto j = nlohmann::json::parse(line);
    CHECK(j.at("score").get<double>() == doctest::Approx(0.65));
    CHECK(j.contains("judge_reply"));
  }
  CHECK(lines == 2);
}

#else

TEST_CASE("cli eval judge: a build without libcurl refuses the judge metrics in one line") {
  TempDir tmp;
  write_lines(tmp / "intent.jsonl", kReferenceIntentLines);
  expect_error(run_host({"eval", "--rescore", (tmp / "intent.jsonl").string(), "--metric", "judge-law", "--judge-url",
                         "http://127.0.0.1:1/v1", "--judge-model", "m"}),
               1, {"without libcurl"});
}

#endif
