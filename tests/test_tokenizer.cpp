// Byte-level BPE against the `tokenizers` library: every line of the public fixtures, encoded and decoded with the
// real Qwen3 and gpt-oss tokenizer.json files; added tokens with lstrip/rstrip; decoding of invalid UTF-8; and
// loud refusal of tokenizer components this code does not implement.
#include "doctest_torch.h"
#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <functional>
#include <map>

#include "esft/error.h"
#include "esft/tokenizer/tokenizer.h"
#include "esft/tokenizer/utf8.h"

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

const fs::path kData = fs::path(ESFT_TEST_DATA_DIR);

const esft::tok::Tokenizer& tokenizer(const std::string& name) {
  static std::map<std::string, esft::tok::Tokenizer> loaded;
  auto it = loaded.find(name);
  if (it == loaded.end()) {
    it = loaded.emplace(name, esft::tok::Tokenizer::load(kData / "tokenizers" / (name + ".tokenizer.json.gz"))).first;
  }
  return it->second;
}

void check_public_fixture(const std::string& name) {
  const auto& tok = tokenizer(name);
  std::ifstream in(kData / "tok" / (name + ".public.jsonl"));
  REQUIRE(in);
  int lines = 0, encode_mismatches = 0, decode_mismatches = 0;
  for (std::string line; std::getline(in, line); ++lines) {
    const auto record = json::parse(line);
    const auto text = record.at("text").get<std::string>();
    const auto expected = record.at("ids").get<std::vector<int32_t>>();
    const auto ids = tok.encode(text);
    if (ids != expected) {
      if (++encode_mismatches <= 3) MESSAGE("encode differs on line ", lines + 1, ": ", text.substr(0, 80));
    }
    if (tok.decode(expected) != record.at("decoded").get<std::string>()) {
      if (++decode_mismatches <= 3) MESSAGE("decode differs on line ", lines + 1, ": ", text.substr(0, 80));
    }
  }
  CHECK(lines == 1415);
  CHECK(encode_mismatches == 0);
  CHECK(decode_mismatches == 0);
}

}  // namespace

TEST_CASE("tokenizer: qwen3 encodes and decodes every public fixture line exactly") { check_public_fixture("qwen3"); }

TEST_CASE("tokenizer: gpt-oss encodes and decodes every public fixture line exactly") { check_public_fixture("gptoss"); }

TEST_CASE("tokenizer: added tokens are matched first, longest first, and decode back") {
  const auto& tok = tokenizer("qwen3");
  const int32_t im_start = tok.token_to_id("<|im_start|>"), im_end = tok.token_to_id("<|im_end|>");
  REQUIRE(im_start == 151644);
  REQUIRE(im_end == 151645);
  const auto ids = tok.encode("<|im_start|>user\nhi<|im_end|>\n");
  REQUIRE(ids.size() >= 4);
  CHECK(ids.front() == im_start);
  CHECK(std::count(ids.begin(), ids.end(), im_end) == 1);
  CHECK(tok.decode(ids) == "<|im_start|>user\nhi<|im_end|>\n");
  CHECK(tok.decode(ids, /*skip_special_tokens=*/true) == "user\nhi\n");
  // "<think>" is an added token that is not special: kept by skip_special_tokens.
  CHECK(tok.decode(tok.encode("<think>x</think>"), true) == "<think>x</think>");
}

TEST_CASE("tokenizer: lstrip and rstrip take the whitespace around an added token") {
  json j = json::parse(esft::tok::read_maybe_gzipped(kData / "tokenizers" / "qwen3.tokenizer.json.gz"));
  j["added_tokens"].push_back({{"id", 151700}, {"content", "<mask>"}, {"lstrip", true}, {"rstrip", true},
                               {"normalized", false}, {"special", true}, {"single_word", false}});
  const auto tok = esft::tok::Tokenizer::from_json(j, "edited tokenizer.json");
  const auto plain = tokenizer("qwen3");
  const auto ids = tok.encode("a \t<mask>  b");
  std::vector<int32_t> expected = plain.encode("a");
  expected.push_back(151700);
  const auto b = plain.encode("b");
  expected.insert(expected.end(), b.begin(), b.end());
  CHECK(ids == expected);
}

TEST_CASE("tokenizer: invalid UTF-8 decodes with one replacement character per maximal invalid subsequence") {
  using esft::tok::utf8_lossy;
  CHECK(utf8_lossy("abc") == "abc");
  CHECK(utf8_lossy("\xE2\x82") == "\xEF\xBF\xBD");                           // a truncated 3-byte sequence: one
  CHECK(utf8_lossy("\xE2\x82\x41") == "\xEF\xBF\xBD" "A");                    // ... and the next byte survives
  CHECK(utf8_lossy("\xFF\xFE") == "\xEF\xBF\xBD\xEF\xBF\xBD");                // never-valid bytes: one each
  CHECK(utf8_lossy("\xED\xA0\x80") == "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // a surrogate: three
  CHECK(utf8_lossy("\xC0\xAF") == "\xEF\xBF\xBD\xEF\xBF\xBD");                // an overlong: two
  // Through the tokenizer: the first byte token of a 3-byte character alone.
  const auto& tok = tokenizer("qwen3");
  const auto ids = tok.encode("\xE2\x82\xAC");  // the euro sign
  CHECK(tok.decode(ids) == "\xE2\x82\xAC");
  const int32_t first_byte = tok.token_to_id("\xC3\xA2");  // byte 0xE2 in GPT-2's byte-level alphabet ("â")
  REQUIRE(first_byte >= 0);
  CHECK(tok.decode({first_byte}) == "\xEF\xBF\xBD");
}

TEST_CASE("tokenizer: bad input and unsupported components are refused by name") {
  const auto& tok = tokenizer("qwen3");
  CHECK_THROWS_AS(tok.encode("\xFF"), esft::Error);
  CHECK_THROWS_WITH_AS(tok.decode({999999999}), doctest::Contains("999999999"), esft::Error);
  json j = json::parse(esft::tok::read_maybe_gzipped(kData / "tokenizers" / "qwen3.tokenizer.json.gz"));
  auto with = [&](const std::function<void(json&)>& edit) {
    json copy = j;
    edit(copy);
    return copy;
  };
  CHECK_THROWS_WITH_AS(esft::tok::Tokenizer::from_json(with([](json& t) { t["normalizer"] = {{"type", "NFKC"}}; }), "t"),
                       doctest::Contains("NFKC"), esft::Error);
  CHECK_THROWS_WITH_AS(esft::tok::Tokenizer::from_json(with([](json& t) { t["model"]["type"] = "WordPiece"; }), "t"),
                       doctest::Contains("BPE"), esft::Error);
  CHECK_THROWS_WITH_AS(esft::tok::Tokenizer::from_json(with([](json& t) { t["model"]["byte_fallback"] = true; }), "t"),
                       doctest::Contains("byte_fallback"), esft::Error);
  CHECK_THROWS_WITH_AS(
      esft::tok::Tokenizer::from_json(with([](json& t) { t["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(("; }), "t"),
      doctest::Contains("regex"), esft::Error);
  CHECK_THROWS_AS(esft::tok::Tokenizer::load(kData / "no_such_tokenizer.json"), esft::Error);
}
