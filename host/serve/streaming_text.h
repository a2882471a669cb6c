#pragma once
// The text of a growing answer, in pieces that are safe to send as they come: never text that a later token could
// still change (a character whose UTF-8 bytes are split across tokens decodes as U+FFFD until its last byte comes),
// and never text that might be the start of a stop string. The pieces joined are exactly the whole answer's text.
#include <cstdint>
#include <string>
#include <vector>

#include "esft/tokenizer/tokenizer.h"

namespace esft::host::serve {

class StreamingText {
 public:
  StreamingText(const tok::Tokenizer& tokenizer, std::vector<std::string> stops);

  // Adds a generated token; returns the text that may be sent now ("" when none).
  std::string add(int32_t token);
  // Whether a stop string has appeared (the answer ends before it; add nothing more).
  bool stopped() const { return stopped_; }
  // The rest of the answer, once generation has ended.
  std::string finish();
  // The answer so far, without the stop string.
  const std::string& text() const { return text_; }

 private:
  size_t safe_end() const;

  const tok::Tokenizer& tokenizer_;
  std::vector<std::string> stops_;
  std::string committed_;      // the text of the tokens before tail_, final
  std::vector<int32_t> tail_;  // tokens whose text may still change (a character split across tokens)
  std::string text_;
  size_t sent_ = 0;  // bytes of text_ already given out
  bool stopped_ = false;
};

}  // namespace esft::host::serve
