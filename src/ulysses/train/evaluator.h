// Evaluator: loss and perplexity of the model over a whole finite data set, forward only.
//
// The eval set (--eval-data) is read once, in file order (no shuffling, no epochs), and packed
// into sequences exactly as training packs (same --max-seq-length, --packing, --long-documents,
// padded to a multiple of the SP size). An evaluation runs in eval steps: eval step e takes the
// global eval batch of G = B x D sequences (B = --per-device-eval-batch-size, D data-parallel
// groups); data-parallel group d takes sequences e*G + d*B + b (b < B), and each SP rank 1/P of
// every sequence's tokens, as in a training step. Past the end of the set a group runs a
// padding-only sequence (no valid label): every rank makes the same forwards, which ZeRO-3's
// gathers and the SP exchanges need. Forwards run with grad_scale 0: no gradient, and every
// layer's activations are freed as soon as the next layer has its input.
//
// eval_loss = (sum of the token losses over every rank) / (valid labels over every rank): the
// loss sums are added in rank order (comm::sum_in_rank_order), as training adds them, so the
// result is the same bits on every rank. eval_perplexity = exp(eval_loss).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "ulysses/comm/communicator.h"
#include "ulysses/core/context.h"
#include "ulysses/data/packer.h"
#include "ulysses/data/source.h"
#include "ulysses/model/decoder.h"
#include "ulysses/model/param_store.h"
#include "ulysses/parallel/mesh.h"
#include "ulysses/train/train_config.h"

namespace ulysses::train {

struct EvalOptions {
  std::string data;       // --eval-data: a .jsonl file or a token-file directory
  std::string tokenizer;  // text lines: the model's tokenizer.json (directory or file)
  std::int64_t vocab_size = 0;
  std::int64_t max_seq_length = 1024;
  bool packing = true;
  std::string long_documents = "split";
  std::string data_cache_dir;  // text .jsonl: as TrainConfig::data_cache_dir
  std::int64_t per_device_eval_batch_size = 8;
  // Sequences are padded to a multiple of it: sp (Ulysses), 2 x sp (ring and hybrid).
  std::int64_t pad_multiple = 1;
};

// The eval options of a training config (--eval-data with the training's sequence layout; the
// model's tokenizer for text lines).
EvalOptions eval_options(const TrainConfig& config, std::int64_t vocab_size);

struct EvalMetrics {
  std::int64_t step = 0;          // the training step evaluated after (0: before training)
  double loss = 0.0;              // eval_loss, mean over the valid labels of the whole set
  double perplexity = 0.0;        // exp(loss)
  std::int64_t valid_labels = 0;  // the loss denominator, all ranks
  std::int64_t sequences = 0;     // packed sequences of the set (padding-only ones excluded)
  std::int64_t documents = 0;     // documents of the set (after --long-documents)
  std::int64_t tokens = 0;        // tokens of those sequences (padding included)
  std::int64_t eval_steps = 0;    // global eval batches run
  double seconds = 0.0;           // wall time of the evaluation (eval_runtime)
};

class Evaluator {
 public:
  // Opens and indexes the eval set: not collective; every rank reads the same file and fails
  // the same way (Error naming --eval-data and the fix: missing file, an endless source such as
  // synthetic-copy, an empty set, or the file's own errors).
  explicit Evaluator(const EvalOptions& options);

  // Collective over `world` (the loss reduction, host tensors) and the mesh built on it (the SP
  // exchanges, ZeRO-3's gathers through `store`): every rank calls it with the same step.
  // Forward only; `store` is read, never written (no gradient is asked for). Shards are copied
  // to ctx's device. Not thread-safe (the packer is reused).
  EvalMetrics evaluate(const Context& ctx, const model::Decoder& decoder, model::ParamStore& store,
                       const parallel::Mesh& mesh, comm::Communicator& world,
                       std::int64_t step) const;

  // "<source>, N documents in M sequences of S tokens"
  std::string describe() const;
  std::int64_t sequences() const { return static_cast<std::int64_t>(starts_.size()); }
  // Global eval batches one evaluation runs with D data-parallel groups.
  std::int64_t eval_steps(std::int64_t dp_size) const;

 private:
  // Sequence `index` of the set, packed afresh from its first document.
  data::PackedSequence sequence(std::int64_t index) const;

  EvalOptions options_;
  std::unique_ptr<data::DocumentSource> source_;
  std::unique_ptr<data::Packer> packer_;
  std::vector<std::int64_t> starts_;  // first document of every packed sequence
  std::int64_t tokens_ = 0;           // of every sequence, padding included
};

// <dir>/eval_results.json (as Hugging Face's run scripts write it: eval_loss, eval_perplexity,
// eval_runtime, ...), through a temporary name; Error naming --output-dir when it cannot.
void write_eval_results(const std::filesystem::path& dir, const EvalMetrics& m,
                        const std::string& model, const std::string& data);

// One line for the log: "eval  step 20 | eval_loss 2.3456 | eval_perplexity 10.44 | ..."
std::string eval_line(const EvalMetrics& m);

}  // namespace ulysses::train
