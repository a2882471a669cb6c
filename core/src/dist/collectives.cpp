#include "esft/dist/collectives.h"

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <nlohmann/json.hpp>
#include <cstring>
#include <numeric>
#include <set>

#include "esft/error.h"

namespace esft::dist {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

int64_t total(const std::vector<int64_t>& v) { return std::accumulate(v.begin(), v.end(), int64_t{0}); }

at::Tensor all_to_all_rows(Communicator& comm, const at::Tensor& rows, const std::vector<int64_t>& send,
                           const std::vector<int64_t>& recv) {
  auto shape = rows.sizes().vec();
  shape[0] = total(recv);
  auto out = at::empty(shape, rows.options());
  comm.all_to_all(out, rows.contiguous(), recv, send);
  return out;
}

class ExchangeRows : public torch::autograd::Function<ExchangeRows> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& rows, Communicator* comm,
                            const std::vector<int64_t>& send, const std::vector<int64_t>& recv) {
    ctx->saved_data["comm"] = reinterpret_cast<int64_t>(comm);
    ctx->saved_data["send"] = c10::IValue(send);
    ctx->saved_data["recv"] = c10::IValue(recv);
    return all_to_all_rows(*comm, rows, send, recv);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto* comm = reinterpret_cast<Communicator*>(ctx->saved_data["comm"].toInt());
    // The way back: what this rank received from rank r returns to it.
    return {all_to_all_rows(*comm, grads[0], ctx->saved_data["recv"].toIntVector(),
                            ctx->saved_data["send"].toIntVector()),
            {}, {}, {}};
  }
};

// A string through broadcast from `root`: its length, then its bytes.
std::string broadcast_text(Communicator& comm, const std::string& text, int root) {
  auto length = at::tensor({static_cast<int64_t>(text.size())}, at::kLong).to(comm.device());
  comm.broadcast(length, root);
  const int64_t n = length.cpu().item<int64_t>();
  auto bytes = at::empty({n}, at::kByte);
  if (comm.rank() == root) std::memcpy(bytes.data_ptr(), text.data(), text.size());
  auto on_device = bytes.to(comm.device());
  comm.broadcast(on_device, root);
  bytes = on_device.cpu().contiguous();
  return std::string(reinterpret_cast<const char*>(bytes.data_ptr()), static_cast<size_t>(n));
}

}  // namespace

std::vector<int64_t> exchange_counts(Communicator& comm, const std::vector<int64_t>& counts) {
  const auto W = static_cast<int64_t>(comm.world_size());
  if (static_cast<int64_t>(counts.size()) != W) throw Error("exchange_counts: one count per rank is needed");
  auto in = at::tensor(counts, at::kLong).to(comm.device());
  auto out = at::empty({W}, in.options());
  const std::vector<int64_t> ones(static_cast<size_t>(W), 1);
  comm.all_to_all(out, in, ones, ones);
  out = out.cpu();
  return std::vector<int64_t>(out.data_ptr<int64_t>(), out.data_ptr<int64_t>() + W);
}

at::Tensor exchange_rows(Communicator& comm, const at::Tensor& rows, const std::vector<int64_t>& send,
                         const std::vector<int64_t>& recv) {
  if (total(send) != rows.size(0)) throw Error("exchange_rows: the send counts do not add up to the rows");
  return ExchangeRows::apply(rows, &comm, send, recv);
}

at::Tensor all_gather_rows(Communicator& comm, const at::Tensor& mine, const std::vector<int64_t>& rows_per_rank) {
  at::NoGradGuard no_grad;
  const auto rank = static_cast<size_t>(comm.rank());
  if (rows_per_rank.size() != static_cast<size_t>(comm.world_size()) || mine.size(0) != rows_per_rank[rank])
    throw Error("all_gather_rows: this rank's rows do not match its count");
  auto shape = mine.sizes().vec();
  shape[0] = total(rows_per_rank);
  auto whole = at::zeros(shape, mine.options().device(comm.device()));
  const int64_t offset = std::accumulate(rows_per_rank.begin(), rows_per_rank.begin() + static_cast<long>(rank), int64_t{0});
  whole.narrow(0, offset, mine.size(0)).copy_(mine);
  comm.all_reduce_sum(whole);  // x + 0 = x exactly: every rank gets each part as its owner has it
  return whole;
}

std::vector<std::pair<std::string, at::Tensor>> gather_named_tensors(
    Communicator& comm, const std::vector<std::pair<std::string, at::Tensor>>& mine) {
  at::NoGradGuard no_grad;
  std::vector<std::pair<std::string, at::Tensor>> out;
  std::set<std::string> names;
  if (comm.is_root()) {
    for (const auto& [name, t] : mine) {
      out.emplace_back(name, t.cpu());
      names.insert(name);
    }
  }
  for (int r = 1; r < comm.world_size(); ++r) {
    // Rank r says what it holds; rank 0 then asks for nothing: everything crosses, and rank 0 drops the repeats.
    nlohmann::json header = nlohmann::json::array();
    if (comm.rank() == r) {
      for (const auto& [name, t] : mine)
        header.push_back({{"name", name}, {"dtype", static_cast<int>(t.scalar_type())}, {"shape", t.sizes().vec()}});
    }
    const auto listed = nlohmann::json::parse(broadcast_text(comm, header.dump(), r));
    for (size_t i = 0; i < listed.size(); ++i) {
      const auto& entry = listed[i];
      const auto dtype = static_cast<c10::ScalarType>(entry["dtype"].get<int>());
      auto t = comm.rank() == r ? mine[i].second.contiguous().to(comm.device())
                                : at::empty(entry["shape"].get<std::vector<int64_t>>(),
                                            at::TensorOptions().dtype(dtype).device(comm.device()));
      comm.broadcast(t, r);
      const auto name = entry["name"].get<std::string>();
      if (comm.is_root() && names.insert(name).second) out.emplace_back(name, t.cpu());
    }
  }
  return out;
}

}  // namespace esft::dist
