#pragma once
// What a computation needs from the other processes of a multi-process run (data and expert parallelism): its rank
// and the world size, collective sums and broadcasts, and the all-to-all exchange of rows that expert parallelism
// sends tokens with. The core codes against this interface only; the host implements it with
// PyTorch's c10d process groups (Gloo on CPUs, NCCL on GPUs; host/distributed/), and a single process uses solo().
//
// Every collective is called by every rank in the same order with tensors of the same shapes and dtypes; a rank
// that fails or dies makes the others' next collective throw esft::Error (after the group's timeout at worst).
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <string>
#include <vector>

namespace esft::dist {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  // "gloo", "nccl" or "solo", for logs and run records.
  virtual std::string backend() const = 0;

  // Sums `tensor` (contiguous, on the group's device) over the ranks, in place. Every rank receives the same
  // values, bit for bit, so that ranks which apply the same update stay in lockstep.
  virtual void all_reduce_sum(at::Tensor& tensor) = 0;
  // Gives every rank root's `tensor` (contiguous, on the group's device), in place.
  virtual void broadcast(at::Tensor& tensor, int root) = 0;
  // Sends input_splits[r] rows (dim 0) of `input`, in rank order, to each rank r, and receives output_splits[r]
  // rows from each rank r into `output`, in rank order. Both contiguous, on the group's device; rank r's
  // input_splits[q] must be rank q's output_splits[r] (exchange the counts first when they are not known).
  virtual void all_to_all(at::Tensor& output, const at::Tensor& input, const std::vector<int64_t>& output_splits,
                          const std::vector<int64_t>& input_splits) = 0;
  // Blocks until every rank has reached it.
  virtual void barrier() = 0;
  // The device the collectives' tensors live on (the CPU for Gloo and solo(), the process's GPU for NCCL).
  virtual c10::Device device() const { return c10::Device(c10::kCPU); }

  bool is_root() const { return rank() == 0; }
  // The group of one process without a process group (solo()): callers skip their collectives. A c10d group of
  // world size 1 is not solo: it runs them, through the same code as many ranks.
  virtual bool is_solo() const { return false; }
  // Bytes this process has sent into collectives so far (each all-reduce counts its tensor's size once, each
  // all-to-all the rows it sends to other ranks): what reports quote as the communication volume.
  uint64_t reduced_bytes() const { return reduced_bytes_; }

 protected:
  uint64_t reduced_bytes_ = 0;
};

// The group of one process: collectives return their input.
Communicator& solo();

// Rank `rank`'s contiguous share [begin, end) of `n` items split as evenly as possible over `world` ranks (the
// first n % world ranks get one more).
struct Share {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
};
Share share_of(int64_t n, int rank, int world);

// Sums each tensor of `tensors` over the ranks in buckets of at most `bucket_bytes` (one flat buffer per dtype and
// device), so that many small tensors cost few collectives and the buffer stays bounded. Undefined tensors are
// skipped. Returns the bytes reduced.
uint64_t all_reduce_sum_bucketed(Communicator& comm, std::vector<at::Tensor>& tensors,
                                 int64_t bucket_bytes = 64ll << 20);

}  // namespace esft::dist
