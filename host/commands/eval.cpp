// `esft-host eval`: a model (optionally with an ESFT adapter applied) on held-out data (shared/spec/ESFT.md §5).
//   --metric loss: mean cross-entropy and perplexity over the labelled tokens of training-shaped records;
//   --metric exact|intent|rouge-l|accuracy|f1: greedy completions of {"prompt"|"messages", "answers"} records scored
//   against the answers; the completions can be written as JSON lines for judging elsewhere;
//   --metric mc: multiple choice ({"context", "choices", "answer"}) by log-likelihood, lm-eval's acc and acc_norm.
#include <ATen/ATen.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "../cli.h"
#include "esft/data/samples.h"
#include "esft/error.h"
#include "esft/io/atomic_file.h"
#include "esft/model/generate.h"
#include "esft/pipeline/adapter_io.h"
#include "esft/pipeline/metrics.h"
#include "esft/pipeline/multiple_choice.h"
#include "esft/tokenizer/tokenizer.h"
#include "esft/train/trainer.h"

namespace esft::host {

namespace fs = std::filesystem;

namespace {

struct GenerationRecord {
  std::string origin;
  std::string prompt;  // as rendered
  std::vector<std::string> answers;
};

std::vector<GenerationRecord> read_generation_records(const fs::path& path, const ChatFormat& format,
                                                     const ChatOptions& chat) {
  std::istringstream in(tok::read_maybe_gzipped(path));  // bundled task files ship gzip-compressed
  std::vector<GenerationRecord> out;
  int64_t line_no = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const auto where = path.string() + ":" + std::to_string(line_no);
    const auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) throw Error(where + ": not a JSON object");
    GenerationRecord r{where, {}, {}};
    const auto answers = j.find("answers");
    if (answers == j.end() || !answers->is_array() || answers->empty()) {
      throw Error(where + ": needs \"answers\", a non-empty list of strings");
    }
    for (const auto& a : *answers) {
      if (!a.is_string()) throw Error(where + ": \"answers\" must hold strings");
      r.answers.push_back(a.get<std::string>());
    }
    if (j.contains("prompt") && j["prompt"].is_string()) {
      r.prompt = j["prompt"].get<std::string>();
    } else if (j.contains("messages")) {
      r.prompt = join_segments(format.render(parse_chat_messages(j["messages"], where), chat));
    } else {
      throw Error(where + ": needs \"prompt\" (a string) or \"messages\"");
    }
    out.push_back(std::move(r));
  }
  if (out.empty()) throw Error(path.string() + " holds no records");
  return out;
}

// --result: the score as one JSON object, for pipelines that collect results.
void write_result(const po::variables_map& vm, nlohmann::json result) {
  if (!vm.count("result")) return;
  if (vm.count("adapter")) result["adapter"] = vm["adapter"].as<std::string>();
  result["data"] = vm["data"].as<std::string>();
  write_text_atomically(vm["result"].as<std::string>(), result.dump(2) + "\n");
}

int run_loss(const po::variables_map& vm, LoadedModel& m, const data::SampleEncoder& encoder,
             const fs::path& data_path, int64_t batch_size, int64_t seq_length) {
  auto samples = data::read_samples(data_path, encoder);
  data::keep_last_tokens(samples, seq_length);
  data::check_token_ids(samples, m.config.vocab_size, encoder.pad_id());
  const auto rows = train::make_rows(samples, /*packing=*/false, seq_length, encoder.pad_id(), 0, 0);
  const auto [loss, label_tokens] = train::mean_loss(*m.model, rows, batch_size, encoder.pad_id(), m.device);
  if (label_tokens == 0) throw Error(data_path.string() + " has no labelled tokens");
  std::cout << "loss " << std::fixed << std::setprecision(4) << loss << "  perplexity " << std::exp(loss) << "  ("
            << samples.size() << " samples, " << label_tokens << " labelled tokens)\n";
  write_result(vm, {{"metric", "loss"}, {"value", loss}, {"perplexity", std::exp(loss)},
                    {"records", samples.size()}, {"label_tokens", label_tokens}});
  return 0;
}

// --metric mc: multiple choice by log-likelihood (pipeline/multiple_choice.h), lm-evaluation-harness's acc and
// acc_norm.
int run_mc(const po::variables_map& vm, LoadedModel& m, const tok::Tokenizer& tokenizer,
           const data::TokenizerConfig& special, const fs::path& data_path, int64_t seq_length) {
  auto records = pipeline::read_mc_records(data_path);
  if (vm.count("limit") && vm["limit"].as<int64_t>() < static_cast<int64_t>(records.size()))
    records.resize(static_cast<size_t>(vm["limit"].as<int64_t>()));
  const int64_t shots = vm["fewshot"].as<int64_t>();
  std::string prefix;
  if (shots > 0) prefix = pipeline::fewshot_prefix(pipeline::read_mc_records(vm["fewshot-data"].as<std::string>()), shots);
  pipeline::McOptions o;
  // lm-eval's HF backend cuts inputs to the model's positions (max_position_embeddings, else 2048).
  o.max_length = !vm["seq-length"].defaulted() ? seq_length
                 : m.config.max_position_embeddings > 0 ? m.config.max_position_embeddings
                                                         : 2048;
  // lm-eval's prefix token for an empty context: BOS when the tokenizer has one, else EOS.
  const auto prefix_name = special.bos_token ? special.bos_token : special.eos_token;
  o.prefix_token = prefix_name ? tokenizer.token_to_id(*prefix_name) : -1;
  if (o.prefix_token < 0) {
    for (const auto& r : records)
      if (r.context.find_first_not_of(" \t\n\r\v\f") == std::string::npos && prefix.empty())
        throw Error(r.origin + ": an empty context needs a BOS or EOS token, and the tokenizer config names neither");
  }

  std::optional<AtomicFile> out;
  if (vm.count("out")) out.emplace(vm["out"].as<std::string>());
  double acc = 0, acc_norm = 0;
  const auto start = std::chrono::steady_clock::now();
  for (size_t i = 0; i < records.size(); ++i) {
    const auto r = pipeline::score_mc(*m.model, tokenizer, records[i], prefix, m.device, o);
    acc += r.correct;
    acc_norm += r.correct_norm;
    if (out) {
      out->stream() << nlohmann::json{{"origin", records[i].origin}, {"loglik", r.loglik}, {"answer", records[i].answer},
                                      {"pred", r.best}, {"pred_norm", r.best_norm}}
                           .dump()
                    << "\n";
    }
    std::cerr << "\reval: " << i + 1 << "/" << records.size() << " acc " << std::fixed << std::setprecision(4)
              << acc / static_cast<double>(i + 1) << " acc_norm " << acc_norm / static_cast<double>(i + 1) << std::flush;
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cerr << " (" << std::setprecision(1) << seconds << " s)\n";
  if (out) out->commit();
  const double n = static_cast<double>(records.size());
  std::cout << "acc " << std::fixed << std::setprecision(4) << acc / n << "  acc_norm " << acc_norm / n << "  ("
            << records.size() << " records, " << shots << "-shot" << (vm.count("adapter") ? ", with adapter" : "")
            << ")\n";
  write_result(vm, {{"metric", "mc"}, {"value", acc / n}, {"acc", acc / n}, {"acc_norm", acc_norm / n},
                    {"records", records.size()}, {"fewshot", shots}});
  return 0;
}

}  // namespace

Command eval_command() {
  Command c;
  c.name = "eval";
  c.summary = "evaluate a model or model + adapter: loss/perplexity, or a task metric on greedy completions";
  c.usage = "eval --model DIR [--adapter DIR] --data FILE.jsonl [--metric loss|exact|intent|rouge-l|accuracy|f1|mc] "
            "[--max-new-tokens N] [--fewshot N --fewshot-data DEV.jsonl] [--out completions.jsonl]";
  c.add_options = [](po::options_description& d) {
    d.add_options()
        ("model", po::value<std::string>()->required(), "base model directory (weights, tokenizer files)")
        ("adapter", po::value<std::string>(), "ESFT adapter folder (OUT/adapter from train) applied to the model")
        ("data", po::value<std::string>()->required(),
         "JSON lines: training records for loss; {\"prompt\"|\"messages\", \"answers\": [...]} for the other metrics")
        ("metric", po::value<std::string>()->default_value("loss"), "loss | exact | intent | rouge-l | accuracy | f1 | mc")
        ("fewshot", po::value<int64_t>()->default_value(0), "mc: examples before each question, from --fewshot-data")
        ("fewshot-data", po::value<std::string>(), "mc: the dev file of the few-shot examples (its first N records)")
        ("max-new-tokens", po::value<int64_t>()->default_value(64), "completion length limit")
        ("batch-size", po::value<int64_t>()->default_value(4), "rows per forward pass (loss)")
        ("seq-length", po::value<int64_t>()->default_value(4096),
         "loss: longer samples keep their last tokens; mc: longer inputs lose their first tokens (default for mc: the "
         "model's max_position_embeddings, as lm-eval)")
        ("enable-thinking", po::value<std::string>(), "messages records: true | false (Qwen3's thinking switch)")
        ("limit", po::value<int64_t>(), "evaluate only the first N records")
        ("out", po::value<std::string>(), "write the completions (prompt, completion, answers, score) as JSON lines")
        ("result", po::value<std::string>(), "write the score as JSON ({metric, value, records, ...})");
  };
  c.run = [](const GlobalOptions& global, const po::variables_map& vm) {
    const auto metric_text = vm["metric"].as<std::string>();
    const bool loss_mode = metric_text == "loss", mc_mode = metric_text == "mc";
    const auto metric = loss_mode || mc_mode ? pipeline::Metric::Exact : pipeline::parse_metric(metric_text);
    const int64_t max_new = vm["max-new-tokens"].as<int64_t>(), batch_size = vm["batch-size"].as<int64_t>();
    const int64_t seq_length = vm["seq-length"].as<int64_t>();
    if (max_new <= 0 || batch_size <= 0 || seq_length <= 1) {
      throw UsageError("--max-new-tokens, --batch-size and --seq-length must be positive");
    }
    if (vm.count("limit") && vm["limit"].as<int64_t>() <= 0) throw UsageError("--limit must be positive");
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
    if (vm.count("adapter")) {  // the manifest and base check before the expensive load
      const auto manifest = pipeline::AdapterManifest::load(vm["adapter"].as<std::string>());
      pipeline::check_adapter_base(manifest, vm["adapter"].as<std::string>(), model_dir);
    }

    const auto tokenizer = tok::Tokenizer::load(model_dir);
    const auto special = data::TokenizerConfig::load(model_dir);
    auto m = open_model(global, model_dir);
    if (vm.count("adapter")) {
      const auto n = pipeline::apply_adapter(*m.model, vm["adapter"].as<std::string>(), model_dir);
      std::cerr << "applied " << n << " adapter tensors from " << vm["adapter"].as<std::string>() << "\n";
    }
    m.model->eval();
    const data::SampleEncoder encoder(tokenizer, special, m.family->chat_format());
    if (loss_mode) return run_loss(vm, m, encoder, data_path, batch_size, seq_length);
    if (mc_mode) return run_mc(vm, m, tokenizer, special, data_path, seq_length);

    ChatOptions chat;
    chat.add_generation_prompt = true;
    chat.enable_thinking = optional_true_false(vm, "enable-thinking");
    auto records = read_generation_records(data_path, m.family->chat_format(), chat);
    if (vm.count("limit") && vm["limit"].as<int64_t>() < static_cast<int64_t>(records.size())) {
      records.resize(static_cast<size_t>(vm["limit"].as<int64_t>()));
    }
    auto stop = generation_stop_ids(m.config);
    if (special.eos_token) stop.push_back(tokenizer.token_to_id(*special.eos_token));
    std::optional<int32_t> bos;
    if (special.add_bos_token && special.bos_token) bos = tokenizer.token_to_id(*special.bos_token);

    std::optional<AtomicFile> out;
    if (vm.count("out")) out.emplace(vm["out"].as<std::string>());
    double total = 0;
    const auto start = std::chrono::steady_clock::now();
    for (size_t i = 0; i < records.size(); ++i) {
      const auto& r = records[i];
      std::vector<int64_t> ids;
      if (bos) ids.push_back(*bos);
      for (int32_t id : tokenizer.encode(r.prompt)) ids.push_back(id);
      auto prompt = at::tensor(ids, at::kLong).unsqueeze(0).to(m.device);
      auto output = greedy_generate(*m.model, prompt, max_new, stop).cpu();
      const auto* p = output.data_ptr<int64_t>();
      const std::vector<int32_t> generated(p + prompt.size(1), p + output.size(1));
      const auto completion = tokenizer.decode(generated, /*skip_special_tokens=*/true);
      const double score = pipeline::score_completion(metric, completion, r.answers);
      total += score;
      if (out) {
        out->stream() << nlohmann::json{{"origin", r.origin}, {"prompt", r.prompt}, {"completion", completion},
                                        {"answers", r.answers}, {"score", score}}
                             .dump()
                      << "\n";
      }
      std::cerr << "\reval: " << i + 1 << "/" << records.size() << " " << metric_text << " " << std::fixed
                << std::setprecision(4) << total / static_cast<double>(i + 1) << std::flush;
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::cerr << " (" << std::setprecision(1) << seconds << " s)\n";
    if (out) out->commit();
    const double value = total / static_cast<double>(records.size());
    std::cout << metric_text << " " << std::fixed << std::setprecision(4) << value << "  (" << records.size()
              << " records" << (vm.count("adapter") ? ", with adapter" : "") << ")\n";
    write_result(vm, {{"metric", metric_text}, {"value", value}, {"records", records.size()}});
    return 0;
  };
  return c;
}

}  // namespace esft::host
