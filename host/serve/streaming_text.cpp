#include "serve/streaming_text.h"

#include <algorithm>
#include <string_view>

namespace esft::host::serve {

namespace {
const std::string kReplacement = "\xEF\xBF\xBD";  // U+FFFD

bool ends_with_replacement(std::string_view text) {
  return text.size() >= kReplacement.size() && text.substr(text.size() - kReplacement.size()) == kReplacement;
}
}  // namespace

StreamingText::StreamingText(const tok::Tokenizer& tokenizer, std::vector<std::string> stops)
    : tokenizer_(tokenizer), stops_(std::move(stops)) {}

std::string StreamingText::add(int32_t token) {
  if (stopped_) return "";
  // The tokenizer decodes by joining bytes, then reading them as UTF-8 (U+FFFD for what is not): the text of tokens
  // decoded so far can change only in a last character still missing bytes. So a tail whose text ends in a whole
  // character is committed, and each token is decoded once instead of the whole answer at every token.
  tail_.push_back(token);
  const std::string tail_text = tokenizer_.decode(tail_, /*skip_special_tokens=*/true);
  std::string text = committed_ + tail_text;
  if (!ends_with_replacement(tail_text)) {
    committed_ = text;
    tail_.clear();
  }
  // A stop string can only end in what this token added: search from just before the text already held.
  size_t cut = std::string::npos;
  for (const auto& stop : stops_) {
    const size_t from = text_.size() >= stop.size() ? text_.size() - stop.size() + 1 : 0;
    cut = std::min(cut, text.find(stop, std::min(from, sent_)));
  }
  if (cut != std::string::npos) {
    text.resize(cut);
    stopped_ = true;
  }
  // Decoding more tokens only appends, except where a split character completes: what was given out stays.
  if (text.compare(0, sent_, text_, 0, sent_) != 0) return "";
  text_ = std::move(text);
  if (stopped_) return finish();
  const size_t end = safe_end();
  if (end <= sent_) return "";
  std::string piece = text_.substr(sent_, end - sent_);
  sent_ = end;
  return piece;
}

std::string StreamingText::finish() {
  std::string piece = text_.substr(sent_);
  sent_ = text_.size();
  return piece;
}

size_t StreamingText::safe_end() const {
  size_t end = text_.size();
  while (ends_with_replacement(std::string_view(text_).substr(0, end))) end -= kReplacement.size();
  // Hold back the longest tail that a stop string starts with.
  size_t held = 0;
  for (const auto& stop : stops_) {
    for (size_t n = std::min(stop.size() - 1, end); n > held; --n) {
      if (text_.compare(end - n, n, stop, 0, n) == 0) {
        held = n;
        break;
      }
    }
  }
  return std::max(end - held, sent_);
}

}  // namespace esft::host::serve
