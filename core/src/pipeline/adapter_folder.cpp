#include "esft/pipeline/adapter_folder.h"

#include <ATen/ATen.h>

#include <algorithm>

#include "esft/error.h"
#include "esft/io/atomic_file.h"
#include "esft/io/json_file.h"

namespace esft::pipeline {

namespace fs = std::filesystem;

const char* adapter_format_name(AdapterFormat format) {
  return format == AdapterFormat::Esft ? "esft" : "reference";
}

AdapterFormat parse_adapter_format(const std::string& name) {
  if (name == "esft") return AdapterFormat::Esft;
  if (name == "reference") return AdapterFormat::Reference;
  throw Error("adapter format '" + name + "' is not one of: esft, reference");
}

namespace {

// The reference's loader renames keys that start with `layers` (v1 adapters) to `model.layers`; so do we.
std::string checkpoint_name(const std::string& stored) {
  return stored.rfind("layers", 0) == 0 ? "model." + stored : stored;
}

std::vector<fs::path> safetensors_files(const fs::path& dir) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().extension() == ".safetensors" && fs::is_regular_file(it->path())) out.push_back(it->path());
  }
  if (ec) throw Error("cannot list " + dir.string() + ": " + ec.message());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

AdapterFolder AdapterFolder::open(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw Error("adapter directory not found: " + dir.string());
  AdapterFolder f;
  f.dir_ = dir;
  const bool esft = fs::exists(dir / kAdapterManifestFile, ec), reference = fs::exists(dir / kReferenceExpertConfigFile, ec);
  if (!esft && !reference) {
    // A full fine-tuning's output is a whole model, not something to apply or merge: say so rather than list files.
    const bool model = fs::exists(dir / "config.json", ec) && Checkpoint::exists(dir);
    throw Error("no " + std::string(kAdapterManifestFile) + " (an esft adapter) or " + kReferenceExpertConfigFile +
                " (an ESFT reference adapter) in " + dir.string() + ": not an ESFT adapter directory" +
                (model ? " (it is a complete model, e.g. from train --method full: use it as --model)" : ""));
  }
  std::vector<fs::path> files;
  if (esft) {
    f.format_ = AdapterFormat::Esft;
    f.manifest_ = AdapterManifest::load(dir);
    if (fs::exists(dir / "expert_config.json", ec)) f.expert_config_ = ExpertConfig::load(dir / "expert_config.json");
    if (!fs::exists(dir / kAdapterWeightsFile, ec))
      throw Error("no " + std::string(kAdapterWeightsFile) + " in the adapter directory " + dir.string());
    files.push_back(dir / kAdapterWeightsFile);
  } else {
    f.format_ = AdapterFormat::Reference;
    f.expert_config_ = ExpertConfig::load(dir / kReferenceExpertConfigFile);
    files = safetensors_files(dir);
    if (files.empty()) throw Error("no *.safetensors in the adapter directory " + dir.string());
  }
  for (const auto& path : files) {
    f.files_.push_back(std::make_shared<SafetensorsFile>(path));
    for (const auto& t : f.files_.back()->tensors()) {
      const auto name = f.format_ == AdapterFormat::Reference ? checkpoint_name(t.name) : t.name;
      const auto [it, inserted] = f.where_.emplace(name, Entry{f.files_.size() - 1, t.name});
      if (!inserted) {
        throw Error("adapter tensor '" + name + "' is stored twice: as '" + it->second.stored_name + "' in " +
                    f.files_[it->second.file]->path().string() + " and as '" + t.name + "' in " + path.string());
      }
    }
  }
  if (f.where_.empty()) throw Error("the adapter " + dir.string() + " holds no tensors");
  return f;
}

std::vector<std::string> AdapterFolder::names() const {
  std::vector<std::string> out;
  for (const auto& [name, entry] : where_) out.push_back(name);
  return out;
}

const TensorInfo& AdapterFolder::info(const std::string& name) const {
  const auto& e = where_.at(name);
  return *files_[e.file]->find(e.stored_name);
}

at::Tensor AdapterFolder::load(const std::string& name) const {
  const auto& e = where_.at(name);
  return files_[e.file]->load(e.stored_name);
}

std::string AdapterFolder::path_of(const std::string& name) const { return files_[where_.at(name).file]->path().string(); }

NamedTensors AdapterFolder::tensors() const {
  NamedTensors out;
  for (const auto& [name, entry] : where_) out.emplace_back(name, files_[entry.file]->view(entry.stored_name));
  return out;
}

void AdapterFolder::check_base(const fs::path& base_dir) const {
  if (manifest_) check_adapter_base(*manifest_, dir_, base_dir);
}

void save_reference_adapter(const fs::path& dir, const NamedTensors& tensors, const ExpertConfig& config) {
  for (const auto& [name, tensor] : tensors) {
    std::string key;
    int64_t index = 0;
    if (parse_adapter_slice_name(name, key, index)) {
      throw Error("the ESFT reference's adapter format has no slices of fused tensors ('" + name +
                  "'): write this adapter in esft's format");
    }
  }
  AtomicDirectory partial(dir);
  save_safetensors(partial.path() / "model.safetensors", tensors, {{"format", "pt"}});
  write_text_atomically(partial.path() / kReferenceExpertConfigFile, config.to_json().dump() + "\n");
  partial.commit(/*replace=*/true);
}

}  // namespace esft::pipeline
