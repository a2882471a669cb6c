// A conversation file (`chat --messages`, `generate --messages`): a list of messages or {"messages": [...]},
// rendered by every family's chat format with and without a generation prompt.
#include "esft/model/chat_format.h"
#include "esft/model/model_family.h"
#include "fuzz_target.h"
#include "plugin_loader.h"

ESFT_FUZZ_TARGET(chat_messages) {
  static const auto families = [] {
    std::vector<std::shared_ptr<esft::ModelFamily>> out;
    const esft::host::PluginLoader loader(std::vector<std::filesystem::path>{ESFT_BIN_DIR});
    for (const auto& record : loader.discover()) out.push_back(loader.load(record.name));
    return out;
  }();
  const auto path = esft::fuzz::write_scratch_file("chat.json", data);
  esft::fuzz::expect_only_clean_errors([&] {
    const auto messages = esft::load_chat_messages(path);
    for (const auto& family : families) {
      for (const bool prompt : {false, true}) {
        esft::ChatOptions options;
        options.add_generation_prompt = prompt;
        options.date = "2026-11-26";
        esft::fuzz::expect_only_clean_errors([&] { family->chat_format().render(messages, options); });
      }
    }
  });
}
