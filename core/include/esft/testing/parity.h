#pragma once
// Parity with transformers, for family plugins (in the tree or built against the installed SDK): a fixture folder
// made by scripts/make-fixtures.py holds a tiny model (model/), what transformers computed with it
// (reference.safetensors: logits, hidden states, routing, losses, greedy tokens) and d(ce_loss)/d(tensor) for every
// checkpoint tensor (grads.safetensors). compare_with_fixture loads the model with a family, computes the same
// quantities and measures each against the tolerances of shared/fixtures/README.md. `esft-host parity` prints the
// report; a plugin's own C++ test can call it directly.
#include <c10/core/Device.h>

#include <filesystem>
#include <string>
#include <vector>

#include "esft/model/model_family.h"

namespace esft::testing {

// float32 tolerances of the fixtures' README.
constexpr double kValueTol = 1e-4;    // logits, hidden states, router logits, top-k weights: max |diff|
constexpr double kLossRelTol = 1e-5;  // losses: relative
constexpr double kGradRelTol = 1e-4;  // gradients: ||a - b|| / ||b|| per tensor

struct ParityFigure {
  std::string what;    // "logits max|diff|"
  double value = 0;    // measured
  double tolerance = 0;
  bool passed() const { return value <= tolerance; }
};

struct ParityReport {
  std::filesystem::path fixture;
  std::string family;
  std::vector<ParityFigure> figures;
  std::vector<std::string> problems;  // what is not a number: missing tensors, other experts chosen, other tokens
  bool passed() const;
  // One line per figure (measured, tolerance, ok/FAIL), then the problems.
  std::string table() const;
};

// Throws esft::Error naming the first part of a fixture folder that is missing.
void require_fixture(const std::filesystem::path& fixture_dir);

// Loads `fixture_dir`/model with `family` in float32 on `device` and compares it with the fixture: checkpoint key
// sets, logits, hidden states, per-MoE-layer router logits, top-k experts and weights (dense models have none), the
// next-token cross-entropy and the load-balancing loss when the fixture has one, the gradient of every checkpoint
// tensor, and greedy generation. Throws esft::Error when the fixture folder is incomplete or the model cannot load.
ParityReport compare_with_fixture(const ModelFamily& family, const std::filesystem::path& fixture_dir,
                                  const c10::Device& device = c10::Device(c10::kCPU));

}  // namespace esft::testing
