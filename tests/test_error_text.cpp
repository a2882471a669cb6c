// Error messages are one line of valid UTF-8 whatever the input quotes (shared/DESIGN.md §6): raw bytes of a
// damaged file become \xNN, line breaks and control characters become escapes.
#include "doctest_torch.h"

#include <string>

#include "esft/error.h"
#include "esft/io/safetensors.h"
#include "esft/tokenizer/utf8.h"
#include "test_support.h"

using test_support::craft_safetensors;
using test_support::error_of;
using test_support::TempDir;
using test_support::write_bytes;

TEST_CASE("error text: invalid UTF-8, line breaks and control characters are escaped, valid text is kept") {
  CHECK(esft::one_line_utf8("plain text") == "plain text");
  CHECK(esft::one_line_utf8("caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x98\x80") == "caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x98\x80");
  CHECK(esft::one_line_utf8("a\nb\r\tc") == "a\\nb\\r\\tc");
  CHECK(esft::one_line_utf8(std::string("nul\0bell\x07" "esc\x1B[31m", 17)) == "nul\\x00bell\\x07esc\\x1B[31m");
  CHECK(esft::one_line_utf8("\xFF\xFE lone \x80 cut \xE6\x97") == "\\xFF\\xFE lone \\x80 cut \\xE6\\x97");
  CHECK(esft::one_line_utf8("overlong \xC0\xAF surrogate \xED\xA0\x80") ==
        "overlong \\xC0\\xAF surrogate \\xED\\xA0\\x80");
  CHECK(esft::one_line_utf8("c1 \xC2\x9B" "31m del \x7F") == "c1 \\u009B31m del \\x7F");
  CHECK(std::string(esft::Error("line one\nline two \xFF").what()) == "line one\\nline two \\xFF");
}

TEST_CASE("error text: a safetensors header with raw bytes gives one valid UTF-8 line naming the file") {
  TempDir tmp;
  const auto path = tmp / "bad.safetensors";
  SUBCASE("a tensor name that is not UTF-8, where the JSON parser stops") {
    write_bytes(path, craft_safetensors("{\"w\xFF\xFE\n\": {\"dtype\": \"F32\"}}", ""));
  }
  SUBCASE("a header of binary garbage") {
    write_bytes(path, craft_safetensors(std::string("\x7B\x0A\x80\x81\xC3\x28\x1B\x00\x22", 9), ""));
  }
  SUBCASE("a dtype that is valid JSON but quotes control characters") {
    write_bytes(path, craft_safetensors(R"({"a": {"dtype": "F\u001b[2J\n32", "shape": [1], "data_offsets": [0, 4]}})",
                                        std::string(4, '\0')));
  }
  const std::string message = error_of([&] { esft::SafetensorsFile file(path); });
  CHECK(esft::tok::is_valid_utf8(message));
  CHECK(message.find_first_of("\n\r\x1B") == std::string::npos);
  CHECK(message.find(path.string()) != std::string::npos);
}
