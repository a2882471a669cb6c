// `esft-host launch`: N local processes with torchrun's environment, output prefixed by rank, a failure stopping the
// others, signals forwarded.
#include "cli_support.h"

#include <chrono>
#include <regex>
#include <set>
#include <thread>

using namespace cli_support;

TEST_CASE("cli launch: every rank gets torchrun's environment, and its output comes back prefixed by rank") {
  const Run r = run_host({"launch", "--nproc", "3", "--", "sh", "-c",
                          "echo \"rank=$RANK local=$LOCAL_RANK of $WORLD_SIZE/$LOCAL_WORLD_SIZE at $MASTER_ADDR:$MASTER_PORT\"; "
                          "echo \"note from $RANK\" >&2"});
  INFO("stdout: ", r.out, "\nstderr: ", r.err);
  REQUIRE(r.code == 0);
  const std::regex line(R"(\[rank (\d)\] rank=(\d) local=(\d) of 3/3 at 127\.0\.0\.1:(\d+))");
  std::set<std::string> ranks, ports;
  for (std::sregex_iterator it(r.out.begin(), r.out.end(), line), end; it != end; ++it) {
    CHECK((*it)[1] == (*it)[2]);
    CHECK((*it)[2] == (*it)[3]);
    ranks.insert((*it)[1]);
    ports.insert((*it)[4]);
  }
  CHECK(ranks == std::set<std::string>{"0", "1", "2"});
  CHECK(ports.size() == 1);  // one rendezvous port for all
  for (int rank = 0; rank < 3; ++rank) CHECK(contains(r.err, "[rank " + std::to_string(rank) + "] note from " + std::to_string(rank)));
}

TEST_CASE("cli launch: when one rank fails, the others are stopped and the launch fails naming it") {
  const auto start = std::chrono::steady_clock::now();
  const Run r = run_host({"launch", "--nproc", "3", "--grace", "2", "--", "sh", "-c",
                          "if [ \"$RANK\" = 1 ]; then echo broken >&2; exit 3; fi; exec sleep 60"});
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  INFO("stderr: ", r.err);
  CHECK(r.code == 1);
  CHECK(contains(r.err, "[rank 1] broken"));
  CHECK(contains(r.err, "esft-host: error: rank 1 of 3 failed (exit code 3); the others were stopped"));
  CHECK(seconds < 30);  // not the 60 s the others would have slept
}

TEST_CASE("cli launch: SIGTERM reaches every rank, and the launch ends with 128 + 15") {
  const std::string script =
      "trap 'echo \"rank $RANK stopping\"; exit 0' TERM; echo ready; while :; do sleep 0.1; done";
  Run r;
  std::thread launcher([&] { r = run_host({"launch", "--nproc", "2", "--", "sh", "-c", script}); });
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  signal_host(SIGTERM, script);
  launcher.join();
  INFO("stdout: ", r.out, "\nstderr: ", r.err);
  CHECK(r.code == 128 + SIGTERM);
  CHECK(contains(r.out, "[rank 0] rank 0 stopping"));
  CHECK(contains(r.out, "[rank 1] rank 1 stopping"));
}

TEST_CASE("cli launch: a launch without a command, a bad --nproc, and `--` after another command are refused") {
  expect_error(run_host({"launch", "--nproc", "2"}), 2, {"give the command to launch after `--`"});
  expect_error(run_host({"launch", "--nproc", "0", "--", "true"}), 2, {"--nproc must be in [1, 1024]"});
  expect_error(run_host({"plugins", "--", "true"}), 2, {"a command after `--` belongs to `launch` only"});
  const Run missing = run_host({"launch", "--nproc", "2", "--", "no-such-program-anywhere"});
  CHECK(missing.code == 1);
  CHECK(contains(missing.err, "cannot start 'no-such-program-anywhere' for rank 0"));
}
