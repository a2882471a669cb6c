#include "esft/train/batch_stream.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <numeric>

#include "esft/error.h"

namespace esft::train {

Batch collate(const std::vector<const data::Row*>& rows, int32_t pad_id) {
  size_t T = 0;
  for (const auto* r : rows) T = std::max(T, r->ids.size());
  const int64_t B = static_cast<int64_t>(rows.size());
  std::vector<int64_t> ids(B * T, pad_id), mask(B * T, 0), labels(B * T, data::kIgnoreIndex);
  Batch b;
  for (int64_t i = 0; i < B; ++i) {
    const auto& r = *rows[i];
    for (size_t t = 0; t < r.ids.size(); ++t) {
      ids[i * T + t] = r.ids[t];
      mask[i * T + t] = r.attention_mask[t];
      labels[i * T + t] = r.labels[t];
      b.tokens += r.attention_mask[t];
      if (t > 0 && r.labels[t] != data::kIgnoreIndex) ++b.label_tokens;
    }
  }
  const std::vector<int64_t> shape{B, static_cast<int64_t>(T)};
  b.input_ids = at::tensor(ids, at::kLong).view(shape);
  b.attention_mask = at::tensor(mask, at::kLong).view(shape);
  b.labels = at::tensor(labels, at::kLong).view(shape);
  return b;
}

BatchStream::BatchStream(std::vector<data::Row> rows, uint64_t seed, int32_t pad_id)
    : rows_(std::move(rows)), seed_(seed), pad_id_(pad_id) {
  if (rows_.empty()) throw Error("no training rows");
}

int64_t BatchStream::epoch() const { return position_ / static_cast<int64_t>(rows_.size()); }

const data::Row& BatchStream::at_position(int64_t p) {
  const int64_t n = static_cast<int64_t>(rows_.size());
  const int64_t e = p / n;
  if (e != order_epoch_) {
    order_.resize(rows_.size());
    std::iota(order_.begin(), order_.end(), 0);
    // A distinct stream per epoch: the seed mixed with the epoch number by the golden-ratio increment.
    data::Random random(seed_ ^ (0x9E3779B97F4A7C15ull * static_cast<uint64_t>(e + 1)));
    for (size_t i = order_.size(); i > 1; --i) std::swap(order_[i - 1], order_[random.below(i)]);
    order_epoch_ = e;
  }
  return rows_[order_[p % n]];
}

std::vector<const data::Row*> BatchStream::next_rows(int64_t batch_size) {
  std::vector<const data::Row*> rows;
  for (int64_t i = 0; i < batch_size; ++i) rows.push_back(&at_position(position_++));
  return rows;
}

Batch BatchStream::next(int64_t batch_size) { return collate(next_rows(batch_size), pad_id_); }

std::vector<data::Row> make_rows(const std::vector<data::Sample>& samples, bool packing, int64_t seq_length,
                                 int32_t pad_id, double random_concat_ratio, uint64_t seed) {
  if (packing) {
    data::PackOptions o;
    o.seq_length = seq_length;
    o.pad_id = pad_id;
    o.random_concat_ratio = random_concat_ratio;
    o.seed = seed;
    return data::pack_samples(samples, o);
  }
  data::check_fits(samples, seq_length);
  std::vector<data::Row> rows;
  for (const auto& s : samples) {
    auto one = data::pad_batch({&s}, pad_id);
    rows.push_back(std::move(one.front()));
  }
  return rows;
}

}  // namespace esft::train
