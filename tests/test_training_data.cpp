// Training data: the three sample shapes with their label masks, ESFT-reference packing, padded batches,
// deterministic shuffling and splits, and bad input named by file and line.
#include "doctest_torch.h"

#include <fstream>
#include <set>

#include "esft/data/batching.h"
#include "esft/data/samples.h"
#include "esft/error.h"
#include "plugin_loader.h"
#include "test_support.h"

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using esft::data::kIgnoreIndex;

const fs::path kData = fs::path(ESFT_TEST_DATA_DIR);

struct Setup {
  esft::tok::Tokenizer tokenizer;
  esft::data::TokenizerConfig config;
  std::shared_ptr<esft::ModelFamily> family;
};

Setup setup(const std::string& tokenizer, const std::string& plugin) {
  esft::host::PluginLoader loader(std::vector<fs::path>{ESFT_BIN_DIR});
  return {esft::tok::Tokenizer::load(kData / "tokenizers" / (tokenizer + ".tokenizer.json.gz")),
          esft::data::TokenizerConfig::load(kData / "tokenizers" / (tokenizer + ".tokenizer_config.json")),
          loader.load(plugin)};
}

esft::data::Sample sample(std::vector<int32_t> ids, std::string origin = "s") {
  esft::data::Sample s;
  s.labels = ids;
  s.ids = std::move(ids);
  s.origin = std::move(origin);
  return s;
}

}  // namespace

TEST_CASE("training data: a conversation gets labels on assistant content and its end token only") {
  auto s = setup("qwen3", "qwen3_moe");
  esft::data::SampleEncoder encoder(s.tokenizer, s.config, s.family->chat_format());
  const auto record = json::parse(R"({"messages": [{"role": "user", "content": "Hi"},
      {"role": "assistant", "content": "Hello!", "mask": 1}, {"role": "user", "content": "2+2?"},
      {"role": "assistant", "content": "4"}]})");
  const auto sample = encoder.encode(record, "data.jsonl:1");
  // The ids are those of the whole rendering.
  const auto rendered = esft::join_segments(
      s.family->chat_format().render(esft::parse_chat_messages(record["messages"], "x"), {}));
  CHECK(sample.ids == s.tokenizer.encode(rendered));
  REQUIRE(sample.labels.size() == sample.ids.size());
  std::vector<int32_t> labelled;
  for (size_t i = 0; i < sample.ids.size(); ++i) {
    if (sample.labels[i] == kIgnoreIndex) continue;
    CHECK(sample.labels[i] == sample.ids[i]);
    labelled.push_back(sample.ids[i]);
  }
  // Only the last answer trains (the first is masked): its think block, "4" and <|im_end|>.
  CHECK(s.tokenizer.decode(labelled) == "<think>\n\n</think>\n\n4<|im_end|>");
}

TEST_CASE("training data: prompt/completion and text samples end with a labelled EOS, BOS when configured") {
  auto s = setup("gptoss", "gpt_oss");
  esft::data::SampleEncoder encoder(s.tokenizer, s.config, s.family->chat_format());
  const int32_t eos = s.tokenizer.token_to_id("<|return|>");
  const auto pc = encoder.encode(json::parse(R"({"prompt": "Q: 1+1=", "completion": " 2"})"), "x:1");
  const auto prompt = s.tokenizer.encode("Q: 1+1="), completion = s.tokenizer.encode(" 2");
  REQUIRE(pc.ids.size() == prompt.size() + completion.size() + 1);
  CHECK(pc.ids.back() == eos);
  CHECK(pc.labels.back() == eos);
  for (size_t i = 0; i < prompt.size(); ++i) CHECK(pc.labels[i] == kIgnoreIndex);
  CHECK(pc.labels[prompt.size()] == completion[0]);

  auto config = s.config;
  config.add_bos_token = true;  // gpt-oss names <|startoftext|> as its BOS
  esft::data::SampleEncoder with_bos(s.tokenizer, config, s.family->chat_format());
  const auto text = with_bos.encode(json::parse(R"({"text": "plain text"})"), "x:2");
  CHECK(text.ids.front() == s.tokenizer.token_to_id("<|startoftext|>"));
  CHECK(text.labels.front() == kIgnoreIndex);
  CHECK(text.labels[1] == text.ids[1]);
  CHECK(text.ids.back() == eos);
}

TEST_CASE("training data: packing fills windows exactly, cutting a sample from the left, and pads the last") {
  esft::data::PackOptions o;
  o.seq_length = 5;
  o.pad_id = 99;
  auto rows = esft::data::pack_samples({sample({1, 2, 3}), sample({4, 5, 6, 7}), sample({8})}, o);
  REQUIRE(rows.size() == 2);
  CHECK(rows[0].ids == std::vector<int32_t>{1, 2, 3, 6, 7});  // sample 2 keeps its last 2 tokens
  CHECK(rows[0].labels == std::vector<int32_t>{1, 2, 3, 6, 7});
  CHECK(rows[0].attention_mask == std::vector<uint8_t>{1, 1, 1, 1, 1});
  CHECK(rows[1].ids == std::vector<int32_t>{8, 99, 99, 99, 99});
  CHECK(rows[1].labels == std::vector<int32_t>{8, kIgnoreIndex, kIgnoreIndex, kIgnoreIndex, kIgnoreIndex});
  CHECK(rows[1].attention_mask == std::vector<uint8_t>{1, 0, 0, 0, 0});

  // Windows filled exactly: no empty padded window after them.
  CHECK(esft::data::pack_samples({sample({1, 2}), sample({3, 4, 5})}, o).size() == 1);
  // A sample longer than a whole window keeps its last seq_length tokens.
  CHECK(esft::data::pack_samples({sample({1, 2, 3, 4, 5, 6, 7})}, o)[0].ids == std::vector<int32_t>{3, 4, 5, 6, 7});
  // random_concat_ratio 1: every sample joined onto a non-empty window loses its first token.
  o.seq_length = 10;
  o.random_concat_ratio = 1;
  CHECK(esft::data::pack_samples({sample({1, 2, 3}), sample({4, 5})}, o)[0].ids ==
        std::vector<int32_t>{1, 2, 3, 5, 99, 99, 99, 99, 99, 99});
}

TEST_CASE("training data: without packing, a sample longer than seq_length is named, batches pad to the longest") {
  const std::vector<esft::data::Sample> samples = {sample({1, 2}, "a.jsonl:1"), sample({1, 2, 3, 4}, "a.jsonl:2")};
  CHECK_NOTHROW(esft::data::check_fits(samples, 4));
  CHECK_THROWS_WITH_AS(esft::data::check_fits(samples, 3), doctest::Contains("a.jsonl:2: the sample has 4 tokens"),
                       esft::Error);
  const auto rows = esft::data::pad_batch({&samples[0], &samples[1]}, 0);
  CHECK(rows[0].ids == std::vector<int32_t>{1, 2, 0, 0});
  CHECK(rows[0].labels == std::vector<int32_t>{1, 2, kIgnoreIndex, kIgnoreIndex});
  CHECK(rows[0].attention_mask == std::vector<uint8_t>{1, 1, 0, 0});
  CHECK(rows[1].attention_mask == std::vector<uint8_t>{1, 1, 1, 1});
}

TEST_CASE("training data: shuffling and splitting are deterministic per seed") {
  std::vector<esft::data::Sample> samples;
  for (int i = 0; i < 100; ++i) samples.push_back(sample({i}, std::to_string(i)));
  auto order = [](std::vector<esft::data::Sample> s, uint64_t seed) {
    esft::data::shuffle_samples(s, seed);
    std::vector<int32_t> ids;
    for (const auto& x : s) ids.push_back(x.ids[0]);
    return ids;
  };
  CHECK(order(samples, 5934875) == order(samples, 5934875));
  CHECK(order(samples, 5934875) != order(samples, 1));
  // The first values of SplitMix64 from seed 0, as published with the algorithm.
  esft::data::Random r(0);
  CHECK(r.next() == 0xE220A8397B1DCDAFull);
  CHECK(r.next() == 0x6E789E6AA1B965F4ull);

  const auto split = esft::data::split_holdout(samples, 0.02, 5934875);
  CHECK(split.eval.size() == 2);
  CHECK(split.train.size() == 98);
  std::set<int32_t> seen;
  for (const auto* part : {&split.train, &split.eval})
    for (const auto& s : *part) seen.insert(s.ids[0]);
  CHECK(seen.size() == 100);
  CHECK(esft::data::split_holdout(samples, 0.02, 5934875).eval[0].ids == split.eval[0].ids);
  CHECK_THROWS_AS(esft::data::split_holdout(samples, 1.0, 1), esft::Error);
}

TEST_CASE("training data: bad lines are errors naming file and line") {
  auto s = setup("qwen3", "qwen3_moe");
  esft::data::SampleEncoder encoder(s.tokenizer, s.config, s.family->chat_format());
  test_support::TempDir dir;
  auto expect = [&](const std::string& content, const std::string& needle) {
    const auto file = dir / "data.jsonl";
    std::ofstream(file) << content;
    CHECK_THROWS_WITH_AS(esft::data::read_samples(file, encoder), doctest::Contains(needle.c_str()), esft::Error);
  };
  const std::string good = R"({"text": "fine"})";
  expect(good + "\n{not json\n", "data.jsonl:2: malformed JSON");
  expect(good + "\n\n" + R"({"question": "?"})" + "\n", "data.jsonl:3: a sample needs");
  expect(R"({"messages": [{"role": "robot", "content": "x"}]})", "data.jsonl:1: message 1 has role 'robot'");
  expect(R"({"messages": []})", "data.jsonl:1: the conversation is empty");
  expect(R"({"prompt": "only"})", "data.jsonl:1: a prompt/completion sample needs both");
  expect(R"({"text": 5})", "data.jsonl:1: \"text\" must be a string");
  expect("\n\n", "no samples");

  std::ofstream(dir / "ok.jsonl") << good << "\n\n" << R"({"prompt": "a", "completion": "b"})" << "\n";
  esft::data::ReadReport report;
  const auto samples = esft::data::read_samples(dir / "ok.jsonl", encoder, &report);
  CHECK(samples.size() == 2);
  CHECK(samples[1].origin == (dir / "ok.jsonl").string() + ":3");
  CHECK(report.samples == 2);
  CHECK(report.trainable_tokens > 0);
}
