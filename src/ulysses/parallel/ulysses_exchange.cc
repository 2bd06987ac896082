#include "ulysses/parallel/ulysses_exchange.h"

#include "ulysses/core/error.h"
#include "ulysses/ops/head_chunks.h"

namespace ulysses::parallel {

// The blocking exchanges are the started ones finished at once (one code path for both).
Tensor sequence_to_heads(const Context& ctx, comm::Communicator& group, const Tensor& x,
                         const std::vector<std::int64_t>& first_head, std::int64_t chunk) {
  const std::int64_t P = group.size(), T = x.dim(0), D = x.dim(2);
  Tensor out = Tensor::empty({P * T, chunk, D}, x.dtype(), x.device());
  PendingExchange pending = start_sequence_to_heads(ctx, group, x, first_head, chunk, out);
  finish_sequence_to_heads(pending);
  return out;
}

void heads_to_sequence(const Context& ctx, comm::Communicator& group, const Tensor& x_heads,
                       const std::vector<std::int64_t>& first_head, std::int64_t chunk, Tensor x,
                       bool accumulate) {
  const std::int64_t P = group.size(), T = x.dim(0), D = x.dim(2);
  check_shape(x_heads, {P * T, chunk, D}, "heads_to_sequence: x_heads");
  PendingExchange pending = start_heads_to_sequence(ctx, group, x_heads, T);
  finish_heads_to_sequence(ctx, pending, first_head, chunk, std::move(x), accumulate);
}

PendingExchange start_sequence_to_heads(const Context& ctx, comm::Communicator& group,
                                        const Tensor& x,
                                        const std::vector<std::int64_t>& first_head,
                                        std::int64_t chunk, Tensor out) {
  const std::int64_t P = group.size(), T = x.dim(0), D = x.dim(2);
  UL_CHECK(static_cast<std::int64_t>(first_head.size()) == P,
           "sequence_to_heads: ", first_head.size(), " head chunks for a group of ", P);
  check_shape(out, {P * T, chunk, D}, "sequence_to_heads: out");
  // send: [P, T, chunk, D], block j = the heads of rank j; out block i = rank i's tokens
  // [i T, (i + 1) T) of my heads, i.e. [S, chunk, D] in sequence order.
  Tensor send = Tensor::empty({P, T, chunk, D}, x.dtype(), x.device());
  ops::gather_head_chunks(ctx, x, first_head, chunk, send);
  PendingExchange pending;
  pending.recv = out;
  pending.work = group.all_to_all_start(send.view({send.numel()}), out.view({out.numel()}));
  return pending;
}

void finish_sequence_to_heads(PendingExchange& pending) { pending.work->wait(); }

PendingExchange start_heads_to_sequence(const Context& /*ctx*/, comm::Communicator& group,
                                        const Tensor& x_heads, std::int64_t tokens) {
  const std::int64_t P = group.size();
  UL_CHECK(x_heads.dim(0) == P * tokens, "heads_to_sequence: x_heads has ", x_heads.dim(0),
           " tokens, expected ", P * tokens);
  // send block j = tokens of rank j (x_heads is already in that order); recv block i = my
  // tokens of rank i's heads.
  PendingExchange pending;
  pending.recv =
      Tensor::empty({P, tokens, x_heads.dim(1), x_heads.dim(2)}, x_heads.dtype(), x_heads.device());
  pending.work = group.all_to_all_start(x_heads.view({x_heads.numel()}),
                                        pending.recv.view({pending.recv.numel()}));
  return pending;
}

void finish_heads_to_sequence(const Context& ctx, PendingExchange& pending,
                              const std::vector<std::int64_t>& first_head, std::int64_t chunk,
                              Tensor x, bool accumulate) {
  pending.work->wait();
  ops::scatter_head_chunks(ctx, pending.recv, first_head, chunk, x, accumulate);
}

HeadChunks query_head_chunks(std::int64_t num_heads, std::int64_t sp) {
  UL_CHECK(num_heads % sp == 0, "Ulysses: ", num_heads, " attention heads are not divisible by sp ",
           sp);
  HeadChunks c;
  c.chunk = num_heads / sp;
  for (std::int64_t j = 0; j < sp; ++j) c.first_head.push_back(j * c.chunk);
  return c;
}

HeadChunks kv_head_chunks(std::int64_t num_kv_heads, std::int64_t sp) {
  UL_CHECK(num_kv_heads % sp == 0 || sp % num_kv_heads == 0, "Ulysses: ", num_kv_heads,
           " kv heads neither divisible by sp ", sp, " nor dividing it");
  HeadChunks c;
  if (num_kv_heads % sp == 0) {  // split: rank j owns kv heads [j Hkv/P, (j+1) Hkv/P)
    c.chunk = num_kv_heads / sp;
    for (std::int64_t j = 0; j < sp; ++j) c.first_head.push_back(j * c.chunk);
  } else {  // replicated: rank j's query heads all read kv head j * Hkv / P
    c.chunk = 1;
    for (std::int64_t j = 0; j < sp; ++j) c.first_head.push_back(j * num_kv_heads / sp);
  }
  return c;
}

}  // namespace ulysses::parallel
