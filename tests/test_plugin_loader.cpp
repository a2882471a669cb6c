// Plugin discovery and the ABI check.
#include "doctest_torch.h"

#include <cstdlib>

#include "esft/error.h"
#include "plugin_loader.h"

using esft::host::PluginLoader;
namespace fs = std::filesystem;

TEST_CASE("plugin loader: finds qwen3_moe next to esft-host and builds its family") {
  PluginLoader loader(std::vector<fs::path>{ESFT_BIN_DIR});
  auto records = loader.discover();
  bool found = false;
  for (const auto& r : records) {
    if (r.name != "qwen3_moe") continue;
    found = true;
    CHECK(r.refusal.empty());
    CHECK(r.model_types == std::vector<std::string>{"qwen3_moe"});
    CHECK(fs::path(r.file).filename() == "libesft_qwen3_moe.so");
  }
  CHECK(found);
  auto family = loader.load_for_model_type("qwen3_moe");
  REQUIRE(family);
  CHECK(family->name() == "qwen3_moe");
  CHECK(loader.load("qwen3_moe")->model_types() == std::vector<std::string>{"qwen3_moe"});
}

TEST_CASE("plugin loader: a wrong ABI version is refused, naming both versions") {
  PluginLoader loader(std::vector<fs::path>{ESFT_WRONG_ABI_PLUGIN_DIR});
  auto records = loader.discover();
  REQUIRE(records.size() == 1);
  CHECK(records[0].name == "wrong_abi");
  CHECK(records[0].refusal.find("plugin has " + std::to_string(ESFT_PLUGIN_ABI_VERSION + 1000)) != std::string::npos);
  CHECK(records[0].refusal.find("supports " + std::to_string(ESFT_PLUGIN_ABI_VERSION)) != std::string::npos);
  CHECK_THROWS_WITH_AS(loader.load("wrong_abi"), doctest::Contains("wrong ABI version"), esft::Error);
  CHECK_THROWS_WITH_AS(loader.load_for_model_type("wrong_abi_model"), doctest::Contains("wrong ABI version"),
                       esft::Error);
}

TEST_CASE("plugin loader: a different build fingerprint is refused") {
  EsftPluginInfo info{ESFT_PLUGIN_ABI_VERSION, "esft-sdk 0.0.0; libtorch 9.9.9; cxx11abi 0; gcc 1", "x", "1", nullptr,
                      nullptr};
  const auto refusal = esft::host::check_plugin_info(info);
  CHECK(refusal.find("libtorch 9.9.9") != std::string::npos);
  CHECK(refusal.find(ESFT_BUILD_FINGERPRINT) != std::string::npos);
}

TEST_CASE("plugin loader: unknown names and model types say where it looked") {
  PluginLoader loader(std::vector<fs::path>{ESFT_BIN_DIR});
  CHECK_THROWS_WITH_AS(loader.load("no_such_family"), doctest::Contains("libesft_no_such_family.so"), esft::Error);
  CHECK_THROWS_WITH_AS(loader.load_for_model_type("no_such_type"),
                       doctest::Contains("no plugin serves model_type 'no_such_type'"), esft::Error);
}

TEST_CASE("plugin loader: search order is --plugin-dir, ESFT_PLUGIN_PATH, install dir, executable dir") {
  ::setenv("ESFT_PLUGIN_PATH", "/a:/b", 1);
  PluginLoader loader(std::optional<fs::path>("/first"));
  ::unsetenv("ESFT_PLUGIN_PATH");
  const auto& dirs = loader.search_dirs();
  REQUIRE(dirs.size() >= 3);
  CHECK(dirs[0] == "/first");
  CHECK(dirs[1] == "/a");
  CHECK(dirs[2] == "/b");
}
