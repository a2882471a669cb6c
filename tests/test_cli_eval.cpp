// `eval --rescore`: saved completions scored without a model, in the ESFT reference's format and in esft's own, and
// the reference's evaluation files read as they are.
#include "cli_support.h"

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
