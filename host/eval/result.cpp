#include "esft/io/atomic_file.h"
#include "eval_modes.h"

namespace esft::host::eval {

void write_result(const po::variables_map& vm, nlohmann::json result) {
  if (!vm.count("result")) return;
  if (vm.count("adapter")) result["adapter"] = vm["adapter"].as<std::string>();
  if (vm.count("data")) result["data"] = vm["data"].as<std::string>();
  write_text_atomically(vm["result"].as<std::string>(), result.dump(2) + "\n");
}

}  // namespace esft::host::eval
