// `esft-host eval`: a model (optionally with an ESFT adapter applied) on held-out data (shared/spec/ESFT.md §5), or
// saved completions scored again. The modes live in host/eval/, one file each:
//   --metric loss: mean cross-entropy and perplexity over the labelled tokens of training-shaped records;
//   --metric exact|intent|rouge-l|accuracy|f1: greedy completions of {"prompt"|"messages", "answers"} records scored
//   against the answers; the completions can be written as JSON lines for judging elsewhere;
//   --metric mc: multiple choice ({"context", "choices", "answer"}) by log-likelihood, lm-eval's acc and acc_norm;
//   --rescore FILE: completions saved by `eval --out` or by the ESFT reference, scored with --metric, no model.
#include <iostream>
#include <optional>

#include "../cli.h"
#include "../eval/eval_modes.h"
#include "esft/data/samples.h"
#include "esft/error.h"
#include "esft/pipeline/any_adapter.h"
#include "esft/pipeline/metrics.h"
#include "esft/tokenizer/tokenizer.h"

namespace esft::host {

namespace fs = std::filesystem;

Command eval_command() {
  Command c;
  c.name = "eval";
  c.several_devices = true;
  c.summary = "evaluate a model or model + adapter: loss/perplexity, or a task metric on greedy completions";
  c.usage = "eval --model DIR [--adapter DIR] --data FILE.jsonl [--metric loss|exact|intent|rouge-l|accuracy|f1|mc] "
            "[--max-new-tokens N] [--fewshot N --fewshot-data DEV.jsonl] [--out completions.jsonl]\n"
            "       eval --rescore COMPLETIONS.jsonl --metric exact|intent|rouge-l|accuracy|f1 [--out scores.jsonl]\n"
            "       (either form) --metric judge-summary|judge-law|judge-translation --judge-url URL --judge-model NAME "
            "[--judge-key-env VAR] [--judge-concurrency N]";
  c.add_options = [](po::options_description& d) {
    d.add_options()
        ("model", po::value<std::string>(), "base model directory (weights, tokenizer files)")
        ("adapter", po::value<std::string>(), "adapter folder applied to the model: OUT/adapter of train (esft, router or lora), an ESFT reference adapter "
         "(expert_cfg.json + *.safetensors) or a PEFT LoRA adapter (adapter_config.json)")
        ("data", po::value<std::string>(),
         "JSON lines: training records for loss; {\"prompt\"|\"messages\", \"answers\": [...]} for the other metrics "
         "(the ESFT reference's {\"prompt\", \"raw_answers\"} files too)")
        ("rescore", po::value<std::string>(),
         "score saved completions instead of running a model: eval --out files, or the ESFT reference's "
         "{\"example\": {\"prompt\", \"raw_prediction\", \"raw_answers\"}, \"score\"} files")
        ("metric", po::value<std::string>()->default_value("loss"),
         "loss | exact | intent | rouge-l | accuracy | f1 | mc | judge-summary | judge-law | judge-translation (the "
         "ESFT reference's LLM-as-judge metrics)")
        ("fewshot", po::value<int64_t>()->default_value(0), "mc: examples before each question, from --fewshot-data")
        ("fewshot-data", po::value<std::string>(), "mc: the dev file of the few-shot examples (its first N records)")
        ("max-new-tokens", po::value<int64_t>()->default_value(64), "completion length limit")
        ("batch-size", po::value<int64_t>()->default_value(4), "rows per forward pass (loss)")
        ("seq-length", po::value<int64_t>()->default_value(4096),
         "loss: longer samples keep their last tokens; mc: longer inputs lose their first tokens (default for mc: the "
         "model's max_position_embeddings, as lm-eval)")
        ("enable-thinking", po::value<std::string>(), "messages records: true | false (Qwen3's thinking switch)")
        ("limit", po::value<int64_t>(), "evaluate only the first N records")
        ("out", po::value<std::string>(),
         "write the completions (prompt, completion, answers, score) as JSON lines; with --rescore, the scores "
         "(origin, score, recorded_score)")
        ("result", po::value<std::string>(), "write the score as JSON ({metric, value, records, ...})");
    eval::add_judge_options(d);
  };
  c.run = [](const GlobalOptions& global, const po::variables_map& vm) {
    const auto metric_text = vm["metric"].as<std::string>();
    const bool loss_mode = metric_text == "loss", mc_mode = metric_text == "mc";
    std::optional<eval::CompletionScorer> scorer;
    if (!loss_mode && !mc_mode) scorer.emplace(vm);
    else if (eval::judge_options_given(vm)) throw UsageError("the --judge-* options apply to the judge metrics");
    const int64_t max_new = vm["max-new-tokens"].as<int64_t>(), batch_size = vm["batch-size"].as<int64_t>();
    const int64_t seq_length = vm["seq-length"].as<int64_t>();
    if (max_new <= 0 || batch_size <= 0 || seq_length <= 1) {
      throw UsageError("--max-new-tokens, --batch-size and --seq-length must be positive");
    }
    if (vm.count("limit") && vm["limit"].as<int64_t>() <= 0) throw UsageError("--limit must be positive");
    if (vm.count("rescore")) {
      if (loss_mode || mc_mode) throw UsageError("--rescore scores completions: it needs a generation --metric");
      for (const char* option : {"model", "adapter", "data", "fewshot-data", "enable-thinking"})
        if (vm.count(option)) throw UsageError(std::string("--rescore runs no model: --") + option + " does not apply");
      for (const char* option : {"max-new-tokens", "batch-size", "seq-length", "fewshot"})
        if (!vm[option].defaulted()) throw UsageError(std::string("--rescore runs no model: --") + option + " does not apply");
      if (!fs::is_regular_file(vm["rescore"].as<std::string>()))
        throw Error("completions file " + vm["rescore"].as<std::string>() + " does not exist");
      if (vm.count("out")) check_output_path(vm["out"].as<std::string>(), "--out");
      if (vm.count("result")) check_output_path(vm["result"].as<std::string>(), "--result");
      return eval::run_rescore(vm, *scorer);
    }
    if (!vm.count("model") || !vm.count("data")) throw UsageError("eval needs --model and --data (or --rescore FILE)");
    if (vm.count("enable-thinking") && loss_mode) throw UsageError("--enable-thinking applies to generation metrics");
    if (vm.count("out") && loss_mode) throw UsageError("--out writes completions; it needs a generation --metric");
    const int64_t shots = vm["fewshot"].as<int64_t>();
    if (shots < 0) throw UsageError("--fewshot must be >= 0");
    if ((shots > 0 || vm.count("fewshot-data")) && !mc_mode) throw UsageError("--fewshot and --fewshot-data apply to --metric mc");
    if (mc_mode && (vm.count("enable-thinking") || !vm["max-new-tokens"].defaulted() || !vm["batch-size"].defaulted()))
      throw UsageError("--enable-thinking, --max-new-tokens and --batch-size do not apply to --metric mc");
    if (shots > 0 && !vm.count("fewshot-data")) throw UsageError("--fewshot needs --fewshot-data (the dev file the examples come from)");
    if (vm.count("fewshot-data") && !fs::is_regular_file(vm["fewshot-data"].as<std::string>()))
      throw Error("few-shot data file " + vm["fewshot-data"].as<std::string>() + " does not exist");
    if (vm.count("out")) check_output_path(vm["out"].as<std::string>(), "--out");
    if (vm.count("result")) check_output_path(vm["result"].as<std::string>(), "--result");
    const fs::path model_dir = vm["model"].as<std::string>(), data_path = vm["data"].as<std::string>();
    if (!fs::is_regular_file(data_path)) throw Error("data file " + data_path.string() + " does not exist");
    std::optional<pipeline::AnyAdapter> adapter;  // opened and checked before the expensive load
    if (vm.count("adapter")) {
      adapter = pipeline::AnyAdapter::open(vm["adapter"].as<std::string>());
      adapter->check_base(model_dir);
    }

    const auto tokenizer = tok::Tokenizer::load(model_dir);
    const auto special = data::TokenizerConfig::load(model_dir);
    auto m = open_model(global, model_dir);
    if (adapter) {
      std::cerr << adapter->apply(*m.model, model_dir) << "\n";
    }
    m.model->eval();
    const data::SampleEncoder encoder(tokenizer, special, m.family->chat_format());
    if (loss_mode) return eval::run_loss(vm, m, encoder, data_path, batch_size, seq_length);
    if (mc_mode) return eval::run_mc(vm, m, tokenizer, special, data_path, seq_length);

    return eval::run_generation(vm, m, tokenizer, special, data_path, *scorer);
  };
  return c;
}

}  // namespace esft::host
