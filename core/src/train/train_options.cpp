#include "esft/train/train_options.h"

#include <toml++/toml.h>

#include <cmath>
#include <fstream>
#include <sstream>
#include <functional>
#include <map>

#include "esft/error.h"

namespace esft::train {

namespace {

// One setter per TOML key: each reads its node with the type the field needs.
using Setter = std::function<void(TrainOptions&, const toml::node&, const std::string& where)>;

template <typename T>
T read_as(const toml::node& node, const std::string& where, const char* type) {
  if constexpr (std::is_same_v<T, double>) {
    if (auto v = node.value<double>()) return *v;  // toml++ also converts integers here
  } else if constexpr (std::is_same_v<T, bool>) {
    if (node.is_boolean()) return *node.value<bool>();
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (node.is_string()) return *node.value<std::string>();
  } else {
    if (node.is_integer()) return static_cast<T>(*node.value<int64_t>());
  }
  throw Error(where + " must be " + type);
}

std::map<std::string, Setter> setters() {
  std::map<std::string, Setter> s;
  auto real = [&](const char* key, double TrainOptions::*field) {
    s[key] = [field](TrainOptions& o, const toml::node& n, const std::string& w) { o.*field = read_as<double>(n, w, "a number"); };
  };
  auto integer = [&](const char* key, int64_t TrainOptions::*field) {
    s[key] = [field](TrainOptions& o, const toml::node& n, const std::string& w) { o.*field = read_as<int64_t>(n, w, "an integer"); };
  };
  real("learning_rate", &TrainOptions::learning_rate);
  real("adam_beta1", &TrainOptions::adam_beta1);
  real("adam_beta2", &TrainOptions::adam_beta2);
  real("adam_epsilon", &TrainOptions::adam_epsilon);
  real("weight_decay", &TrainOptions::weight_decay);
  real("max_grad_norm", &TrainOptions::max_grad_norm);
  real("aux_loss_coef", &TrainOptions::aux_loss_coef);
  real("epochs", &TrainOptions::epochs);
  real("random_concat_ratio", &TrainOptions::random_concat_ratio);
  real("eval_fraction", &TrainOptions::eval_fraction);
  integer("warmup_steps", &TrainOptions::warmup_steps);
  integer("steps", &TrainOptions::steps);
  integer("batch_size", &TrainOptions::batch_size);
  integer("gradient_accumulation_steps", &TrainOptions::gradient_accumulation_steps);
  integer("seq_length", &TrainOptions::seq_length);
  integer("eval_steps", &TrainOptions::eval_steps);
  integer("max_eval_rows", &TrainOptions::max_eval_rows);
  integer("save_steps", &TrainOptions::save_steps);
  integer("keep_checkpoints", &TrainOptions::keep_checkpoints);
  integer("log_steps", &TrainOptions::log_steps);
  s["seed"] = [](TrainOptions& o, const toml::node& n, const std::string& w) {
    const auto v = read_as<int64_t>(n, w, "an integer");
    if (v < 0) throw Error(w + " must not be negative");
    o.seed = static_cast<uint64_t>(v);
  };
  auto boids_real = [&](const char* key, double BoidsSettings::*field) {
    s[key] = [field](TrainOptions& o, const toml::node& n, const std::string& w) { o.boids.*field = read_as<double>(n, w, "a number"); };
  };
  boids_real("boids_cohesion", &BoidsSettings::cohesion);
  boids_real("boids_separation", &BoidsSettings::separation);
  boids_real("boids_alignment", &BoidsSettings::alignment);
  boids_real("boids_tau", &BoidsSettings::tau);
  boids_real("boids_warmup_frac", &BoidsSettings::warmup_frac);
  s["boids_k_nn"] = [](TrainOptions& o, const toml::node& n, const std::string& w) { o.boids.k_nn = read_as<int64_t>(n, w, "an integer"); };
  s["boids_layers"] = [](TrainOptions& o, const toml::node& n, const std::string& w) {
    const auto v = read_as<std::string>(n, w, "a string");
    if (v != "last" && v != "all") throw Error(w + " must be \"last\" or \"all\", not \"" + v + "\"");
    o.boids_all_layers = v == "all";
  };
  s["router_mode"] = [](TrainOptions& o, const toml::node& n, const std::string& w) {
    const auto v = read_as<std::string>(n, w, "a string");
    if (v == "none") o.router_mode = RouterMode::None;
    else if (v == "normal") o.router_mode = RouterMode::Normal;
    else if (v == "boids") o.router_mode = RouterMode::Boids;
    else throw Error(w + " must be \"none\", \"normal\" or \"boids\", not \"" + v + "\"");
  };
  integer("early_stop_patience", &TrainOptions::early_stop_patience);
  real("early_stop_min_delta", &TrainOptions::early_stop_min_delta);
  integer("lora_rank", &TrainOptions::lora_rank);
  real("lora_alpha", &TrainOptions::lora_alpha);
  real("lora_dropout", &TrainOptions::lora_dropout);
  s["lora_rslora"] = [](TrainOptions& o, const toml::node& n, const std::string& w) { o.lora_rslora = read_as<bool>(n, w, "true or false"); };
  s["lora_targets"] = [](TrainOptions& o, const toml::node& n, const std::string& w) {
    o.lora_targets.clear();
    if (n.is_string()) {  // "q_proj,v_proj": a pipeline file reads a list as a sweep, so a string may hold several
      std::stringstream parts(*n.value<std::string>());
      for (std::string part; std::getline(parts, part, ',');)
        if (!part.empty()) o.lora_targets.push_back(part);
      return;
    }
    const auto* list = n.as_array();
    if (!list) throw Error(w + " must be a string or a list of strings, e.g. [\"q_proj\", \"v_proj\"]");
    for (const auto& item : *list) o.lora_targets.push_back(read_as<std::string>(item, w, "a list of strings"));
  };
  s["keep_best"] = [](TrainOptions& o, const toml::node& n, const std::string& w) { o.keep_best = read_as<bool>(n, w, "true or false"); };
  s["packing_style"] = [](TrainOptions& o, const toml::node& n, const std::string& w) {
    const auto v = read_as<std::string>(n, w, "a string");
    if (v != "esft" && v != "stream") throw Error(w + " must be \"esft\" or \"stream\", not \"" + v + "\"");
    o.stream_packing = v == "stream";
  };
  s["packing"] = [](TrainOptions& o, const toml::node& n, const std::string& w) { o.packing = read_as<bool>(n, w, "true or false"); };
  s["lr_scheduler"] = [](TrainOptions& o, const toml::node& n, const std::string& w) {
    const auto v = read_as<std::string>(n, w, "a string");
    if (v == "constant") o.lr_scheduler = LrSchedule::Constant;
    else if (v == "cosine") o.lr_scheduler = LrSchedule::Cosine;
    else throw Error(w + " must be \"constant\" or \"cosine\", not \"" + v + "\"");
  };
  return s;
}

}  // namespace

namespace {

// The settings of `table` over `o`; `where` names the source in messages.
TrainOptions apply_table(const toml::table& file, const std::string& where, TrainOptions o) {
  // The settings sit at the top level or under [train] (the form a pipeline file uses).
  const toml::table* table = &file;
  if (auto* t = file["train"].as_table()) table = t;
  const auto known = setters();
  for (const auto& [key, node] : *table) {
    const std::string name(key.str());
    const std::string at = where + ": " + name;
    auto it = known.find(name);
    if (it == known.end()) {
      std::string names;
      for (const auto& kv : known) names += (names.empty() ? "" : ", ") + kv.first;
      throw Error(at + ": unknown setting (known: " + names + ")");
    }
    it->second(o, node, at);
  }
  // A run's length is steps or epochs: a file that names steps means steps, over a default of epochs.
  const bool sets_steps = table->contains("steps"), sets_epochs = table->contains("epochs");
  if (sets_steps && sets_epochs) throw Error(where + ": set steps or epochs, not both");
  if (sets_steps) o.epochs = 0;
  try {
    o.validate();
  } catch (const Error& e) {
    throw Error(where + ": " + e.what());
  }
  return o;
}

toml::table parse_or_throw(const std::string& text, const std::string& where) {
  try {
    return toml::parse(text, where);
  } catch (const toml::parse_error& e) {
    const auto& at = e.source().begin;
    throw Error(where + ":" + std::to_string(at.line) + ":" + std::to_string(at.column) + ": " +
                std::string(e.description()));
  }
}

}  // namespace

TrainOptions TrainOptions::load_toml(const std::filesystem::path& path, TrainOptions defaults) {
  std::ifstream in(path);
  if (!in) throw Error("cannot open " + path.string());
  std::ostringstream text;
  text << in.rdbuf();
  return parse_toml(text.str(), path.string(), std::move(defaults));
}

TrainOptions TrainOptions::parse_toml(const std::string& text, const std::string& where, TrainOptions defaults) {
  return apply_table(parse_or_throw(text, where), where, std::move(defaults));
}

std::vector<std::string> TrainOptions::keys() {
  std::vector<std::string> out;
  for (const auto& kv : setters()) out.push_back(kv.first);
  return out;
}

void TrainOptions::validate() const {
  auto require = [](bool ok, const std::string& what) {
    if (!ok) throw Error(what);
  };
  require(learning_rate >= 0 && std::isfinite(learning_rate), "learning_rate must be a finite number >= 0");
  require(adam_beta1 >= 0 && adam_beta1 < 1, "adam_beta1 must be in [0, 1)");
  require(adam_beta2 >= 0 && adam_beta2 < 1, "adam_beta2 must be in [0, 1)");
  require(adam_epsilon > 0, "adam_epsilon must be > 0");
  require(weight_decay >= 0, "weight_decay must be >= 0");
  require(warmup_steps >= 0, "warmup_steps must be >= 0");
  require(steps > 0, "steps must be > 0");
  require(batch_size > 0, "batch_size must be > 0");
  require(gradient_accumulation_steps > 0, "gradient_accumulation_steps must be > 0");
  require(max_grad_norm >= 0, "max_grad_norm must be >= 0");
  require(aux_loss_coef >= 0, "aux_loss_coef must be >= 0");
  require(seq_length > 1, "seq_length must be > 1");
  require(random_concat_ratio >= 0 && random_concat_ratio <= 1, "random_concat_ratio must be in [0, 1]");
  require(eval_fraction >= 0 && eval_fraction < 1, "eval_fraction must be in [0, 1)");
  require(eval_steps >= 0 && save_steps >= 0, "eval_steps and save_steps must be >= 0");
  require(max_eval_rows >= 0, "max_eval_rows must be >= 0");
  require(epochs >= 0 && epochs <= 1e6, "epochs must be in [0, 1e6] (0: train for `steps`)");
  require(keep_checkpoints > 0, "keep_checkpoints must be > 0");
  require(log_steps > 0, "log_steps must be > 0");
  require(boids.cohesion >= 0 && boids.separation >= 0 && boids.alignment >= 0,
          "boids_cohesion, boids_separation and boids_alignment must be >= 0");
  require(boids.tau >= 0, "boids_tau must be >= 0");
  require(boids.k_nn >= 1, "boids_k_nn must be >= 1");
  require(boids.warmup_frac >= 0 && boids.warmup_frac <= 1, "boids_warmup_frac must be in [0, 1]");
  require(early_stop_patience >= 0, "early_stop_patience must be >= 0");
  require(early_stop_min_delta >= 0, "early_stop_min_delta must be >= 0");
  require(lora_rank >= 1, "lora_rank must be >= 1");
  require(lora_alpha > 0 && std::isfinite(lora_alpha), "lora_alpha must be a finite number > 0");
  require(lora_dropout >= 0 && lora_dropout < 1, "lora_dropout must be in [0, 1)");
  require(!lora_targets.empty(), "lora_targets must name at least one target");
}

nlohmann::json TrainOptions::to_json() const {
  return {{"learning_rate", learning_rate},
          {"adam_beta1", adam_beta1},
          {"adam_beta2", adam_beta2},
          {"adam_epsilon", adam_epsilon},
          {"weight_decay", weight_decay},
          {"lr_scheduler", schedule_name(lr_scheduler)},
          {"warmup_steps", warmup_steps},
          {"steps", steps},
          {"batch_size", batch_size},
          {"gradient_accumulation_steps", gradient_accumulation_steps},
          {"max_grad_norm", max_grad_norm},
          {"aux_loss_coef", aux_loss_coef},
          {"seq_length", seq_length},
          {"packing", packing},
          {"packing_style", stream_packing ? "stream" : "esft"},
          {"random_concat_ratio", random_concat_ratio},
          {"eval_fraction", eval_fraction},
          {"seed", seed},
          {"eval_steps", eval_steps},
          {"max_eval_rows", max_eval_rows},
          {"epochs", epochs},
          {"save_steps", save_steps},
          {"keep_checkpoints", keep_checkpoints},
          {"log_steps", log_steps},
          {"router_mode", router_mode_name(router_mode)},
          {"boids_cohesion", boids.cohesion},
          {"boids_separation", boids.separation},
          {"boids_alignment", boids.alignment},
          {"boids_tau", boids.tau},
          {"boids_k_nn", boids.k_nn},
          {"boids_warmup_frac", boids.warmup_frac},
          {"boids_layers", boids_all_layers ? "all" : "last"},
          {"keep_best", keep_best},
          {"early_stop_patience", early_stop_patience},
          {"early_stop_min_delta", early_stop_min_delta},
          {"lora_rank", lora_rank},
          {"lora_alpha", lora_alpha},
          {"lora_dropout", lora_dropout},
          {"lora_rslora", lora_rslora},
          {"lora_targets", lora_targets}};
}

TrainOptions pretrain_defaults() {
  TrainOptions o;
  o.learning_rate = 3e-4;
  o.adam_beta2 = 0.95;
  o.weight_decay = 0.01;
  o.lr_scheduler = LrSchedule::Cosine;
  o.steps = 10000;
  o.warmup_steps = 100;
  o.batch_size = 16;
  o.gradient_accumulation_steps = 1;
  o.aux_loss_coef = 0.01;
  o.seq_length = 256;
  o.random_concat_ratio = 0;
  o.stream_packing = true;
  o.eval_fraction = 0.01;
  o.eval_steps = 200;
  o.save_steps = 1000;
  o.keep_best = true;
  return o;
}

const char* router_mode_name(RouterMode m) {
  switch (m) {
    case RouterMode::None: return "none";
    case RouterMode::Normal: return "normal";
    case RouterMode::Boids: return "boids";
  }
  return "?";
}

const char* schedule_name(LrSchedule s) { return s == LrSchedule::Cosine ? "cosine" : "constant"; }

double lr_factor(const TrainOptions& o, int64_t step) {
  if (step < o.warmup_steps) return static_cast<double>(step) / static_cast<double>(std::max<int64_t>(1, o.warmup_steps));
  if (o.lr_scheduler == LrSchedule::Constant) return 1.0;
  const double progress = static_cast<double>(step - o.warmup_steps) /
                          static_cast<double>(std::max<int64_t>(1, o.steps - o.warmup_steps));
  return std::max(0.0, 0.5 * (1.0 + std::cos(M_PI * progress)));
}

}  // namespace esft::train
