// ChatML as the Qwen1.5/Qwen2 chat template writes it, with its default system message when there is none.
#include "qwen2_moe.h"

namespace qwen2_moe {

std::shared_ptr<const esft::ChatFormat> chat_format() {
  esft::TemplateFormatSpec s;
  s.name = "chatml";
  s.system = {"<|im_start|>system\n", "<|im_end|>", "\n", "\n"};
  s.user = {"<|im_start|>user\n", "<|im_end|>", "\n", "\n"};
  s.assistant = {"<|im_start|>assistant\n", "<|im_end|>", "\n", "\n"};
  s.default_system = "You are a helpful assistant.";
  s.generation_prompt = "<|im_start|>assistant\n";
  return std::make_shared<esft::TemplateChatFormat>(s);
}

}  // namespace qwen2_moe
