#pragma once
// Finding and loading family plugins (shared/DESIGN.md §2). A plugin is `libesft_<name>.so` exporting
// `esft_plugin_v1`; the loader refuses one whose ABI version or build fingerprint differs from the host's, and says
// both values. Loaded libraries stay loaded for the life of the process, and every family object also holds a
// reference to its library (Boost.DLL's library-holding pattern), so plugin code never outlives its library.
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "esft/model/model_family.h"
#include "esft/plugin_abi.h"

namespace esft::host {

struct PluginRecord {
  std::string name;
  std::string version;
  std::vector<std::string> model_types;
  std::string file;     // path of the library, or "(built in)" for static plugins
  uint32_t abi_version = 0;  // what the plugin reports (0 when it could not be read)
  std::string fingerprint;   // its ESFT_BUILD_FINGERPRINT: SDK version, LibTorch, C++ ABI, compiler
  std::string refusal;  // empty when usable; otherwise why the host refuses it
  std::string shadowed_by;  // another copy of the same name, earlier in the search order, loads instead (its file)
  std::vector<std::string> shadows;  // later copies of the same name that this one hides (files)
};

class PluginLoader {
 public:
  // Search order: `plugin_dir` (--plugin-dir), $ESFT_PLUGIN_PATH (colon-separated), the directory of the
  // executable (a build tree keeps its plugins there), then the install layout relative to it
  // (`<bin>/../lib/esft/plugins`). Both are found from the executable, not compiled in, so a host in a build tree
  // never loads an installed copy of its plugins, nor an installed host a build tree's.
  explicit PluginLoader(const std::optional<std::filesystem::path>& plugin_dir);
  explicit PluginLoader(std::vector<std::filesystem::path> search_dirs);

  const std::vector<std::filesystem::path>& search_dirs() const { return dirs_; }

  // Every plugin found: built-in ones, then each directory's `libesft_*.so`. The first copy of a name loads; later
  // copies are listed too, shadowed by it.
  std::vector<PluginRecord> discover() const;
  // The family of plugin `name` (its first copy in the search order; one warning line on stderr names the copies
  // it shadows); throws esft::Error when it is not found or refused.
  std::shared_ptr<ModelFamily> load(const std::string& name) const;
  // The family whose plugin declares `model_type`; throws esft::Error when none does.
  std::shared_ptr<ModelFamily> load_for_model_type(const std::string& model_type) const;

 private:
  std::shared_ptr<ModelFamily> load_file(const std::filesystem::path& file) const;
  // One warning line when directories after `from` in the search order hold other copies of plugin `name`.
  void warn_about_shadowed(const std::string& name, const std::filesystem::path& file, size_t from) const;

  std::vector<std::filesystem::path> dirs_;
};

// Checks an info struct against this host's ABI version and fingerprint; returns the refusal reason or "".
std::string check_plugin_info(const EsftPluginInfo& info);

}  // namespace esft::host
