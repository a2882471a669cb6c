#include <chrono>
#include <iomanip>
#include <iostream>
#include <optional>

#include "esft/error.h"
#include "esft/io/atomic_file.h"
#include "esft/pipeline/multiple_choice.h"
#include "eval_modes.h"

namespace esft::host::eval {

namespace fs = std::filesystem;

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

}  // namespace esft::host::eval
