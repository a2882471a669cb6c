// `esft-host generate` beyond greedy decoding: seeded sampling, several sequences in one batch, stop strings, and
// the settings it refuses.
#include "doctest_torch.h"

#include "cli_support.h"

using namespace cli_support;

namespace {

const fs::path kModel = fs::path(ESFT_TEST_DATA_DIR).parent_path().parent_path() / "examples" / "tiny-model";

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

}  // namespace

TEST_CASE("cli generate: seeded sampling repeats, several sequences come from one batch, stop strings cut") {
  const std::vector<std::string> base = {"generate", "--model", kModel.string(), "--prompt", "Intent of: wake me up",
                                         "--max-new-tokens", "12"};
  auto with = [&](std::vector<std::string> extra) {
    auto args = base;
    args.insert(args.end(), extra.begin(), extra.end());
    return run_host(args);
  };
  const Run sampled = with({"--temperature", "1.2", "--top-p", "0.95", "--seed", "3", "--num-sequences", "3"});
  expect_success(sampled);
  const auto lines = lines_of(sampled.out);
  REQUIRE(lines.size() == 3);
  for (size_t i = 0; i < 3; ++i) CHECK(lines[i].rfind("[" + std::to_string(i) + "] ", 0) == 0);
  CHECK(lines[0] != lines[1]);  // each sequence draws with its own seed
  CHECK(with({"--temperature", "1.2", "--top-p", "0.95", "--seed", "3", "--num-sequences", "3"}).out == sampled.out);
  // Sequence i uses seed + i: the second sequence of seed 3 is the first of seed 4.
  const Run seed4 = with({"--temperature", "1.2", "--top-p", "0.95", "--seed", "4"});
  expect_success(seed4);
  CHECK("[1] " + lines_of(seed4.out).at(0) == lines[1]);

  // Greedy by default; a stop string cuts the answer before it.
  const Run greedy = with({});
  expect_success(greedy);
  const auto answer = lines_of(greedy.out).at(0);
  REQUIRE(answer.size() > 6);
  const auto stop = answer.substr(4, 2);
  const Run cut = with({"--stop", stop});
  expect_success(cut);
  CHECK(lines_of(cut.out).at(0) == answer.substr(0, answer.find(stop)));
}

TEST_CASE("cli generate: sampling settings out of range are refused with the option named") {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--top-p", "0"}, "--top-p must be in (0, 1]"},
      {{"--temperature", "-1"}, "--temperature must be a finite number >= 0"},
      {{"--top-k", "-2"}, "--top-k must be >= 0"},
      {{"--repetition-penalty", "0"}, "--repetition-penalty must be > 0"},
      {{"--num-sequences", "0"}, "--num-sequences must be in [1, 256]"},
      {{"--stop", ""}, "--stop needs a non-empty text"}};
  for (const auto& c : cases) {
    const std::string& needle = c.second;
    CAPTURE(needle);
    std::vector<std::string> args = {"generate", "--model", kModel.string(), "--prompt", "hi"};
    args.insert(args.end(), c.first.begin(), c.first.end());
    expect_error(run_host(args), 2, {needle});
  }
  expect_error(run_host({"generate", "--model", kModel.string(), "--ids", "5,6", "--stop", "x"}), 2,
               {"--stop applies to --prompt and --messages"});
}
