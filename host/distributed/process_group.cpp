#include "distributed/process_group.h"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef ESFT_WITH_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <cstdlib>
#include <iostream>
#include <memory>

#include "esft/error.h"
#include "esft/runtime.h"

namespace esft::host {

namespace {

// A c10d failure as one line: c10::Error carries a C++ backtrace in what(); Gloo's own errors are plain exceptions.
std::string failure_text(const std::exception& e) {
  if (const auto* c10_error = dynamic_cast<const c10::Error*>(&e)) return c10_error->what_without_backtrace();
  return e.what();
}

std::string first_line(std::string text) {
  const auto end = text.find('\n');
  if (end != std::string::npos) text.resize(end);
  return text;
}

class C10dCommunicator final : public dist::Communicator {
 public:
  C10dCommunicator(const DistributedEnv& env, const c10::Device& device, std::chrono::seconds timeout)
      : rank_(env.rank), world_(env.world_size), device_(device) {
    const std::string where = env.master_addr + ":" + std::to_string(env.master_port);
    try {
      c10d::TCPStoreOptions options;
      options.port = static_cast<uint16_t>(env.master_port);
      options.isServer = env.rank == 0 && !env.agent_store;
      options.numWorkers = env.world_size;
      options.waitWorkers = true;
      options.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(timeout);
      auto tcp = c10::make_intrusive<c10d::TCPStore>(env.master_addr, options);
      store_ = c10::make_intrusive<c10d::PrefixStore>("esft", tcp);
    } catch (const std::exception& e) {
      throw Error("rank " + std::to_string(env.rank) + " of " + std::to_string(env.world_size) +
                  ": rendezvous at " + where + " failed within " + std::to_string(timeout.count()) + " s (" +
                  first_line(failure_text(e)) + ")");
    }
    try {
#ifdef ESFT_WITH_NCCL
      if (device.is_cuda()) {
        auto options = c10d::ProcessGroupNCCL::Options::create();
        options->timeout = std::chrono::duration_cast<std::chrono::milliseconds>(timeout);
        group_ = c10::make_intrusive<c10d::ProcessGroupNCCL>(store_, rank_, world_, options);
        backend_ = "nccl";
        return;
      }
#endif
      if (device.is_cuda()) {
        throw Error("this build has no NCCL: a multi-process run on a GPU needs esft built with CUDA");
      }
      auto options = c10d::ProcessGroupGloo::Options::create(std::chrono::duration_cast<std::chrono::milliseconds>(timeout));
      options->devices.push_back(gloo_device(env.master_addr));
      group_ = c10::make_intrusive<c10d::ProcessGroupGloo>(store_, rank_, world_, options);
      backend_ = "gloo";
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      throw Error("rank " + std::to_string(rank_) + ": cannot form the process group (" + first_line(failure_text(e)) + ")");
    }
  }

  ~C10dCommunicator() override {
    try {
      if (group_) group_->shutdown();
    } catch (const std::exception&) {
      // The process is ending either way; a failed teardown must not turn its exit code into an abort.
    }
  }

  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  std::string backend() const override { return backend_; }

  void all_reduce_sum(at::Tensor& tensor) override {
    std::vector<at::Tensor> tensors{tensor};
    c10d::AllreduceOptions options;
    options.reduceOp = c10d::ReduceOp::SUM;
    wait("all-reduce", [&] { return group_->allreduce(tensors, options); });
    reduced_bytes_ += static_cast<uint64_t>(tensor.numel() * tensor.element_size());
  }

  void broadcast(at::Tensor& tensor, int root) override {
    std::vector<at::Tensor> tensors{tensor};
    c10d::BroadcastOptions options;
    options.rootRank = root;
    wait("broadcast", [&] { return group_->broadcast(tensors, options); });
  }

  void all_to_all(at::Tensor& output, const at::Tensor& input, const std::vector<int64_t>& output_splits,
                  const std::vector<int64_t>& input_splits) override {
    auto out = output;  // alltoall_base takes its tensors by non-const reference
    auto in = input;
    std::vector<int64_t> output_sizes = output_splits, input_sizes = input_splits;
    c10d::AllToAllOptions options;
    wait("all-to-all", [&] { return group_->alltoall_base(out, in, output_sizes, input_sizes, options); });
    // The rows that left this process (those it keeps for itself travel no wire).
    const int64_t row_bytes = input.size(0) > 0 ? input.numel() / input.size(0) * input.element_size() : 0;
    for (size_t r = 0; r < input_splits.size(); ++r)
      if (static_cast<int>(r) != rank_) reduced_bytes_ += static_cast<uint64_t>(input_splits[r] * row_bytes);
  }

  void barrier() override {
    wait("barrier", [&] { return group_->barrier(); });
  }

  c10::Device device() const override { return device_; }

 private:
  // Gloo's transport: the interface GLOO_SOCKET_IFNAME names (as torch.distributed reads it), loopback for a
  // run on this machine alone, else the address this host's name resolves to.
  static std::shared_ptr<::gloo::transport::Device> gloo_device(const std::string& master_addr) {
    if (const char* interface = std::getenv("GLOO_SOCKET_IFNAME"); interface && *interface) {
      return c10d::ProcessGroupGloo::createDeviceForInterface(interface);
    }
    if (master_addr == "127.0.0.1" || master_addr == "localhost" || master_addr == "::1") {
      return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
    }
    return c10d::ProcessGroupGloo::createDefaultDevice();
  }

  template <typename Start>
  void wait(const char* what, Start start) {
    try {
      auto work = start();
      work->wait();
    } catch (const std::exception& e) {
      throw Error("rank " + std::to_string(rank_) + " of " + std::to_string(world_) + ": " + what +
                  " failed; another rank has failed or stopped (" + first_line(failure_text(e)) + ")");
    }
  }

  int rank_, world_;
  c10::Device device_;
  std::string backend_;
  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<c10d::Backend> group_;
};

std::unique_ptr<dist::Communicator>& joined_group() {
  static std::unique_ptr<dist::Communicator> group;
  return group;
}

}  // namespace

std::unique_ptr<dist::Communicator> make_process_group(const DistributedEnv& env, const c10::Device& device,
                                                       std::chrono::seconds timeout) {
  return std::make_unique<C10dCommunicator>(env, device, timeout);
}

void leave_process_group() { joined_group().reset(); }

dist::Communicator* expert_group(dist::Communicator& comm, bool expert_parallel) {
  if (!expert_parallel) return nullptr;
  if (comm.is_solo()) {
    throw UsageError("--expert-parallel spreads the experts over the processes of a multi-process run (start it "
                     "with torchrun, srun or esft-host launch); this is one process");
  }
  return &comm;
}

dist::Communicator& join_process_group(GlobalOptions& global) {
  auto& group = joined_group();
  const auto env = read_distributed_env();
  if (!env) return dist::solo();
  if (global.device.find(',') != std::string::npos) {
    throw UsageError("--device " + global.device + ": a multi-process run has one device per process; a list of "
                     "devices (the layers spread over them) is for a run of one process");
  }
  if ((global.device == "auto" || global.device == "cuda") && at::hasCUDA()) {
    global.device = "cuda:" + std::to_string(env->local_rank);
  }
  if (!group) {
    const auto device = parse_device(global.device);
    group = make_process_group(*env, device, std::chrono::seconds(global.dist_timeout_s));
    if (env->rank == 0) {
      std::cerr << "esft-host: " << env->world_size << " processes (" << env->source << ", " << group->backend()
                << ", rendezvous at " << env->master_addr << ":" << env->master_port << ")" << std::endl;
    }
  }
  return *group;
}

}  // namespace esft::host
