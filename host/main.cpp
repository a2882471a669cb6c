// esft-host: every error a user can cause ends as one line on stderr and a non-zero exit code (2 for usage).
#include <c10/util/Exception.h>

#include <iostream>
#include <string>

#include "cli.h"
#include "distributed/process_group.h"
#include "esft/error.h"
#include "esft/runtime.h"

namespace {

// esft::Error messages are one clean line already; a LibTorch or library message may run over several lines (its
// first says what went wrong) and quote anything.
std::string one_line(std::string text) {
  const auto end = text.find('\n');
  if (end != std::string::npos) text.resize(end);
  return esft::one_line_utf8(text);
}

int run(int argc, char** argv) {
  try {
    return esft::host::run_cli(argc, argv);
  } catch (const esft::UsageError& e) {
    std::cerr << "esft-host: error: " << e.what() << "\n";
    return 2;
  } catch (const esft::Error& e) {
    std::cerr << "esft-host: error: " << e.what() << "\n";
    return 1;
  } catch (const c10::Error& e) {
    std::cerr << "esft-host: error: " << one_line(e.what_without_backtrace()) << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "esft-host: internal error: " << one_line(e.what()) << "\n";
    return 1;
  }
}

}  // namespace

int main(int argc, char** argv) {
  esft::keep_freed_memory();
  const int code = run(argc, argv);
  // A multi-process run's group shuts down here, while CUDA still runs (NCCL's teardown among static destructors
  // aborts the process).
  esft::host::leave_process_group();
  return code;
}
