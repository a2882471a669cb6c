// Several devices in one process (`--device D1,D2`, issue 18): the blocks spread over the devices in order. On this
// machine the devices are the CPU twice, so these tests hold the plumbing (parsing, building on the host,
// placement, the messages) and that the results do not change; the transfers between devices run on a GPU machine
// (scripts/gpu-check.sh spreads the layers over cuda:0 and the CPU).
#include "doctest_torch.h"

#include "cli_support.h"
#include "test_support.h"

using namespace cli_support;
using test_support::TempDir;

namespace {
const fs::path kTrainData = fs::path(ESFT_TEST_DATA_DIR).parent_path().parent_path() / "examples" / "tiny-task" / "train.jsonl";
}  // namespace

TEST_CASE("cli devices: --device cpu,cpu spreads the layers and gives what one device gives") {
  TempDir dir;
  const auto model = tiny_task_model(dir);
  auto scores = [&](const std::string& device, const std::string& out) {
    return run_host({"--device", device, "scores", "--model", model.string(), "--data", kTrainData.string(), "--out",
                     (dir / out).string(), "--batch-size", "3", "--n-sample-tokens", "1500"});
  };
  const Run one = scores("cpu", "one");
  expect_success(one);
  const Run spread = scores("cpu,cpu", "spread");
  expect_success(spread);
  CHECK(contains(spread.err, "esft-host: the layers spread over cpu (layers 0-2)\n"));
  CHECK_FALSE(contains(one.err, "spread over"));
  CHECK(test_support::read_bytes(dir / "spread" / "scores.json") == test_support::read_bytes(dir / "one" / "scores.json"));

  auto generate = [&](const std::string& device) {
    return run_host({"--device", device, "generate", "--model", model.string(), "--ids", "5,6,7,8", "--max-new-tokens", "12"});
  };
  const Run g1 = generate("cpu"), g2 = generate("cpu,cpu");
  expect_success(g1);
  expect_success(g2);
  CHECK(!g1.out.empty());
  CHECK(g2.out == g1.out);
}

TEST_CASE("cli devices: a list of devices is refused by one-device commands and by a multi-process run") {
  TempDir dir;
  const auto model = tiny_task_model(dir);
  const Run train = run_host({"--device", "cpu,cpu", "train", "--model", model.string(), "--data", kTrainData.string(),
                              "--out", (dir / "out").string(), "--method", "full"});
  expect_error(train, 2, {"--device cpu,cpu: train runs on one device; a list of devices (the layers spread over them) is "
                          "for scores, eval, generate and serve"});
  CHECK_FALSE(fs::exists(dir / "out"));
  const Run many = run_host({"launch", "--nproc", "2", "--", kHost.string(), "--device", "cpu,cpu", "scores", "--model",
                             model.string(), "--data", kTrainData.string(), "--out", (dir / "scores").string()});
  CHECK(many.code != 0);
  CHECK(contains(many.err, "a multi-process run has one device per process"));
}
