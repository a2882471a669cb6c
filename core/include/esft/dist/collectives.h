#pragma once
// Collectives built on the Communicator for expert parallelism: the differentiable exchange of token rows, and
// gathering tensors that are spread over the ranks (rows of an expert bank, named adapter tensors) where one
// process writes them.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "esft/dist/communicator.h"

namespace esft::dist {

// Every rank's count for every rank: counts[r] (this rank's for rank r, [W]) -> what each rank has for this one.
std::vector<int64_t> exchange_counts(Communicator& comm, const std::vector<int64_t>& counts);

// The all-to-all of `rows` [N, ...] (send[r] rows to rank r, in rank order) as an autograd node: the result holds
// recv[r] rows from each rank r; backward sends the gradient rows back where they came from. Every rank must run
// the backward of every exchange it ran forward, in the same order (the ranks' graphs have the same shape).
at::Tensor exchange_rows(Communicator& comm, const at::Tensor& rows, const std::vector<int64_t>& send,
                         const std::vector<int64_t>& recv);

// A tensor split along dim 0 over the ranks, rank r holding rows_per_rank[r] rows (`mine`, possibly none): the
// whole tensor, in rank order, on every rank (bit for bit: it is an all-reduce of zero-padded parts).
at::Tensor all_gather_rows(Communicator& comm, const at::Tensor& mine, const std::vector<int64_t>& rows_per_rank);

// Every rank's named tensors on rank 0, rank 0's first and then each rank's in rank order; a name rank 0 already
// holds (a replicated tensor) is not repeated. The other ranks get an empty list. The tensors may differ in number,
// names, shapes and dtypes from rank to rank; they come back on the CPU.
std::vector<std::pair<std::string, at::Tensor>> gather_named_tensors(
    Communicator& comm, const std::vector<std::pair<std::string, at::Tensor>>& mine);

}  // namespace esft::dist
