// Chat formats: Qwen3 against every record of the fixture rendered by the real template (text and ids), the
// other families against the exact strings of shared/spec/MODELS.md, and which segments carry labels.
#include "doctest_torch.h"
#include <nlohmann/json.hpp>

#include <fstream>

#include "esft/error.h"
#include "esft/model/chat_format.h"
#include "esft/tokenizer/tokenizer.h"
#include "plugin_loader.h"

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::shared_ptr<esft::ModelFamily> family(const std::string& plugin) {
  esft::host::PluginLoader loader(std::vector<fs::path>{ESFT_BIN_DIR});
  return loader.load(plugin);
}

std::vector<esft::ChatMessage> conversation(bool with_system, bool end_with_assistant) {
  json j = json::array();
  if (with_system) j.push_back({{"role", "system"}, {"content", "S"}});
  j.push_back({{"role", "user"}, {"content", "U"}});
  if (end_with_assistant) j.push_back({{"role", "assistant"}, {"content", "A"}});
  return esft::parse_chat_messages(j, "test");
}

std::string render(const std::string& plugin, bool with_system, bool generation_prompt) {
  esft::ChatOptions options;
  options.add_generation_prompt = generation_prompt;
  options.date = "2026-11-23";
  return esft::join_segments(
      family(plugin)->chat_format().render(conversation(with_system, !generation_prompt), options));
}

}  // namespace

TEST_CASE("chat: Qwen3 renders every fixture conversation as its template does, to the token") {
  const auto fam = family("qwen3_moe");
  const auto tok = esft::tok::Tokenizer::load(fs::path(ESFT_TEST_DATA_DIR) / "tokenizers" / "qwen3.tokenizer.json.gz");
  std::ifstream in(fs::path(ESFT_TEST_DATA_DIR) / "tok" / "qwen3.chat.jsonl");
  int records = 0;
  for (std::string line; std::getline(in, line); ++records) {
    const auto r = json::parse(line);
    esft::ChatOptions options;
    options.add_generation_prompt = r.at("add_generation_prompt").get<bool>();
    if (!r.at("enable_thinking").is_null()) options.enable_thinking = r.at("enable_thinking").get<bool>();
    const auto segments = fam->chat_format().render(esft::parse_chat_messages(r.at("messages"), "fixture"), options);
    const auto rendered = esft::join_segments(segments);
    INFO("record ", records + 1);
    CHECK(rendered == r.at("rendered").get<std::string>());
    const auto expected = r.at("ids").get<std::vector<int32_t>>();
    CHECK(tok.encode(rendered) == expected);
    // Tokenizing segment by segment (how training data gets its label mask) gives the same ids.
    std::vector<int32_t> pieces;
    for (const auto& s : segments) {
      const auto ids = tok.encode(s.text);
      pieces.insert(pieces.end(), ids.begin(), ids.end());
    }
    CHECK(pieces == expected);
  }
  CHECK(records == 20);
}

TEST_CASE("chat: deepseek_v2 renders every fixture conversation as transformers renders DeepSeek-V2's template, to the token") {
  // tests/data/tok/deepseek_v2.chat.jsonl: scripts/make-deepseek-chat-fixture.py (apply_chat_template with the
  // template of DeepSeek-V2(-Lite)-Chat, tokenized by the tiny deepseek_v2 example's tokenizer).
  const auto fam = family("deepseek_v2");
  const auto tok = esft::tok::Tokenizer::load(fs::path(ESFT_TEST_DATA_DIR).parent_path().parent_path() / "examples" /
                                              "tiny-deepseek-v2" / "model");
  std::ifstream in(fs::path(ESFT_TEST_DATA_DIR) / "tok" / "deepseek_v2.chat.jsonl");
  int records = 0;
  for (std::string line; std::getline(in, line); ++records) {
    const auto r = json::parse(line);
    esft::ChatOptions options;
    options.add_generation_prompt = r.at("add_generation_prompt").get<bool>();
    INFO("record ", records + 1);
    const auto segments = fam->chat_format().render(esft::parse_chat_messages(r.at("messages"), "fixture"), options);
    const auto rendered = esft::join_segments(segments);
    CHECK(rendered == r.at("rendered").get<std::string>());
    const auto expected = r.at("ids").get<std::vector<int32_t>>();
    CHECK(tok.encode(rendered) == expected);
    std::vector<int32_t> pieces;  // segment by segment, as training data is labelled
    for (const auto& s : segments) {
      const auto ids = tok.encode(s.text);
      pieces.insert(pieces.end(), ids.begin(), ids.end());
    }
    CHECK(pieces == expected);
  }
  CHECK(records == 12);
  // Labels: the assistant's content with the space before it (which DeepSeek's tokenizer joins to the first word,
  // as the ESFT reference tokenizes and labels " {answer}") and its end-of-sentence token.
  std::string trainable;
  for (const auto& s : fam->chat_format().render(conversation(true, true), {}))
    if (s.trainable) trainable += "[" + s.text + "]";
  CHECK(trainable == "[ A<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>]");
}

TEST_CASE("chat: the other families render the strings of MODELS.md") {
  CHECK(render("qwen2_moe", true, false) ==
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\nA<|im_end|>\n");
  CHECK(render("qwen2_moe", true, true) == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n");
  // Qwen1.5/Qwen2's template supplies a system message when there is none.
  CHECK(render("qwen2_moe", false, true) ==
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n");
  CHECK(render("glm4_moe", true, false) == "[gMASK]<sop><|system|>\nS<|user|>\nU<|assistant|>\n<think></think>\nA");
  CHECK(render("glm4_moe", true, true) == "[gMASK]<sop><|system|>\nS<|user|>\nU<|assistant|>");
  CHECK(render("olmoe_select", true, false) == "<|system|>\nS\n<|user|>\nU\n<|assistant|>\nA<|endoftext|>");
  CHECK(render("olmoe_select", true, true) == "<|system|>\nS\n<|user|>\nU\n<|assistant|>\n");
  CHECK(render("gpt_oss", true, false) ==
        "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\nKnowledge cutoff: "
        "2024-06\nCurrent date: 2026-11-23\n\nReasoning: medium\n\n# Valid channels: analysis, commentary, final. "
        "Channel must be included for every message.<|end|><|start|>developer<|message|># Instructions\n\nS\n\n<|end|>"
        "<|start|>user<|message|>U<|end|><|start|>assistant<|channel|>final<|message|>A<|return|>");
}

TEST_CASE("chat: labels cover assistant content and its end token, unless the message is masked") {
  const auto fam = family("qwen2_moe");
  auto messages = esft::parse_chat_messages(
      json::parse(R"([{"role":"user","content":"U1"},{"role":"assistant","content":"A1","mask":1},
                      {"role":"user","content":"U2"},{"role":"assistant","content":"A2"}])"),
      "test");
  std::string trainable;
  for (const auto& s : fam->chat_format().render(messages, {}))
    if (s.trainable) trainable += "[" + s.text + "]";
  CHECK(trainable == "[A2<|im_end|>]");
}

TEST_CASE("chat: malformed conversations are refused with the message number") {
  CHECK_THROWS_WITH_AS(esft::parse_chat_messages(json::array(), "f.jsonl:3"), doctest::Contains("f.jsonl:3: the conversation is empty"),
                       esft::Error);
  CHECK_THROWS_WITH_AS(esft::parse_chat_messages(json::parse(R"([{"role":"tool","content":"x"}])"), "f"),
                       doctest::Contains("message 1 has role 'tool'"), esft::Error);
  CHECK_THROWS_WITH_AS(esft::parse_chat_messages(json::parse(R"([{"role":"user"}])"), "f"),
                       doctest::Contains("no \"content\""), esft::Error);
  CHECK_THROWS_WITH_AS(esft::parse_chat_messages(json::parse(R"([{"role":"user","content":"x","mask":2}])"), "f"),
                       doctest::Contains("\"mask\" must be 0 or 1"), esft::Error);
}

TEST_CASE("chat: training data closes GLM-4.5's final assistant turn with a labelled <|user|>, other formats as rendered") {
  esft::ChatOptions training;
  training.training = true;
  const auto segments = family("glm4_moe")->chat_format().render(conversation(true, true), training);
  REQUIRE(!segments.empty());
  CHECK(segments.back().text == "A<|user|>");
  CHECK(segments.back().trainable);
  for (const char* plugin : {"qwen2_moe", "olmoe_select", "gpt_oss"}) {
    CAPTURE(plugin);
    esft::ChatOptions display;
    display.date = training.date = "2026-11-23";
    CHECK(esft::join_segments(family(plugin)->chat_format().render(conversation(true, true), training)) ==
          esft::join_segments(family(plugin)->chat_format().render(conversation(true, true), display)));
  }
}
