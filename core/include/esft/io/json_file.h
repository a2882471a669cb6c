#pragma once
// Reading a whole JSON file with errors that name it.
#include <nlohmann/json.hpp>

#include <filesystem>

namespace esft {

// Throws esft::Error "cannot open FILE" or "FILE: malformed JSON (...)".
nlohmann::json read_json_file(const std::filesystem::path& path);

}  // namespace esft
