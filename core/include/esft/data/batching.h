#pragma once
// From samples to rows of token ids: ESFT-reference packing, or one padded sample per row; deterministic shuffling
// and a held-out split. All randomness comes from one seeded generator defined here, so the same seed gives the
// same data order on every platform and standard library.
#include <cstdint>
#include <vector>

#include "esft/data/samples.h"

namespace esft::data {

struct Row {
  std::vector<int32_t> ids;
  std::vector<int32_t> labels;
  std::vector<uint8_t> attention_mask;  // 1 = real token, 0 = padding
};

struct PackOptions {
  int64_t seq_length = 4096;
  int32_t pad_id = 0;
  // The reference drops the first token of a sample joined onto a non-empty window with this probability
  // (its `random_concat_ratio`); 0 keeps every token.
  double random_concat_ratio = 0;
  uint64_t seed = 0;
};

// The ESFT reference's packing (get_examples_from_buffer_pad): samples go into windows of seq_length tokens in
// order; a sample that does not fit in what is left of the window is cut from the left to fill it exactly, and its
// cut-off beginning is dropped; the last window is padded (pad_id, label kIgnoreIndex, mask 0). Unlike the
// reference, a last window with no tokens at all is not emitted (it would hold no label and give a NaN loss).
std::vector<Row> pack_samples(const std::vector<Sample>& samples, const PackOptions& options);

// Language-model pretraining's packing: every sample's tokens one after another, cut into windows of seq_length;
// nothing is dropped, and only the last window is padded.
std::vector<Row> stream_samples(const std::vector<Sample>& samples, int64_t seq_length, int32_t pad_id);

// Without packing: throws esft::Error naming the first sample longer than seq_length (origin and length).
void check_fits(const std::vector<Sample>& samples, int64_t seq_length);
// One row per sample, right-padded to the longest of `batch`.
std::vector<Row> pad_batch(const std::vector<const Sample*>& batch, int32_t pad_id);

// SplitMix64: small, fast, and the same everywhere.
class Random {
 public:
  explicit Random(uint64_t seed) : state_(seed) {}
  uint64_t next();
  uint64_t below(uint64_t n);  // uniform in [0, n), n > 0
  double uniform();            // [0, 1)

 private:
  uint64_t state_;
};

// Fisher-Yates with Random(seed).
void shuffle_samples(std::vector<Sample>& samples, uint64_t seed);

struct Split {
  std::vector<Sample> train, eval;
};
// eval gets round(n * eval_fraction) samples (at least 1 when the fraction is positive and n > 1), drawn by a
// seeded shuffle; both parts keep the file order. Throws esft::Error for a fraction outside [0, 1).
Split split_holdout(std::vector<Sample> samples, double eval_fraction, uint64_t seed);

}  // namespace esft::data
