// `esft-host plugins`: every plugin found in the search path, usable or refused.
#include <iomanip>
#include <iostream>

#include "../cli.h"
#include "../plugin_loader.h"

namespace esft::host {

Command plugins_command() {
  Command c;
  c.name = "plugins";
  c.summary = "list the family plugins found, with name, version, model types and file";
  c.usage = "plugins [--verbose]";
  c.add_options = [](po::options_description& d) {
    d.add_options()("verbose", po::bool_switch(), "also print each plugin's ABI version and build fingerprint (SDK "
                                                  "version, LibTorch, C++ ABI, compiler) next to esft-host's own");
  };
  c.run = [](const GlobalOptions& global, const po::variables_map& vm) {
    PluginLoader loader(global.plugin_dir);
    const auto records = loader.discover();
    const bool verbose = vm["verbose"].as<bool>();
    if (verbose) {
      std::cout << "esft-host accepts plugin ABI " << ESFT_PLUGIN_ABI_VERSION << ", fingerprint '"
                << ESFT_BUILD_FINGERPRINT << "'\n";
    }
    std::cout << std::left << std::setw(16) << "name" << std::setw(10) << "version" << std::setw(24) << "model types"
              << "file\n";
    for (const auto& r : records) {
      std::string types;
      for (const auto& t : r.model_types) types += (types.empty() ? "" : ",") + t;
      std::cout << std::setw(16) << r.name << std::setw(10) << (r.version.empty() ? "-" : r.version) << std::setw(24)
                << (types.empty() ? "-" : types) << r.file;
      if (!r.refusal.empty()) std::cout << "  [refused: " << r.refusal << "]";
      if (!r.shadowed_by.empty()) std::cout << "  [shadowed by " << r.shadowed_by << "]";
      if (!r.shadows.empty()) std::cout << "  [loads; shadows " << r.shadows.size() << " other cop" << (r.shadows.size() > 1 ? "ies" : "y") << "]";
      std::cout << "\n";
      if (verbose) {
        std::cout << "    abi " << (r.abi_version ? std::to_string(r.abi_version) : "-") << ", fingerprint '"
                  << (r.fingerprint.empty() ? "-" : r.fingerprint) << "'\n";
      }
    }
    if (records.empty()) {
      std::cout << "(no plugins found; searched:";
      for (const auto& d : loader.search_dirs()) std::cout << " " << d.string();
      std::cout << ")\n";
    }
    return 0;
  };
  return c;
}

}  // namespace esft::host
