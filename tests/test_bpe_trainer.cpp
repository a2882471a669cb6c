// The byte-level BPE trainer: merges counted by hand on a tiny corpus (ties, overlaps, min_frequency, the size
// limit), the vocabulary and merges the `tokenizers` library learns from a TinyStories slice with the ids its
// tokenizer gives held-out strings (fixture from scripts/check-bpe-trainer.py), round trips through Tokenizer,
// determinism, refusals, and `esft-host tokenizer train` end to end.
#include "doctest_torch.h"
#include <nlohmann/json.hpp>

#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "cli_support.h"
#include "esft/data/samples.h"
#include "esft/error.h"
#include "esft/tokenizer/bpe_trainer.h"
#include "esft/tokenizer/tokenizer.h"
#include "test_support.h"

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using esft::tok::BpeTrainerOptions;
using esft::tok::Tokenizer;
using esft::tok::train_bpe;

const fs::path kFixture = fs::path(ESFT_TEST_DATA_DIR) / "tok" / "bpe_trainer";
const char* const kEndOfText = "<|endoftext|>";

BpeTrainerOptions options(size_t vocab_size, size_t min_frequency = 2) {
  BpeTrainerOptions o;
  o.vocab_size = vocab_size;
  o.min_frequency = min_frequency;
  o.special_tokens = {kEndOfText};
  return o;
}

json merges_of(const json& tokenizer) { return tokenizer.at("model").at("merges"); }

Tokenizer load(const json& tokenizer) { return Tokenizer::from_json(tokenizer, "trained tokenizer.json"); }

const std::string& fixture_text() {
  static const std::string text = esft::tok::read_maybe_gzipped(kFixture / "tinystories.txt.gz");
  return text;
}

}  // namespace

TEST_CASE("bpe trainer: a tiny corpus gives the merges counted by hand") {
  // Words (the newlines are words of their own, without pairs): "aaab", "aab", "ab". Counts: (a,a) 2+1 = 3 and
  // (a,b) 1+1+1 = 3, a tie that the smaller pair of ids wins: (a,a). Merging left to right turns "aaab" into
  // aa|a|b, so (a,b) keeps its 3 and comes next. Then (aa,b) and (aa,ab) are seen once each.
  const std::vector<std::string> corpus = {"aaab\naab\nab"};
  CHECK(merges_of(train_bpe(corpus, options(1000))) == json::parse(R"([["a","a"],["a","b"]])"));
  // With min_frequency 1 both single pairs merge too: (aa,b) first, as b's id (a byte's) is smaller than ab's
  // (a merge's), although "ab" < "b" as strings.
  const auto all = train_bpe(corpus, options(1000, 1));
  CHECK(merges_of(all) == json::parse(R"([["a","a"],["a","b"],["aa","b"],["aa","ab"]])"));
  // Ids: the special token, the bytes in GPT-2's order ('!' first, 'a' = 1 + 0x61 - 0x21), then the merges.
  const auto& vocab = all.at("model").at("vocab");
  CHECK(vocab.size() == 1 + 256 + 4);
  CHECK(vocab.at(kEndOfText) == 0);
  CHECK(vocab.at("!") == 1);
  CHECK(vocab.at("a") == 65);
  CHECK(vocab.at("Ġ") == 1 + 188 + 32);  // the space, a remapped byte: after the 188 printable ones
  CHECK(vocab.at("aa") == 257);
  CHECK(vocab.at("aaab") == 260);
  // The vocabulary size bounds the merges.
  CHECK(merges_of(train_bpe(corpus, options(258, 1))) == json::parse(R"([["a","a"]])"));
  CHECK(merges_of(train_bpe(corpus, options(257, 1))).empty());
}

TEST_CASE("bpe trainer: pre-tokens, spaces and special tokens as Tokenizer sees them") {
  // " ab" is a word with its leading space ("Ġab"); <|endoftext|> splits "ab" from "ab" and is never learned.
  const auto trained = train_bpe({"ab ab ab<|endoftext|>ab<|endoftext|>"}, options(1000));
  CHECK(merges_of(trained) == json::parse(R"([["a","b"],["Ġ","ab"]])"));
  const auto& added = trained.at("added_tokens");
  REQUIRE(added.size() == 1);
  CHECK(added[0].at("content") == kEndOfText);
  CHECK(added[0].at("id") == 0);
  CHECK(added[0].at("special") == true);
  const auto tok = load(trained);
  CHECK(tok.encode("ab ab<|endoftext|>") == std::vector<int32_t>{257, 258, 0});

  // Several special tokens: leftmost first, and the longest of those starting there.
  auto o = options(1000, 1);
  o.special_tokens = {"<s>", "<s>x"};
  CHECK(merges_of(train_bpe({"ab<s>xab<s>ab"}, o)) == json::parse(R"([["a","b"]])"));
}

TEST_CASE("bpe trainer: reproduces the tokenizers library's training on a TinyStories slice") {
  std::ifstream in(kFixture / "tokenizer.json");
  REQUIRE(in);
  const auto expected = json::parse(in);
  const auto trained = train_bpe({fixture_text()}, options(512));
  CHECK(trained.at("model").at("vocab") == expected.at("model").at("vocab"));
  CHECK(merges_of(trained) == merges_of(expected));
  CHECK(merges_of(trained).size() == 512 - 257);
  CHECK(trained.at("added_tokens") == expected.at("added_tokens"));

  // Our Tokenizer gives, with our file, the ids `tokenizers` gives with its own, and decodes them back.
  const auto tok = load(trained);
  std::ifstream lines(kFixture / "encodings.jsonl");
  REQUIRE(lines);
  int count = 0;
  for (std::string line; std::getline(lines, line); ++count) {
    const auto record = json::parse(line);
    const auto text = record.at("text").get<std::string>();
    const auto ids = tok.encode(text);
    CHECK_MESSAGE(ids == record.at("ids").get<std::vector<int32_t>>(), text.substr(0, 60));
    CHECK_MESSAGE(tok.decode(ids) == text, text.substr(0, 60));
  }
  CHECK(count == 13);
}

TEST_CASE("bpe trainer: the output loads with Tokenizer and round-trips any text") {
  const auto trained = train_bpe({fixture_text()}, options(1000));
  const auto tok = load(trained);
  CHECK(tok.vocab_size() == 1000);
  CHECK(tok.token_to_id(kEndOfText) == 0);
  const std::vector<std::string> texts = {"Once upon a time, there was a little dog named Max.",
                                          "naïve café 日本語 🙂👍🏽 e\u0301",
                                          "tabs\t\tand\r\n\n  spaces  ",
                                          "never seen: qzxj 12345",
                                          std::string("bytes \x01\x7f nul ") + '\0' + " end",
                                          ""};
  for (const auto& text : texts) {
    const auto ids = tok.encode(text);
    CHECK(tok.decode(ids) == text);
  }
  // Learned tokens are used: a common word of the corpus is one token.
  CHECK(tok.encode(" time").size() == 1);
}

TEST_CASE("bpe trainer: training is deterministic and does not depend on the order of texts") {
  const std::string& text = fixture_text();
  const size_t half = text.find("<|endoftext|>", text.size() / 2);
  REQUIRE(half != std::string::npos);
  const std::string first = text.substr(0, half), second = text.substr(half);
  const auto a = train_bpe({first, second}, options(700)).dump();
  CHECK(train_bpe({first, second}, options(700)).dump() == a);
  CHECK(train_bpe({second, first}, options(700)).dump() == a);
}

TEST_CASE("bpe trainer: refusals") {
  auto message_of = [](const std::function<void()>& f) -> std::string {
    try {
      f();
    } catch (const esft::Error& e) {
      return e.what();
    }
    return "(no error)";
  };
  CHECK(message_of([] { train_bpe({}, options(300)); }).find("no text to learn from") != std::string::npos);
  CHECK(message_of([] { train_bpe({"", ""}, options(300)); }).find("no text to learn from") != std::string::npos);
  CHECK(message_of([] { train_bpe({"<|endoftext|><|endoftext|>"}, options(300)); }).find("no text") !=
        std::string::npos);
  CHECK(message_of([] { train_bpe({"text"}, options(256)); }) ==
        "BPE training: vocabulary size 256 is too small: the 1 special token(s) and the 256 bytes need 257");
  CHECK(message_of([] { train_bpe({"text \xff"}, options(300)); }).find("not valid UTF-8") != std::string::npos);
  auto o = options(300);
  o.special_tokens = {"<a>", "<a>"};
  CHECK(message_of([&] { train_bpe({"text"}, o); }).find("given twice") != std::string::npos);
  o.special_tokens = {""};
  CHECK(message_of([&] { train_bpe({"text"}, o); }).find("empty") != std::string::npos);
  // No special tokens at all is allowed: 256 bytes are the smallest vocabulary.
  o.special_tokens.clear();
  o.vocab_size = 256;
  CHECK(load(train_bpe({"text"}, o)).vocab_size() == 256);
}

TEST_CASE("bpe trainer: esft-host tokenizer train writes a tokenizer directory, or nothing") {
  using namespace cli_support;
  TempDir tmp;
  const auto plain = (kFixture / "tinystories.txt.gz").string();
  const auto out = tmp / "tok";
  const Run r = run_host({"tokenizer", "train", "--input", plain, "--vocab-size", "300", "--out", out.string()});
  expect_success(r);
  CHECK(contains(r.out, "300 tokens (1 special, 256 bytes, 43 merges)"));
  CHECK(entries_of(out) == std::vector<std::string>{"tokenizer.json", "tokenizer_config.json"});
  CHECK(json::parse(read_bytes(out / "tokenizer.json")) == train_bpe({fixture_text()}, options(300)));
  CHECK(Tokenizer::load(out).vocab_size() == 300);
  const auto config = esft::data::TokenizerConfig::load(out);
  CHECK(config.eos_token == std::optional<std::string>(kEndOfText));
  CHECK(config.pad_token == std::optional<std::string>(kEndOfText));
  CHECK_FALSE(config.add_bos_token);

  // JSON lines: each record's "text" is a text; several files and special tokens.
  const auto lines = tmp / "stories.jsonl";
  test_support::write_bytes(lines, "{\"text\": \"ab ab<pad>ab\"}\n\n{\"text\": \"cd cd\", \"id\": 2}\n");
  const auto out2 = tmp / "tok2";
  expect_success(run_host({"tokenizer", "train", "--input", lines.string() + "," + plain, "--vocab-size", "400",
                           "--special-token", "<pad>", "--special-token", kEndOfText, "--out", out2.string()}));
  auto o = options(400);
  o.special_tokens = {"<pad>", kEndOfText};
  CHECK(json::parse(read_bytes(out2 / "tokenizer.json")) == train_bpe({"ab ab<pad>ab", "cd cd", fixture_text()}, o));
  CHECK(esft::data::TokenizerConfig::load(out2).eos_token == std::optional<std::string>("<pad>"));

  // Refusals leave no output directory behind, not even a partial one.
  const auto empty = tmp / "empty.txt";
  test_support::write_bytes(empty, "");
  const auto nothing = tmp / "nothing";
  expect_error(
      run_host({"tokenizer", "train", "--input", empty.string(), "--vocab-size", "300", "--out", nothing.string()}), 1,
      {"no text", "empty.txt"});
  test_support::write_bytes(lines, "{\"text\": \"ab\"}\n{\"txt\": \"cd\"}\n");
  expect_error(
      run_host({"tokenizer", "train", "--input", lines.string(), "--vocab-size", "300", "--out", nothing.string()}), 1,
      {"stories.jsonl:2", "\"text\""});
  expect_error(run_host({"tokenizer", "train", "--input", plain, "--vocab-size", "257", "--special-token", "<a>",
                         "--special-token", "<b>", "--out", nothing.string()}),
               1, {"258"});
  expect_error(run_host({"tokenizer", "train", "--input", plain, "--vocab-size", "300", "--out", out.string()}), 1,
               {"not empty"});
  expect_error(run_host({"tokenizer", "fit", "--input", plain, "--vocab-size", "300", "--out", nothing.string()}), 2,
               {"fit"});
  expect_error(run_host({"tokenizer", "train", "--input", plain, "--out", nothing.string()}), 2, {"vocab-size"});
  CHECK(entries_of(tmp.path) == std::vector<std::string>{"empty.txt", "stories.jsonl", "tok", "tok2"});
}
