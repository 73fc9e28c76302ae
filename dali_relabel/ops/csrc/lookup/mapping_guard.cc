// The SIGBUS handler naming a shrunk bank file (see mapping_guard.h). Everything the handler touches is
// async-signal-safe: a fixed table of atomics and fixed-size path buffers, and write(2).
#include "lookup/mapping_guard.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>

namespace dali_relabel {
namespace {

constexpr int kSlots = 256;  // mappings remembered at once (3 per bank); more are simply not named
constexpr size_t kPathBytes = 1024;

struct Slot {
  std::atomic<bool> used{false};
  std::atomic<const unsigned char *> begin{nullptr};
  std::atomic<size_t> size{0};
  char path[kPathBytes] = {};
};

Slot g_slots[kSlots];
struct sigaction g_previous;
std::once_flag g_installed;

void WriteText(const char *text) {
  size_t left = std::strlen(text);
  while (left > 0) {
    const ssize_t n = ::write(STDERR_FILENO, text, left);
    if (n <= 0) return;
    text += n;
    left -= static_cast<size_t>(n);
  }
}

void OnSigbus(int sig, siginfo_t *info, void *context) {
  const auto *addr = static_cast<const unsigned char *>(info->si_addr);
  for (Slot &slot : g_slots) {
    const unsigned char *begin = slot.begin.load(std::memory_order_acquire);
    if (begin != nullptr && addr >= begin && addr < begin + slot.size.load(std::memory_order_relaxed)) {
      WriteText("\ndali_relabel: bus error (SIGBUS) reading the memory-mapped bank file ");
      WriteText(slot.path);
      WriteText(": the file shrank while this process maps it (truncated or rewritten in place; bank files are "
                "read-only and never rewritten by dali_relabel). The process cannot continue: restart it, and "
                "LabelStore.materialize() checks the bank and rebuilds it.\n");
      break;
    }
  }
  // Hand the signal on: to the previous handler if there was one, else to the default action (returning
  // re-executes the faulting access, which then terminates the process as it would have without us).
  if ((g_previous.sa_flags & SA_SIGINFO) && g_previous.sa_sigaction != nullptr) {
    g_previous.sa_sigaction(sig, info, context);
    return;
  }
  if (!(g_previous.sa_flags & SA_SIGINFO) && g_previous.sa_handler != SIG_DFL && g_previous.sa_handler != SIG_IGN &&
      g_previous.sa_handler != nullptr) {
    g_previous.sa_handler(sig);
    return;
  }
  struct sigaction dfl = {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  sigaction(SIGBUS, &dfl, nullptr);
}

void Install() {
  struct sigaction action = {};
  action.sa_sigaction = OnSigbus;
  action.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&action.sa_mask);
  sigaction(SIGBUS, &action, &g_previous);
}

}  // namespace

void RegisterMapping(const void *begin, size_t size, const std::string &path) {
  if (begin == nullptr || size == 0) return;
  std::call_once(g_installed, Install);
  for (Slot &slot : g_slots) {
    bool expected = false;
    if (slot.used.compare_exchange_strong(expected, true, std::memory_order_acq_rel)) {
      const size_t n = std::min(path.size(), kPathBytes - 1);
      std::memcpy(slot.path, path.data(), n);
      slot.path[n] = '\0';
      slot.size.store(size, std::memory_order_relaxed);
      slot.begin.store(static_cast<const unsigned char *>(begin), std::memory_order_release);
      return;
    }
  }
}

void UnregisterMapping(const void *begin) {
  if (begin == nullptr) return;
  for (Slot &slot : g_slots) {
    if (slot.begin.load(std::memory_order_acquire) == begin) {
      slot.begin.store(nullptr, std::memory_order_release);
      slot.size.store(0, std::memory_order_relaxed);
      slot.used.store(false, std::memory_order_release);
      return;
    }
  }
}

}  // namespace dali_relabel
