#pragma once
// The picture of a training run: train and eval loss against the step, the learning rate on a second axis, drawn
// from the run's metrics.jsonl into loss.{png,svg}, with the numbers in loss.csv (step, loss, lr, eval_loss).
// `train` draws it at every checkpoint and at the end, so a long run can be watched.
#include <filesystem>

namespace esft::host {

// Reads `train_dir`/metrics.jsonl and writes loss.{png,svg} and loss.csv there. Throws esft::Error for a missing
// or malformed metrics.jsonl, or one without a step.
void write_loss_picture(const std::filesystem::path& train_dir);

}  // namespace esft::host
