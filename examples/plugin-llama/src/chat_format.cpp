// Llama 3's chat template (Meta-Llama-3-*-Instruct's tokenizer_config.json): <|begin_of_text|>, then per message
// `<|start_header_id|>ROLE<|end_header_id|>\n\n` + the content with surrounding whitespace trimmed + `<|eot_id|>`;
// the generation prompt opens an assistant header. An assistant message's content and its <|eot_id|> are what a
// model trains on. (Llama 3.1 and later templates also add a dated system message, which this format leaves out.)
#include "esft/error.h"
#include "llama.h"

namespace llama {

namespace {

std::string trimmed(const std::string& s) {  // Jinja's trim: leading and trailing whitespace
  const char* space = " \t\n\r\f\v";
  const auto begin = s.find_first_not_of(space);
  if (begin == std::string::npos) return "";
  return s.substr(begin, s.find_last_not_of(space) - begin + 1);
}

class Llama3ChatFormat final : public esft::ChatFormat {
 public:
  std::string name() const override { return "llama3"; }

  std::vector<esft::ChatSegment> render(const std::vector<esft::ChatMessage>& messages,
                                        const esft::ChatOptions& options) const override {
    if (messages.empty()) throw esft::Error("the conversation is empty");
    std::vector<esft::ChatSegment> out = {{"<|begin_of_text|>", false}};
    auto plain = [&](const std::string& text) {
      if (!out.back().trainable) out.back().text += text;
      else out.push_back({text, false});
    };
    for (const auto& m : messages) {
      plain("<|start_header_id|>" + m.role + "<|end_header_id|>\n\n");
      if (m.role == "assistant") out.push_back({trimmed(m.content) + "<|eot_id|>", !m.masked});
      else plain(trimmed(m.content) + "<|eot_id|>");
    }
    if (options.add_generation_prompt) plain("<|start_header_id|>assistant<|end_header_id|>\n\n");
    return out;
  }
};

}  // namespace

std::shared_ptr<const esft::ChatFormat> chat_format() { return std::make_shared<Llama3ChatFormat>(); }

}  // namespace llama
