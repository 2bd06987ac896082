#include "ulysses/train/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <optional>
#include <sstream>

#include "ulysses/comm/agree.h"
#include "ulysses/core/error.h"
#include "ulysses/core/format.h"
#include "ulysses/core/finite.h"
#include "ulysses/core/log.h"
#include "ulysses/core/parse_limits.h"
#include "ulysses/io/safetensors.h"

namespace ulysses::train {
namespace {

namespace fs = std::filesystem;
using comm::broadcast_string;
using comm::run_agreed;
using nlohmann::json;

constexpr const char* kStateFormat = "ulysses-training-state";
constexpr std::int64_t kStateVersion = 1;

std::string os_error() { return std::strerror(errno); }

std::uint64_t fnv1a64(const std::string& bytes) {
  std::uint64_t hash = 0xcbf29ce484222325ull;
  for (const unsigned char c : bytes) {
    hash ^= c;
    hash *= 0x100000001b3ull;
  }
  return hash;
}

std::string hex64(std::uint64_t value) {
  char buffer[17];
  std::snprintf(buffer, sizeof buffer, "%016llx", static_cast<unsigned long long>(value));
  return buffer;
}

// ---- File system helpers --------------------------------------------------------------------

// fsyncs a regular file (Error on failure) or a folder (best effort: some file systems refuse).
void fsync_path(const fs::path& path, bool directory) {
  const int fd = ::open(path.c_str(), (directory ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) {
    if (directory) return;
    UL_FAIL(path.string(), ": cannot open for fsync: ", os_error());
  }
  const int rc = ::fsync(fd);
  const std::string why = rc != 0 ? os_error() : std::string();
  ::close(fd);
  if (rc != 0 && !directory) UL_FAIL(path.string(), ": fsync failed: ", why);
}

// fsyncs every file and folder below `dir`, then `dir` itself.
void fsync_tree(const fs::path& dir) {
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (entry.is_directory()) {
      fsync_path(entry.path(), true);
    } else if (entry.is_regular_file()) {
      fsync_path(entry.path(), false);
    }
  }
  fsync_path(dir, true);
}

// Writes `content` to `path` (replacing it) and fsyncs it.
void write_file_synced(const fs::path& path, const std::string& content) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) UL_FAIL(path.string(), ": cannot create file: ", os_error());
  const char* p = content.data();
  std::size_t left = content.size();
  while (left > 0) {
    const ssize_t put = ::write(fd, p, left);
    if (put < 0 && errno == EINTR) continue;
    if (put <= 0) {
      const std::string why = os_error();
      ::close(fd);
      UL_FAIL(path.string(), ": write failed: ", why);
    }
    p += put;
    left -= static_cast<std::size_t>(put);
  }
  if (::fsync(fd) != 0) {
    const std::string why = os_error();
    ::close(fd);
    UL_FAIL(path.string(), ": fsync failed: ", why);
  }
  if (::close(fd) != 0) UL_FAIL(path.string(), ": close failed: ", os_error());
}

// Removes `path` recursively; Error naming it on failure.
void remove_folder(const fs::path& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
  if (ec) UL_FAIL(path.string(), ": cannot remove folder: ", ec.message());
}

// Parses the decimal step of "<prefix><digits><suffix>"; nullopt for any other name.
std::optional<std::int64_t> parse_step(const std::string& name, const std::string& prefix,
                                       const std::string& suffix) {
  if (name.size() <= prefix.size() + suffix.size()) return std::nullopt;
  if (name.compare(0, prefix.size(), prefix) != 0) return std::nullopt;
  if (name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) return std::nullopt;
  const char* begin = name.data() + prefix.size();
  const char* end = name.data() + name.size() - suffix.size();
  if (!std::all_of(begin, end, [](char c) { return c >= '0' && c <= '9'; })) return std::nullopt;
  std::int64_t step = 0;
  const auto [ptr, ec] = std::from_chars(begin, end, step);
  if (ec != std::errc() || ptr != end) return std::nullopt;
  return step;
}

struct FoundCheckpoint {
  std::int64_t step = 0;
  fs::path path;
  bool complete = false;
  bool tmp = false;  // a .checkpoint-<N>.tmp folder
};

// Checkpoint and temporary folders of output_dir, by increasing step (empty when the folder
// does not exist).
std::vector<FoundCheckpoint> scan_checkpoints(const fs::path& output_dir) {
  std::vector<FoundCheckpoint> found;
  std::error_code ec;
  if (!fs::is_directory(output_dir, ec)) return found;
  fs::directory_iterator it(output_dir, ec);
  if (ec) UL_FAIL(output_dir.string(), ": cannot list folder: ", ec.message());
  for (const auto& entry : it) {
    if (!entry.is_directory()) continue;
    const std::string name = entry.path().filename().string();
    if (const auto step = parse_step(name, "checkpoint-", "")) {
      found.push_back({*step, entry.path(), is_complete_checkpoint(entry.path()), false});
    } else if (const auto tmp_step = parse_step(name, ".checkpoint-", ".tmp")) {
      found.push_back({*tmp_step, entry.path(), false, true});
    }
  }
  std::sort(found.begin(), found.end(), [](const FoundCheckpoint& a, const FoundCheckpoint& b) {
    return a.step != b.step ? a.step < b.step : a.path < b.path;
  });
  return found;
}

std::string interrupted_message(const fs::path& dir) {
  return dir.string() + ": not a complete checkpoint: the " + kCompleteMarkerName +
         " marker is missing, i.e. the save was interrupted (resume from an earlier checkpoint)";
}

// ---- trainer_state.json fields --------------------------------------------------------------

const json& field(const json& object, const char* key, const std::string& origin) {
  if (!object.contains(key)) UL_FAIL(origin, ": missing field \"", key, "\"");
  return object.at(key);
}
std::int64_t int_field(const json& object, const char* key, const std::string& origin) {
  const json& value = field(object, key, origin);
  if (!value.is_number_integer() ||
      (value.is_number_unsigned() && value.get<std::uint64_t>() > INT64_MAX))
    UL_FAIL(origin, ": field \"", key, "\" must be an integer, got ",
            truncate_for_message(value.dump()));
  return value.get<std::int64_t>();
}

}  // namespace

// The trainer_state.json of checkpoint folder `dir` (Error naming the file when unreadable).
static TrainingState read_state(const fs::path& dir) {
  const fs::path state_path = dir / kTrainerStateName;
  const std::string text =
      read_text_file_capped(state_path, kMaxConfigFileBytes, state_path.string());
  check_nesting_depth(text, state_path.string());
  json state_json;
  try {
    state_json = json::parse(text);
  } catch (const json::exception& e) {
    UL_FAIL(state_path.string(), ": invalid JSON: ", truncate_for_message(e.what(), 300));
  }
  return training_state_from_json(state_json, state_path.string());
}

std::string checkpoint_folder_name(std::int64_t step) {
  return "checkpoint-" + std::to_string(step);
}
std::string checkpoint_tmp_folder_name(std::int64_t step) {
  return ".checkpoint-" + std::to_string(step) + ".tmp";
}
std::string rank_file_name(std::int64_t rank, std::int64_t world_size) {
  return "rank-" + std::to_string(rank) + "-of-" + std::to_string(world_size) + ".safetensors";
}

std::string model_fingerprint(const model::ModelConfig& config) {
  json config_json = model_config_to_json(config);
  config_json.erase("torch_dtype");
  std::ostringstream out;
  out << model::model_type_name(config.model_type) << " hidden=" << config.hidden_size
      << " layers=" << config.num_hidden_layers << " heads=" << config.num_attention_heads
      << " kv_heads=" << config.num_key_value_heads << " vocab=" << config.vocab_size
      << " config=" << hex64(fnv1a64(config_json.dump()));
  return out.str();
}

json training_state_to_json(const TrainingState& state) {
  return json{{"format", kStateFormat},
              {"version", kStateVersion},
              {"step", state.step},
              {"data_position", state.data_position},
              {"seed", state.seed},
              {"world_size", state.world_size},
              {"sp_size", state.sp_size},
              {"dp_shard_size", state.dp_shard_size},
              {"dp_replicate_size", state.dp_replicate_size},
              {"zero_stage", state.zero_stage},
              {"model_fingerprint", state.model_fingerprint},
              {"run_id", state.run_id},
              {"extra", state.extra}};
}

TrainingState training_state_from_json(const json& state_json, const std::string& origin) {
  if (!state_json.is_object()) UL_FAIL(origin, ": expected a JSON object");
  const json& format = field(state_json, "format", origin);
  if (format != kStateFormat)
    UL_FAIL(origin, ": \"format\" is ", truncate_for_message(format.dump()), ", expected \"",
            kStateFormat, "\"");
  const std::int64_t version = int_field(state_json, "version", origin);
  if (version != kStateVersion)
    UL_FAIL(origin, ": version ", version, " is not supported (this build reads version ",
            kStateVersion, ")");
  TrainingState state;
  state.step = int_field(state_json, "step", origin);
  state.data_position = int_field(state_json, "data_position", origin);
  const json& seed = field(state_json, "seed", origin);
  if (!seed.is_number_unsigned())
    UL_FAIL(origin, ": field \"seed\" must be a non-negative integer, got ",
            truncate_for_message(seed.dump()));
  state.seed = seed.get<std::uint64_t>();
  state.world_size = int_field(state_json, "world_size", origin);
  state.sp_size = int_field(state_json, "sp_size", origin);
  state.dp_shard_size = int_field(state_json, "dp_shard_size", origin);
  state.dp_replicate_size = int_field(state_json, "dp_replicate_size", origin);
  state.zero_stage = int_field(state_json, "zero_stage", origin);
  const json& fingerprint = field(state_json, "model_fingerprint", origin);
  if (!fingerprint.is_string())
    UL_FAIL(origin, ": field \"model_fingerprint\" must be a string, got ",
            truncate_for_message(fingerprint.dump()));
  state.model_fingerprint = fingerprint.get<std::string>();
  if (state_json.contains("run_id")) {
    const json& run_id = state_json.at("run_id");
    if (!run_id.is_string() || run_id.get_ref<const std::string&>().size() > 64)
      UL_FAIL(origin, ": field \"run_id\" must be a string of at most 64 characters");
    state.run_id = run_id.get<std::string>();
  }
  state.extra = state_json.value("extra", json());
  // Every field within its range: a corrupt or hand-edited file is refused here, never acted on.
  const auto in_range = [&](const char* key, std::int64_t value, std::int64_t low,
                            std::int64_t high) {
    if (value < low || value > high)
      UL_FAIL(origin, ": field \"", key, "\" is ", value, ", outside [", low, ", ", high,
              "] (the file is corrupt)");
  };
  constexpr std::int64_t kMaxRanks = std::int64_t{1} << 24;
  in_range("step", state.step, 0, INT64_MAX - 1);
  in_range("data_position", state.data_position, 0, INT64_MAX - 1);
  in_range("world_size", state.world_size, 1, kMaxRanks);
  in_range("sp_size", state.sp_size, 1, state.world_size);
  in_range("dp_shard_size", state.dp_shard_size, 1, state.world_size);
  in_range("dp_replicate_size", state.dp_replicate_size, 1, state.world_size);
  in_range("zero_stage", state.zero_stage, 0, 3);
  if (state.sp_size * state.dp_shard_size * state.dp_replicate_size != state.world_size)
    UL_FAIL(origin, ": sp_size x dp_shard_size x dp_replicate_size (", state.sp_size, " x ",
            state.dp_shard_size, " x ", state.dp_replicate_size, ") is not world_size ",
            state.world_size, " (the file is corrupt)");
  if (!state.extra.is_null() && !state.extra.is_object())
    UL_FAIL(origin, ": field \"extra\" must be an object or null");
  if (state.extra.is_object() && state.extra.contains("updates")) {
    const json& updates = state.extra.at("updates");
    if (!updates.is_number_integer() || updates.get<std::int64_t>() < 0 ||
        updates.get<std::int64_t>() > state.step)
      UL_FAIL(origin, ": field \"extra.updates\" must be an integer in [0, step ", state.step,
              "], got ", truncate_for_message(updates.dump()));
  }
  return state;
}

bool is_complete_checkpoint(const fs::path& dir) {
  std::error_code ec;
  return fs::is_directory(dir, ec) && fs::is_regular_file(dir / kCompleteMarkerName, ec);
}

fs::path save_training_checkpoint(comm::Communicator& world, const fs::path& output_dir,
                                  const TrainingState& state,
                                  const std::vector<std::pair<std::string, Tensor>>& rank_tensors,
                                  const std::function<void(const fs::path& tmp_dir)>& extra_files) {
  const fs::path final_dir = output_dir / checkpoint_folder_name(state.step);
  const fs::path tmp_dir = output_dir / checkpoint_tmp_folder_name(state.step);
  const bool is_root = world.rank() == 0;
  const std::string state_text =
      training_state_to_json(state).dump(2, ' ', false, json::error_handler_t::replace) + "\n";

  // Every rank must describe the same state: compare hashes of the JSON.
  Tensor hashes = Tensor::empty({world.size()}, DType::i64);  // [world size]
  Tensor own_hash = Tensor::empty({1}, DType::i64);           // [1]
  own_hash.data<std::int64_t>()[0] = std::bit_cast<std::int64_t>(fnv1a64(state_text));
  world.all_gather(own_hash, hashes);

  // Phase 1: validate; rank 0 prepares an empty temporary folder.
  run_agreed(world, [&] {
    if (state.world_size != world.size())
      UL_FAIL(final_dir.string(), ": state.world_size is ", state.world_size,
              " but the communicator has ", world.size(), " ranks");
    if (state.step < 0) UL_FAIL(final_dir.string(), ": negative step ", state.step);
    for (const auto& [name, tensor] : rank_tensors)
      check_finite(tensor, final_dir.string(), name,
                   "the checkpoint was not written (the training diverged: lower "
                   "--learning-rate or set --max-grad-norm; resume from an earlier checkpoint)");
    for (int r = 1; r < world.size(); ++r)
      if (hashes.data<std::int64_t>()[r] != hashes.data<std::int64_t>()[0])
        UL_FAIL(final_dir.string(), ": the training state of rank ", r,
                " differs from rank 0's (every rank must save the same state)");
    if (!is_root) return;
    std::error_code ec;
    fs::create_directories(output_dir, ec);
    if (ec) UL_FAIL(output_dir.string(), ": cannot create folder: ", ec.message());
    if (fs::exists(tmp_dir, ec)) {
      log_warn("removing ", tmp_dir.string(), ", left behind by an interrupted save");
      remove_folder(tmp_dir);
    }
    fs::create_directory(tmp_dir, ec);
    if (ec) UL_FAIL(tmp_dir.string(), ": cannot create folder: ", ec.message());
  });

  const auto remove_tmp_on_failure = [&](auto&& phase) {
    try {
      run_agreed(world, phase);
    } catch (...) {
      std::error_code ignored;
      if (is_root) fs::remove_all(tmp_dir, ignored);
      throw;
    }
  };

  // Phase 2: every rank writes (and fsyncs) its own file.
  remove_tmp_on_failure([&] {
    const std::map<std::string, std::string> metadata = {
        {"ulysses.step", std::to_string(state.step)},
        {"ulysses.rank", std::to_string(world.rank())},
        {"ulysses.world_size", std::to_string(world.size())}};
    io::write_safetensors(tmp_dir / rank_file_name(world.rank(), world.size()), rank_tensors,
                          metadata);
  });

  // Phase 3: rank 0 completes the folder, renames it into place and marks it complete.
  remove_tmp_on_failure([&] {
    if (!is_root) return;
    write_file_synced(tmp_dir / kTrainerStateName, state_text);
    if (extra_files) extra_files(tmp_dir);
    fsync_tree(tmp_dir);
    std::error_code ec;
    if (fs::exists(final_dir, ec)) {
      log_warn("replacing existing ", final_dir.string(),
               is_complete_checkpoint(final_dir) ? "" : " (an interrupted save)");
      remove_folder(final_dir);
    }
    fs::rename(tmp_dir, final_dir, ec);
    if (ec)
      UL_FAIL(final_dir.string(), ": cannot rename ", tmp_dir.string(),
              " into place: ", ec.message());
    fsync_path(output_dir, true);
    write_file_synced(final_dir / kCompleteMarkerName, format_utc_now() + "\n");
    fsync_path(final_dir, true);
  });
  return final_dir;
}

std::string resume_incompatibility(const TrainingState& saved, const TrainingState& expected) {
  if (saved.model_fingerprint != expected.model_fingerprint)
    return "the checkpoint was saved for model '" + saved.model_fingerprint +
           "', this run trains '" + expected.model_fingerprint + "'";
  const std::pair<const char*, std::pair<std::int64_t, std::int64_t>> sizes[] = {
      {"world size", {saved.world_size, expected.world_size}},
      {"sequence-parallel size (sp_size)", {saved.sp_size, expected.sp_size}},
      {"data-parallel shard size (dp_shard_size)", {saved.dp_shard_size, expected.dp_shard_size}},
      {"data-parallel replicate size (dp_replicate_size)",
       {saved.dp_replicate_size, expected.dp_replicate_size}},
      {"ZeRO stage", {saved.zero_stage, expected.zero_stage}}};
  for (const auto& [what, values] : sizes)
    if (values.first != values.second)
      return std::string("the checkpoint was saved with ") + what + " " +
             std::to_string(values.first) + ", this run has " + what + " " +
             std::to_string(values.second);
  return "";
}

std::string check_resume_settings(const TrainingState& saved, const TrainingState& current,
                                  bool allow_data_order_change, const std::string& origin) {
  std::vector<std::string> changed;
  bool data_order_changed = false;
  const auto note = [&](const std::string& key, const json& was, const json& now) {
    if (was == now) return;
    const bool data_order =
        key == "seed" || std::find(std::begin(kDataOrderSettings), std::end(kDataOrderSettings),
                                   key) != std::end(kDataOrderSettings);
    data_order_changed = data_order_changed || data_order;
    changed.push_back(key + ": " + truncate_for_message(was.dump()) + " -> " +
                      truncate_for_message(now.dump()) + (data_order ? " (data order)" : ""));
  };
  note("seed", saved.seed, current.seed);
  if (saved.extra.is_object() && current.extra.is_object())
    for (const auto& [key, now] : current.extra.items())
      if (key != "updates" && saved.extra.contains(key)) note(key, saved.extra.at(key), now);
  if (changed.empty()) return "";
  std::string list;
  for (const auto& item : changed) list += (list.empty() ? "" : ", ") + item;
  if (data_order_changed && !allow_data_order_change)
    UL_FAIL(origin, ": resuming with changed settings: ", list,
            ". The data-order settings would not continue the saved run's data stream (the "
            "resume would not be exact): run with the saved values, or pass "
            "--ignore-data-order-change to continue anyway");
  return origin + ": resuming with changed settings: " + list;
}

fs::path resolve_checkpoint(comm::Communicator& world, const fs::path& output_dir,
                            const std::string& spec, const TrainingState* expected) {
  std::string resolved;
  run_agreed(world, [&] {
    if (world.rank() != 0) return;
    if (spec.empty())
      UL_FAIL("--resume-from-checkpoint: empty value (use \"latest\" or a checkpoint folder)");
    if (spec != "latest") {
      const fs::path dir(spec);
      std::error_code ec;
      if (!fs::is_directory(dir, ec))
        UL_FAIL(dir.string(), ": no such checkpoint folder (--resume-from-checkpoint)");
      if (!is_complete_checkpoint(dir)) UL_FAIL(interrupted_message(dir));
      resolved = dir.string();
      return;
    }
    const std::vector<FoundCheckpoint> found = scan_checkpoints(output_dir);
    for (auto it = found.rbegin(); it != found.rend(); ++it) {
      if (it->tmp) continue;
      if (it->complete) {
        if (expected != nullptr) {
          std::string why;
          try {
            why = resume_incompatibility(read_state(it->path), *expected);
          } catch (const Error& e) {
            why = e.what();
          }
          if (!why.empty()) {
            log_warn("skipping ", it->path.string(), " (of another run): ", why);
            continue;
          }
        }
        resolved = it->path.string();
        return;
      }
      log_warn("skipping ", it->path.string(), ": no ", kCompleteMarkerName,
               " marker (the save was interrupted)");
    }
    UL_FAIL(output_dir.string(), ": no complete checkpoint-<step> folder ",
            expected ? "of a compatible run " : "", "to resume from ",
            "(--resume-from-checkpoint latest)");
  });
  broadcast_string(world, 0, resolved);
  return resolved;
}

LoadedCheckpoint load_training_checkpoint(comm::Communicator& world, const fs::path& dir,
                                          const TrainingState& expected) {
  LoadedCheckpoint loaded;
  run_agreed(world, [&] {
    if (!is_complete_checkpoint(dir)) {
      std::error_code ec;
      if (!fs::is_directory(dir, ec)) UL_FAIL(dir.string(), ": no such checkpoint folder");
      UL_FAIL(interrupted_message(dir));
    }
    const TrainingState saved = read_state(dir);
    const std::string why = resume_incompatibility(saved, expected);
    if (!why.empty())
      UL_FAIL(dir.string(), ": ", why,
              "; resuming with a different model, world size, parallel layout or ZeRO stage is "
              "not supported (run with the saved settings)");
    if (saved.world_size != world.size())
      UL_FAIL(dir.string(), ": expected.world_size is ", expected.world_size,
              " but the communicator has ", world.size(), " ranks");

    const fs::path rank_path = dir / rank_file_name(world.rank(), world.size());
    io::SafetensorsReader reader(rank_path);
    const auto& metadata = reader.metadata();
    const auto check_metadata = [&](const char* key, std::int64_t want) {
      const auto it = metadata.find(key);
      if (it == metadata.end() || it->second != std::to_string(want))
        UL_FAIL(rank_path.string(), ": metadata ", key, " is '",
                it == metadata.end() ? "(missing)" : it->second, "', expected ", want,
                " (a file of another checkpoint or rank?)");
    };
    check_metadata("ulysses.step", saved.step);
    check_metadata("ulysses.rank", world.rank());
    check_metadata("ulysses.world_size", world.size());
    for (const auto& name : reader.names()) {
      Tensor tensor = reader.read(name);
      check_finite(tensor, rank_path.string(), name,
                   "the checkpoint is corrupt; resume from an earlier checkpoint");
      loaded.tensors.emplace(name, std::move(tensor));
    }
    loaded.state = saved;
  });
  return loaded;
}

void rotate_checkpoints(comm::Communicator& world, const fs::path& output_dir, std::int64_t limit,
                        const std::string& run_id) {
  run_agreed(world, [&] {
    if (world.rank() != 0) return;
    const auto of_this_run = [&](const FoundCheckpoint& found) {
      if (run_id.empty() || found.tmp) return true;
      try {
        return read_state(found.path).run_id == run_id;
      } catch (const Error&) {
        return false;  // no readable state: not provably ours
      }
    };
    const std::vector<FoundCheckpoint> found = scan_checkpoints(output_dir);
    std::int64_t newest_complete = -1;
    std::int64_t complete_seen = 0;  // counted from the newest
    std::vector<fs::path> doomed;
    for (auto it = found.rbegin(); it != found.rend(); ++it) {
      if (!of_this_run(*it)) continue;
      if (it->complete) {
        newest_complete = std::max(newest_complete, it->step);
        ++complete_seen;
        if (limit > 0 && complete_seen > limit) doomed.push_back(it->path);
      } else if (newest_complete >= 0 && it->step < newest_complete) {
        doomed.push_back(it->path);
      }
    }
    for (const auto& path : doomed) {
      log_info("removing old checkpoint ", path.string());
      remove_folder(path);
    }
  });
}

}  // namespace ulysses::train
