#include "esft/train/trainer.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <numeric>
#include <set>

#include "esft/dist/collectives.h"
#include "esft/error.h"
#include "esft/io/atomic_file.h"
#include "esft/io/json_file.h"
#include "esft/io/safetensors.h"
#include "esft/model/losses.h"
#include "esft/nn/expert_bank.h"
#include "esft/pipeline/trainable.h"
#include "esft/runtime.h"

namespace esft::train {

namespace fs = std::filesystem;

namespace {

constexpr const char* kStateFormat = "esft-train-state";

std::string checkpoint_name(int64_t step) {
  char name[32];
  std::snprintf(name, sizeof name, "step-%06lld", static_cast<long long>(step));
  return name;
}

// The step of a complete checkpoint folder ("step-000100"), or -1.
int64_t checkpoint_step(const fs::path& dir) {
  const auto name = dir.filename().string();
  if (name.rfind("step-", 0) != 0 || name.size() == 5) return -1;
  const auto step = parse_index(name.substr(5));
  return step ? *step : -1;
}

// Keys of two JSON objects whose values differ, for a message that says what changed.
std::string differing_keys(const nlohmann::json& a, const nlohmann::json& b) {
  std::string out;
  auto add = [&](const std::string& k) { out += (out.empty() ? "" : ", ") + k; };
  for (const auto& [k, v] : a.items())
    if (!b.contains(k) || b[k] != v) add(k);
  for (const auto& [k, v] : b.items())
    if (!a.contains(k)) add(k);
  return out;
}

bool routers_train(MoECausalLM& model) {
  for (auto* layer : model.moe_layers())
    for (const auto& p : layer->router().parameters())
      if (p.requires_grad()) return true;
  return false;
}

}  // namespace

std::vector<fs::path> list_checkpoints(const fs::path& out_dir) {
  std::vector<std::pair<int64_t, fs::path>> found;
  const auto dir = out_dir / "checkpoints";
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return {};
  for (const auto& entry : fs::directory_iterator(dir)) {
    const int64_t step = checkpoint_step(entry.path());
    if (step >= 0 && entry.is_directory() && fs::exists(entry.path() / "trainer_state.json")) {
      found.emplace_back(step, entry.path());
    }
  }
  std::sort(found.begin(), found.end());
  std::vector<fs::path> out;
  for (auto& f : found) out.push_back(std::move(f.second));
  return out;
}

Trainer::Trainer(MoECausalLM& model, TrainOptions options, std::vector<data::Row> train_rows,
                 std::vector<data::Row> eval_rows, int32_t pad_id, const c10::Device& device, fs::path out_dir,
                 nlohmann::json fingerprint, dist::Communicator& comm)
    : model_(model),
      options_(std::move(options)),
      comm_(comm),
      stream_(std::move(train_rows), options_.seed, pad_id),
      eval_rows_(std::move(eval_rows)),
      pad_id_(pad_id),
      device_(device),
      out_dir_(std::move(out_dir)),
      fingerprint_(std::move(fingerprint)),
      objective_(options_, routers_train(model), trash_constraint_of(model)) {
  options_.validate();
  if (comm_.world_size() > options_.batch_size) {
    throw Error("batch_size " + std::to_string(options_.batch_size) + " is smaller than the " +
                std::to_string(comm_.world_size()) + " processes: each rank takes a share of every micro-batch's "
                "rows, so some would have none (raise batch_size, or lower gradient_accumulation_steps with it)");
  }
  if (options_.max_eval_rows > 0 && eval_rows_.size() > static_cast<size_t>(options_.max_eval_rows))
    eval_rows_.resize(static_cast<size_t>(options_.max_eval_rows));
  if (!comm_.is_solo()) {
    const auto share = dist::share_of(static_cast<int64_t>(eval_rows_.size()), comm_.rank(), comm_.world_size());
    eval_share_.assign(eval_rows_.begin() + share.begin, eval_rows_.begin() + share.end);
  }
  params_ = pipeline::trainable_parameters(model_);
  // Expert parallelism: the trainable tensors of banks whose experts are spread over the ranks, in module order
  // (the same on every rank, rows or none).
  for (const auto& item : model_.named_modules()) {
    const auto* bank = dynamic_cast<const nn::ExpertBank*>(item.value().get());
    if (!bank || !bank->expert_group()) continue;
    expert_parallel_ = true;
    const auto rows = bank->trainable_rows_per_rank();
    if (std::all_of(rows.begin(), rows.end(), [](int64_t n) { return n == 0; })) continue;
    int64_t offset = 0;
    for (int r = 0; r < comm_.rank(); ++r) offset += rows[static_cast<size_t>(r)];
    for (const auto& p : bank->named_parameters(/*recurse=*/false))
      sharded_.push_back({item.key() + "." + p.key(), p.value(), rows, offset});
  }
  if (params_.empty() && sharded_.empty())
    throw Error("nothing to train: the expert config selects no experts and no other modules");
  // Every rank starts from rank 0's trainable tensors (freshly initialised ones, as LoRA's, included), as
  // PyTorch's DistributedDataParallel does; sharded experts are each rank's own.
  if (!comm_.is_solo()) {
    at::NoGradGuard no_grad;
    for (auto& [name, p] : params_) {
      if (sharded(p)) continue;
      auto value = p.detach().contiguous();
      comm_.broadcast(value, 0);
      if (value.data_ptr() != p.data_ptr()) p.copy_(value);
    }
  }
  AdamWSettings s;
  s.beta1 = options_.adam_beta1;
  s.beta2 = options_.adam_beta2;
  s.eps = options_.adam_epsilon;
  s.weight_decay = options_.weight_decay;
  optimizer_ = std::make_unique<AdamW>(params_, s);
}

Trainer::~Trainer() = default;

int64_t Trainer::trainable_numel() const {
  int64_t n = 0;
  for (const auto& p : params_)
    if (!sharded(p.second)) n += p.second.numel();
  for (const auto& s : sharded_) {  // whole, over every rank
    const int64_t rows = std::accumulate(s.rows.begin(), s.rows.end(), int64_t{0});
    const auto sizes = s.param.sizes();
    n += rows * c10::multiply_integers(sizes.begin() + 1, sizes.end());
  }
  return n;
}

bool Trainer::sharded(const at::Tensor& param) const {
  return std::any_of(sharded_.begin(), sharded_.end(), [&](const ShardedTensor& s) { return s.param.is_same(param); });
}

at::Tensor Trainer::local_part(const std::string& name, const at::Tensor& stored) const {
  for (const auto& s : sharded_)
    if (s.name == name) return stored.narrow(0, s.offset, s.rows[static_cast<size_t>(comm_.rank())]);
  return stored;
}

StepReport Trainer::train_step() {
  const auto start = std::chrono::steady_clock::now();
  const uint64_t bytes_before = comm_.reduced_bytes();  // the step's exchanges and sums
  model_.train();
  for (auto& p : params_) p.second.mutable_grad() = at::Tensor();

  // The step's micro-batches: the global ones define the token weights; this rank runs its share of their rows.
  std::vector<Batch> micro;
  int64_t label_tokens = 0, tokens = 0;
  const int world = comm_.world_size();
  for (int64_t i = 0; i < options_.gradient_accumulation_steps; ++i) {
    auto rows = stream_.next_rows(options_.batch_size);
    const auto whole = collate(rows, pad_id_);
    label_tokens += whole.label_tokens;
    tokens += whole.tokens;
    if (world == 1) {
      micro.push_back(whole);
      continue;
    }
    const auto share = dist::share_of(static_cast<int64_t>(rows.size()), comm_.rank(), world);  // never empty
    micro.push_back(collate({rows.begin() + share.begin, rows.begin() + share.end}, pad_id_));
  }
  // The step's randomness (router jitter) from (seed, step): a resumed run draws what the uninterrupted one did.
  // Each rank draws its own (rank 0 the stream one process draws).
  at::manual_seed(options_.seed * 1000003ULL + static_cast<uint64_t>(step_) + 0x9E3779B9ULL * static_cast<uint64_t>(comm_.rank()));
  double loss_sum = 0;
  const double micro_batches = static_cast<double>(options_.gradient_accumulation_steps * world);
  for (const auto& b : micro) {
    // Nothing to learn from an all-padding micro-batch; under expert parallelism the others' exchanges still need
    // this rank's forward and backward.
    if (b.label_tokens == 0 && !expert_parallel_) continue;
    ForwardOptions fo;
    fo.logits = LogitsMode::None;  // the loss comes from the final hidden states, a chunk of logits at a time
    fo.final_hidden = true;
    objective_.prepare(fo);
    const auto mask = b.attention_mask.to(device_);
    auto out = model_.forward(b.input_ids.to(device_), mask, fo);
    // Each micro-batch's mean, weighted by its share of the step's labels: the step's token mean.
    const double weight = static_cast<double>(b.label_tokens) / static_cast<double>(label_tokens);
    auto loss = b.label_tokens == 0
                    ? out.final_hidden.sum() * 0.0
                    : chunked_causal_lm_loss(out.final_hidden, model_.output_embedding(), b.labels.to(device_)) * weight;
    loss_sum += loss.item<double>();
    // The routers' losses are per forward, averaged over every rank's forwards of the step.
    const auto routers = objective_.loss(out, mask, step_, 1.0 / micro_batches);
    if (routers.defined()) loss = loss + routers;
    // Without trainable routers the load-balancing loss reaches no trainable tensor: nothing to back-propagate.
    if (loss.requires_grad()) loss.backward();
  }
  bool stop = stop_ && stop_->load() != 0;
  std::vector<at::Tensor> tensors, replicated, local_experts;
  for (const auto& p : params_) {
    tensors.push_back(p.second);
    (sharded(p.second) ? local_experts : replicated).push_back(p.second);
  }
  double sharded_norm_sq = grad_norm_squared(local_experts);
  if (!comm_.is_solo()) reduce_gradients(loss_sum, stop, sharded_norm_sq);
  group_stop_ = stop;

  double grad_norm = 0;
  if (expert_parallel_) {  // the norm over every rank's experts and the replicated tensors
    grad_norm = std::sqrt(grad_norm_squared(replicated) + sharded_norm_sq);
    clip_grads_to(tensors, options_.max_grad_norm, grad_norm);
  } else {
    grad_norm = clip_grad_norm(tensors, options_.max_grad_norm);
  }
  const double lr = options_.learning_rate * lr_factor(options_, step_);
  optimizer_->step(lr);
  ++step_;
  synchronize(device_);

  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  elapsed_s_ += seconds;
  run_elapsed_s_ += seconds;
  ++run_steps_;
  StepReport r;
  r.step = step_;
  r.loss = loss_sum;
  r.lr = lr;
  r.grad_norm = grad_norm;
  r.tokens = tokens;
  r.tokens_per_s = seconds > 0 ? static_cast<double>(tokens) / seconds : 0;
  r.elapsed_s = elapsed_s_;
  r.eta_s = run_elapsed_s_ / static_cast<double>(run_steps_) * static_cast<double>(options_.steps - step_);
  r.peak_rss_mib = peak_rss_mib();
  r.peak_memory_mib = peak_memory_mib(device_);
  r.comm_bytes = comm_.reduced_bytes() - bytes_before;
  r.routing = objective_.take_figures();
  return r;
}

void Trainer::reduce_gradients(double& loss_sum, bool& stop, double& sharded_norm_sq) {
  at::NoGradGuard no_grad;
  // One small collective first: which tensors have a gradient on some rank (an expert no rank's tokens reached has
  // none, and AdamW leaves it untouched, as in one process), the step's loss, whether a rank was asked to stop, and
  // the squared norm of the sharded experts' gradients. The tensors summed are the replicated ones, the same list
  // on every rank; sharded experts keep their gradients.
  std::vector<at::Tensor*> summed;
  for (auto& p : params_)
    if (!sharded(p.second)) summed.push_back(&p.second);
  const auto P = static_cast<int64_t>(summed.size());
  auto small = at::zeros({P + 3}, at::kDouble);
  auto* flags = small.data_ptr<double>();
  for (int64_t i = 0; i < P; ++i) flags[i] = summed[static_cast<size_t>(i)]->grad().defined() ? 1.0 : 0.0;
  flags[P] = loss_sum;
  flags[P + 1] = stop ? 1.0 : 0.0;
  flags[P + 2] = sharded_norm_sq;
  auto reduced = small.to(device_);
  comm_.all_reduce_sum(reduced);
  small = reduced.cpu();
  flags = small.data_ptr<double>();
  loss_sum = flags[P];
  stop = flags[P + 1] > 0;
  sharded_norm_sq = flags[P + 2];
  std::vector<at::Tensor> grads;
  for (int64_t i = 0; i < P; ++i) {
    auto& p = *summed[static_cast<size_t>(i)];
    if (flags[i] == 0) continue;
    if (!p.grad().defined()) p.mutable_grad() = at::zeros_like(p);
    grads.push_back(p.grad());
  }
  dist::all_reduce_sum_bucketed(comm_, grads);
}

MeanLoss mean_loss(MoECausalLM& model, const std::vector<data::Row>& rows, int64_t batch_size, int32_t pad_id,
                   const c10::Device& device, RouterHook* hook) {
  model.eval();
  at::NoGradGuard no_grad;
  double loss_sum = 0;
  MeanLoss out;
  const auto step = static_cast<size_t>(batch_size);
  for (size_t i = 0; i < rows.size(); i += step) {
    std::vector<const data::Row*> batch;
    for (size_t j = i; j < std::min(rows.size(), i + step); ++j) batch.push_back(&rows[j]);
    const auto b = collate(batch, pad_id);
    if (b.label_tokens == 0) continue;
    ForwardOptions fo;
    fo.logits = LogitsMode::None;
    fo.final_hidden = true;
    if (hook) fo.hooks.push_back(hook);
    const auto hidden = model.forward(b.input_ids.to(device), b.attention_mask.to(device), fo).final_hidden;
    loss_sum += chunked_causal_lm_loss(hidden, model.output_embedding(), b.labels.to(device)).item<double>() *
                static_cast<double>(b.label_tokens);
    out.label_tokens += b.label_tokens;
  }
  if (out.label_tokens > 0) out.loss = loss_sum / static_cast<double>(out.label_tokens);
  return out;
}

double EvalReport::ppl() const { return std::exp(loss); }

std::optional<EvalReport> Trainer::evaluate() {
  RoutingTally tally;
  const auto m = mean_loss(model_, eval_rows_, options_.batch_size, pad_id_, device_, &tally);
  if (m.label_tokens == 0) return std::nullopt;
  EvalReport e;
  e.step = step_;
  e.loss = m.loss;
  e.label_tokens = m.label_tokens;
  tally.read_into(e.routing);
  return e;
}

std::optional<EvalReport> Trainer::evaluate_shared() {
  if (comm_.is_solo()) return evaluate();
  if (eval_rows_.empty()) return std::nullopt;  // the same on every rank
  RoutingTally tally;
  MeanLoss m;
  if (!expert_parallel_) {
    m = mean_loss(model_, eval_share_, options_.batch_size, pad_id_, device_, &tally);
  } else {
    // The exchanges need the same forwards on every rank: each global batch, this rank's share of its rows (a
    // padding row where it has none), whether or not they hold labels.
    model_.eval();
    at::NoGradGuard no_grad;
    const data::Row padding{{pad_id_}, {data::kIgnoreIndex}, {1}};
    double loss_sum = 0;
    const auto size = static_cast<size_t>(options_.batch_size);
    for (size_t i = 0; i < eval_rows_.size(); i += size) {
      const auto n = static_cast<int64_t>(std::min(size, eval_rows_.size() - i));
      const auto share = dist::share_of(n, comm_.rank(), comm_.world_size());
      std::vector<const data::Row*> rows;
      for (int64_t j = share.begin; j < share.end; ++j) rows.push_back(&eval_rows_[i + static_cast<size_t>(j)]);
      if (rows.empty()) rows.push_back(&padding);
      const auto b = collate(rows, pad_id_);
      ForwardOptions fo;
      fo.logits = LogitsMode::None;
      fo.final_hidden = true;
      if (share.size() > 0) fo.hooks.push_back(&tally);
      const auto hidden = model_.forward(b.input_ids.to(device_), b.attention_mask.to(device_), fo).final_hidden;
      if (b.label_tokens == 0) continue;
      loss_sum += chunked_causal_lm_loss(hidden, model_.output_embedding(), b.labels.to(device_)).item<double>() *
                  static_cast<double>(b.label_tokens);
      m.label_tokens += b.label_tokens;
    }
    if (m.label_tokens > 0) m.loss = loss_sum / static_cast<double>(m.label_tokens);
  }
  auto sums = at::tensor({m.loss * static_cast<double>(m.label_tokens), static_cast<double>(m.label_tokens)},
                         at::kDouble).to(device_);
  comm_.all_reduce_sum(sums);
  sums = sums.cpu();
  const double loss_sum = sums[0].item<double>(), labels = sums[1].item<double>();
  if (labels == 0) return std::nullopt;
  EvalReport e;
  e.step = step_;
  e.loss = loss_sum / labels;
  e.label_tokens = static_cast<int64_t>(labels);
  tally.read_into(e.routing);  // this rank's rows
  return e;
}

namespace {

constexpr const char* kCsvHeader =
    "step,train_loss,aux,val_loss,val_ppl,tokens_per_sec,mem_mb,drop_frac,util_entropy,util_entropy_norm,"
    "boids_cohesion,boids_separation,boids_alignment,lr";

std::string cell(const std::optional<double>& v) {
  if (!v || !std::isfinite(*v)) return "";
  char text[32];
  std::snprintf(text, sizeof text, "%.6g", *v);
  return text;
}

}  // namespace

void Trainer::record_eval(EvalReport& e) {
  e.best = !best_loss_ || e.loss < *best_loss_ - options_.early_stop_min_delta;
  if (e.best) {
    best_loss_ = e.loss;
    best_step_ = e.step;
    evals_since_best_ = 0;
    if (options_.keep_best && (comm_.is_root() || expert_parallel_)) {
      const auto tensors = gathered_trainable();  // every rank takes part under expert parallelism
      if (comm_.is_root()) {
        const auto dir = out_dir_ / "checkpoints" / "best";
        fs::create_directories(dir.parent_path());
        AtomicDirectory partial(dir);
        save_safetensors(partial.path() / "trainable.safetensors", tensors);
        write_text_atomically(partial.path() / "best.json",
                              nlohmann::json{{"step", e.step}, {"eval_loss", e.loss}}.dump(2) + "\n");
        partial.commit(/*replace=*/true);
      }
    }
  } else {
    ++evals_since_best_;
  }
  append_metrics({{"step", e.step},
                  {"eval_loss", e.loss},
                  {"eval_ppl", e.ppl()},
                  {"eval_label_tokens", e.label_tokens},
                  {"eval_drop_fraction", e.routing.drop_fraction() ? nlohmann::json(*e.routing.drop_fraction()) : nlohmann::json()},
                  {"best", e.best}});

  // metrics.csv: the train figures are the means over the steps since the last eval.
  if (comm_.is_root()) write_csv_row(e);
  window_loss_ = window_tokens_per_s_ = 0;
  window_steps_ = 0;
  window_routing_ = RoutingFigures();
}

void Trainer::write_csv_row(const EvalReport& e) const {
  const auto csv = out_dir_ / "metrics.csv";
  const bool fresh = !fs::exists(csv);
  std::ofstream out(csv, std::ios::app);
  if (fresh) out << kCsvHeader << "\n";
  const auto steps = static_cast<double>(window_steps_);
  const auto& r = window_routing_;
  out << e.step << "," << cell(window_steps_ ? std::optional<double>(window_loss_ / steps) : std::nullopt) << ","
      << cell(r.aux) << "," << cell(e.loss) << "," << cell(e.ppl()) << ","
      << cell(window_steps_ ? std::optional<double>(window_tokens_per_s_ / steps) : std::nullopt) << ","
      << cell(peak_memory_mib(device_)) << "," << cell(r.drop_fraction()) << "," << cell(r.utilisation_entropy(false))
      << "," << cell(r.utilisation_entropy(true)) << "," << cell(r.boids_cohesion) << "," << cell(r.boids_separation)
      << "," << cell(r.boids_alignment) << "," << cell(options_.learning_rate * lr_factor(options_, std::max<int64_t>(0, e.step - 1)))
      << "\n";
  if (!out) throw Error("cannot write " + csv.string());
}

nlohmann::json Trainer::window_json() const {
  return {{"loss_sum", window_loss_},
          {"tokens_per_s_sum", window_tokens_per_s_},
          {"steps", window_steps_},
          {"routing", window_routing_.to_json()},
          {"best_loss", best_loss_ ? nlohmann::json(*best_loss_) : nlohmann::json()},
          {"best_step", best_step_},
          {"evals_since_best", evals_since_best_}};
}

std::optional<EvalReport> Trainer::load_best() {
  const auto dir = out_dir_ / "checkpoints" / "best";
  if (!fs::exists(dir / "best.json")) return std::nullopt;
  const auto info = read_json_file(dir / "best.json");
  load_trainable(dir / "trainable.safetensors");
  EvalReport e;
  e.step = info.value("step", int64_t{0});
  e.loss = info.value("eval_loss", 0.0);
  e.best = true;
  return e;
}

void Trainer::append_metrics(const nlohmann::json& line) {
  if (!comm_.is_root()) return;
  std::ofstream out(out_dir_ / "metrics.jsonl", std::ios::app);
  out << line.dump() << "\n";
  if (!out) throw Error("cannot write " + (out_dir_ / "metrics.jsonl").string());
}

Trainer::Outcome Trainer::run(const std::atomic<int>* stop, const std::function<void(const StepReport&)>& on_step,
                              const std::function<void(const EvalReport&)>& on_eval) {
  stop_ = stop;
  if (step_ == 0 && comm_.is_root()) {
    std::ofstream(out_dir_ / "metrics.jsonl", std::ios::trunc);
    fs::remove(out_dir_ / "metrics.csv");
  }
  auto eval_and_log = [&] {
    if (auto e = evaluate_shared()) {
      record_eval(*e);
      if (on_eval) on_eval(*e);
    }
  };
  auto out_of_patience = [&] {
    return options_.early_stop_patience > 0 && evals_since_best_ >= options_.early_stop_patience;
  };
  while (step_ < options_.steps) {
    const auto r = train_step();
    window_loss_ += r.loss;
    window_tokens_per_s_ += r.tokens_per_s;
    ++window_steps_;
    window_routing_.add(r.routing);
    nlohmann::json line = {{"step", r.step},
                    {"loss", r.loss},
                    {"lr", r.lr},
                    {"grad_norm", r.grad_norm},
                    {"tokens", r.tokens},
                    {"tokens_per_s", r.tokens_per_s},
                    {"elapsed_s", r.elapsed_s},
                    {"epoch", stream_.epoch()},
                    {"peak_rss_mib", r.peak_rss_mib}};
    if (!comm_.is_solo()) line["comm_bytes"] = r.comm_bytes;
    if (r.routing.aux) line["aux"] = *r.routing.aux;
    if (auto d = r.routing.drop_fraction()) line["drop_fraction"] = *d;
    if (r.routing.boids_cohesion) {
      line["boids_cohesion"] = *r.routing.boids_cohesion;
      line["boids_separation"] = *r.routing.boids_separation;
      line["boids_alignment"] = *r.routing.boids_alignment;
    }
    append_metrics(line);
    if (on_step) on_step(r);
    const bool last = step_ == options_.steps;
    if (options_.eval_steps > 0 && step_ % options_.eval_steps == 0 && !last) {
      eval_and_log();
      if (out_of_patience()) {
        save_checkpoint();
        return Outcome::EarlyStopped;
      }
    }
    if ((options_.save_steps > 0 && step_ % options_.save_steps == 0) || last) save_checkpoint();
    // One process reads its flag now; ranks act on what the step's collective gathered, so that all stop together.
    const bool stopping = comm_.is_solo() ? stop && stop->load() != 0 : group_stop_;
    if (stopping && !last) {
      save_checkpoint();
      return Outcome::Interrupted;
    }
  }
  eval_and_log();
  return Outcome::Finished;
}

NamedTensors Trainer::gathered_trainable() const {
  NamedTensors weights;
  // The live tensors: saving writes them before training goes on, and a copy of every trainable tensor and its
  // optimizer state would raise the run's peak memory by their size. Sharded experts are gathered whole.
  for (const auto& [name, p] : params_)
    if (!sharded(p)) weights.emplace_back(name, p.detach());
  for (const auto& s : sharded_) {
    // To the host at once: rank 0's device holds its own experts, not every rank's.
    auto whole = dist::all_gather_rows(comm_, s.param.detach(), s.rows);
    if (comm_.is_root()) weights.emplace_back(s.name, whole.cpu());
  }
  if (!comm_.is_root()) weights.clear();
  return weights;
}

NamedTensors Trainer::gathered_optimizer_state() const {
  auto state = optimizer_->state();
  if (sharded_.empty()) return state;
  std::map<std::string, at::Tensor> local;
  for (auto& [key, t] : state) local.emplace(key, t);
  std::set<std::string> sharded_names;
  for (const auto& s : sharded_) sharded_names.insert(s.name);
  NamedTensors out;
  for (const auto& entry : state) {  // `<kind>.<param>`: the replicated tensors' state as it is
    if (!sharded_names.count(entry.first.substr(entry.first.find('.') + 1))) out.push_back(entry);
  }
  for (const auto& s : sharded_) {
    // Moments in float32; a master copy where the parameter is narrower (the same on every rank).
    std::vector<std::string> kinds{"exp_avg.", "exp_avg_sq."};
    if (s.param.scalar_type() != at::kFloat) kinds.push_back("master.");
    for (const auto& kind : kinds) {
      const auto it = local.find(kind + s.name);
      auto mine = it != local.end() ? it->second : at::empty(s.param.sizes(), s.param.options().dtype(at::kFloat));
      auto whole = dist::all_gather_rows(comm_, mine, s.rows);
      if (comm_.is_root()) out.emplace_back(kind + s.name, whole.cpu());
    }
  }
  if (!comm_.is_root()) out.clear();
  return out;
}

void Trainer::load_trainable(const fs::path& file) {
  const SafetensorsFile weights(file);
  at::NoGradGuard no_grad;
  for (auto& [name, p] : params_) {
    if (!weights.find(name)) throw Error(weights.path().string() + ": tensor '" + name + "' is missing");
    auto value = local_part(name, weights.view(name));
    if (value.sizes() != p.sizes()) throw Error(weights.path().string() + ": tensor '" + name + "' has the wrong shape");
    p.copy_(value);
  }
}

fs::path Trainer::save_checkpoint() {
  const auto dir = out_dir_ / "checkpoints" / checkpoint_name(step_);
  // Under expert parallelism every rank takes part (the gathers); the decision to save is the same on all.
  if (saved_step_ == step_ || (!comm_.is_root() && !expert_parallel_)) return dir;
  saved_step_ = step_;
  const auto trainable = gathered_trainable();
  const auto optimizer_state = gathered_optimizer_state();
  if (!comm_.is_root() || fs::exists(dir / "trainer_state.json")) return dir;
  fs::create_directories(dir.parent_path());
  AtomicDirectory partial(dir);
  save_safetensors(partial.path() / "trainable.safetensors", trainable);
  save_safetensors(partial.path() / "optimizer.safetensors", optimizer_state);
  const nlohmann::json state = {{"format", kStateFormat},
                                {"version", 1},
                                {"step", step_},
                                {"optimizer_steps", optimizer_->steps()},
                                {"data_position", stream_.position()},  // of every rank: one global stream
                                {"world_size", comm_.world_size()},
                                {"elapsed_s", elapsed_s_},
                                {"since_eval", window_json()},
                                {"options", options_.to_json()},
                                {"fingerprint", fingerprint_}};
  write_text_atomically(partial.path() / "trainer_state.json", state.dump(2) + "\n");
  partial.commit();
  prune_checkpoints();
  return dir;
}

void Trainer::prune_checkpoints() {
  auto all = list_checkpoints(out_dir_);
  const auto keep = static_cast<size_t>(options_.keep_checkpoints);
  for (size_t i = 0; i + keep < all.size(); ++i) fs::remove_all(all[i]);
}

int64_t Trainer::resume() {
  const auto all = list_checkpoints(out_dir_);
  if (all.empty()) throw Error("--resume: no checkpoint in " + (out_dir_ / "checkpoints").string());
  const auto dir = all.back();
  const auto state = read_json_file(dir / "trainer_state.json");
  if (!state.is_object() || state.find("format") == state.end() || state["format"] != kStateFormat ||
      state.find("version") == state.end() || json_get<int64_t>(state["version"]) != 1) {
    throw Error((dir / "trainer_state.json").string() + ": not an esft training state (format/version)");
  }
  if (state["fingerprint"] != fingerprint_) {
    throw Error("--resume: " + dir.string() + " was made by a run with other inputs (" +
                differing_keys(state["fingerprint"], fingerprint_) + " differ); use a fresh --out");
  }
  load_trainable(dir / "trainable.safetensors");
  auto count = [&](const char* key) {
    const auto it = state.find(key);
    const auto v = it == state.end() ? std::nullopt : json_get<int64_t>(*it);
    if (!v || *v < 0) throw Error("--resume: " + dir.string() + ": \"" + key + "\" must be a non-negative integer");
    return *v;
  };
  optimizer_->load_state(SafetensorsFile(dir / "optimizer.safetensors"), count("optimizer_steps"),
                         [this](const std::string& name, const at::Tensor& stored) { return local_part(name, stored); });
  step_ = count("step");
  saved_step_ = step_;
  stream_.seek(count("data_position"));
  elapsed_s_ = json_get<double>(state.value("elapsed_s", nlohmann::json(0.0))).value_or(0.0);
  if (const auto w = state.find("since_eval"); w != state.end()) {
    try {
      window_loss_ = w->at("loss_sum").get<double>();
      window_tokens_per_s_ = w->at("tokens_per_s_sum").get<double>();
      window_steps_ = w->at("steps").get<int64_t>();
      window_routing_ = RoutingFigures::from_json(w->at("routing"));
      best_loss_ = w->at("best_loss").is_null() ? std::nullopt : std::optional<double>(w->at("best_loss").get<double>());
      best_step_ = w->at("best_step").get<int64_t>();
      evals_since_best_ = w->at("evals_since_best").get<int64_t>();
    } catch (const std::exception& e) {
      throw Error("--resume: " + dir.string() + ": malformed \"since_eval\" (" + e.what() + ")");
    }
  }

  if (!comm_.is_root()) return step_;
  // metrics.jsonl continues from the checkpoint: lines of steps after it (written before the interruption) go.
  const auto metrics = out_dir_ / "metrics.jsonl";
  std::string kept;
  if (std::ifstream in(metrics); in) {
    for (std::string line; std::getline(in, line);) {
      if (line.empty()) continue;
      const auto j = nlohmann::json::parse(line, nullptr, false);
      if (!j.is_discarded() && j.value("step", int64_t{0}) <= step_) kept += line + "\n";
    }
  }
  write_text_atomically(metrics, kept);
  // A best checkpoint from after the resumed step (a run killed without a checkpoint) is not this run's best.
  if (const auto best = out_dir_ / "checkpoints" / "best" / "best.json"; fs::exists(best)) {
    if (read_json_file(best).value("step", int64_t{0}) > step_) fs::remove_all(best.parent_path());
  }
  // metrics.csv likewise keeps its header and the rows up to the checkpoint.
  const auto csv = out_dir_ / "metrics.csv";
  if (std::ifstream in(csv); in) {
    std::string rows, line;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      const auto comma = line.find(',');
      const auto row_step = parse_index(line.substr(0, comma));
      if (!row_step || *row_step <= step_) rows += line + "\n";  // the header has no step number
    }
    write_text_atomically(csv, rows);
  }
  return step_;
}

}  // namespace esft::train
