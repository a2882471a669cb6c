#pragma once
// The `Split` pre-tokenizer with behaviour Isolated: every regex match is a piece and so is every stretch between
// matches. PCRE2 in UTF + UCP mode (so \s, \p{L}, (?i) are Unicode-aware, as Oniguruma in the Rust library), JIT
// compiled where the platform allows.
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace esft::tok {

class RegexSplit {
 public:
  // Throws esft::Error with PCRE2's message and offset when the pattern does not compile.
  explicit RegexSplit(const std::string& pattern);
  ~RegexSplit();
  RegexSplit(const RegexSplit&) = delete;
  RegexSplit& operator=(const RegexSplit&) = delete;

  // Calls piece(begin, end) for each piece of `text` (valid UTF-8), in order.
  void split(std::string_view text, const std::function<void(size_t, size_t)>& piece) const;
  bool jit() const { return jit_; }

 private:
  struct Code;
  std::unique_ptr<Code> code_;
  bool jit_ = false;
};

}  // namespace esft::tok
