// Mixtral-Instruct's chat template: <s>, then `[INST] USER [/INST]` and `ASSISTANT</s>` turns, which must
// alternate starting with the user; no system role. An assistant turn and its </s> are what the model trains on.
#include "esft/error.h"
#include "mixtral.h"

namespace mixtral {

namespace {

class MixtralChatFormat final : public esft::ChatFormat {
 public:
  std::string name() const override { return "mixtral"; }

  std::vector<esft::ChatSegment> render(const std::vector<esft::ChatMessage>& messages,
                                        const esft::ChatOptions&) const override {
    if (messages.empty()) throw esft::Error("the conversation is empty");
    std::vector<esft::ChatSegment> out = {{"<s>", false}};
    for (size_t i = 0; i < messages.size(); ++i) {
      const auto& m = messages[i];
      const std::string expected = i % 2 == 0 ? "user" : "assistant";
      if (m.role != expected) {
        throw esft::Error("the mixtral chat format needs user and assistant turns alternating from the user; message " +
                          std::to_string(i + 1) + " is " + m.role);
      }
      if (m.role == "user") {
        const std::string text = "[INST] " + m.content + " [/INST]";
        if (!out.back().trainable) out.back().text += text;
        else out.push_back({text, false});
      } else {
        out.push_back({m.content + "</s>", !m.masked});
      }
    }
    return out;  // the generation prompt is the text so far: the model answers after [/INST]
  }
};

}  // namespace

std::shared_ptr<const esft::ChatFormat> chat_format() { return std::make_shared<MixtralChatFormat>(); }

}  // namespace mixtral
