// Naming the file behind a SIGBUS. A bank file truncated (or rewritten in place) while a process maps
// it makes the next read of a lost page raise SIGBUS, which kills the process wherever it happens —
// usually in a DALI worker thread, with no Python frame to report. Every mapping of a bank file is
// registered here; a SIGBUS handler installed on the first registration writes one line naming the
// file and what to do to stderr, then hands the signal on (to the previous handler, e.g. Python's
// faulthandler, or the default action: the process still terminates — it cannot continue safely).
#pragma once

#include <cstddef>
#include <string>

namespace dali_relabel {

/// Remembers that [begin, begin + size) maps `path` (installs the SIGBUS handler once).
void RegisterMapping(const void *begin, size_t size, const std::string &path);

/// Forgets the mapping starting at `begin` (before it is unmapped).
void UnregisterMapping(const void *begin);

}  // namespace dali_relabel
