#pragma once
// GPT-2's byte-to-unicode table: every byte gets a printable code point (printable Latin-1 bytes map to
// themselves, the other 68 to U+0100 onwards), so byte-level BPE vocabularies are strings of these characters.
#include <array>
#include <string>
#include <string_view>

namespace esft::tok {

// GPT-2's pre-tokenizer regex, which ByteLevel applies itself when `use_regex` is true (Tokenizer, BpeTrainer).
inline constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";


class ByteLevel {
 public:
  static const ByteLevel& get();
  // The UTF-8 of byte b's code point.
  const std::string& encode(unsigned char b) const { return encoded_[b]; }
  // `mapped` (a string of byte-level characters) back to raw bytes; false if a character is not in the table.
  bool decode(std::string_view mapped, std::string& bytes) const;
  std::string encode_all(std::string_view bytes) const;

 private:
  ByteLevel();
  std::array<std::string, 256> encoded_;
  std::array<int, 512> byte_of_;  // code point (< 512) -> byte, or -1
};

}  // namespace esft::tok
