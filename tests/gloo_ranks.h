#pragma once
// A Gloo group of `world` ranks on loopback, one thread per rank, for tests of collectives in one process.
#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "distributed/environment.h"
#include "distributed/process_group.h"
#include "launch/launcher.h"

namespace esft::test {

// Runs body(rank, group) on every rank at once; returns each rank's failure message ("" when it succeeded).
inline std::vector<std::string> run_gloo_ranks(int world, const std::function<void(int, dist::Communicator&)>& body) {
  const int port = host::free_local_port();
  std::vector<std::string> failures(static_cast<size_t>(world));
  auto rank_main = [&](int rank) {
    try {
      host::DistributedEnv env;
      env.rank = rank, env.world_size = world, env.master_addr = "127.0.0.1", env.master_port = port;
      auto group = host::make_process_group(env, c10::Device(c10::kCPU), std::chrono::seconds(60));
      body(rank, *group);
      group->barrier();
    } catch (const std::exception& e) {
      failures[static_cast<size_t>(rank)] = e.what();
    }
  };
  std::vector<std::thread> threads;
  for (int rank = 0; rank < world; ++rank) threads.emplace_back(rank_main, rank);
  for (auto& t : threads) t.join();
  return failures;
}

}  // namespace esft::test
