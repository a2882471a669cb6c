#include "plugin_loader.h"

#define BOOST_DLL_USE_STD_FS
#include <boost/dll/runtime_symbol_info.hpp>
#include <boost/dll/shared_library.hpp>

#include <cstdlib>
#include <map>
#include <mutex>
#include <set>
#include <sstream>

#include "esft/error.h"
#include "static_plugins.h"

#include <iostream>

// The installed plugins' folder relative to the installed executable's (from GNUInstallDirs at configure time).
#ifndef ESFT_PLUGIN_DIR_FROM_BIN
#define ESFT_PLUGIN_DIR_FROM_BIN "../lib/esft/plugins"
#endif

namespace esft::host {

namespace fs = std::filesystem;

namespace {

constexpr const char* kPrefix = "libesft_";
constexpr const char* kSuffix = ".so";
constexpr const char* kBuiltIn = "(built in)";

std::string join(const std::vector<std::string>& items, const char* sep) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) out += (i ? sep : "") + items[i];
  return out;
}

std::vector<std::string> model_types_of(const EsftPluginInfo& info) {
  std::vector<std::string> out;
  for (auto p = info.model_types; p && *p; ++p) out.emplace_back(*p);
  return out;
}

// A library loaded once per process and never unloaded.
struct LoadedLibrary {
  std::shared_ptr<boost::dll::shared_library> library;
  const EsftPluginInfo* info = nullptr;
  std::string error;  // why it could not be loaded or read
};

const LoadedLibrary& load_library(const fs::path& file) {
  static std::mutex mutex;
  static std::map<std::string, LoadedLibrary> loaded;
  std::lock_guard<std::mutex> lock(mutex);
  const auto key = fs::absolute(file).lexically_normal().string();
  auto it = loaded.find(key);
  if (it != loaded.end()) return it->second;
  LoadedLibrary entry;
  try {
    entry.library = std::make_shared<boost::dll::shared_library>(
        file, boost::dll::load_mode::rtld_local | boost::dll::load_mode::rtld_now);
    if (!entry.library->has(ESFT_PLUGIN_ENTRY_NAME)) {
      entry.error = std::string("not an esft plugin (no ") + ESFT_PLUGIN_ENTRY_NAME + " symbol)";
    } else {
      auto& entry_point = entry.library->get<const EsftPluginInfo*()>(ESFT_PLUGIN_ENTRY_NAME);
      entry.info = entry_point();
      if (!entry.info) entry.error = std::string(ESFT_PLUGIN_ENTRY_NAME) + " returned no plugin info";
    }
  } catch (const std::exception& e) {
    entry.error = std::string("cannot load: ") + e.what();
  }
  return loaded.emplace(key, std::move(entry)).first->second;
}

PluginRecord record_of(const EsftPluginInfo& info, std::string file) {
  PluginRecord r;
  r.name = info.name ? info.name : "";
  r.version = info.version ? info.version : "";
  r.model_types = model_types_of(info);
  r.file = std::move(file);
  r.abi_version = info.abi_version;
  r.fingerprint = info.build_fingerprint ? info.build_fingerprint : "";
  r.refusal = check_plugin_info(info);
  return r;
}

// The family object keeps its library alive: the aliasing shared_ptr owns both, and destroys the family first.
std::shared_ptr<ModelFamily> make_family(const EsftPluginInfo& info,
                                         std::shared_ptr<boost::dll::shared_library> library) {
  auto family = info.create_family();
  if (!family) throw Error(std::string("plugin '") + info.name + "' returned no model family");
  using Holder = std::pair<std::shared_ptr<boost::dll::shared_library>, std::shared_ptr<ModelFamily>>;
  auto holder = std::make_shared<Holder>(std::move(library), family);
  return std::shared_ptr<ModelFamily>(holder, family.get());
}

std::vector<fs::path> default_dirs(const std::optional<fs::path>& plugin_dir) {
  std::vector<fs::path> dirs;
  if (plugin_dir) dirs.push_back(*plugin_dir);
  if (const char* env = std::getenv("ESFT_PLUGIN_PATH")) {
    std::stringstream ss(env);
    std::string item;
    while (std::getline(ss, item, ':'))
      if (!item.empty()) dirs.emplace_back(item);
  }
  try {
    const fs::path bin = boost::dll::program_location().parent_path();
    dirs.push_back(bin);
    dirs.push_back((bin / ESFT_PLUGIN_DIR_FROM_BIN).lexically_normal());
  } catch (const std::exception&) {
    // No executable location (unusual platforms): the other directories still apply.
  }
  return dirs;
}

}  // namespace

std::string check_plugin_info(const EsftPluginInfo& info) {
  if (info.abi_version != ESFT_PLUGIN_ABI_VERSION) {
    return "wrong ABI version: plugin has " + std::to_string(info.abi_version) + ", esft-host supports " +
           std::to_string(ESFT_PLUGIN_ABI_VERSION);
  }
  const std::string mine = ESFT_BUILD_FINGERPRINT;
  const std::string theirs = info.build_fingerprint ? info.build_fingerprint : "";
  if (theirs != mine) return "built differently: plugin is '" + theirs + "', esft-host is '" + mine + "'";
  if (!info.name || !info.create_family) return "incomplete plugin info (no name or factory)";
  return "";
}

PluginLoader::PluginLoader(const std::optional<fs::path>& plugin_dir) : dirs_(default_dirs(plugin_dir)) {}
PluginLoader::PluginLoader(std::vector<fs::path> search_dirs) : dirs_(std::move(search_dirs)) {}

std::vector<PluginRecord> PluginLoader::discover() const {
  std::vector<PluginRecord> out;
  std::map<std::string, size_t> first;  // plugin name -> its loading record in `out`
  for (const auto* info : static_plugins()) {
    out.push_back(record_of(*info, kBuiltIn));
    first.emplace(out.back().name, out.size() - 1);
  }
  std::set<std::string> listed;  // a directory named twice in the search path is listed once
  for (const auto& dir : dirs_) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) continue;
    std::vector<fs::path> files;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      const auto name = entry.path().filename().string();
      if (name.rfind(kPrefix, 0) == 0 && name.size() > std::string(kPrefix).size() + 3 &&
          name.compare(name.size() - 3, 3, kSuffix) == 0) {
        files.push_back(entry.path());
      }
    }
    std::sort(files.begin(), files.end());
    for (const auto& file : files) {
      const auto stem = file.filename().string();
      const auto plugin_name = stem.substr(8, stem.size() - 8 - 3);
      if (!listed.insert(fs::weakly_canonical(file, ec).string()).second) continue;
      const auto& lib = load_library(file);
      PluginRecord r;
      if (!lib.info) {
        r.name = plugin_name;
        r.file = file.string();
        r.refusal = lib.error;
      } else {
        r = record_of(*lib.info, file.string());
      }
      if (auto it = first.find(plugin_name); it != first.end()) {
        r.shadowed_by = out[it->second].file;
        out[it->second].shadows.push_back(r.file);
      } else {
        first.emplace(plugin_name, out.size());
      }
      out.push_back(r);
    }
  }
  return out;
}

namespace {
void warn_shadowing(const std::string& name, const std::string& file, const std::vector<std::string>& others) {
  if (others.empty()) return;
  std::cerr << "esft-host: warning: plugin '" << name << "' is in more than one place: loading " << file << ", not "
            << join(others, ", ") << "\n";
}
}  // namespace

void PluginLoader::warn_about_shadowed(const std::string& name, const fs::path& file, size_t from) const {
  std::error_code ec;
  std::set<std::string> seen = {fs::weakly_canonical(file, ec).string()};
  std::vector<std::string> others;
  for (size_t i = from; i < dirs_.size(); ++i) {
    const auto other = dirs_[i] / (kPrefix + name + kSuffix);
    if (fs::exists(other, ec) && seen.insert(fs::weakly_canonical(other, ec).string()).second) others.push_back(other.string());
  }
  warn_shadowing(name, file.string(), others);
}

std::shared_ptr<ModelFamily> PluginLoader::load_file(const fs::path& file) const {
  const auto& lib = load_library(file);
  if (!lib.info) throw Error("plugin " + file.string() + ": " + lib.error);
  const auto refusal = check_plugin_info(*lib.info);
  if (!refusal.empty()) throw Error("refusing plugin " + file.string() + ": " + refusal);
  return make_family(*lib.info, lib.library);
}

std::shared_ptr<ModelFamily> PluginLoader::load(const std::string& name) const {
  for (const auto* info : static_plugins()) {
    if (name == info->name) return make_family(*info, nullptr);
  }
  const auto file_name = kPrefix + name + kSuffix;
  std::vector<std::string> looked;
  for (size_t i = 0; i < dirs_.size(); ++i) {
    const auto file = dirs_[i] / file_name;
    looked.push_back(dirs_[i].string());
    std::error_code ec;
    if (!fs::exists(file, ec)) continue;
    warn_about_shadowed(name, file, i + 1);
    return load_file(file);
  }
  throw Error("plugin '" + name + "' not found (looked for " + file_name + " in " +
              (looked.empty() ? std::string("no directories") : join(looked, ", ")) + ")");
}

std::shared_ptr<ModelFamily> PluginLoader::load_for_model_type(const std::string& model_type) const {
  std::vector<std::string> refused;
  for (const auto& record : discover()) {
    bool serves = false;
    for (const auto& t : record.model_types) serves = serves || t == model_type;
    if (!serves) continue;
    if (!record.refusal.empty()) {
      refused.push_back(record.file + " (" + record.refusal + ")");
      continue;
    }
    if (!record.shadowed_by.empty()) continue;  // its first copy was considered already
    if (record.file == kBuiltIn) return load(record.name);
    warn_shadowing(record.name, record.file, record.shadows);
    return load_file(record.file);
  }
  std::string message = "no plugin serves model_type '" + model_type + "'";
  if (!refused.empty()) message += "; refused: " + join(refused, "; ");
  throw Error(message + " (see `esft-host plugins`)");
}

}  // namespace esft::host
