// ulysses command line: train, eval, tokenize, info, plot.
//
// Flags use Hugging Face / Accelerate names in kebab-case; `--config FILE` (YAML or JSON) takes
// the same names in snake_case, and flags on the command line override the file.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "ulysses/comm/communicator.h"
#include "ulysses/core/error.h"
#include "ulysses/core/format.h"
#include "ulysses/core/log.h"
#include "ulysses/core/process_env.h"
#include "ulysses/data/text_data.h"
#include "ulysses/io/tokenizer.h"
#include "ulysses/model/config.h"
#include "ulysses/model/flops.h"
#include "ulysses/parallel/memory_plan.h"
#include "ulysses/parallel/zero.h"
#include "ulysses/train/config_file.h"
#include "ulysses/train/loss_plot.h"
#include "ulysses/train/output_dir.h"
#include "ulysses/train/run_plan.h"
#include "ulysses/train/trainer.h"

namespace {

using ulysses::train::TrainConfig;

// Levenshtein distance, for "did you mean" hints.
std::size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

// The long option names of a command ("--max-steps"), and "--no-x" for negatable flags.
std::vector<std::string> long_names(const CLI::App& cmd) {
  std::vector<std::string> names;
  for (const CLI::Option* opt : cmd.get_options()) {
    for (const std::string& n : opt->get_lnames()) names.push_back("--" + n);
    for (const std::string& n : opt->get_fnames()) names.push_back("--" + n);
  }
  return names;
}

// " (did you mean X?)" for the closest candidate, or "" when none is close.
std::string did_you_mean(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best;
  std::size_t best_distance = std::max<std::size_t>(2, word.size() / 3) + 1;
  for (const std::string& c : candidates) {
    const std::size_t d = edit_distance(word, c);
    if (d < best_distance) {
      best = c;
      best_distance = d;
    }
  }
  return best.empty() ? "" : " (did you mean " + best + "?)";
}

// Hugging Face spellings: --max_steps is --max-steps (only where that option exists).
void accept_snake_case(const CLI::App& cmd, std::vector<std::string>& args) {
  const auto names = long_names(cmd);
  for (std::string& arg : args) {
    if (arg.rfind("--", 0) != 0) continue;
    const std::size_t eq = arg.find('=');
    std::string name = arg.substr(0, eq);
    if (name.find('_') == std::string::npos) continue;
    std::replace(name.begin() + 2, name.end(), '_', '-');
    if (std::find(names.begin(), names.end(), name) != names.end())
      arg = name + (eq == std::string::npos ? "" : arg.substr(eq));
  }
}

// Prints "did you mean" for the arguments CLI11 did not expect.
void hint_unknown_options(const CLI::App& cmd, const std::vector<std::string>& args) {
  const auto names = long_names(cmd);
  for (const std::string& arg : args) {
    if (arg.rfind("--", 0) != 0) continue;
    const std::string name = arg.substr(0, arg.find('='));
    if (std::find(names.begin(), names.end(), name) != names.end()) continue;
    const std::string hint = did_you_mean(name, names);
    if (!hint.empty()) std::fprintf(stderr, "%s:%s\n", name.c_str(), hint.c_str());
  }
}

// --loss-tile-tokens N|auto, the same in train and eval.
void add_loss_tile_option(CLI::App& cmd, TrainConfig& c) {
  cmd.add_option("--loss-tile-tokens", c.loss_tile_tokens,
                 "Tokens per tile of the fused LM head + cross-entropy (auto: on a GPU the "
                 "largest of 4096, 2048, 1024 that lets the memory plan fit; 1024 on the CPU)")
      ->transform(CLI::Transformer(std::map<std::string, std::string>{
          {"auto", std::to_string(ulysses::train::kLossTileAuto)}}))
      ->default_str("auto");
}

void add_train_options(CLI::App& cmd, TrainConfig& c) {
  cmd.add_option("--model", c.model,
                 "Preset (tiny, qwen3-0.6b, qwen3-1.7b, qwen3-4b, qwen3-8b, "
                 "llama-3-8b) or Hugging Face model directory")
      ->capture_default_str();
  cmd.add_option("--data", c.data,
                 "synthetic-copy, synthetic-random, a .jsonl file (input_ids; or text / "
                 "prompt+completion when --model has a tokenizer.json) or a token-file directory")
      ->capture_default_str();
  cmd.add_option("--copy-min-length", c.copy_min_length,
                 "Synthetic copy task: shortest random half")
      ->capture_default_str();
  cmd.add_option("--copy-max-length", c.copy_max_length, "Synthetic copy task: longest random half")
      ->capture_default_str();
  cmd.add_option("--max-seq-length", c.max_seq_length, "Tokens per sequence")
      ->capture_default_str();
  cmd.add_flag("--packing,!--no-packing", c.packing, "Pack documents into sequences")
      ->capture_default_str();
  cmd.add_option("--long-documents", c.long_documents,
                 "Documents longer than --max-seq-length: split (consecutive pieces) or "
                 "truncate")
      ->capture_default_str()
      ->check(CLI::IsMember({"split", "truncate"}));
  cmd.add_option("--data-cache-dir", c.data_cache_dir,
                 "Tokenization cache of text .jsonl data (default: .ulysses_cache next to the "
                 "file; none: off)");
  cmd.add_option("--per-device-train-batch-size", c.per_device_train_batch_size,
                 "Sequences per SP group per micro-step")
      ->capture_default_str();
  cmd.add_option("--gradient-accumulation-steps", c.gradient_accumulation_steps,
                 "Micro-steps per optimizer step")
      ->capture_default_str();
  cmd.add_option("--learning-rate", c.learning_rate, "Peak learning rate")->capture_default_str();
  cmd.add_option("--lr-scheduler-type", c.lr_scheduler_type,
                 "linear, cosine, constant or constant_with_warmup")
      ->capture_default_str();
  cmd.add_option("--warmup-steps", c.warmup_steps, "Linear warmup steps")->capture_default_str();
  cmd.add_option("--max-steps", c.max_steps, "Optimizer steps to run")->capture_default_str();
  cmd.add_option("--num-train-epochs", c.num_train_epochs,
                 "Epochs of a finite data set to run (> 0: replaces --max-steps)");
  cmd.add_option("--weight-decay", c.weight_decay,
                 "Decoupled weight decay (not on norms and biases)")
      ->capture_default_str();
  cmd.add_option("--adam-beta1", c.adam_beta1, "AdamW beta1")->capture_default_str();
  cmd.add_option("--adam-beta2", c.adam_beta2, "AdamW beta2")->capture_default_str();
  cmd.add_option("--adam-epsilon", c.adam_epsilon, "AdamW epsilon")->capture_default_str();
  cmd.add_option("--max-grad-norm", c.max_grad_norm, "Clip gradients to this global norm (0: off)")
      ->capture_default_str();
  cmd.add_option("--initializer-range", c.initializer_range, "Std of the random init of presets")
      ->capture_default_str();
  cmd.add_flag("--gradient-checkpointing", c.gradient_checkpointing,
               "Keep only layer inputs; recompute the rest in backward")
      ->capture_default_str();
  cmd.add_option("--attn-implementation", c.attn_implementation,
                 "auto, cudnn or builtin (CUDA), blockwise (CPU)")
      ->capture_default_str();
  add_loss_tile_option(cmd, c);
  cmd.add_option("--mlp-tile-tokens", c.mlp_tile_tokens,
                 "MLP token tile (-1: 8192 with checkpointing, untiled without; 0: untiled)")
      ->capture_default_str();
  cmd.add_flag("--recompute-attention", c.recompute_attention,
               "Checkpointing: recompute attention instead of keeping its output");
  // Layer counts that also take "auto" (the trainer resolves it from the memory plan).
  const auto add_count_or_auto = [&](const char* flag, std::int64_t& target, const char* help,
                                     std::int64_t auto_value) {
    cmd.add_option(flag, target, help)
        ->transform(CLI::Transformer(
            std::map<std::string, std::string>{{"auto", std::to_string(auto_value)}}))
        ->capture_default_str();
  };
  add_count_or_auto("--recompute-attention-layers", c.recompute_attention_layers,
                    "With --recompute-attention: only the first N layers (-1: all; auto: the "
                    "fewest that let the memory plan fit the GPU)",
                    ulysses::train::kRecomputeAttentionAuto);
  add_count_or_auto("--checkpoint-layers", c.checkpoint_layers,
                    "With --gradient-checkpointing: checkpoint only the first N layers, the rest "
                    "keep their activations and skip the recompute (-1: all; auto: the fewest "
                    "that let the memory plan fit the GPU)",
                    ulysses::train::kCheckpointLayersAuto);
  cmd.add_flag("--ignore-memory-plan", c.ignore_memory_plan,
               "Start a GPU run even when its memory plan exceeds the device");
  cmd.add_flag("--offload-activations", c.offload_activations,
               "Checkpointing: kept activations in pinned host memory (CUDA)");
  cmd.add_option("--offload-activation-layers", c.offload_activation_layers,
                 "With --offload-activations: offload the first N layers (-1: all)")
      ->capture_default_str();
  cmd.add_option("--sp-size", c.sp_size, "Sequence-parallel degree")->capture_default_str();
  cmd.add_option("--sp-backend", c.sp_backend,
                 "Attention strategy when sp > 1: ulysses, ring or hybrid")
      ->capture_default_str();
  cmd.add_option("--ring-size", c.ring_size,
                 "hybrid: ranks in the ring (divides sp; Ulysses degree = sp / ring size)")
      ->capture_default_str();
  cmd.add_flag("--sp-pipeline,!--no-sp-pipeline", c.sp_pipeline,
               "Ulysses: heads in two parts, exchanges beside attention (opt-in)")
      ->capture_default_str();
  cmd.add_option("--dp-shard-size", c.dp_shard_size,
                 "ZeRO sharding degree (0: world / (sp x dp_replicate))")
      ->capture_default_str();
  cmd.add_option("--dp-replicate-size", c.dp_replicate_size, "Replica degree")
      ->capture_default_str();
  cmd.add_option("--zero-stage", c.zero_stage, "ZeRO stage 0-3 over the dp_shard x sp ranks")
      ->capture_default_str();
  cmd.add_flag("--offload-optimizer", c.offload_optimizer,
               "ZeRO >= 1: master weights and AdamW state in host memory");
  cmd.add_flag("--offload-params", c.offload_params, "ZeRO 3: parameter shards in host memory");
  cmd.add_flag("--offload-gradients", c.offload_gradients,
               "ZeRO >= 2 with --offload-optimizer: gradient shards in host memory, copied "
               "there during backward");
  cmd.add_flag("--zero-overlap,!--no-zero-overlap", c.zero_overlap,
               "ZeRO 2-3: prefetch parameters, reduce-scatter asynchronously")
      ->capture_default_str();
  cmd.add_option("--device", c.device, "cpu, cuda or auto")->capture_default_str();
  cmd.add_option("--output-dir", c.output_dir, "Checkpoints and metrics.jsonl go here")
      ->capture_default_str();
  cmd.add_option("--save-steps", c.save_steps, "Save a checkpoint every N steps (0: at the end)")
      ->capture_default_str();
  cmd.add_option("--save-total-limit", c.save_total_limit,
                 "Keep only the newest N checkpoint-<step> folders (0: all)")
      ->capture_default_str();
  cmd.add_option("--resume-from-checkpoint", c.resume_from_checkpoint,
                 "Continue from a checkpoint folder, or 'latest' in --output-dir");
  cmd.add_flag("--overwrite-output-dir", c.overwrite_output_dir,
               "Start a new run in an --output-dir holding an earlier run's checkpoints or model "
               "(nothing is deleted)");
  cmd.add_flag("--ignore-data-order-change", c.ignore_data_order_change,
               "Resume even when seed, data, batch, sequence length or packing changed");
  cmd.add_option("--max-skipped-steps", c.max_skipped_steps,
                 "Stop after this many consecutive non-finite (skipped) steps")
      ->capture_default_str();
  cmd.add_option("--save-dtype", c.save_dtype, "float32 or bfloat16")->capture_default_str();
  cmd.add_option("--grad-reduce-dtype", c.grad_reduce_dtype,
                 "Gradient all-reduce between ranks: float32 or bfloat16 (opt-in; ZeRO 0)")
      ->capture_default_str();
  cmd.add_option("--logging-steps", c.logging_steps, "Log every N steps")->capture_default_str();
  cmd.add_option("--eval-data", c.eval_data,
                 "Evaluate on this .jsonl file or token-file directory (whole set, forward only)");
  cmd.add_option("--eval-steps", c.eval_steps,
                 "Evaluate every N steps (0: only at the end; needs --eval-data)")
      ->capture_default_str();
  cmd.add_option("--per-device-eval-batch-size", c.per_device_eval_batch_size,
                 "Sequences per SP group per eval step")
      ->capture_default_str();
  cmd.add_option("--seed", c.seed, "Random seed (init and data)")->capture_default_str();
  cmd.add_flag("--quiet", c.quiet, "No plan and progress output");
}

// `ulysses eval`: the options of `train` that decide how the model runs, with --data the set
// to evaluate (TrainConfig::eval_data).
void add_eval_options(CLI::App& cmd, TrainConfig& c) {
  cmd.add_option("--model", c.model, "Preset or Hugging Face model directory (e.g. a saved run)")
      ->required();
  cmd.add_option("--data", c.eval_data,
                 "A .jsonl file (input_ids; or text / prompt+completion when --model has a "
                 "tokenizer.json) or a token-file directory")
      ->required();
  cmd.add_option("--max-seq-length", c.max_seq_length, "Tokens per sequence")
      ->capture_default_str();
  cmd.add_flag("--packing,!--no-packing", c.packing, "Pack documents into sequences")
      ->capture_default_str();
  cmd.add_option("--long-documents", c.long_documents,
                 "Documents longer than --max-seq-length: split or truncate")
      ->capture_default_str()
      ->check(CLI::IsMember({"split", "truncate"}));
  cmd.add_option("--data-cache-dir", c.data_cache_dir,
                 "Tokenization cache of text .jsonl data (default: .ulysses_cache next to the "
                 "file; none: off)");
  cmd.add_option("--per-device-eval-batch-size", c.per_device_eval_batch_size,
                 "Sequences per SP group per eval step")
      ->capture_default_str();
  cmd.add_option("--attn-implementation", c.attn_implementation,
                 "auto, cudnn or builtin (CUDA), blockwise (CPU)")
      ->capture_default_str();
  add_loss_tile_option(cmd, c);
  cmd.add_option("--sp-size", c.sp_size, "Sequence-parallel degree")->capture_default_str();
  cmd.add_option("--dp-shard-size", c.dp_shard_size,
                 "ZeRO sharding degree (0: world / (sp x dp_replicate))")
      ->capture_default_str();
  cmd.add_option("--dp-replicate-size", c.dp_replicate_size, "Replica degree")
      ->capture_default_str();
  cmd.add_option("--zero-stage", c.zero_stage, "ZeRO stage 0-3 (3: weights sharded over ranks)")
      ->capture_default_str();
  cmd.add_flag("--offload-params", c.offload_params, "ZeRO 3: parameter shards in host memory");
  cmd.add_option("--device", c.device, "cpu, cuda or auto")->capture_default_str();
  cmd.add_option("--output-dir", c.output_dir, "Write eval_results.json here ('' : none)");
  cmd.add_option("--seed", c.seed, "Random seed (weights of presets)")->capture_default_str();
  cmd.add_flag("--quiet", c.quiet, "Only the result line");
}

// Arguments for `train`: the --config file's keys first (as --key=value), then the command
// line, so flags override the file (options take their last value).
std::vector<std::string> expand_config(CLI::App& train, std::vector<std::string> args) {
  std::string config_path;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--config") {
      if (i + 1 >= args.size()) throw ulysses::Error("--config needs a file name");
      config_path = args[i + 1];
      args.erase(args.begin() + static_cast<long>(i), args.begin() + static_cast<long>(i) + 2);
      break;
    }
    if (args[i].rfind("--config=", 0) == 0) {
      config_path = args[i].substr(9);
      args.erase(args.begin() + static_cast<long>(i));
      break;
    }
  }
  if (config_path.empty()) return args;
  std::vector<std::string> expanded;
  for (const auto& [key, value] : ulysses::train::read_config_file(config_path)) {
    std::string flag = "--" + key;
    for (auto& ch : flag) ch = ch == '_' ? '-' : ch;
    if (!train.get_option_no_throw(flag) || key == "config" || key == "help") {
      std::vector<std::string> keys;
      for (std::string name : long_names(train)) {
        name = name.substr(2);
        std::replace(name.begin(), name.end(), '-', '_');
        keys.push_back(name);
      }
      std::string hint = did_you_mean(key, keys);
      if (hint.empty()) hint = " (see `ulysses train --help` for the option names)";
      throw ulysses::Error("--config " + config_path + ": unknown key '" + key + "'" + hint);
    }
    expanded.push_back(flag + "=" + value);
  }
  expanded.insert(expanded.end(), args.begin(), args.end());
  return expanded;
}

int run_train(const TrainConfig& config);
int run_eval(const TrainConfig& config);

struct TokenizeArgs {
  std::string tokenizer;
  std::vector<std::string> inputs;
  std::string output;
  int num_threads = 0;
};

// `ulysses tokenize`: text JSON Lines -> token files (a directory) or {"input_ids"} JSON Lines
// when --output ends in .jsonl. Single process; nothing is written when an input is bad.
int run_tokenize(const TokenizeArgs& a) {
  try {
    const auto tok = ulysses::io::Tokenizer::load(a.tokenizer);
    const auto docs = ulysses::data::tokenize_jsonl_files(a.inputs, tok, a.num_threads);
    std::size_t tokens = 0, masked = 0;
    for (const auto& d : docs) {
      tokens += d.tokens.size();
      masked += d.labels.empty() ? 0 : 1;
    }
    std::int64_t skipped = 0;
    if (a.output.ends_with(".jsonl"))
      ulysses::data::write_jsonl_documents(a.output, docs);
    else
      skipped = ulysses::data::write_token_files(a.output, docs);
    const std::string note =
        skipped ? " (" + std::to_string(skipped) + " empty documents skipped)" : "";
    std::printf("tokenize: %zu documents (%zu prompt/completion), %zu tokens -> %s%s\n",
                docs.size(), masked, tokens, a.output.c_str(), note.c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}

// This process's rank as the launcher (mpirun, srun) tells it, before MPI starts; 0 alone.
int launcher_rank() { return std::max(ulysses::process_env::launcher().rank, 0); }

struct InfoArgs {
  int world_size = 0;  // 0: sp x dp_replicate x dp_shard (1 when unset)
  double memory_gib = 80.0;
  double host_memory_gib = 0.0;  // 0: unknown (no host check)
  std::string precision = "auto";
};

}  // namespace

int main(int argc, char** argv) {
  // Line-buffered output even into a pipe or file: the plan and every progress line reach a
  // batch job's log when printed, not when a buffer fills.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  std::setvbuf(stderr, nullptr, _IOLBF, 0);
  CLI::App app{"ulysses: long-context training of Llama/Qwen-family models"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("ulysses ") + ULYSSES_VERSION);
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);

  TrainConfig train_config;
  CLI::App* train = app.add_subcommand("train", "Train a model");
  train->option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  add_train_options(*train, train_config);
  std::string config_file_help;
  train->add_option("--config", config_file_help,
                    "YAML or JSON file with the same options in snake_case (flags override it)");

  TokenizeArgs tokenize_args;
  CLI::App* tokenize =
      app.add_subcommand("tokenize",
                         "Tokenize JSON Lines text (\"text\", or \"prompt\"/\"completion\") into "
                         "token files or an input_ids .jsonl");
  tokenize
      ->add_option("--tokenizer", tokenize_args.tokenizer,
                   "tokenizer.json, or a Hugging Face model directory holding one")
      ->required();
  tokenize->add_option("--input", tokenize_args.inputs, "JSON Lines files, read in order")
      ->required()
      ->expected(1, -1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  tokenize
      ->add_option("--output", tokenize_args.output,
                   "Token-file directory (must not exist), or a .jsonl file")
      ->required();
  tokenize
      ->add_option("--num-threads", tokenize_args.num_threads, "Tokenizer threads (0: all cores)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);

  TrainConfig info_config;
  InfoArgs info_args;
  CLI::App* info = app.add_subcommand(
      "info",
      "The plan of a train command line without running it: shapes, FLOPs, memory per "
      "device, whether it fits and what to change, steps per epoch");
  info->option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  add_train_options(*info, info_config);
  info->add_option("--config", config_file_help, "YAML or JSON file, as for train");
  info->add_option("--world-size", info_args.world_size,
                   "Ranks of the job (mpirun -np; default sp x dp_replicate x dp_shard)")
      ->check(CLI::PositiveNumber);
  info->add_option("--memory-gib", info_args.memory_gib,
                   "Device memory per rank for the fit check (0: none)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  info->add_option("--host-memory-gib", info_args.host_memory_gib,
                   "Host memory per rank for the offloads (0: unknown); with --memory-gib the "
                   "longest sequence per offload choice is printed")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  info->add_option("--precision", info_args.precision,
                   "auto (bf16 unless --device cpu), fp32 or bf16 (bf16 + fp32 master)")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "fp32", "bf16"}));

  TrainConfig eval_config;
  eval_config.output_dir = "";
  CLI::App* eval = app.add_subcommand(
      "eval", "Loss and perplexity of a model over a whole data set (forward only)");
  eval->option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  add_eval_options(*eval, eval_config);

  std::string plot_dir;
  CLI::App* plot = app.add_subcommand(
      "plot", "Draw <output-dir>/loss.svg (train and eval loss) from its metrics.jsonl");
  plot->add_option("--output-dir", plot_dir, "The folder of a training run")->required();

  const std::vector<std::pair<std::string, CLI::App*>> commands = {
      {"train", train}, {"tokenize", tokenize}, {"info", info}, {"eval", eval}, {"plot", plot}};
  CLI::App* command = nullptr;
  std::vector<std::string> args(argv + 1, argv + argc);
  for (const auto& [name, cmd] : commands)
    if (!args.empty() && args[0] == name) command = cmd;
  try {
    if (command != nullptr) accept_snake_case(*command, args);
    if (!args.empty() && (args[0] == "train" || args[0] == "info")) {
      auto rest = expand_config(*command, std::vector<std::string>(args.begin() + 1, args.end()));
      rest.insert(rest.begin(), args[0]);
      args = rest;
    }
    std::vector<std::string> reversed(args.rbegin(), args.rend());  // CLI11 parses it reversed
    app.parse(reversed);
  } catch (const CLI::ParseError& e) {
    // Command-line errors exit 2 (help and --version 0). Under mpirun every rank parses the
    // same arguments: only the first prints.
    const int rc = e.get_exit_code() == 0 ? 0 : 2;
    if (launcher_rank() != 0) return rc;
    app.exit(e);
    if (command != nullptr && rc != 0) hint_unknown_options(*command, args);
    return rc;
  } catch (const ulysses::Error& e) {
    if (launcher_rank() == 0) std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }

  // --quiet also drops info log lines (e.g. the tokenization cache's), keeping warnings and
  // errors; a more verbose level asked for explicitly stays.
  const bool quiet = *eval ? eval_config.quiet : train_config.quiet;
  if (quiet && ulysses::log_level() == ulysses::LogLevel::info)
    ulysses::set_log_level(ulysses::LogLevel::warn);
  if (*tokenize) return run_tokenize(tokenize_args);
  if (*eval) return run_eval(eval_config);
  if (*plot) {
    try {
      std::printf("%s\n", ulysses::train::write_loss_plot(plot_dir).string().c_str());
      return 0;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "error: %s\n", e.what());
      return 1;
    }
  }
  if (*info) {
    try {
      std::printf(
          "%s", ulysses::train::info_report(info_config, info_args.world_size, info_args.memory_gib,
                                            info_args.precision, info_args.host_memory_gib)
                    .c_str());
      return 0;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "error: %s\n", e.what());
      return 1;
    }
  }
  return run_train(train_config);
}

namespace {

// Agrees over the world on whether any rank failed setup. The lowest failing rank prints its
// message (once for the job: every rank usually fails the same way), every rank returns true.
bool any_rank_failed(ulysses::comm::Communicator& world, const std::string& error) {
  using ulysses::Tensor;
  Tensor flag = Tensor::from_ints({error.empty() ? 0 : world.size() - world.rank()}, {1});
  world.all_reduce(flag, ulysses::comm::ReduceOp::max);
  const int lowest_failing = world.size() - flag.data<std::int32_t>()[0];
  if (flag.data<std::int32_t>()[0] == 0) return false;
  // Errors agreed on by collectives (comm::agree) already end with the failing rank.
  const std::string suffix = " (rank " + std::to_string(world.rank()) + ")";
  const bool has_suffix = error.size() >= suffix.size() &&
                          error.compare(error.size() - suffix.size(), suffix.size(), suffix) == 0;
  if (world.rank() == lowest_failing)
    std::fprintf(stderr, "error: %s%s\n", error.c_str(),
                 world.size() > 1 && !has_suffix ? suffix.c_str() : "");
  return true;
}

// The MPI world of a train or eval command; null after printing why it could not start.
std::unique_ptr<ulysses::comm::Communicator> start_world() {
  try {
    return ulysses::comm::make_mpi_world();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return nullptr;
  }
}

int run_train(const TrainConfig& config) {
  const std::unique_ptr<ulysses::comm::Communicator> world = start_world();
  if (!world) return 1;
  // Setup: every rank validates the same inputs; failures are agreed on, so all ranks stop.
  // The output dir is claimed (locked on rank 0) for the whole run, before anything is read.
  std::unique_ptr<ulysses::train::OutputDirLock> output_lock;
  std::unique_ptr<ulysses::train::Trainer> trainer;
  std::string error;
  try {
    ulysses::train::validate(config, world->size());  // bad options leave no output dir
    if (!config.output_dir.empty())
      output_lock = ulysses::train::claim_output_dir(
          *world, config.output_dir,
          {!config.resume_from_checkpoint.empty(), config.overwrite_output_dir});
    trainer = std::make_unique<ulysses::train::Trainer>(config, *world);
  } catch (const std::exception& e) {
    error = e.what();
  }
  if (any_rank_failed(*world, error)) return 1;
  // Training: an error on one rank cannot be agreed on (the others may be inside a
  // collective), so the rank that failed prints it and stops the whole job.
  try {
    trainer->run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error (rank %d): %s\n", world->rank(), e.what());
    ulysses::comm::abort_job(1);
  }
  return 0;
}
}  // namespace

namespace {

// --eval-data in a setup error of the Trainer is --data on the eval command line.
std::string eval_command_message(std::string message) {
  for (std::size_t at = message.find("--eval-data"); at != std::string::npos;
       at = message.find("--eval-data", at))
    message.replace(at, 11, "--data");
  return message;
}

int run_eval(const TrainConfig& options) {
  const std::unique_ptr<ulysses::comm::Communicator> world = start_world();
  if (!world) return 1;
  // The Trainer builds the model, the layout and the weights exactly as `train` would; it reads
  // no training data (the endless synthetic source is opened, never drawn from), writes nothing
  // and runs only forwards.
  TrainConfig config = options;
  config.data = "synthetic-copy";
  config.output_dir = "";
  config.quiet = true;
  std::unique_ptr<ulysses::train::Trainer> trainer;
  std::string error;
  try {
    namespace fs = std::filesystem;
    if (!options.output_dir.empty() && fs::exists(options.output_dir) &&
        !fs::is_directory(options.output_dir))
      throw ulysses::Error("--output-dir " + options.output_dir +
                           " is a file; give a directory for eval_results.json");
    trainer = std::make_unique<ulysses::train::Trainer>(config, *world);
  } catch (const std::exception& e) {
    error = eval_command_message(e.what());
  }
  if (any_rank_failed(*world, error)) return 1;
  const bool main_rank = world->rank() == 0;
  try {
    if (!options.quiet && main_rank)
      std::printf("eval: model %s, data %s\n%s", options.model.c_str(), options.eval_data.c_str(),
                  trainer->mesh().describe().c_str());
    const ulysses::train::EvalMetrics m = trainer->evaluate(0);
    if (main_rank) {
      std::printf(
          "eval_loss %.6f | eval_perplexity %.6g | %lld labels in %lld sequences | %.1f s\n",
          m.loss, m.perplexity, static_cast<long long>(m.valid_labels),
          static_cast<long long>(m.sequences), m.seconds);
      if (!options.output_dir.empty())
        ulysses::train::write_eval_results(options.output_dir, m, options.model, options.eval_data);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error (rank %d): %s\n", world->rank(), e.what());
    ulysses::comm::abort_job(1);
  }
  return 0;
}

}  // namespace
