// Qwen3's chat template: ChatML plus its thinking rules, reproduced from the template the Qwen3 checkpoints ship
// (checked against shared/fixtures/tok/qwen3.chat.jsonl):
// - an assistant message after the last user query is rendered with a think block: its reasoning_content, or the
//   text before `</think>` in its content, or an empty block `<think>\n\n</think>\n\n` when it is the last message;
// - earlier assistant messages keep only the text after `</think>`;
// - the generation prompt gets an empty think block when enable_thinking is false.
// Tool calls and tool messages are not supported (parse_chat_messages refuses the tool role).
#include "esft/error.h"
#include "qwen3_moe.h"

namespace qwen3_moe {

namespace {

std::string strip_newlines(const std::string& s, bool left, bool right) {
  size_t b = 0, e = s.size();
  if (left)
    while (b < e && s[b] == '\n') ++b;
  if (right)
    while (e > b && s[e - 1] == '\n') --e;
  return s.substr(b, e - b);
}

class Qwen3ChatFormat final : public esft::ChatFormat {
 public:
  std::string name() const override { return "qwen3"; }

  std::vector<esft::ChatSegment> render(const std::vector<esft::ChatMessage>& messages,
                                        const esft::ChatOptions& options) const override {
    if (messages.empty()) throw esft::Error("the conversation is empty");
    std::vector<esft::ChatSegment> out;
    auto plain = [&](const std::string& text) {
      if (!out.empty() && !out.back().trainable) out.back().text += text;
      else out.push_back({text, false});
    };
    // The last user message (the "query"); assistant messages after it keep their reasoning.
    size_t last_query = messages.size() - 1;
    for (size_t i = messages.size(); i-- > 0;) {
      if (messages[i].role == "user") {
        last_query = i;
        break;
      }
    }
    for (size_t i = 0; i < messages.size(); ++i) {
      const auto& m = messages[i];
      if (m.role != "assistant") {
        plain("<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n");
        continue;
      }
      std::string content = m.content, reasoning = m.reasoning_content.value_or("");
      if (!m.reasoning_content) {
        const auto close = content.find("</think>");
        if (close != std::string::npos) {
          std::string before = strip_newlines(content.substr(0, close), false, true);
          const auto open = before.rfind("<think>");
          reasoning = strip_newlines(open == std::string::npos ? before : before.substr(open + 7), true, false);
          content = strip_newlines(content.substr(content.rfind("</think>") + 8), true, false);
        }
      }
      const bool last = i + 1 == messages.size();
      std::string body;
      if (i > last_query && (last || !reasoning.empty())) {
        body = "<think>\n" + strip_newlines(reasoning, true, true) + "\n</think>\n\n" + strip_newlines(content, true, false);
      } else {
        body = content;
      }
      plain("<|im_start|>assistant\n");
      out.push_back({body + "<|im_end|>", !m.masked});
      plain("\n");
    }
    if (options.add_generation_prompt) {
      plain("<|im_start|>assistant\n");
      if (options.enable_thinking.has_value() && !*options.enable_thinking) plain("<think>\n\n</think>\n\n");
    }
    return out;
  }
};

}  // namespace

std::shared_ptr<const esft::ChatFormat> chat_format() { return std::make_shared<Qwen3ChatFormat>(); }

}  // namespace qwen3_moe
