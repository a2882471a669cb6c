#pragma once
// Errors that reach the user. The host prints `esft-host: error: <what>` and exits 1 (2 for UsageError);
// anything else escaping a command is a bug and is reported as an internal error.
#include <stdexcept>
#include <string>

namespace esft {

// Something the user gave us is wrong or missing (a file, a value, a checkpoint). The message names what and where.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The command line itself is wrong (unknown command or flag, missing required option).
class UsageError : public Error {
 public:
  using Error::Error;
};

}  // namespace esft
