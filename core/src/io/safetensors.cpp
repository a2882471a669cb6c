#include "esft/io/safetensors.h"

#include "esft/error.h"
#include "esft/io/atomic_file.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <system_error>

namespace esft {
namespace fs = std::filesystem;
using nlohmann::json;

static_assert(sizeof(void*) == 8, "esft assumes a 64-bit host");

// ---------------------------------------------------------------------------------------------------------------
// dtypes

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::F64: return "F64";
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::I64: return "I64";
    case DType::I32: return "I32";
    case DType::I16: return "I16";
    case DType::I8: return "I8";
    case DType::U8: return "U8";
    case DType::BOOL: return "BOOL";
  }
  return "?";
}

std::size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::F64: case DType::I64: return 8;
    case DType::F32: case DType::I32: return 4;
    case DType::F16: case DType::BF16: case DType::I16: return 2;
    case DType::I8: case DType::U8: case DType::BOOL: return 1;
  }
  return 0;
}

bool parse_safetensors_dtype(const std::string& name, DType& out) {
  static const std::pair<const char*, DType> kNames[] = {
      {"F64", DType::F64}, {"F32", DType::F32}, {"F16", DType::F16}, {"BF16", DType::BF16}, {"I64", DType::I64},
      {"I32", DType::I32}, {"I16", DType::I16}, {"I8", DType::I8},   {"U8", DType::U8},     {"BOOL", DType::BOOL}};
  for (const auto& [n, d] : kNames) {
    if (name == n) {
      out = d;
      return true;
    }
  }
  return false;
}

c10::ScalarType to_scalar_type(DType dtype) {
  switch (dtype) {
    case DType::F64: return at::kDouble;
    case DType::F32: return at::kFloat;
    case DType::F16: return at::kHalf;
    case DType::BF16: return at::kBFloat16;
    case DType::I64: return at::kLong;
    case DType::I32: return at::kInt;
    case DType::I16: return at::kShort;
    case DType::I8: return at::kChar;
    case DType::U8: return at::kByte;
    case DType::BOOL: return at::kBool;
  }
  throw Error("internal: bad DType");
}

DType from_scalar_type(c10::ScalarType type) {
  switch (type) {
    case at::kDouble: return DType::F64;
    case at::kFloat: return DType::F32;
    case at::kHalf: return DType::F16;
    case at::kBFloat16: return DType::BF16;
    case at::kLong: return DType::I64;
    case at::kInt: return DType::I32;
    case at::kShort: return DType::I16;
    case at::kChar: return DType::I8;
    case at::kByte: return DType::U8;
    case at::kBool: return DType::BOOL;
    default: break;
  }
  throw Error(std::string("tensor dtype ") + c10::toString(type) + " cannot be stored in safetensors");
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// ---------------------------------------------------------------------------------------------------------------
// helpers

namespace {


std::string offsets_string(uint64_t begin, uint64_t end) {
  return "[" + std::to_string(begin) + ", " + std::to_string(end) + "]";
}

std::string in(const fs::path& path) { return " (" + path.string() + ")"; }

uint64_t read_u64_le(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

void append_u64_le(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// Parses one header entry into `info`; throws esft::Error on anything malformed.
TensorInfo parse_entry(const std::string& name, const json& entry, uint64_t data_size, const fs::path& path) {
  const std::string where = "tensor '" + name + "': ";
  if (!entry.is_object()) throw Error(where + "header entry is not a JSON object" + in(path));
  TensorInfo info;
  info.name = name;

  auto dt = entry.find("dtype");
  if (dt == entry.end() || !dt->is_string()) throw Error(where + "missing or non-string dtype" + in(path));
  if (!parse_safetensors_dtype(dt->get<std::string>(), info.dtype))
    throw Error(where + "unknown dtype '" + dt->get<std::string>() +
                "' (supported: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL)" + in(path));

  auto sh = entry.find("shape");
  if (sh == entry.end() || !sh->is_array())
    throw Error(where + "shape must be an array of non-negative integers" + in(path));
  // The element count (and so the byte count) must fit in 64 bits; check as we go.
  uint64_t numel = 1;
  bool overflow = false;
  for (const json& d : *sh) {
    if (!d.is_number_unsigned())  // nlohmann stores every non-negative integer literal as unsigned
      throw Error(where + "shape must be an array of non-negative integers, got " + sh->dump() + in(path));
    const uint64_t v = d.get<uint64_t>();
    if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      throw Error(where + "shape dimension " + std::to_string(v) + " is too large" + in(path));
    info.shape.push_back(static_cast<int64_t>(v));
    if (!overflow && __builtin_mul_overflow(numel, v, &numel)) overflow = true;
  }
  uint64_t expected = 0;
  if (overflow || __builtin_mul_overflow(numel, static_cast<uint64_t>(dtype_size(info.dtype)), &expected) ||
      numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
    throw Error(where + "shape " + shape_text(info.shape) + " is too large" + in(path));

  auto off = entry.find("data_offsets");
  if (off == entry.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
      !(*off)[1].is_number_unsigned())
    throw Error(where + "data_offsets must be [begin, end] with non-negative integers" + in(path));
  info.begin = (*off)[0].get<uint64_t>();
  info.end = (*off)[1].get<uint64_t>();
  if (info.begin > info.end)
    throw Error(where + "data_offsets " + offsets_string(info.begin, info.end) + " have begin after end" + in(path));
  if (info.end > data_size)
    throw Error(where + "data_offsets " + offsets_string(info.begin, info.end) +
                " out of range: end exceeds data size " + std::to_string(data_size) + " bytes" + in(path));
  if (info.end - info.begin != expected)
    throw Error(where + "data_offsets " + offsets_string(info.begin, info.end) + " do not match shape " +
                shape_text(info.shape) + " x " + dtype_name(info.dtype) + " = " + std::to_string(expected) +
                " bytes" + in(path));
  return info;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------------
// SafetensorsFile

SafetensorsFile::SafetensorsFile(const fs::path& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error("cannot open safetensors file " + path.string() + ": " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    throw Error("cannot stat safetensors file " + path.string() + ": " + std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error("not a regular file: " + path.string());
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    throw Error("truncated safetensors file: " + std::to_string(size) +
                " bytes is shorter than the 8-byte header length" + in(path));
  }
  void* m = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_err = errno;
  ::close(fd);
  if (m == MAP_FAILED) throw Error("cannot memory-map " + path.string() + ": " + std::strerror(map_err));
  map_ = static_cast<const unsigned char*>(m);
  map_size_ = size;

  try {
    const uint64_t header_len = read_u64_le(map_);
    if (header_len > kMaxSafetensorsHeaderBytes)
      throw Error("safetensors header length " + std::to_string(header_len) + " exceeds the limit of " +
                  std::to_string(kMaxSafetensorsHeaderBytes) + " bytes" + in(path));
    if (header_len > size - 8)
      throw Error("truncated safetensors file: header length " + std::to_string(header_len) +
                  " exceeds file size " + std::to_string(size) + in(path));
    data_start_ = 8 + header_len;
    const uint64_t data_size = size - data_start_;

    json header;
    try {
      header = json::parse(reinterpret_cast<const char*>(map_ + 8), reinterpret_cast<const char*>(map_ + 8 + header_len));
    } catch (const json::exception& e) {
      throw Error(std::string("safetensors header is not valid JSON: ") + e.what() + in(path));
    }
    if (!header.is_object()) throw Error("safetensors header is not a JSON object" + in(path));

    for (auto it = header.begin(); it != header.end(); ++it) {
      if (it.key() == "__metadata__") {
        if (!it->is_object()) throw Error("safetensors __metadata__ is not a JSON object" + in(path));
        for (auto m_it = it->begin(); m_it != it->end(); ++m_it) {
          if (!m_it->is_string())
            throw Error("safetensors __metadata__ entry '" + m_it.key() + "' is not a string" + in(path));
          metadata_[m_it.key()] = m_it->get<std::string>();
        }
        continue;
      }
      tensors_.push_back(parse_entry(it.key(), *it, data_size, path));
    }
    std::sort(tensors_.begin(), tensors_.end(),
              [](const TensorInfo& a, const TensorInfo& b) { return a.name < b.name; });

    // No two non-empty byte ranges may overlap.
    std::vector<const TensorInfo*> by_offset;
    for (const auto& t : tensors_)
      if (t.end > t.begin) by_offset.push_back(&t);
    std::sort(by_offset.begin(), by_offset.end(), [](const TensorInfo* a, const TensorInfo* b) {
      return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
    });
    for (std::size_t i = 1; i < by_offset.size(); ++i) {
      const TensorInfo* a = by_offset[i - 1];
      const TensorInfo* b = by_offset[i];
      if (b->begin < a->end)
        throw Error("tensors '" + a->name + "' " + offsets_string(a->begin, a->end) + " and '" + b->name + "' " +
                    offsets_string(b->begin, b->end) + " overlap" + in(path));
    }
  } catch (...) {
    ::munmap(const_cast<unsigned char*>(map_), map_size_);
    map_ = nullptr;
    throw;
  }
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(const_cast<unsigned char*>(map_), map_size_);
}

const TensorInfo* SafetensorsFile::find(const std::string& name) const {
  auto it = std::lower_bound(tensors_.begin(), tensors_.end(), name,
                             [](const TensorInfo& t, const std::string& n) { return t.name < n; });
  return (it != tensors_.end() && it->name == name) ? &*it : nullptr;
}

at::Tensor SafetensorsFile::load(const std::string& name, const c10::TensorOptions& options) const {
  const TensorInfo* info = find(name);
  if (!info) throw Error("tensor '" + name + "' not found in " + path_.string());
  // The data may sit at any byte offset, so copy bytes into a fresh (aligned) CPU tensor first.
  at::Tensor t = at::empty(info->shape, at::TensorOptions().dtype(to_scalar_type(info->dtype)));
  if (info->nbytes() > 0) std::memcpy(t.data_ptr(), map_ + data_start_ + info->begin, info->nbytes());
  if (options.has_dtype() || options.has_device()) {
    const c10::ScalarType dtype = options.has_dtype() ? options.dtype().toScalarType() : t.scalar_type();
    const c10::Device device = options.has_device() ? options.device() : t.device();
    t = t.to(device, dtype);
  }
  if (options.has_requires_grad() && options.requires_grad()) t.set_requires_grad(true);
  return t;
}

at::Tensor SafetensorsFile::view(const std::string& name) const {
  const TensorInfo* info = find(name);
  if (!info) throw Error("tensor '" + name + "' not found in " + path_.string());
  const unsigned char* p = map_ + data_start_ + info->begin;
  // Aliasing needs the data aligned to its element size; otherwise (rare: writers pad headers to 8 bytes) copy.
  // The mapping is read-only: writing through an aliasing view faults.
  if (reinterpret_cast<std::uintptr_t>(p) % dtype_size(info->dtype) != 0) return load(name);
  return at::from_blob(const_cast<unsigned char*>(p), info->shape,
                       at::TensorOptions().dtype(to_scalar_type(info->dtype)));
}

// ---------------------------------------------------------------------------------------------------------------
// Checkpoint

bool Checkpoint::exists(const std::filesystem::path& model_dir) {
  std::error_code ec;
  return fs::exists(model_dir / "model.safetensors.index.json", ec) || fs::exists(model_dir / "model.safetensors", ec);
}

Checkpoint Checkpoint::open(const fs::path& model_dir) {
  std::error_code ec;
  if (!fs::is_directory(model_dir, ec)) throw Error("model directory not found: " + model_dir.string());

  Checkpoint ck;
  ck.dir_ = model_dir;
  const fs::path index_path = model_dir / "model.safetensors.index.json";
  const fs::path single_path = model_dir / "model.safetensors";

  if (fs::exists(index_path, ec)) {
    ck.sharded_ = true;
    std::ifstream in_file(index_path, std::ios::binary);
    if (!in_file) throw Error("cannot read " + index_path.string() + ": " + std::strerror(errno));
    json index;
    try {
      index = json::parse(in_file);
    } catch (const json::exception& e) {
      throw Error("cannot parse " + index_path.string() + ": " + e.what());
    }
    if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
      throw Error(index_path.string() + " has no \"weight_map\" object");

    const fs::path canon_dir = fs::canonical(model_dir);
    std::map<std::string, std::string> weight_map;  // tensor -> shard file name
    std::set<std::string> shard_names;
    for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
      const std::string where = "weight_map entry '" + it.key() + "' in " + index_path.string();
      if (!it->is_string()) throw Error(where + " is not a file name string");
      const std::string file = it->get<std::string>();
      const fs::path rel(file);
      if (file.empty() || rel.is_absolute() || rel.has_root_path())
        throw Error(where + " names a file outside the model directory: '" + file + "'");
      for (const auto& part : rel)
        if (part == "..") throw Error(where + " names a file outside the model directory: '" + file + "'");
      // The folders on the way must stay inside the model directory; the shard file itself may be a symbolic link
      // anywhere (the Hugging Face cache links snapshot files to its blob store).
      const fs::path resolved = fs::weakly_canonical(canon_dir / rel.parent_path(), ec) / rel.filename();
      if (ec) throw Error(where + ": cannot resolve '" + file + "': " + ec.message());
      auto [dir_end, res_it] = std::mismatch(canon_dir.begin(), canon_dir.end(), resolved.begin(), resolved.end());
      if (dir_end != canon_dir.end() || res_it == resolved.end())
        throw Error(where + " names a file outside the model directory: '" + file + "'");
      weight_map[it.key()] = file;
      shard_names.insert(file);
    }

    std::map<std::string, std::size_t> file_index;
    for (const std::string& shard : shard_names) {
      file_index[shard] = ck.files_.size();
      ck.files_.push_back(std::make_shared<SafetensorsFile>(model_dir / shard));
      const std::size_t idx = ck.files_.size() - 1;
      for (const TensorInfo& t : ck.files_.back()->tensors()) {
        auto [pos, inserted] = ck.where_.emplace(t.name, idx);
        if (!inserted)
          throw Error("tensor '" + t.name + "' appears in two shards: " + ck.files_[pos->second]->path().string() +
                      " and " + ck.files_[idx]->path().string());
      }
    }
    for (const auto& [name, shard] : weight_map) {
      const SafetensorsFile& f = *ck.files_[file_index.at(shard)];
      if (!f.find(name))
        throw Error("tensor '" + name + "' listed in model.safetensors.index.json is missing from " +
                    f.path().string());
    }
  } else if (fs::exists(single_path, ec)) {
    ck.files_.push_back(std::make_shared<SafetensorsFile>(single_path));
    for (const TensorInfo& t : ck.files_.back()->tensors()) ck.where_.emplace(t.name, 0);
  } else {
    throw Error("no safetensors weights in " + model_dir.string() +
                " (expected model.safetensors or model.safetensors.index.json)");
  }
  return ck;
}

std::vector<std::string> Checkpoint::keys() const {
  std::vector<std::string> out;
  out.reserve(where_.size());
  for (const auto& kv : where_) out.push_back(kv.first);
  return out;
}

const SafetensorsFile& Checkpoint::file_of(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) throw Error("tensor '" + name + "' not found in checkpoint " + dir_.string());
  return *files_[it->second];
}

const TensorInfo& Checkpoint::info(const std::string& name) const { return *file_of(name).find(name); }

at::Tensor Checkpoint::load(const std::string& name, const c10::TensorOptions& options) const {
  return file_of(name).load(name, options);
}

uint64_t Checkpoint::total_bytes() const {
  uint64_t total = 0;
  for (const auto& [name, idx] : where_) total += files_[idx]->find(name)->nbytes();
  return total;
}

// ---------------------------------------------------------------------------------------------------------------
// Writers

namespace {

struct Prepared {
  std::string name;
  DType dtype;
  at::Tensor data;  // contiguous, CPU
};

// Name-sorted, duplicate-free, contiguous CPU copies (or the tensors themselves when already so).
std::vector<Prepared> prepare(const NamedTensors& tensors, const fs::path& where) {
  std::vector<Prepared> out;
  out.reserve(tensors.size());
  for (const auto& [name, t] : tensors) {
    if (name == "__metadata__") throw Error("tensor name '__metadata__' is reserved (" + where.string() + ")");
    if (!t.defined()) throw Error("tensor '" + name + "' is undefined (" + where.string() + ")");
    if (t.layout() != at::kStrided)
      throw Error("tensor '" + name + "' is not a dense tensor (" + where.string() + ")");
    DType dtype;
    try {
      dtype = from_scalar_type(t.scalar_type());
    } catch (const Error& e) {
      throw Error("tensor '" + name + "': " + e.what() + " (" + where.string() + ")");
    }
    out.push_back({name, dtype, t.detach().to(at::kCPU).contiguous()});
  }
  std::sort(out.begin(), out.end(), [](const Prepared& a, const Prepared& b) { return a.name < b.name; });
  for (std::size_t i = 1; i < out.size(); ++i)
    if (out[i].name == out[i - 1].name)
      throw Error("duplicate tensor name '" + out[i].name + "' (" + where.string() + ")");
  return out;
}

uint64_t nbytes_of(const Prepared& p) { return static_cast<uint64_t>(p.data.numel()) * dtype_size(p.dtype); }

void write_file(const fs::path& path, const std::vector<const Prepared*>& tensors,
                const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const Prepared* p : tensors) {
    const uint64_t n = nbytes_of(*p);
    header[p->name] = {{"dtype", dtype_name(p->dtype)},
                       {"shape", p->data.sizes().vec()},
                       {"data_offsets", {offset, offset + n}}};
    offset += n;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string prefix;
  append_u64_le(prefix, text.size());

  AtomicFile file(path);
  std::ofstream& out = file.stream();
  out.write(prefix.data(), static_cast<std::streamsize>(prefix.size()));
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  for (const Prepared* p : tensors) {
    const uint64_t n = nbytes_of(*p);
    if (n) out.write(static_cast<const char*>(p->data.data_ptr()), static_cast<std::streamsize>(n));
  }
  file.commit();
}

}  // namespace

at::Tensor cpu_copy(const at::Tensor& t) { return t.detach().to(at::kCPU).clone(at::MemoryFormat::Contiguous); }

void save_safetensors(const fs::path& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata) {
  const std::vector<Prepared> prepared = prepare(tensors, path);
  std::vector<const Prepared*> ptrs;
  for (const auto& p : prepared) ptrs.push_back(&p);
  write_file(path, ptrs, metadata);
}

std::vector<std::string> save_sharded_safetensors(const fs::path& dir, const NamedTensors& tensors,
                                                  uint64_t max_shard_bytes,
                                                  const std::map<std::string, std::string>& metadata) {
  const std::vector<Prepared> prepared = prepare(tensors, dir);

  // Greedy packing in name order; a tensor larger than the limit gets a shard of its own.
  std::vector<std::vector<const Prepared*>> shards(1);
  uint64_t current = 0, total = 0;
  for (const auto& p : prepared) {
    const uint64_t n = nbytes_of(p);
    if (!shards.back().empty() && current + n > max_shard_bytes) {
      shards.emplace_back();
      current = 0;
    }
    shards.back().push_back(&p);
    current += n;
    total += n;
  }

  const std::size_t count = shards.size();
  std::vector<std::string> names;
  json weight_map = json::object();
  for (std::size_t i = 0; i < count; ++i) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", i + 1, count);
    names.emplace_back(buf);
    for (const Prepared* p : shards[i]) weight_map[p->name] = names.back();
  }
  for (std::size_t i = 0; i < count; ++i) write_file(dir / names[i], shards[i], metadata);

  json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
  write_text_atomically(dir / "model.safetensors.index.json", index.dump(2) + "\n");
  return names;
}

std::string shape_text(at::IntArrayRef shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace esft
