// Naming tables: patterns are data; matching must never confuse layer 1 with layer 10.
#include "doctest_torch.h"

#include "esft/error.h"
#include "esft/model/param_naming.h"

using esft::ParamNaming;
using esft::Role;

namespace {
ParamNaming table() {
  return ParamNaming({
      {Role::EMBED, "model.embed_tokens.weight"},
      {Role::ATTENTION, "model.layers.{layer}.self_attn.*"},
      {Role::ROUTER, "model.layers.{layer}.mlp.gate.weight"},
      {Role::EXPERT_GATE, "model.layers.{layer}.mlp.experts.{expert}.gate_proj.weight"},
      {Role::EXPERT_UP, "model.layers.{layer}.mlp.experts.{expert}.up_proj.weight"},
      {Role::EXPERT_DOWN, "model.layers.{layer}.mlp.experts.{expert}.down_proj.weight"},
      {Role::DENSE_MLP, "model.layers.{layer}.mlp.*"},
  });
}
}  // namespace

TEST_CASE("param naming: names are formatted from patterns") {
  const auto t = table();
  CHECK(t.name(Role::EXPERT_DOWN, 3, 17) == "model.layers.3.mlp.experts.17.down_proj.weight");
  CHECK(t.name(Role::ROUTER, 12) == "model.layers.12.mlp.gate.weight");
  CHECK(t.per_expert_tensors());
}

TEST_CASE("param naming: match extracts role, layer and expert, first rule wins") {
  const auto t = table();
  auto m = t.match("model.layers.10.mlp.experts.1.up_proj.weight");
  REQUIRE(m);
  CHECK(m->role == Role::EXPERT_UP);
  CHECK(m->layer == 10);
  CHECK(m->expert == 1);
  m = t.match("model.layers.2.mlp.gate.weight");
  REQUIRE(m);
  CHECK(m->role == Role::ROUTER);
  m = t.match("model.layers.2.mlp.down_proj.weight");  // a dense layer's MLP falls to the wildcard rule
  REQUIRE(m);
  CHECK(m->role == Role::DENSE_MLP);
  m = t.match("model.layers.0.self_attn.q_norm.weight");
  REQUIRE(m);
  CHECK(m->role == Role::ATTENTION);
  CHECK_FALSE(t.match("model.layers.01.mlp.gate.weight"));  // no leading zeros: "01" is not layer 1
  CHECK_FALSE(t.match("model.layers.x.mlp.gate.weight"));
  CHECK_FALSE(t.match("model.embed_tokens.weight.extra"));
  CHECK_FALSE(t.match("lm_head.weight"));
}

TEST_CASE("param naming: an unknown or ambiguous role is a hard error") {
  const auto t = table();
  CHECK_THROWS_WITH_AS(t.name(Role::SHARED_EXPERT_GATE, 0), doctest::Contains("no pattern for role SHARED_EXPERT_GATE"),
                       esft::Error);
  CHECK_THROWS_WITH_AS(t.name(Role::ATTENTION, 0), doctest::Contains("group of tensors"), esft::Error);
  const ParamNaming twice({{Role::NORM, "a.{layer}.x"}, {Role::NORM, "a.{layer}.y"}});
  CHECK_THROWS_WITH_AS(twice.pattern(Role::NORM), doctest::Contains("several patterns"), esft::Error);
}
