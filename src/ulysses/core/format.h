// Human-readable formatting shared by plans, logs and benchmarks.
#pragma once

#include <cstdint>
#include <string>

namespace ulysses {

// "1.50 GiB", "12.0 MiB", "3.0 KiB" (binary units).
std::string format_bytes(std::int64_t bytes);

// "1.25 s" (two decimals).
std::string format_seconds(double seconds);

// The current UTC time as "2026-12-02T14:05:00Z" (ISO 8601).
std::string format_utc_now();

}  // namespace ulysses
