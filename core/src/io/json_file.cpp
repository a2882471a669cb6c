#include "esft/io/json_file.h"

#include <fstream>

#include "esft/error.h"

namespace esft {

nlohmann::json read_json_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw Error("cannot open " + path.string());
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw Error(path.string() + ": malformed JSON (" + e.what() + ")");
  }
}

}  // namespace esft
