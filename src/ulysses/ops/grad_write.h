// How a backward op stores an input's gradient.
#pragma once

namespace ulysses::ops {

// accumulate: added to what the tensor holds (the default: several contributions meet in one
// buffer, e.g. the q, k and v projections' gradients w.r.t. one input). overwrite: written over
// it, its old contents never read, so a buffer that takes its first (or only) contribution need
// not be zeroed first. Both give the same values (up to the sign of a zero).
enum class GradWrite { accumulate, overwrite };

}  // namespace ulysses::ops
