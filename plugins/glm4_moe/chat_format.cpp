// GLM-4.5's chat format without thinking: `[gMASK]<sop><|system|>\nS<|user|>\nU<|assistant|>\n<think></think>\nA`.
// A turn has no end token of its own: the next role token ends it. In training data a conversation that ends with
// an assistant message is closed by a labelled `<|user|>` (the token that would follow, and a stop token of
// GLM-4.5's generation_config.json), or a fine-tuned model would never learn to stop.
#include "glm4_moe.h"

namespace glm4_moe {

std::shared_ptr<const esft::ChatFormat> chat_format() {
  esft::TemplateFormatSpec s;
  s.name = "glm4";
  s.preamble = "[gMASK]<sop>";
  s.system = {"<|system|>\n", "", "", ""};
  s.user = {"<|user|>\n", "", "", ""};
  s.assistant = {"<|assistant|>\n<think></think>\n", "", "", ""};
  s.generation_prompt = "<|assistant|>";
  s.training_end_of_last_assistant = "<|user|>";
  return std::make_shared<esft::TemplateChatFormat>(s);
}

}  // namespace glm4_moe
