#pragma once
// The order in which training rows are seen, as a pure function of (seed, position): epoch e visits the rows in a
// permutation drawn from the seed and e, and position p is row p mod n of epoch p / n. A resumed run therefore
// needs only the position to continue exactly where the interrupted one stopped.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "esft/data/batching.h"

namespace esft::train {

struct Batch {
  at::Tensor input_ids;       // [B, T] int64
  at::Tensor attention_mask;  // [B, T] int64, 1 = real token
  at::Tensor labels;          // [B, T] int64, kIgnoreIndex where no loss
  int64_t label_tokens = 0;   // positions that predict a label (labels[:, 1:] != kIgnoreIndex)
  int64_t tokens = 0;         // real tokens
};

// Rows of different lengths are right-padded to the longest (pad_id, mask 0, label kIgnoreIndex).
Batch collate(const std::vector<const data::Row*>& rows, int32_t pad_id);

class BatchStream {
 public:
  // Throws esft::Error when `rows` is empty.
  BatchStream(std::vector<data::Row> rows, uint64_t seed, int32_t pad_id);
  // The next `batch_size` rows in stream order (epochs roll over).
  Batch next(int64_t batch_size);
  // The same rows uncollated (they live as long as the stream), for a caller that takes a share of them.
  std::vector<const data::Row*> next_rows(int64_t batch_size);
  int64_t position() const { return position_; }
  void seek(int64_t position) { position_ = position; }
  int64_t epoch() const;
  size_t size() const { return rows_.size(); }

 private:
  const data::Row& at_position(int64_t p);
  std::vector<data::Row> rows_;
  uint64_t seed_;
  int32_t pad_id_;
  int64_t position_ = 0;
  int64_t order_epoch_ = -1;
  std::vector<size_t> order_;
};

// The training rows of samples: packed into seq_length windows (ESFT reference), or one row per sample (which must
// fit in seq_length).
std::vector<data::Row> make_rows(const std::vector<data::Sample>& samples, bool packing, int64_t seq_length,
                                 int32_t pad_id, double random_concat_ratio, uint64_t seed);

}  // namespace esft::train
