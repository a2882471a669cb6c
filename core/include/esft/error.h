#pragma once
// Errors that reach the user. The host prints `esft-host: error: <what>` and exits 1 (2 for UsageError);
// anything else escaping a command is a bug and is reported as an internal error.
#include <stdexcept>
#include <string>
#include <string_view>

namespace esft {

// `text` as one line of valid UTF-8, safe to print on a terminal and to store in JSON: bytes that are not
// well-formed UTF-8 become `\xNN`, line breaks and tabs `\n` `\r` `\t`, and other control characters (C0, DEL, C1:
// terminal escape sequences among them) `\xNN` or `\u0085`-style escapes. Messages quote file contents (a tensor
// name, a JSON parser's "last read" bytes), and a damaged or hostile file must not garble the one error line.
std::string one_line_utf8(std::string_view text);

// Something the user gave us is wrong or missing (a file, a value, a checkpoint). The message names what and where;
// it is stored as one_line_utf8 of what the thrower wrote.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(one_line_utf8(what)) {}
  explicit Error(const char* what) : Error(std::string(what)) {}
};

// The command line itself is wrong (unknown command or flag, missing required option).
class UsageError : public Error {
 public:
  using Error::Error;
};

}  // namespace esft
