#include "esft/tokenizer/byte_level.h"

#include "esft/tokenizer/utf8.h"

namespace esft::tok {

ByteLevel::ByteLevel() {
  byte_of_.fill(-1);
  int next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    const int cp = printable ? b : next++;
    append_utf8(encoded_[b], static_cast<char32_t>(cp));
    byte_of_[cp] = b;
  }
}

const ByteLevel& ByteLevel::get() {
  static const ByteLevel table;
  return table;
}

bool ByteLevel::decode(std::string_view mapped, std::string& bytes) const {
  for (size_t pos = 0; pos < mapped.size();) {
    const char32_t cp = next_code_point(mapped, pos);
    if (cp >= 512 || byte_of_[cp] < 0) return false;
    bytes += static_cast<char>(byte_of_[cp]);
  }
  return true;
}

std::string ByteLevel::encode_all(std::string_view bytes) const {
  std::string out;
  for (unsigned char b : bytes) out += encoded_[b];
  return out;
}

}  // namespace esft::tok
