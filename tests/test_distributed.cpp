// The pieces of multi-process runs, in one process: the launcher's environment as each rank reads it (torchrun's and
// SLURM's), the even shares of rows, and c10d's Gloo group (three ranks as threads) summing bucketed tensors and
// broadcasting exactly.
#include <ATen/ATen.h>
#include "doctest_torch.h"

#include <map>
#include <string>

#include "distributed/environment.h"
#include "distributed/process_group.h"
#include "esft/dist/communicator.h"
#include "esft/error.h"
#include "gloo_ranks.h"
#include "launch/launcher.h"

using esft::host::DistributedEnv;

namespace {

std::optional<DistributedEnv> read_env(const std::map<std::string, std::string>& vars) {
  return esft::host::read_distributed_env([&](const char* name) -> const char* {
    const auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  });
}

}  // namespace

TEST_CASE("distributed environment: torchrun's variables, SLURM's, none, and malformed ones") {
  CHECK_FALSE(read_env({}).has_value());
  const auto torchrun = read_env({{"RANK", "3"}, {"WORLD_SIZE", "8"}, {"LOCAL_RANK", "1"}, {"MASTER_ADDR", "node7"},
                                  {"MASTER_PORT", "29500"}});
  REQUIRE(torchrun.has_value());
  CHECK(torchrun->rank == 3);
  CHECK(torchrun->world_size == 8);
  CHECK(torchrun->local_rank == 1);
  CHECK(torchrun->master_addr == "node7");
  CHECK(torchrun->master_port == 29500);
  CHECK(torchrun->source == "torchrun");

  const auto slurm = read_env({{"SLURM_PROCID", "5"}, {"SLURM_NTASKS", "32"}, {"SLURM_STEP_NUM_TASKS", "16"},
                               {"SLURM_LOCALID", "5"}, {"SLURM_JOB_NODELIST", "gpu[01-08]"},
                               {"SLURM_STEP_NODELIST", "gpu[07-08]"}, {"SLURM_JOB_ID", "123456"}});
  REQUIRE(slurm.has_value());
  CHECK(slurm->rank == 5);
  CHECK(slurm->world_size == 16);
  CHECK(slurm->local_rank == 5);
  CHECK(slurm->master_addr == "gpu07");
  CHECK(slurm->master_port == 20000 + 123456 % 20000);
  CHECK(slurm->source == "slurm");
  // A batch script outside srun: task 0 of the job, but no step, so one process.
  CHECK_FALSE(read_env({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "8"}, {"SLURM_LOCALID", "0"},
                        {"SLURM_JOB_NODELIST", "gpu[07-08]"}}).has_value());
  // MASTER_ADDR and MASTER_PORT win over what SLURM's variables would give.
  const auto pinned = read_env({{"SLURM_PROCID", "0"}, {"SLURM_STEP_NUM_TASKS", "2"}, {"SLURM_JOB_NODELIST", "a1"},
                                {"MASTER_ADDR", "10.0.0.2"}, {"MASTER_PORT", "4000"}});
  CHECK(pinned->master_addr == "10.0.0.2");
  CHECK(pinned->master_port == 4000);

  CHECK_THROWS_WITH_AS(read_env({{"RANK", "2"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "1"}}),
                       "RANK='2' is not an integer in [0, 1]", esft::Error);
  CHECK_THROWS_WITH_AS(read_env({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "1"}}),
                       "MASTER_ADDR is not set, but RANK and WORLD_SIZE are", esft::Error);
  CHECK_THROWS_WITH_AS(read_env({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}}),
                       "MASTER_PORT is not set, but the other variables of a multi-process run are", esft::Error);
  CHECK_THROWS_WITH_AS(read_env({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "70000"}}),
                       "MASTER_PORT='70000' is not an integer in [1, 65535]", esft::Error);
}

TEST_CASE("distributed environment: the first host of SLURM node lists") {
  CHECK(esft::host::first_slurm_host("node1") == "node1");
  CHECK(esft::host::first_slurm_host("node1,node2") == "node1");
  CHECK(esft::host::first_slurm_host("gpu[03-05,7],cpu1") == "gpu03");
  CHECK(esft::host::first_slurm_host("gpu[7,9]") == "gpu7");
  CHECK(esft::host::first_slurm_host("n[1-2]-ib,m3") == "n1-ib");
  CHECK(esft::host::first_slurm_host("solo,x[1-3]") == "solo");
  for (const char* bad : {"", "node[", "[1-2]", "node[]", "node[a-b]"}) {
    CAPTURE(bad);
    CHECK_THROWS_AS(esft::host::first_slurm_host(bad), esft::Error);
  }
}

TEST_CASE("distributed shares: contiguous, as even as can be, covering every item once") {
  for (int64_t n : {0, 1, 5, 6, 7, 100}) {
    for (int world : {1, 2, 3, 8}) {
      int64_t next = 0;
      for (int rank = 0; rank < world; ++rank) {
        const auto s = esft::dist::share_of(n, rank, world);
        CHECK(s.begin == next);
        CHECK((s.size() == n / world || s.size() == n / world + 1));
        next = s.end;
      }
      CHECK(next == n);
    }
  }
}

TEST_CASE("distributed gloo: three ranks sum bucketed tensors and broadcast, exactly") {
  const int world = 3;
  std::vector<std::vector<at::Tensor>> results(world);
  std::vector<at::Tensor> broadcasts(world);
  std::vector<uint64_t> bytes(world);
  const auto failures = esft::test::run_gloo_ranks(world, [&](int rank, esft::dist::Communicator& group) {
    // Tensors of two dtypes and several sizes, one undefined: buckets of 64 bytes hold few of them.
    std::vector<at::Tensor> tensors = {at::full({3}, 1.0f + rank), at::Tensor(), at::arange(40, at::kDouble) * (rank + 1),
                                       at::full({2, 2}, 0.5f * rank), at::full({1}, static_cast<double>(rank), at::kDouble)};
    bytes[static_cast<size_t>(rank)] = esft::dist::all_reduce_sum_bucketed(group, tensors, 64);
    results[static_cast<size_t>(rank)] = tensors;
    auto b = rank == 1 ? at::arange(5, at::kFloat) : at::zeros({5}, at::kFloat) - 1;
    group.broadcast(b, 1);
    broadcasts[static_cast<size_t>(rank)] = b;
  });
  for (int rank = 0; rank < world; ++rank) {
    CAPTURE(rank);
    REQUIRE(failures[static_cast<size_t>(rank)] == "");
    const auto& r = results[static_cast<size_t>(rank)];
    CHECK(at::equal(r[0], at::full({3}, 6.0f)));  // 1 + 2 + 3
    CHECK_FALSE(r[1].defined());
    CHECK(at::equal(r[2], at::arange(40, at::kDouble) * 6));
    CHECK(at::equal(r[3], at::full({2, 2}, 1.5f)));
    CHECK(at::equal(r[4], at::full({1}, 3.0, at::kDouble)));
    CHECK(bytes[static_cast<size_t>(rank)] == 3 * 4 + 40 * 8 + 4 * 4 + 8);
    CHECK(at::equal(broadcasts[static_cast<size_t>(rank)], at::arange(5, at::kFloat)));
  }
}
