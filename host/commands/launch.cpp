// `esft-host launch --nproc N -- COMMAND...`: N local processes of COMMAND with torchrun's environment (see
// host/launch/launcher.h), for multi-process runs without torchrun.
#include <iostream>

#include "../cli.h"
#include "esft/error.h"
#include "launch/launcher.h"

namespace esft::host {

Command launch_command() {
  Command c;
  c.name = "launch";
  c.summary = "N local processes of a command with torchrun's RANK/WORLD_SIZE/MASTER_* environment, output by rank";
  c.usage = "launch --nproc N [--master-addr 127.0.0.1] [--master-port P] -- COMMAND [ARGS...]";
  c.add_options = [](po::options_description& d) {
    d.add_options()
        ("nproc", po::value<int>()->required(), "processes to start (ranks 0 to N-1)")
        ("master-addr", po::value<std::string>()->default_value("127.0.0.1"), "MASTER_ADDR given to every process")
        ("master-port", po::value<int>()->default_value(0), "MASTER_PORT given to every process (0: a free port)")
        ("grace", po::value<int>()->default_value(10),
         "seconds the other processes get after SIGTERM, when one fails, before SIGKILL");
  };
  c.run = [](const GlobalOptions& global, const po::variables_map& vm) {
    LaunchSpec spec;
    spec.nproc = vm["nproc"].as<int>();
    if (spec.nproc < 1 || spec.nproc > 1024) throw UsageError("--nproc must be in [1, 1024]");
    spec.master_addr = vm["master-addr"].as<std::string>();
    spec.master_port = vm["master-port"].as<int>();
    if (spec.master_port < 0 || spec.master_port > 65535) throw UsageError("--master-port must be in [0, 65535]");
    if (spec.master_port == 0) spec.master_port = free_local_port();
    const int grace = vm["grace"].as<int>();
    if (grace < 0) throw UsageError("--grace must be >= 0");
    spec.grace = std::chrono::seconds(grace);
    spec.command = global.trailing_command;
    if (spec.command.empty()) throw UsageError("give the command to launch after `--`");
    std::cerr << "esft-host: launching " << spec.nproc << " processes of '" << spec.command[0] << "' (MASTER_ADDR "
              << spec.master_addr << ", MASTER_PORT " << spec.master_port << ")" << std::endl;
    return launch_local(spec);
  };
  return c;
}

}  // namespace esft::host
