// NCCL backend of Communicator: one process per GPU, bootstrapped over a host communicator.
//
// Contracts (in addition to communicator.h):
// - Device (CUDA) tensors go through NCCL; host (CPU) tensors go through a host communicator of
//   the same group (a split of the host world given at creation, e.g. MPI), so callers that
//   reduce host counters or agree on host flags work unchanged. A collective's tensors must all
//   be on the host or all on this communicator's device.
// - Ordering: every NCCL call runs on the context's communication stream. Before it, that
//   stream waits (cudaEvent) for all work queued so far on the compute stream; after it, the
//   compute stream waits for the collective. So the call looks synchronous in stream order:
//   work queued on the compute stream (and Tensor's copies) after the call sees the result, and
//   buffers freed after the call may be reused at once. The host does not wait for the GPU.
//   The *_start calls (all_to_all_start, all_gather_start, reduce_scatter_start) are the
//   exception: the compute stream waits only in the returned Work's wait(). Every device
//   collective is queued by one path that returns such a Work; a blocking call is its start
//   followed by wait() at once (c10d's Work model), so both forms queue the same NCCL calls.
// - Reductions: NCCL's own algorithms. Every rank gets the same values, and a run is
//   reproducible on the same machine and sizes, but the order of the additions is NCCL's (not
//   rank order as in the MPI backend), so results may differ from the MPI backend in the last
//   bits. bf16 is reduced by NCCL in bf16.
// - send/recv: NCCL has no tags; messages between two ranks are matched in call order (the tag
//   is checked to be >= 0 and otherwise ignored). barrier() is a host barrier (MPI).
// - split(color, key): splits both the NCCL communicator (ncclCommSplit) and the host one.
// - Errors: argument errors throw ulysses::Error (as the other backends). An NCCL or CUDA error
//   reported by a collective, or a collective that does not complete within the timeout
//   (ULYSSES_NCCL_TIMEOUT_S, seconds, default 600), prints a message naming the collective and
//   the rank to stderr and stops every rank of the job — never a silent hang. Communicators
//   are created in non-blocking mode; the host polls their state with the same timeout, and a
//   watchdog thread (one per world, shared by its splits) polls the completion events of the
//   queued collectives and ncclCommGetAsyncError. Every NCCL call's result is checked, those
//   inside ncclGroupStart/End groups included (the group is closed, then the first failure is
//   reported). Failures seen by the issuing thread stop the job with comm::abort_job
//   (MPI_Abort). Failures seen by the watchdog thread make no MPI call (MPI runs at
//   MPI_THREAD_FUNNELED: only the thread that initialized it may call MPI): the rank prints and
//   exits at once with status 1; mpirun then ends the other ranks (a rank that exits without
//   MPI_Finalize ends the job), and where the launcher does not, their collectives with the
//   exited rank never complete and their own watchdogs stop them within the timeout.
// - Thread-safety: one thread issues collectives (as for every Communicator); the watchdog only
//   reads completion state.
// - Lifetime: the context's CUDA resources are shared (kept alive) by the communicator and its
//   splits; destroy communicators before the end of main().
#pragma once

#include <map>
#include <memory>
#include <string>

#include "ulysses/comm/communicator.h"
#include "ulysses/core/context.h"

namespace ulysses::comm {

// Collective over host_world (every rank calls it with its own CUDA context): rank 0 creates an
// NCCL unique id, host_world broadcasts it, each rank joins on ctx's device. host_world must
// outlive nothing: the new communicator keeps its own split of it for host tensors.
// Throws Error without CUDA support, when ctx is not a CUDA context or ULYSSES_NCCL_TIMEOUT_S
// is malformed; NCCL setup failures stop the job as described above.
std::unique_ptr<Communicator> make_nccl_world(Communicator& host_world, const Context& ctx);

// ULYSSES_NCCL_TIMEOUT_S when set (a positive number of seconds), else 600. Error if malformed.
double nccl_timeout_seconds();

// Exposed-communication meter, for benchmarks; process-wide, off by default (then it costs one
// relaxed atomic load per wait). While on, every place where the compute stream is made to wait
// for an NCCL collective (the end of a blocking collective; Work::wait() or the destruction of
// an unwaited Work of a *_start call) records a timing event on the compute stream just before
// the wait and another just after it: the time between them is how long the compute stream
// stood still for that collective (about 0 when the collective had already finished). Host
// tensors' collectives (the host communicator) are not metered. Without CUDA: no-ops.
// Thread-safe. Turning it off keeps what was recorded (two CUDA events per wait) until
// take_wait_seconds.
void set_wait_timing(bool on);

// Sum of the stalled seconds per collective name ("all_to_all", "all_gather",
// "reduce_scatter", "all_reduce", "broadcast", "send", "recv") recorded since
// the last call, then forgets them. Blocks the host until the recorded events have completed
// (cudaEventSynchronize). Names with nothing recorded are absent; empty without CUDA. Throws
// Error on a CUDA error.
std::map<std::string, double> take_wait_seconds();

}  // namespace ulysses::comm
