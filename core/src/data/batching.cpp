#include "esft/data/batching.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "esft/error.h"

namespace esft::data {

uint64_t Random::next() {
  uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t Random::below(uint64_t n) {
  // Rejection keeps every value equally likely.
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t x;
  do x = next();
  while (x >= limit);
  return x % n;
}

double Random::uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

std::vector<Row> pack_samples(const std::vector<Sample>& samples, const PackOptions& options) {
  const auto L = static_cast<size_t>(options.seq_length);
  if (options.seq_length <= 0) throw Error("seq_length must be positive");
  Random random(options.seed);
  std::vector<Row> rows;
  Row window;
  for (const auto& s : samples) {
    size_t begin = 0;
    const size_t room = L - window.ids.size();
    if (s.ids.size() > room) begin = s.ids.size() - room;  // keep the last `room` tokens
    if (!window.ids.empty() && options.random_concat_ratio > 0 && random.uniform() < options.random_concat_ratio) {
      ++begin;
    }
    if (begin < s.ids.size()) {
      window.ids.insert(window.ids.end(), s.ids.begin() + begin, s.ids.end());
      window.labels.insert(window.labels.end(), s.labels.begin() + begin, s.labels.end());
    }
    if (window.ids.size() >= L) {
      window.attention_mask.assign(L, 1);
      rows.push_back(std::move(window));
      window = Row();
    }
  }
  if (!window.ids.empty()) {
    const size_t real = window.ids.size();
    window.ids.resize(L, options.pad_id);
    window.labels.resize(L, kIgnoreIndex);
    window.attention_mask.assign(L, 0);
    std::fill(window.attention_mask.begin(), window.attention_mask.begin() + static_cast<std::ptrdiff_t>(real), 1);
    rows.push_back(std::move(window));
  }
  return rows;
}

std::vector<Row> stream_samples(const std::vector<Sample>& samples, int64_t seq_length, int32_t pad_id) {
  if (seq_length <= 0) throw Error("seq_length must be positive");
  const auto L = static_cast<size_t>(seq_length);
  std::vector<Row> rows;
  Row window;
  auto close = [&] {
    const size_t real = window.ids.size();
    window.ids.resize(L, pad_id);
    window.labels.resize(L, kIgnoreIndex);
    window.attention_mask.assign(L, 0);
    std::fill(window.attention_mask.begin(), window.attention_mask.begin() + static_cast<std::ptrdiff_t>(real), 1);
    rows.push_back(std::move(window));
    window = Row();
  };
  for (const auto& s : samples) {
    for (size_t i = 0; i < s.ids.size(); ++i) {
      window.ids.push_back(s.ids[i]);
      window.labels.push_back(s.labels[i]);
      if (window.ids.size() == L) close();
    }
  }
  if (!window.ids.empty()) close();
  return rows;
}

void check_fits(const std::vector<Sample>& samples, int64_t seq_length) {
  for (const auto& s : samples) {
    if (static_cast<int64_t>(s.ids.size()) > seq_length) {
      throw Error(s.origin + ": the sample has " + std::to_string(s.ids.size()) + " tokens, more than seq_length " +
                  std::to_string(seq_length) + " (turn packing on, raise seq_length, or shorten it)");
    }
  }
}

std::vector<Row> pad_batch(const std::vector<const Sample*>& batch, int32_t pad_id) {
  size_t longest = 0;
  for (const auto* s : batch) longest = std::max(longest, s->ids.size());
  std::vector<Row> rows;
  for (const auto* s : batch) {
    Row r;
    r.ids = s->ids;
    r.labels = s->labels;
    r.attention_mask.assign(s->ids.size(), 1);
    r.ids.resize(longest, pad_id);
    r.labels.resize(longest, kIgnoreIndex);
    r.attention_mask.resize(longest, 0);
    rows.push_back(std::move(r));
  }
  return rows;
}

void shuffle_samples(std::vector<Sample>& samples, uint64_t seed) {
  Random random(seed);
  for (size_t i = samples.size(); i > 1; --i) std::swap(samples[i - 1], samples[random.below(i)]);
}

Split split_holdout(std::vector<Sample> samples, double eval_fraction, uint64_t seed) {
  if (!(eval_fraction >= 0 && eval_fraction < 1)) throw Error("the eval fraction must be in [0, 1)");
  const size_t n = samples.size();
  size_t n_eval = static_cast<size_t>(std::llround(static_cast<double>(n) * eval_fraction));
  if (eval_fraction > 0 && n > 1) n_eval = std::max<size_t>(n_eval, 1);
  n_eval = std::min(n_eval, n > 0 ? n - 1 : 0);
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  Random random(seed);
  for (size_t i = n; i > 1; --i) std::swap(order[i - 1], order[random.below(i)]);
  std::vector<bool> is_eval(n, false);
  for (size_t i = 0; i < n_eval; ++i) is_eval[order[i]] = true;
  Split out;
  for (size_t i = 0; i < n; ++i) (is_eval[i] ? out.eval : out.train).push_back(std::move(samples[i]));
  return out;
}

}  // namespace esft::data
