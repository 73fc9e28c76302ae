// cudasim's stand-in for DALI's thread pool: work items run on `num_threads` OS threads when
// RunAll is called, highest priority first; the first failing item's exception (in the order
// the items were added) is rethrown by RunAll.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <functional>
#include <thread>
#include <vector>

namespace dali {

class ThreadPool {
 public:
  explicit ThreadPool(int num_threads) : num_threads_(std::max(1, num_threads)) {}

  void AddWork(std::function<void(int)> work, int64_t priority = 0, bool = false) {
    items_.push_back(Item{std::move(work), priority, items_.size()});
  }

  void RunAll(bool = true) {
    std::stable_sort(items_.begin(), items_.end(),
                     [](const Item &a, const Item &b) { return a.priority > b.priority; });
    std::vector<std::exception_ptr> errors(items_.size());
    std::atomic<size_t> next{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < num_threads_; ++t) {
      threads.emplace_back([&, t] {
        for (size_t i; (i = next.fetch_add(1)) < items_.size();) {
          try {
            items_[i].work(t);
          } catch (...) {
            errors[items_[i].order] = std::current_exception();
          }
        }
      });
    }
    for (auto &th : threads) th.join();
    items_.clear();
    for (auto &e : errors)
      if (e) std::rethrow_exception(e);
  }

  int NumThreads() const { return num_threads_; }

 private:
  struct Item {
    std::function<void(int)> work;
    int64_t priority;
    size_t order;
  };
  int num_threads_;
  std::vector<Item> items_;
};

}  // namespace dali
