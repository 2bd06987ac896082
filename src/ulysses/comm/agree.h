// Agreement between ranks on host-side work that may fail on some ranks only (reading files,
// choosing a device): every rank learns the outcome, so none walks on into a collective alone
// while another has stopped.
#pragma once

#include <functional>
#include <string>

#include "ulysses/comm/communicator.h"

namespace ulysses::comm {

// Broadcasts `text` from `root` to every rank of `group` (collective).
void broadcast_string(Communicator& group, int root, std::string& text);

// Collective: when any rank passes a non-empty `error`, every rank throws an Error with the
// message of the lowest failing rank (plus "(rank r)" when the group has several ranks).
void agree(Communicator& group, const std::string& error);

// Runs `work` (which may throw) and agrees on the outcome with the other ranks (collective).
void run_agreed(Communicator& group, const std::function<void()>& work);

}  // namespace ulysses::comm
