// tinymoe is a base model trained from scratch on plain text: a plain "User: ... Assistant: ..." rendering, so
// that chat and instruction data still have one.
#include "tinymoe.h"

namespace tinymoe {

std::shared_ptr<const esft::ChatFormat> chat_format() {
  esft::TemplateFormatSpec s;
  s.name = "plain";
  s.system = {"", "\n\n", "", ""};
  s.user = {"User: ", "\n", "", ""};
  s.assistant = {"Assistant: ", "\n", "", ""};
  s.generation_prompt = "Assistant:";
  return std::make_shared<esft::TemplateChatFormat>(s);
}

}  // namespace tinymoe
