// The ESFT reference's adapter folders (expert_cfg.json + *.safetensors, keys with or without the legacy missing
// `model.` prefix) through generate, eval, merge and convert-adapter, on the deepseek_v2 fixture (the reference's
// own family), and what they refuse.
#include <ATen/ATen.h>
#include "doctest_torch.h"

#include <fstream>

#include "cli_support.h"
#include "esft/io/safetensors.h"

using namespace cli_support;

namespace {

const fs::path kModel = fs::path(ESFT_TEST_DATA_DIR) / "hf" / "deepseek_v2" / "model";

std::string expert_cfg(const std::string& experts) {
  return R"({"experts": {"1": )" + experts + R"(}, "shared_experts": false, "non_expert_modules": false})";
}

// Trained-looking tensors of experts 2 and 5 of layer 1 under checkpoint names.
esft::NamedTensors expert_tensors() {
  const esft::SafetensorsFile base(kModel / "model.safetensors");
  esft::NamedTensors out;
  at::manual_seed(7);
  for (int e : {2, 5}) {
    for (const char* p : {"gate_proj", "up_proj", "down_proj"}) {
      const auto name = "model.layers.1.mlp.experts." + std::to_string(e) + "." + p + ".weight";
      const auto value = base.load(name);
      out.emplace_back(name, value + 0.5 * at::randn(value.sizes()));
    }
  }
  return out;
}

// The reference's layout: expert 2 as its v1 adapters name it (no `model.`), in one file; expert 5 in another.
fs::path write_reference_adapter(const TempDir& tmp, const std::string& experts = "[5, 2]") {
  const auto dir = tmp / "reference";
  fs::create_directories(dir);
  esft::NamedTensors first, second;
  for (const auto& [name, value] : expert_tensors()) {
    if (name.find("experts.2.") != std::string::npos) first.emplace_back(name.substr(6), value);
    else second.emplace_back(name, value);
  }
  esft::save_safetensors(dir / "model-00001-of-00002.safetensors", first);
  esft::save_safetensors(dir / "model-00002-of-00002.safetensors", second);
  std::ofstream(dir / "expert_cfg.json") << expert_cfg(experts);
  return dir;
}

std::map<std::string, at::Tensor> tensors_of(const fs::path& dir) {
  std::map<std::string, at::Tensor> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() != ".safetensors") continue;
    const esft::SafetensorsFile f(e.path());
    for (const auto& t : f.tensors()) out[t.name] = f.load(t.name);
  }
  return out;
}

const std::vector<std::string> kGenerate = {"--device", "cpu", "generate", "--model", kModel.string(), "--ids",
                                             "5,17,99,3,250,42", "--max-new-tokens", "8"};

Run generate_with(const fs::path& adapter) {
  auto args = kGenerate;
  args.insert(args.end(), {"--adapter", adapter.string()});
  return run_host(args);
}

}  // namespace

TEST_CASE("cli adapters: a reference adapter applies, converts both ways unchanged, and merges as its esft conversion") {
  TempDir tmp;
  const auto reference = write_reference_adapter(tmp);
  const auto esft_dir = tmp / "esft", back = tmp / "back";

  expect_success(run_host({"convert-adapter", "--adapter", reference.string(), "--model", kModel.string(), "--to", "esft",
                           "--out", esft_dir.string()}));
  CHECK(fs::exists(esft_dir / "esft_adapter.json"));
  const Run converted = run_host({"convert-adapter", "--adapter", esft_dir.string(), "--model", kModel.string(), "--to",
                                  "reference", "--out", back.string()});
  expect_success(converted);
  CHECK(contains(converted.out, "converted 6 tensors"));
  CHECK(fs::exists(back / "expert_cfg.json"));
  // Both directions keep every tensor bit for bit, under checkpoint names.
  const auto original = expert_tensors();
  for (const fs::path& dir : {esft_dir, back}) {
    CAPTURE(dir);
    const auto got = tensors_of(dir);
    REQUIRE(got.size() == original.size());
    for (const auto& entry : original) {
      const std::string& name = entry.first;
      CAPTURE(name);
      REQUIRE(got.count(name));
      CHECK(at::equal(got.at(name), entry.second));
    }
  }

  // generate applies either folder alike, and the adapter changes what the model says.
  const Run plain = run_host(kGenerate), with_reference = generate_with(reference), with_esft = generate_with(esft_dir);
  for (const auto* r : {&plain, &with_reference, &with_esft}) expect_success(*r);
  CHECK(contains(with_reference.err, "applied 6 adapter tensors"));
  CHECK(with_reference.out == with_esft.out);
  CHECK(with_reference.out != plain.out);

  // merge gives the same checkpoint from either folder.
  for (const auto& [adapter, out] : {std::pair{reference, tmp / "merged-reference"}, std::pair{esft_dir, tmp / "merged-esft"}})
    expect_success(run_host({"merge", "--model", kModel.string(), "--adapter", adapter.string(), "--out", out.string()}));
  const auto a = tensors_of(tmp / "merged-reference"), b = tensors_of(tmp / "merged-esft");
  REQUIRE(a.size() == b.size());
  for (const auto& entry : a) CHECK_MESSAGE(at::equal(entry.second, b.at(entry.first)), entry.first);
  CHECK(at::equal(a.at("model.layers.1.mlp.experts.5.up_proj.weight"), original[4].second));
}

TEST_CASE("cli adapters: experts the model lacks, tensors stored twice and folders of neither format are refused") {
  TempDir tmp;
  const auto wrong = write_reference_adapter(tmp, "[2, 5, 9]");  // the fixture has experts 0..7
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"generate", "--model", kModel.string(), "--ids", "1,2", "--adapter", wrong.string()},
           {"merge", "--model", kModel.string(), "--adapter", wrong.string(), "--out", (tmp / "merged").string()},
           {"convert-adapter", "--adapter", wrong.string(), "--model", kModel.string(), "--to", "esft", "--out",
            (tmp / "converted").string()}}) {
    CAPTURE(args[0]);
    expect_error(run_host(args), 1, {"expert_cfg.json", "expert 9"});
  }
  CHECK_FALSE(fs::exists(tmp / "merged"));
  CHECK_FALSE(fs::exists(tmp / "converted"));

  TempDir twice_dir;
  const auto twice = write_reference_adapter(twice_dir);
  const auto tensors = expert_tensors();
  esft::save_safetensors(twice / "extra.safetensors", {{tensors[0].first.substr(6), tensors[0].second}});
  expect_error(run_host({"generate", "--model", kModel.string(), "--ids", "1,2", "--adapter", twice.string()}), 1,
               {"stored twice", "layers.1.mlp.experts.2.gate_proj.weight"});

  TempDir empty;
  expect_error(run_host({"generate", "--model", kModel.string(), "--ids", "1,2", "--adapter", empty.path.string()}), 1,
               {"esft_adapter.json", "expert_cfg.json"});
  // convert-adapter never replaces a folder that holds something.
  TempDir busy;
  std::ofstream(busy / "notes.txt") << "mine";
  expect_error(run_host({"convert-adapter", "--adapter", twice_dir.path.string() + "/reference", "--model",
                         kModel.string(), "--to", "esft", "--out", busy.path.string()}),
               1, {"not an empty folder"});
  CHECK(fs::exists(busy / "notes.txt"));
  expect_error(run_host({"convert-adapter", "--adapter", twice.string(), "--model", kModel.string(), "--to", "lora",
                         "--out", (tmp / "x").string()}),
               2, {"--to", "esft, reference"});
}
