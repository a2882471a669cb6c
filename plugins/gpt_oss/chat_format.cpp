// gpt-oss' harmony format: a fixed system block with the date, the system message as developer instructions,
// assistant answers on the final channel; the last assistant message ends with <|return|>, earlier ones <|end|>.
#include "gpt_oss.h"

namespace gpt_oss {

std::shared_ptr<const esft::ChatFormat> chat_format() {
  esft::TemplateFormatSpec s;
  s.name = "harmony";
  s.preamble =
      "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\n"
      "Knowledge cutoff: 2024-06\nCurrent date: {date}\n\nReasoning: medium\n\n"
      "# Valid channels: analysis, commentary, final. Channel must be included for every message.<|end|>";
  s.system = {"<|start|>developer<|message|># Instructions\n\n", "\n\n<|end|>", "", ""};
  s.user = {"<|start|>user<|message|>", "<|end|>", "", ""};
  s.assistant = {"<|start|>assistant<|channel|>final<|message|>", "<|end|>", "", ""};
  s.end_of_last_assistant = "<|return|>";
  s.generation_prompt = "<|start|>assistant";
  return std::make_shared<esft::TemplateChatFormat>(s);
}

}  // namespace gpt_oss
