#pragma once
// UTF-8 helpers shared by the tokenizer: validation, decoding with replacement characters exactly as Rust's
// String::from_utf8_lossy (what the `tokenizers` library's decoders use), Unicode whitespace, NFC.
#include <cstdint>
#include <string>
#include <string_view>

namespace esft::tok {

// Length (1-4) of the well-formed UTF-8 sequence that starts at text[pos], or 0 when none does there.
size_t utf8_sequence_length(std::string_view text, size_t pos);

// True when `text` is well-formed UTF-8 (no overlongs, surrogates or code points above U+10FFFF).
bool is_valid_utf8(std::string_view text);

// Replaces every maximal invalid subsequence with U+FFFD ("substitution of maximal subparts", as Rust and Python).
std::string utf8_lossy(std::string_view bytes);

// Decodes the code point at text[pos] (valid UTF-8 assumed) and advances pos.
char32_t next_code_point(std::string_view text, size_t& pos);
void append_utf8(std::string& out, char32_t cp);

// Unicode White_Space (Rust's char::is_whitespace).
bool is_unicode_whitespace(char32_t cp);

// Unicode NFC. ASCII-only text is returned unchanged without a copy through utf8proc.
std::string nfc(std::string_view text);

}  // namespace esft::tok
