#include "esft/error.h"

#include <cstdio>

#include "esft/tokenizer/utf8.h"

namespace esft {

std::string one_line_utf8(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  char buf[8];
  for (size_t pos = 0; pos < text.size();) {
    const auto byte = static_cast<unsigned char>(text[pos]);
    const size_t n = tok::utf8_sequence_length(text, pos);
    if (n == 0) {  // not UTF-8: the byte's value, visibly
      std::snprintf(buf, sizeof buf, "\\x%02X", byte);
      out += buf;
      pos += 1;
    } else if (byte == '\n') {
      out += "\\n", pos += 1;
    } else if (byte == '\r') {
      out += "\\r", pos += 1;
    } else if (byte == '\t') {
      out += "\\t", pos += 1;
    } else if (byte < 0x20 || byte == 0x7F) {
      std::snprintf(buf, sizeof buf, "\\x%02X", byte);
      out += buf;
      pos += 1;
    } else if (byte == 0xC2 && static_cast<unsigned char>(text[pos + 1]) < 0xA0) {  // C1 control, U+0080..U+009F
      std::snprintf(buf, sizeof buf, "\\u%04X", static_cast<unsigned char>(text[pos + 1]));
      out += buf;
      pos += 2;
    } else {
      out.append(text.data() + pos, n);
      pos += n;
    }
  }
  return out;
}

}  // namespace esft
