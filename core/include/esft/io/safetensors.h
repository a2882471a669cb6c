#pragma once
// The safetensors format (https://huggingface.co/docs/safetensors): an 8-byte little-endian header length, a JSON
// header `{name: {dtype, shape, data_offsets}, "__metadata__": {str: str}}`, then the raw little-endian data.
// Files are memory-mapped; a tensor is copied out one at a time onto any device and dtype. Every size and offset is
// checked before it is used, so a damaged or hostile file ends in esft::Error, never in a wild read.
#include <ATen/core/Tensor.h>
#include <c10/core/TensorOptions.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace esft {

enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL };

const char* dtype_name(DType dtype);           // "F32", ...
std::size_t dtype_size(DType dtype);           // bytes per element
bool parse_safetensors_dtype(const std::string& name, DType& out);
c10::ScalarType to_scalar_type(DType dtype);
DType from_scalar_type(c10::ScalarType type);  // throws esft::Error for types safetensors cannot hold

struct TensorInfo {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets inside the data section
  uint64_t end = 0;
  int64_t numel() const;
  uint64_t nbytes() const { return end - begin; }
};

// Largest header we accept; the reference implementation uses the same bound.
constexpr uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;

// "[2,16,384]": a tensor shape in messages.
std::string shape_text(at::IntArrayRef shape);

// One memory-mapped .safetensors file.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::filesystem::path& path);  // maps and validates; throws esft::Error
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::filesystem::path& path() const { return path_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }  // sorted by name
  const TensorInfo* find(const std::string& name) const;              // nullptr when absent
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // Copies one tensor out of the mapping. Options without a dtype or device keep the stored dtype / CPU.
  at::Tensor load(const std::string& name, const c10::TensorOptions& options = {}) const;
  // A CPU tensor that aliases the mapping (read-only use, valid while this file is open).
  at::Tensor view(const std::string& name) const;

 private:
  std::filesystem::path path_;
  const unsigned char* map_ = nullptr;
  std::size_t map_size_ = 0;
  uint64_t data_start_ = 0;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

// A model directory's weights: `model.safetensors`, or shards listed by `model.safetensors.index.json`.
class Checkpoint {
 public:
  static Checkpoint open(const std::filesystem::path& model_dir);  // throws esft::Error
  // Whether the directory has weights to open (either file), e.g. not a config-only folder.
  static bool exists(const std::filesystem::path& model_dir);

  std::vector<std::string> keys() const;  // sorted
  bool contains(const std::string& name) const { return where_.count(name) != 0; }
  const TensorInfo& info(const std::string& name) const;  // throws esft::Error naming the missing tensor
  at::Tensor load(const std::string& name, const c10::TensorOptions& options = {}) const;
  const SafetensorsFile& file_of(const std::string& name) const;
  const std::vector<std::shared_ptr<SafetensorsFile>>& files() const { return files_; }
  uint64_t total_bytes() const;  // sum of tensor data sizes
  bool sharded() const { return sharded_; }

 private:
  std::filesystem::path dir_;  // as given to open(), for messages
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
  std::map<std::string, std::size_t> where_;  // tensor name -> index into files_
  bool sharded_ = false;
};

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

// A tensor's values as a contiguous CPU copy outside autograd: what to save while the source keeps training.
at::Tensor cpu_copy(const at::Tensor& t);

// Writes one file atomically (a temporary name in the same directory, then rename). Tensors are written in name
// order, contiguous, little-endian; the header is padded with spaces to a multiple of 8 bytes.
void save_safetensors(const std::filesystem::path& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// Writes `model-0000i-of-0000n.safetensors` shards of at most `max_shard_bytes` each (a larger tensor gets a shard
// of its own) plus `model.safetensors.index.json`, every file atomically. Returns the shard file names.
std::vector<std::string> save_sharded_safetensors(const std::filesystem::path& dir, const NamedTensors& tensors,
                                                  uint64_t max_shard_bytes,
                                                  const std::map<std::string, std::string>& metadata = {});

}  // namespace esft
