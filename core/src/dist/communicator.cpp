#include "esft/dist/communicator.h"

#include <ATen/ATen.h>

#include <map>
#include <tuple>

namespace esft::dist {

namespace {

class Solo final : public Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  std::string backend() const override { return "solo"; }
  bool is_solo() const override { return true; }
  void all_reduce_sum(at::Tensor&) override {}
  void broadcast(at::Tensor&, int) override {}
  void all_to_all(at::Tensor& output, const at::Tensor& input, const std::vector<int64_t>&,
                  const std::vector<int64_t>&) override {
    if (!output.is_same(input)) output.copy_(input);
  }
  void barrier() override {}
};

}  // namespace

Communicator& solo() {
  static Solo instance;
  return instance;
}

Share share_of(int64_t n, int rank, int world) {
  const int64_t base = n / world, extra = n % world;
  Share s;
  s.begin = rank * base + std::min<int64_t>(rank, extra);
  s.end = s.begin + base + (rank < extra ? 1 : 0);
  return s;
}

uint64_t all_reduce_sum_bucketed(Communicator& comm, std::vector<at::Tensor>& tensors, int64_t bucket_bytes) {
  if (comm.is_solo()) return 0;
  at::NoGradGuard no_grad;
  // Tensors grouped by (dtype, device) keep their order, so every rank forms the same buckets.
  std::map<std::tuple<int, int, int>, std::vector<at::Tensor*>> groups;
  std::vector<std::tuple<int, int, int>> order;
  for (auto& t : tensors) {
    if (!t.defined()) continue;
    const auto key = std::make_tuple(static_cast<int>(t.scalar_type()), static_cast<int>(t.device().type()),
                                     static_cast<int>(t.device().index()));
    if (!groups.count(key)) order.push_back(key);
    groups[key].push_back(&t);
  }
  uint64_t bytes = 0;
  for (const auto& key : order) {
    auto& members = groups[key];
    size_t i = 0;
    while (i < members.size()) {
      // One bucket: tensors until the next would pass bucket_bytes (a single bigger tensor is a bucket alone).
      std::vector<at::Tensor*> bucket;
      int64_t size = 0;
      while (i < members.size()) {
        const int64_t b = members[i]->numel() * members[i]->element_size();
        if (!bucket.empty() && size + b > bucket_bytes) break;
        bucket.push_back(members[i++]);
        size += b;
      }
      // A lone contiguous tensor is reduced in place; several go through one flat buffer and back.
      const bool in_place = bucket.size() == 1 && bucket.front()->is_contiguous();
      std::vector<at::Tensor> flat;
      if (!in_place)
        for (auto* t : bucket) flat.push_back(t->reshape({-1}));
      auto buffer = in_place ? *bucket.front() : at::cat(flat);
      comm.all_reduce_sum(buffer);
      if (!in_place) {
        int64_t offset = 0;
        for (auto* t : bucket) {
          const int64_t n = t->numel();
          t->copy_(buffer.narrow(0, offset, n).view(t->sizes()));
          offset += n;
        }
      }
      bytes += static_cast<uint64_t>(size);
    }
  }
  return bytes;
}

}  // namespace esft::dist
