#include "esft/pipeline/adapter_merge.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <limits>
#include <map>
#include <system_error>

#include "esft/error.h"
#include "esft/io/atomic_file.h"
#include "esft/io/json_file.h"
#include "esft/io/safetensors.h"
#include "esft/io/sha256.h"
#include "esft/pipeline/adapter_folder.h"

namespace esft::pipeline {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// ---------------------------------------------------------------------------------------------------------------
// Manifest fields

std::string required_string(const json& j, const char* key, const std::string& where) {
  const auto it = j.find(key);
  if (it == j.end() || !it->is_string()) throw Error(where + ": missing or non-string \"" + key + "\"");
  return it->get<std::string>();
}

std::string optional_string(const json& j, const char* key, const std::string& where) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return {};
  if (!it->is_string()) throw Error(where + ": \"" + key + "\" must be a string");
  return it->get<std::string>();
}

bool is_sha256_hex(const std::string& s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isxdigit(c); });
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// ---------------------------------------------------------------------------------------------------------------
// Messages


std::string in(const fs::path& path) { return " (" + path.string() + ")"; }

// ---------------------------------------------------------------------------------------------------------------
// The output directory

// The absolute output path without a trailing separator, so that its parent and its temporary sibling are right
// for "out/", "./out" and the like.
fs::path normalized(const fs::path& p) {
  fs::path out = fs::absolute(p).lexically_normal();
  if (!out.has_filename() && out.has_parent_path() && out != out.root_path()) out = out.parent_path();
  return out;
}

// Refuses before any work what would make the merge fail at the end or destroy data.
void check_out_dir(const fs::path& out, const fs::path& base_dir) {
  std::error_code ec;
  if (fs::exists(out, ec)) {
    if (fs::equivalent(out, base_dir, ec))
      throw Error("--out is the base model directory " + base_dir.string() + "; choose a new directory");
    if (!fs::is_directory(out, ec)) throw Error("output " + out.string() + " exists and is not a directory");
    if (!fs::is_empty(out, ec)) throw Error("output directory " + out.string() + " exists and is not empty");
  }
  const fs::path parent = out.parent_path();
  if (!fs::is_directory(parent, ec)) throw Error("output directory's parent " + parent.string() + " does not exist");
}

// ---------------------------------------------------------------------------------------------------------------
// What the adapter replaces

struct MergePlan {
  std::map<std::string, std::string> whole;                          // base key -> adapter tensor name
  std::map<std::string, std::map<int64_t, std::string>> slices;      // base key -> slice index -> adapter name
};

// gpt-oss' checkpoints store expert weights as MXFP4 pairs `X_blocks`/`X_scales`; writing a trained X back would
// need re-quantization, which we do not do (yet).
void refuse_mxfp4(const Checkpoint& base, const std::string& key, const std::string& adapter_name,
                  const fs::path& base_dir) {
  if (base.contains(key + "_blocks") || base.contains(key + "_scales"))
    throw Error("adapter tensor '" + adapter_name + "': the base checkpoint stores '" + key +
                "' MXFP4-quantized (" + key + "_blocks, " + key +
                "_scales); merging into MXFP4 checkpoints is not supported yet" + in(base_dir));
}

void check_base_has(const Checkpoint& base, const std::string& key, const std::string& adapter_name,
                    const fs::path& base_dir) {
  refuse_mxfp4(base, key, adapter_name, base_dir);
  if (base.contains(key)) return;
  const std::string what = key == adapter_name ? "'" + key + "'" : "'" + adapter_name + "' (a slice of '" + key + "')";
  throw Error("adapter tensor " + what + " is not in the base checkpoint " + base_dir.string() +
              " (was the adapter trained on another model?)");
}

// Every adapter tensor is matched to its base tensor and its shape checked, from the headers alone.
MergePlan plan_merge(const Checkpoint& base, const AdapterFolder& adapter, const fs::path& base_dir) {
  MergePlan plan;
  for (const std::string& name : adapter.names()) {
    TensorInfo t = adapter.info(name);
    t.name = name;  // the checkpoint name (a reference adapter may store it without `model.`)
    std::string key;
    int64_t index = 0;
    if (!parse_adapter_slice_name(t.name, key, index)) {
      check_base_has(base, t.name, t.name, base_dir);
      const TensorInfo& b = base.info(t.name);
      if (t.shape != b.shape)
        throw Error("adapter tensor '" + t.name + "' has shape " + shape_text(t.shape) +
                    " but the base tensor has shape " + shape_text(b.shape) + in(adapter.path_of(name)));
      plan.whole[t.name] = t.name;
      continue;
    }
    check_base_has(base, key, t.name, base_dir);
    const TensorInfo& b = base.info(key);
    if (b.shape.empty())
      throw Error("adapter tensor '" + t.name + "' slices '" + key + "', which is a scalar in the base checkpoint" +
                  in(adapter.path_of(name)));
    if (index >= b.shape[0])
      throw Error("adapter tensor '" + t.name + "': slice " + std::to_string(index) + " is out of range for '" + key +
                  "' of shape " + shape_text(b.shape) + in(adapter.path_of(name)));
    const std::vector<int64_t> slice_shape(b.shape.begin() + 1, b.shape.end());
    if (t.shape != slice_shape)
      throw Error("adapter tensor '" + t.name + "' has shape " + shape_text(t.shape) + " but a slice of '" + key +
                  "' " + shape_text(b.shape) + " has shape " + shape_text(slice_shape) + in(adapter.path_of(name)));
    plan.slices[key][index] = t.name;
  }
  for (const auto& [key, unused] : plan.slices)
    if (plan.whole.count(key))
      throw Error("adapter holds '" + key + "' both whole and as slices '" + key + "#i'" + in(adapter.dir()));
  return plan;
}

// The base tensor's dtype: a bfloat16 base gets the float32-trained values rounded, as transformers' `.to` does.
at::Tensor replacement(const AdapterFolder& adapter, const std::string& name, c10::ScalarType dtype) {
  return adapter.load(name).to(dtype);
}

at::Tensor with_slices(const Checkpoint& base, const std::string& key, const std::map<int64_t, std::string>& slices,
                       const AdapterFolder& adapter) {
  at::Tensor t = base.load(key);  // a copy: the mapping itself is read-only
  for (const auto& [index, name] : slices) t[index].copy_(replacement(adapter, name, t.scalar_type()));
  return t;
}

// ---------------------------------------------------------------------------------------------------------------
// Other files

bool is_weights_file(const std::string& name) {
  const std::string ext = ".safetensors";
  return name == "model.safetensors.index.json" ||
         (name.size() >= ext.size() && name.compare(name.size() - ext.size(), ext.size(), ext) == 0);
}

// config.json, generation_config.json, tokenizer files, chat template, README...: every regular file at the top
// level (symlinks followed, as in a Hugging Face cache snapshot), in name order.
std::vector<std::string> copy_other_files(const fs::path& base_dir, const fs::path& out) {
  std::vector<std::string> names;
  std::error_code ec;
  for (fs::directory_iterator it(base_dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    std::error_code type_ec;
    if (!is_weights_file(name) && fs::is_regular_file(it->path(), type_ec)) names.push_back(name);
  }
  if (ec) throw Error("cannot list " + base_dir.string() + ": " + ec.message());
  std::sort(names.begin(), names.end());
  for (const auto& name : names) {
    if (!fs::copy_file(base_dir / name, out / name, ec) || ec)
      throw Error("cannot copy " + (base_dir / name).string() + " to " + out.string() + ": " + ec.message());
  }
  return names;
}

void say(const MergeOptions& options, const std::string& line) {
  if (options.progress) options.progress(line);
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------------
// Manifest

AdapterManifest AdapterManifest::from_json(const json& j, const std::string& where) {
  if (!j.is_object()) throw Error(where + ": not a JSON object");
  AdapterManifest m;
  m.format = required_string(j, "format", where);
  if (m.format != kAdapterFormat)
    throw Error(where + ": format is '" + m.format + "', expected '" + kAdapterFormat + "'");
  const auto version = j.find("version");
  if (version == j.end() || !version->is_number_integer())
    throw Error(where + ": missing or non-integer \"version\"");
  if (version->get<int64_t>() != kAdapterVersion)
    throw Error(where + ": adapter version " + version->dump() + " is not supported (expected " +
                std::to_string(kAdapterVersion) + ")");
  m.version = kAdapterVersion;
  m.base_config_sha256 = lower(required_string(j, "base_config_sha256", where));
  if (!is_sha256_hex(m.base_config_sha256))
    throw Error(where + ": base_config_sha256 is not 64 hex digits: '" + m.base_config_sha256 + "'");
  m.method = optional_string(j, "method", where);
  m.family = optional_string(j, "family", where);
  m.model_type = optional_string(j, "model_type", where);
  m.base_model = optional_string(j, "base_model", where);
  m.dtype = optional_string(j, "dtype", where);
  return m;
}

AdapterManifest AdapterManifest::load(const fs::path& adapter_dir) {
  std::error_code ec;
  if (!fs::is_directory(adapter_dir, ec)) throw Error("adapter directory not found: " + adapter_dir.string());
  const fs::path path = adapter_dir / kAdapterManifestFile;
  if (!fs::exists(path, ec))
    throw Error("no " + std::string(kAdapterManifestFile) + " in " + adapter_dir.string() +
                " (not an ESFT adapter directory?)");
  return from_json(read_json_file(path), path.string());
}

void check_adapter_base(const AdapterManifest& manifest, const fs::path& adapter_dir, const fs::path& base_dir) {
  const fs::path config = base_dir / "config.json";
  std::error_code ec;
  if (!fs::exists(config, ec)) throw Error("no config.json in the base model directory " + base_dir.string());
  const std::string actual = sha256_file_hex(config);
  if (actual == manifest.base_config_sha256) return;
  const std::string recorded = manifest.base_model.empty() ? "" : " '" + manifest.base_model + "'";
  throw Error("the adapter " + adapter_dir.string() + " was trained on another base model" + recorded +
              ": its base_config_sha256 " + manifest.base_config_sha256 + " differs from " + config.string() +
              "'s " + actual);
}

// ---------------------------------------------------------------------------------------------------------------
// Names and sizes

std::string adapter_slice_name(const std::string& key, int64_t index) { return key + "#" + std::to_string(index); }

bool parse_adapter_slice_name(const std::string& name, std::string& key, int64_t& index) {
  const auto hash = name.rfind('#');
  if (hash == std::string::npos || hash == 0 || hash + 1 == name.size()) return false;
  const std::string digits = name.substr(hash + 1);
  const auto parsed = parse_index(digits);
  if (!parsed || (digits.size() > 1 && digits[0] == '0')) return false;
  key = name.substr(0, hash);
  index = *parsed;
  return true;
}

std::optional<uint64_t> parse_byte_size(std::string_view text) {
  std::size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) ++digits;
  if (digits == 0) return std::nullopt;
  uint64_t value = 0;
  for (std::size_t i = 0; i < digits; ++i)
    if (__builtin_mul_overflow(value, 10u, &value) || __builtin_add_overflow(value, uint64_t(text[i] - '0'), &value))
      return std::nullopt;

  std::string unit(text.substr(digits));
  unit = lower(unit);
  static const std::pair<const char*, uint64_t> kUnits[] = {
      {"", 1},          {"b", 1},
      {"kb", 1000ULL},  {"mb", 1000'000ULL},  {"gb", 1000'000'000ULL},  {"tb", 1000'000'000'000ULL},
      {"kib", 1ULL << 10}, {"mib", 1ULL << 20}, {"gib", 1ULL << 30}, {"tib", 1ULL << 40}};
  for (const auto& [name, scale] : kUnits) {
    if (unit != name) continue;
    uint64_t bytes = 0;
    if (__builtin_mul_overflow(value, scale, &bytes) || bytes == 0) return std::nullopt;
    return bytes;
  }
  return std::nullopt;
}

std::string format_bytes(uint64_t bytes) {
  static const char* kUnits[] = {"B", "KB", "MB", "GB", "TB"};
  double v = static_cast<double>(bytes);
  int unit = 0;
  while (v >= 1000.0 && unit < 4) v /= 1000.0, ++unit;
  char buf[32];
  if (unit == 0) std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(bytes));
  else std::snprintf(buf, sizeof buf, "%.2f %s", v, kUnits[unit]);
  return buf;
}

// ---------------------------------------------------------------------------------------------------------------
// Merge

MergeReport merge_adapter(const MergeOptions& options) {
  if (options.out_dir.empty()) throw Error("no output directory given");
  if (options.max_shard_bytes == 0) throw Error("the maximum shard size must be positive");
  std::error_code ec;
  if (!fs::is_directory(options.base_dir, ec))
    throw Error("base model directory not found: " + options.base_dir.string());
  const fs::path out = normalized(options.out_dir);
  check_out_dir(out, options.base_dir);

  const AdapterFolder adapter = AdapterFolder::open(options.adapter_dir);
  adapter.check_base(options.base_dir);
  const Checkpoint base = Checkpoint::open(options.base_dir);
  say(options, "base: " + std::to_string(base.keys().size()) + " tensors, " + format_bytes(base.total_bytes()) +
                   " in " + std::to_string(base.files().size()) + " file(s)" + in(options.base_dir));

  const MergePlan plan = plan_merge(base, adapter, options.base_dir);
  MergeReport report;
  for (const auto& [key, slices] : plan.slices) report.slices_replaced += slices.size();
  say(options, std::string("adapter (") + adapter_format_name(adapter.format()) + " format): " +
                   std::to_string(adapter.names().size()) + " tensors (" +
                   std::to_string(plan.whole.size()) + " whole, " + std::to_string(report.slices_replaced) +
                   " slices of " + std::to_string(plan.slices.size()) + " fused)" + in(options.adapter_dir));

  // Untouched tensors alias the base's mappings (no copy, no dtype change), so they are written byte-identical and
  // memory holds only what the adapter changes. `base` outlives the write below.
  NamedTensors tensors;
  for (const std::string& key : base.keys()) {
    const auto whole = plan.whole.find(key);
    const auto sliced = plan.slices.find(key);
    if (whole != plan.whole.end()) {
      tensors.emplace_back(key, replacement(adapter, whole->second, to_scalar_type(base.info(key).dtype)));
      ++report.tensors_replaced;
    } else if (sliced != plan.slices.end()) {
      tensors.emplace_back(key, with_slices(base, key, sliced->second, adapter));
      ++report.tensors_sliced;
    } else {
      tensors.emplace_back(key, base.file_of(key).view(key));
      ++report.tensors_copied;
    }
    report.bytes += base.info(key).nbytes();
  }

  AtomicDirectory partial(out);
  say(options, "writing " + format_bytes(report.bytes) + " in shards of at most " +
                   format_bytes(options.max_shard_bytes) + " to " + out.string());
  // transformers' save_pretrained marks every shard {"format": "pt"}; its loader checks that key when present.
  report.shards = save_sharded_safetensors(partial.path(), tensors, options.max_shard_bytes, {{"format", "pt"}});
  for (const auto& shard : report.shards) {
    const auto size = fs::file_size(partial.path() / shard, ec);
    say(options, "  wrote " + shard + " (" + (ec ? std::string("?") : format_bytes(size)) + ")");
  }
  report.files_copied = copy_other_files(options.base_dir, partial.path());
  for (const auto& name : report.files_copied) say(options, "  copied " + name);
  partial.commit();
  return report;
}

}  // namespace esft::pipeline
