// tokenizer.json (plain or gzipped): vocabulary, merges, added tokens, normalizer, pre-tokenizer regexes, decoder.
// A tokenizer that loads then encodes a text with special-token spellings and decodes the ids back.
#include "esft/tokenizer/tokenizer.h"
#include "fuzz_target.h"

ESFT_FUZZ_TARGET(tokenizer) {
  const auto path = esft::fuzz::write_scratch_file("tokenizer.json", data);
  esft::fuzz::expect_only_clean_errors([&] {
    const auto tokenizer = esft::tok::Tokenizer::load(path);
    const auto ids = tokenizer.encode("Hello <|im_start|>user\n wörld  12345 \xe6\x97\xa5\xe6\x9c\xac <|endoftext|>");
    tokenizer.decode(ids);
    tokenizer.decode(ids, /*skip_special_tokens=*/true);
  });
}
