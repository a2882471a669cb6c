#pragma once
// report.html of a pipeline's output folder: the summary table and every picture the run drew (routing maps,
// selections, coverage and loss curves), in the pipeline's order, each captioned with its path and what it shows. Self-contained: the pictures are
// embedded as data: URIs and the style is inline, so the one file opens offline in any browser and can be mailed.
#include <filesystem>
#include <string>

#include "run/text_table.h"

namespace esft::host::run {

// Writes `output_dir`/report.html; `summary` is the run's summary table (header row first).
void write_html_report(const std::filesystem::path& output_dir, const std::string& title, const TextTable& summary);

// RFC 4648 base64 of `bytes` (with padding).
std::string base64(const std::string& bytes);

}  // namespace esft::host::run
