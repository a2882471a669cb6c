#pragma once
// The ESFT training loop (shared/spec/ESFT.md §4) over a model whose trainable tensors are already chosen
// (pipeline::apply_expert_config): AdamW on exactly those tensors, gradient accumulation, clipping, the learning
// rate schedule, periodic eval loss, atomic checkpoints that resume exactly, and metrics.jsonl.
//
// The loss of a step is the token-weighted mean cross-entropy over all its micro-batches (each label counts once,
// however the rows fall into micro-batches), plus aux_loss_coef times the load-balancing loss when asked for.
//
// The routers add their part (RouterObjective: load balancing, Boids) and report routing figures. Every update
// draws its randomness (router jitter) from a generator seeded by (seed, step), so a resumed run is exact.
//
// Data parallelism: under a Communicator of several ranks, every rank walks the same global stream and takes its
// contiguous share of the rows of every micro-batch; the gradients of the trainable tensors (only those) are summed
// over the ranks before clipping, and every rank applies the same update, so the ranks stay in lockstep. A step is
// the step of one process with the same options, up to float rounding. Eval rows are shared the same way. Rank 0
// alone writes the output folder; the data position it records is the one global position, so a run resumes with
// any number of processes (each step's rows do not depend on it).
//
// Expert parallelism (nn/expert_parallel.h): the trainable tensors of expert banks spread over the ranks hold each
// rank's own experts. Their gradients already hold every rank's tokens (the exchanges carried them to the owner),
// so they are not summed; the global gradient norm adds their squares over the ranks; AdamW keeps each rank's
// moments for its rows. Checkpoints store them whole, in the layout of one process (rank 0 gathers them), so a
// run resumes with any number of processes, with or without expert parallelism. Every rank then runs the same
// forward passes (an eval batch with no row for a rank gets a padding row), as the exchanges need.
//
// Output folder:
//   metrics.jsonl                  one line per step ({"step","loss","lr","grad_norm",...}) and per eval
//   metrics.csv                    one row per eval: step, train_loss, aux, val_loss, val_ppl, tokens_per_sec, mem_mb
//                                  (the TinyMoE reference's columns; train figures are means since the last eval),
//                                  then drop_frac, util_entropy, util_entropy_norm, boids_cohesion,
//                                  boids_separation, boids_alignment, lr
//   checkpoints/step-000100/       trainable.safetensors (module names), optimizer.safetensors, trainer_state.json
//   checkpoints/best/              trainable.safetensors and best.json of the lowest eval loss (keep_best)
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "esft/dist/communicator.h"
#include "esft/model/moe_causal_lm.h"
#include "esft/train/adamw.h"
#include "esft/train/batch_stream.h"
#include "esft/train/router_objective.h"
#include "esft/train/train_options.h"

namespace esft::train {

struct StepReport {
  int64_t step = 0;           // 1-based, the update just made
  double loss = 0;
  double lr = 0;
  double grad_norm = 0;       // before clipping
  int64_t tokens = 0;         // real tokens in the step
  double tokens_per_s = 0;
  double elapsed_s = 0;       // training time so far, across resumes
  double eta_s = 0;
  double peak_rss_mib = 0;
  double peak_memory_mib = 0; // the device's (CUDA allocator peak) or, on the CPU, peak RSS
  uint64_t comm_bytes = 0;    // bytes this rank sent in the step's collectives: sums, and expert parallelism's
                              // exchanges of token rows (0 for one process)
  RoutingFigures routing;     // of this rank's rows
};

struct EvalReport {
  int64_t step = 0;
  double loss = 0;
  int64_t label_tokens = 0;
  RoutingFigures routing;  // of the eval pass (no jitter)
  bool best = false;       // the lowest eval loss so far, by more than early_stop_min_delta
  double ppl() const;      // exp(loss)
};

class Trainer {
 public:
  // `fingerprint` records what must not change between a run and its resumption (data, expert config, options
  // that shape the data order); resume() refuses a checkpoint made under another one.
  Trainer(MoECausalLM& model, TrainOptions options, std::vector<data::Row> train_rows,
          std::vector<data::Row> eval_rows, int32_t pad_id, const c10::Device& device,
          std::filesystem::path out_dir, nlohmann::json fingerprint, dist::Communicator& comm = dist::solo());
  ~Trainer();

  // Continues from the newest complete checkpoint in out_dir/checkpoints: trainable tensors, optimizer state, step
  // and data position; metrics.jsonl loses any lines written after it. Returns the step. Throws esft::Error when
  // there is none or it was made for another run.
  int64_t resume();

  enum class Outcome { Finished, EarlyStopped, Interrupted };
  // Trains until options.steps, until early_stop_patience evaluations in a row bring no improvement, or until *stop
  // becomes non-zero (checked after each step; a checkpoint is saved first). `on_step` and `on_eval` see every
  // report (for progress output).
  Outcome run(const std::atomic<int>* stop, const std::function<void(const StepReport&)>& on_step = {},
              const std::function<void(const EvalReport&)>& on_eval = {});

  // Mean eval loss over all the held-out rows, in this process alone; nullopt when there are none.
  std::optional<EvalReport> evaluate();
  // Saves a checkpoint of the current step (a no-op when it exists). Returns its folder.
  std::filesystem::path save_checkpoint();
  // Loads checkpoints/best/ into the model (keep_best); returns its step and eval loss, nullopt when there is none.
  std::optional<EvalReport> load_best();

  int64_t step() const { return step_; }
  const AdamW& optimizer() const { return *optimizer_; }
  int64_t trainable_numel() const;
  size_t train_rows() const { return stream_.size(); }
  size_t eval_rows() const { return eval_rows_.size(); }

 private:
  StepReport train_step();
  // The eval of the run: each rank its share of the rows, the sums added over the ranks.
  std::optional<EvalReport> evaluate_shared();
  // Sums the trainable tensors' gradients over the ranks; a tensor without a gradient on every rank keeps none.
  // Adds the step's loss (and the stop request, 0 or 1) into the same collective. Expert parallelism:
  // `sharded_norm_sq` comes in as this rank's squared norm of its sharded gradients and goes out summed over the
  // ranks; the sharded gradients themselves are not summed.
  void reduce_gradients(double& loss_sum, bool& stop, double& sharded_norm_sq);
  void append_metrics(const nlohmann::json& line);
  void prune_checkpoints();
  void record_eval(EvalReport& e);
  void write_csv_row(const EvalReport& e) const;  // metrics.csv
  // The trainable tensors under their module names, from a safetensors file (resume, the best checkpoint); under
  // expert parallelism each rank reads its rows.
  void load_trainable(const std::filesystem::path& file);
  // The tensors a checkpoint stores, sharded ones gathered whole (on rank 0; empty elsewhere).
  NamedTensors gathered_trainable() const;
  NamedTensors gathered_optimizer_state() const;
  // This rank's rows of a stored whole tensor of parameter `name` (the tensor itself unless it is sharded).
  at::Tensor local_part(const std::string& name, const at::Tensor& stored) const;
  bool sharded(const at::Tensor& param) const;  // best checkpoint, patience, metrics.jsonl and metrics.csv
  nlohmann::json window_json() const;

  MoECausalLM& model_;
  TrainOptions options_;
  dist::Communicator& comm_;
  const std::atomic<int>* stop_ = nullptr;  // run()'s stop flag, read in the step's collective
  bool group_stop_ = false;                 // some rank's flag was set at the last step
  BatchStream stream_;
  std::vector<data::Row> eval_rows_;
  std::vector<data::Row> eval_share_;  // this rank's share of eval_rows_ (all of them for one process)
  int32_t pad_id_;
  c10::Device device_;
  std::filesystem::path out_dir_;
  nlohmann::json fingerprint_;
  std::vector<std::pair<std::string, at::Tensor>> params_;
  // Expert parallelism's trainable bank tensors, the same list on every rank: rows[r] of the whole tensor live on
  // rank r, this rank's (possibly none) in `param`.
  struct ShardedTensor {
    std::string name;
    at::Tensor param;
    std::vector<int64_t> rows;
    int64_t offset = 0;  // this rank's first row in the whole tensor
  };
  std::vector<ShardedTensor> sharded_;
  bool expert_parallel_ = false;  // some expert bank spreads its experts over the ranks
  int64_t saved_step_ = -1;  // the step of the last checkpoint saved (decided alike on every rank)
  std::unique_ptr<AdamW> optimizer_;
  int64_t step_ = 0;
  double elapsed_s_ = 0;      // training time of earlier runs (from the checkpoint) plus this one's
  double run_elapsed_s_ = 0;  // this run's training time, for the ETA
  int64_t run_steps_ = 0;
  RouterObjective objective_;
  // Since the last eval, for metrics.csv: sums of the step loss and tokens/s, their count, the routing figures.
  double window_loss_ = 0, window_tokens_per_s_ = 0;
  int64_t window_steps_ = 0;
  RoutingFigures window_routing_;
  std::optional<double> best_loss_;
  int64_t best_step_ = 0, evals_since_best_ = 0;
};

struct MeanLoss {
  double loss = 0;           // token-weighted mean cross-entropy
  int64_t label_tokens = 0;  // 0 when no row has a label (loss is then 0)
};
// The eval loss of `rows`, `batch_size` rows per forward pass, without gradients; `hook` (optional) sees the
// routing of every pass.
MeanLoss mean_loss(MoECausalLM& model, const std::vector<data::Row>& rows, int64_t batch_size, int32_t pad_id,
                   const c10::Device& device, RouterHook* hook = nullptr);

// The checkpoint folders of a run, oldest first (complete ones only).
std::vector<std::filesystem::path> list_checkpoints(const std::filesystem::path& out_dir);

}  // namespace esft::train
