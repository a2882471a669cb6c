// The DeepSeek-V2 chat template (DeepSeek-V2-Chat, DeepSeek-V2-Lite-Chat):
//   <｜begin▁of▁sentence｜>S\n\nUser: U\n\nAssistant: A<｜end▁of▁sentence｜>
// with `Assistant:` (no space) as the generation prompt.
#include "deepseek_v2.h"

namespace deepseek_v2 {

std::shared_ptr<const esft::ChatFormat> chat_format() {
  esft::TemplateFormatSpec s;
  s.name = "deepseek-v2";
  s.preamble = "<\xEF\xBD\x9C" "begin\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>";
  s.system = {"", "\n\n", "", ""};
  s.user = {"User: ", "\n\n", "", ""};
  // " A<｜end▁of▁sentence｜>" is one labelled segment, as the ESFT reference tokenizes and labels it.
  s.assistant = {"Assistant:", "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>", "", ""};
  s.assistant_content_prefix = " ";
  s.generation_prompt = "Assistant:";
  return std::make_shared<esft::TemplateChatFormat>(s);
}

}  // namespace deepseek_v2
