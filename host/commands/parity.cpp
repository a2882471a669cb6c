// `esft-host parity --fixture DIR`: a family plugin against transformers. DIR is a fixture made by
// scripts/make-fixtures.py (model/, reference.safetensors, grads.safetensors); the plugin is the one --plugin names
// or the one serving the model's model_type, found in the usual search path (--plugin-dir first). Prints each
// measured figure with its tolerance, and fails when any is outside it: the check a plugin's test runs.
#include <iostream>

#include "../cli.h"
#include "esft/error.h"
#include "esft/runtime.h"
#include "esft/testing/parity.h"

namespace esft::host {

Command parity_command() {
  Command c;
  c.name = "parity";
  c.summary = "compare a family plugin with a transformers fixture (scripts/make-fixtures.py): logits, routing, "
              "losses, gradients, greedy tokens";
  c.usage = "parity --fixture DIR   (DIR: model/, reference.safetensors, grads.safetensors)";
  c.add_options = [](po::options_description& d) {
    d.add_options()("fixture", po::value<std::string>()->required(), "fixture folder made by scripts/make-fixtures.py");
  };
  c.run = [](const GlobalOptions& global, const po::variables_map& vm) {
    const std::filesystem::path fixture = vm["fixture"].as<std::string>();
    if (!std::filesystem::is_directory(fixture)) throw UsageError("--fixture: " + fixture.string() + " is not a folder");
    testing::require_fixture(fixture);
    const auto device = parse_device(global.device);
    if (global.dtype != "auto" && global.dtype != "float32") {
      throw UsageError("parity compares in float32, the fixtures' precision; --dtype " + global.dtype + " is not used");
    }
    const auto family = resolve_family(global, ModelConfig::load(fixture / "model"));
    const auto report = testing::compare_with_fixture(*family, fixture, device);
    std::cout << "parity of " << report.family << " with " << fixture.string() << " on " << device.str() << ":\n"
              << report.table();
    if (!report.passed()) throw Error("parity: " + report.family + " differs from transformers on " + fixture.string());
    std::cout << "all within tolerance\n";
    return 0;
  };
  return c;
}

}  // namespace esft::host
