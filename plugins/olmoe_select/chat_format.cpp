// The Tulu format of OLMoE's instruct models: `<|system|>\nS\n<|user|>\nU\n<|assistant|>\nA<|endoftext|>`.
#include "olmoe.h"

namespace olmoe {

std::shared_ptr<const esft::ChatFormat> chat_format() {
  esft::TemplateFormatSpec s;
  s.name = "tulu";
  s.system = {"<|system|>\n", "\n", "", ""};
  s.user = {"<|user|>\n", "\n", "", ""};
  s.assistant = {"<|assistant|>\n", "<|endoftext|>", "\n", ""};
  s.generation_prompt = "<|assistant|>\n";
  return std::make_shared<esft::TemplateChatFormat>(s);
}

}  // namespace olmoe
