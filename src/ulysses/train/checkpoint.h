// Training-state checkpoints: everything needed to resume a run exactly (optimizer shards, step,
// RNG seed, data position), saved next to (or together with) the Hugging Face weights.
//
// Layout of a saved checkpoint, <output_dir>/checkpoint-<step>/:
//   trainer_state.json              TrainingState (written by rank 0), see below
//   rank-<r>-of-<n>.safetensors     the tensors of rank r (n = world size), one file per rank;
//                                   metadata ulysses.step / ulysses.rank / ulysses.world_size
//   ...                             files added by the caller's extra_files hook (HF weights)
//   COMPLETE                        written last; holds the UTC time of the save
//
// Crash safety: the folder is built as <output_dir>/.checkpoint-<step>.tmp. After every rank has
// written (and fsynced) its file, rank 0 writes trainer_state.json, runs the caller's hook,
// fsyncs every file and folder inside, renames the folder to checkpoint-<step>, fsyncs
// output_dir, and only then writes COMPLETE. A folder named checkpoint-<N> without COMPLETE is
// therefore a save that was interrupted (or one written by something else): it is never resumed
// from. A folder named .checkpoint-<N>.tmp is always garbage.
//
// Collectives: functions taking a Communicator are collective over it (every rank calls them,
// in the same order). They agree on failure: when any rank fails, every rank throws an Error
// with the same message (the message of the lowest failing rank, suffixed with "(rank r)" in
// multi-rank jobs), so no rank is left waiting in a later collective. output_dir must be on a
// file system that every rank sees (one host, or a shared file system across hosts).
//
// Every failure is a ulysses::Error whose message names the folder or file at fault.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "ulysses/comm/communicator.h"
#include "ulysses/core/tensor.h"
#include "ulysses/model/config.h"

namespace ulysses::train {

// Names inside output_dir and inside a checkpoint folder.
inline constexpr const char* kTrainerStateName = "trainer_state.json";
inline constexpr const char* kCompleteMarkerName = "COMPLETE";
std::string checkpoint_folder_name(std::int64_t step);                   // "checkpoint-<step>"
std::string checkpoint_tmp_folder_name(std::int64_t step);               // ".checkpoint-<step>.tmp"
std::string rank_file_name(std::int64_t rank, std::int64_t world_size);  // "rank-<r>-of-<n>..."

// The state shared by every rank (identical on all of them).
struct TrainingState {
  std::int64_t step = 0;           // optimizer steps completed
  std::int64_t data_position = 0;  // packer position (index of the next document)
  std::uint64_t seed = 0;
  std::int64_t world_size = 1;
  std::int64_t sp_size = 1;
  std::int64_t dp_shard_size = 1;
  std::int64_t dp_replicate_size = 1;
  std::int64_t zero_stage = 0;
  // Identifies the architecture; a checkpoint of another model is refused. See
  // model_fingerprint().
  std::string model_fingerprint;
  // Identity of the run that saved the checkpoint: random at a fresh start (make_run_id), kept
  // across resumes. Rotation removes only the checkpoints of its own run. "" in checkpoints of
  // builds before run ids (then the checkpoint belongs to no run).
  std::string run_id;
  // Free-form (learning-rate schedule settings, ...); round-trips as given. Default: null.
  nlohmann::json extra;
};

// A readable fingerprint of an architecture, e.g.
// "qwen3 hidden=64 layers=2 heads=4 kv_heads=2 vocab=256 config=9f3a...": the main sizes for
// the person reading an error message, then a 64-bit FNV-1a hash (hex) of the whole
// model_config_to_json(config) except "torch_dtype" (the storage dtype of the published weights
// does not change what is trained). Equal configs give equal fingerprints on every machine.
std::string model_fingerprint(const model::ModelConfig& config);

// trainer_state.json <-> TrainingState. The JSON carries "format": "ulysses-training-state" and
// "version": 1. from_json throws Error naming `origin` for a missing or mistyped field or
// another format/version.
nlohmann::json training_state_to_json(const TrainingState& state);
TrainingState training_state_from_json(const nlohmann::json& json, const std::string& origin);

// Collective. Saves a checkpoint of step state.step (layout and crash safety: file comment).
// rank_tensors: this rank's tensors (its optimizer shard, ...), f32/bf16/i32/i64, unique
// non-empty names; ranks may pass different names and shapes. state must be identical on every
// rank and state.world_size must equal world.size() (Error otherwise).
// extra_files: called on rank 0 only, with the temporary folder, after trainer_state.json and
// the rank files are written and before the folder is renamed: put the HF weights there. What it
// writes is fsynced by the save.
// A stale .checkpoint-<step>.tmp of a crashed run is removed first; an existing
// checkpoint-<step> (complete or not) is replaced, with a warning. After a failure, rank 0
// removes the temporary folder (best effort) and every rank throws.
// Returns <output_dir>/checkpoint-<step> on every rank.
std::filesystem::path save_training_checkpoint(
    comm::Communicator& world, const std::filesystem::path& output_dir, const TrainingState& state,
    const std::vector<std::pair<std::string, Tensor>>& rank_tensors,
    const std::function<void(const std::filesystem::path& tmp_dir)>& extra_files = {});

// True when `dir` is a folder holding the COMPLETE marker.
bool is_complete_checkpoint(const std::filesystem::path& dir);

// Why a checkpoint saved with state `saved` cannot be resumed by a run whose state is
// `expected` (model fingerprint, world size, sp/dp_shard/dp_replicate sizes, ZeRO stage, in
// this order; the first mismatch, naming the saved and the current value), or "" when it can.
std::string resume_incompatibility(const TrainingState& saved, const TrainingState& expected);

// Collective (rank 0 looks at the file system and broadcasts the answer). Resolves the value of
// --resume-from-checkpoint:
// - "latest": the complete checkpoint-<N> folder of output_dir with the largest N whose saved
//   state is compatible with `expected` (resume_incompatibility; when expected is null, every
//   complete checkpoint is). Folders checkpoint-<N> without COMPLETE are skipped with a warning
//   (log_warn) naming each and saying the save was interrupted; complete but incompatible ones
//   (another model, layout or ZeRO stage: an earlier run's) are skipped with a warning saying
//   why. Error when output_dir has no complete compatible checkpoint (or does not exist).
// - anything else: a path to a checkpoint folder (relative paths are taken as given, i.e.
//   relative to the working directory). Error when it is not a folder, or when it lacks
//   COMPLETE (naming the folder and saying the save was interrupted).
// Empty spec: Error. Returns the same path on every rank.
std::filesystem::path resolve_checkpoint(comm::Communicator& world,
                                         const std::filesystem::path& output_dir,
                                         const std::string& spec,
                                         const TrainingState* expected = nullptr);

struct LoadedCheckpoint {
  TrainingState state;                    // as saved (step, data_position, seed, extra, ...)
  std::map<std::string, Tensor> tensors;  // this rank's tensors (CPU, dtype as saved)
};

// Collective. Loads checkpoint folder `dir` (must be complete): every rank reads
// trainer_state.json and its own rank file. The saved state is checked against `expected`,
// in this order: model fingerprint, world size, sp/dp_shard/dp_replicate sizes, zero stage;
// the first mismatch is an Error naming the checkpoint, the saved and the current value, and
// saying that resuming with a different model, world size, layout or ZeRO stage is not
// supported. (step, data_position, seed and extra of `expected` are not compared.)
// expected.world_size must equal world.size(). The rank file's metadata must match
// (step, rank, world size): a misplaced file is refused.
LoadedCheckpoint load_training_checkpoint(comm::Communicator& world,
                                          const std::filesystem::path& dir,
                                          const TrainingState& expected);

// Settings recorded in TrainingState::extra that decide the order and content of the data: a
// resume that changes one of them (or the seed) does not continue the saved run's data stream.
inline constexpr const char* kDataOrderSettings[] = {"data",
                                                     "max_seq_length",
                                                     "packing",
                                                     "per_device_train_batch_size",
                                                     "gradient_accumulation_steps",
                                                     "copy_min_length",
                                                     "copy_max_length"};

// Compares the settings a run resumes with (current: seed and extra) to those the checkpoint
// was saved with (saved), key by key ("updates" excepted; keys absent on either side are not
// compared: checkpoints of older builds record fewer). When the seed or a data-order setting
// (kDataOrderSettings) changed and !allow_data_order_change: Error naming `origin`, listing
// every changed setting ("name: saved -> current") and the flag that allows it. Otherwise
// returns a warning listing the changed settings ("" when none changed). Pure function: every
// rank gets the same result.
std::string check_resume_settings(const TrainingState& saved, const TrainingState& current,
                                  bool allow_data_order_change, const std::string& origin);

// Collective (rank 0 changes the file system; every rank waits and agrees on errors).
// Works on the checkpoints of run `run_id` only: checkpoint-<N> folders whose trainer_state.json
// names another run (or none, or cannot be read) are never touched nor counted. An empty run_id
// means every checkpoint-<N> folder (as if all belonged to one run).
// Keeps the `limit` complete checkpoint-<N> folders of the run with the largest N and removes
// the run's other complete ones (limit <= 0: keeps every complete one). The run's incomplete
// checkpoint-<N> folders and stale .checkpoint-<N>.tmp folders (which belong to nobody: the
// output-dir lock rules out a concurrent save) with N below the run's newest complete
// checkpoint are removed in any case (they can never be resumed from); newer incomplete ones
// are kept. Returns nothing; a missing output_dir is not an error. Other files are never
// touched.
void rotate_checkpoints(comm::Communicator& world, const std::filesystem::path& output_dir,
                        std::int64_t limit, const std::string& run_id = "");

}  // namespace ulysses::train
