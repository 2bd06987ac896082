#include "ulysses/train/evaluator.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "ulysses/comm/communicator.h"
#include "ulysses/core/cuda_context.h"
#include "ulysses/core/error.h"
#include "ulysses/core/format.h"
#include "ulysses/core/tensor.h"
#include "ulysses/data/source.h"

namespace ulysses::train {

namespace {

// The source of --eval-data, its errors naming that flag (open_data names --data).
std::unique_ptr<data::DocumentSource> open_eval_source(const EvalOptions& o) {
  if (data::is_synthetic(o.data))
    UL_FAIL("--eval-data ", o.data,
            ": evaluation runs over a whole, finite data set; use a "
            ".jsonl file or a token-file directory");
  if (!std::filesystem::exists(o.data))
    UL_FAIL("--eval-data ", o.data,
            ": no such file or directory (use a .jsonl file or a "
            "directory holding tokens.bin and offsets.bin)");
  data::DataOptions d;
  d.data = o.data;
  d.tokenizer = o.tokenizer;
  d.max_seq_length = o.max_seq_length;
  d.long_documents = o.long_documents;
  d.data_cache_dir = o.data_cache_dir;
  d.vocab_size = o.vocab_size;
  d.shuffle = false;
  try {
    return data::open_data(d);
  } catch (const Error& e) {
    std::string message = e.what();
    if (message.rfind("--data ", 0) == 0) message = "--eval-data " + message.substr(7);
    throw Error(message);
  }
}

}  // namespace

EvalOptions eval_options(const TrainConfig& c, std::int64_t vocab_size) {
  EvalOptions o;
  o.data = c.eval_data;
  o.tokenizer = c.model;
  o.vocab_size = vocab_size;
  o.max_seq_length = c.max_seq_length;
  o.packing = c.packing;
  o.long_documents = c.long_documents;
  o.data_cache_dir = c.data_cache_dir;
  o.per_device_eval_batch_size = c.per_device_eval_batch_size;
  o.pad_multiple = sequence_pad_multiple(c);
  return o;
}

Evaluator::Evaluator(const EvalOptions& options)
    : options_(options), source_(open_eval_source(options)) {
  if (options_.per_device_eval_batch_size <= 0)
    UL_FAIL("--per-device-eval-batch-size must be a positive integer (got ",
            options_.per_device_eval_batch_size, ")");
  const std::int64_t n = source_->size();
  if (n <= 0)
    UL_FAIL(
        "--eval-data ", options_.data, ": ",
        n == 0 ? "holds no document; give a file with at least one" : "is not a finite data set");
  data::PackerOptions packing;
  packing.max_seq_length = options_.max_seq_length;
  packing.packing = options_.packing;
  packing.pad_multiple = options_.pad_multiple;
  packer_ = std::make_unique<data::Packer>(*source_, packing);
  // Index the sequences once: a sequence is a function of its first document.
  std::int64_t labels = 0;
  while (packer_->position() < n) {
    starts_.push_back(packer_->position());
    const data::PackedSequence s = packer_->next();
    tokens_ += s.length();
    labels += s.valid_labels();
  }
  if (labels == 0)
    UL_FAIL("--eval-data ", options_.data, ": no token has a label to predict (every document ",
            "has a single token or is masked); give documents of at least two tokens");
}

data::PackedSequence Evaluator::sequence(std::int64_t index) const {
  packer_->set_position(starts_[static_cast<std::size_t>(index)]);
  return packer_->next();
}

std::int64_t Evaluator::eval_steps(std::int64_t dp_size) const {
  const std::int64_t global = options_.per_device_eval_batch_size * dp_size;
  return (sequences() + global - 1) / global;
}

std::string Evaluator::describe() const {
  std::ostringstream out;
  out << source_->describe() << ", " << source_->size() << " documents in " << sequences()
      << " sequences (" << tokens_ << " tokens, " << options_.per_device_eval_batch_size
      << " per device per eval step)";
  return out.str();
}

EvalMetrics Evaluator::evaluate(const Context& ctx, const model::Decoder& decoder,
                                model::ParamStore& store, const parallel::Mesh& mesh,
                                comm::Communicator& world, std::int64_t step) const {
  const auto start = std::chrono::steady_clock::now();
  EvalMetrics m;
  m.step = step;
  m.sequences = sequences();
  m.documents = source_->size();
  m.tokens = tokens_;
  const std::int64_t B = options_.per_device_eval_batch_size, D = mesh.dp_size();
  const std::int64_t P = mesh.sp_size(), r = mesh.sp_rank();
  m.eval_steps = eval_steps(D);
  model::StepOptions forward_only;
  std::vector<ops::LossSum> losses;  // read after every forward is queued
  std::int64_t local_labels = 0;
  for (std::int64_t e = 0; e < m.eval_steps; ++e) {
    for (std::int64_t b = 0; b < B; ++b) {
      const std::int64_t index = (e * D + mesh.dp_index()) * B + b;
      data::PackedSequence s;
      if (index < m.sequences) {
        s = sequence(index);
      } else {
        // Padding only, no valid label: one token per SP rank (two with a ring's zigzag).
        data::pad_sequence(s, mesh.config().ring_size > 1 ? 2 * P : P);
      }
      // This rank's tokens, placed as the attention strategy expects (zigzag with a ring).
      const std::vector<data::TokenRange> ranges =
          data::sp_shard_ranges(s.length(), r, P, mesh.config().ring_size);
      const data::SequenceShard shard = data::to_device(data::make_shard(s, ranges), ctx.device);
      local_labels += data::valid_labels(s, ranges);
      losses.push_back(decoder.forward_backward(ctx, store, shard, 0.0f, forward_only));
    }
  }
  double loss_sum = 0;
  for (const ops::LossSum& loss : losses) loss_sum += loss.loss_sum();
  Tensor count = Tensor::empty({1}, DType::i64);
  count.data<std::int64_t>()[0] = local_labels;
  world.all_reduce(count, comm::ReduceOp::sum);
  m.valid_labels = count.data<std::int64_t>()[0];
  const double total = comm::sum_in_rank_order(world, loss_sum);
  UL_CHECK(m.valid_labels > 0, "the eval set has valid labels (checked when opened)");
  m.loss = total / static_cast<double>(m.valid_labels);
  m.perplexity = std::exp(m.loss);
  synchronize(ctx);
  m.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return m;
}

void write_eval_results(const std::filesystem::path& dir, const EvalMetrics& m,
                        const std::string& model, const std::string& data) {
  std::filesystem::create_directories(dir);
  const nlohmann::ordered_json j = {{"eval_loss", m.loss},
                                    {"eval_perplexity", m.perplexity},
                                    {"eval_valid_labels", m.valid_labels},
                                    {"eval_sequences", m.sequences},
                                    {"eval_documents", m.documents},
                                    {"eval_tokens", m.tokens},
                                    {"eval_runtime", m.seconds},
                                    {"model", model},
                                    {"data", data},
                                    {"timestamp", format_utc_now()}};
  const auto path = dir / "eval_results.json", tmp = dir / "eval_results.json.tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << j.dump(2) << '\n';
    out.flush();
    if (!out.good()) {
      std::filesystem::remove(tmp);
      UL_FAIL("--output-dir ", dir.string(), ": cannot write ", tmp.string());
    }
  }
  std::filesystem::rename(tmp, path);
}

std::string eval_line(const EvalMetrics& m) {
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "eval  step %lld | eval_loss %.4f | eval_perplexity %.4g | %lld labels in %lld "
                "sequences | %.1f s",
                static_cast<long long>(m.step), m.loss, m.perplexity,
                static_cast<long long>(m.valid_labels), static_cast<long long>(m.sequences),
                m.seconds);
  return buf;
}

}  // namespace ulysses::train
