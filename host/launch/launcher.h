#pragma once
// `esft-host launch`: N local processes of one command, as torchrun starts them, for users without torchrun. Each gets
// the environment c10d's rendezvous reads (RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT);
// their output comes back line by line, prefixed by rank; SIGINT and SIGTERM are forwarded to every process; when one
// fails, the others are stopped (SIGTERM, then SIGKILL after a grace period) and the launch fails with its code.
#include <chrono>
#include <string>
#include <vector>

namespace esft::host {

struct LaunchSpec {
  int nproc = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 0;                      // 0: a free port of this machine
  std::vector<std::string> command;         // program (searched in PATH) and its arguments
  std::chrono::seconds grace{10};           // from SIGTERM to SIGKILL when stopping the others
};

// Runs the processes to their end. Returns 0 when every process succeeded, 128 + signal when a forwarded SIGINT or
// SIGTERM ended them; throws esft::Error naming the first rank that failed (and its exit code, 128 + signal for a
// signal), after the others were stopped, or when a process cannot start.
int launch_local(const LaunchSpec& spec);

// A TCP port no socket of this machine holds now (bound to port 0 and released).
int free_local_port();

}  // namespace esft::host
