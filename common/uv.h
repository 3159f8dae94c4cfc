#pragma once
// RAII for libuv handles.
//
// Rules (libuv design.rst, Node's handle_wrap.h):
//  - A handle that was initialised must be uv_close()d; its memory is reclaimed only in the
//    close callback. The wrappers here own a heap block holding the uv handle and the C++
//    callback; the destructor calls uv_close() and the close callback deletes the block. So a
//    wrapper may be destroyed at any time, including inside its own callback: the callback
//    never fires again and the memory outlives the loop's last reference to it.
//  - Every wrapper belongs to one loop and is used only from that loop's thread.
//  - A loop is closed only after all handles are closed: Loop::~Loop() runs the loop until
//    the pending close callbacks have run; a handle still open then (an owner that leaked
//    it) is closed there so that uv_loop_close() succeeds.

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"

namespace trapline {

// "uv_tcp_connect: connection refused (ECONNREFUSED)".
Status UvError(const char* what, int uv_err);

// Owns a uv_loop_t.
class Loop {
 public:
  Loop();
  ~Loop();
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  uv_loop_t* get() { return &loop_; }
  // Runs until there is nothing left to do or Stop() is called.
  void Run() { uv_run(&loop_, UV_RUN_DEFAULT); }
  void Stop() { uv_stop(&loop_); }
  // Milliseconds, the loop's cached time.
  uint64_t Now() const { return uv_now(&loop_); }

 private:
  uv_loop_t loop_;
};

namespace internal {
// The heap block of a wrapper: the uv handle first, then the callback.
template <typename H, typename Cb>
struct HandleBlock {
  H handle;
  Cb callback;
};

template <typename H, typename Cb>
void CloseAndFree(HandleBlock<H, Cb>* block) {
  if (block == nullptr) return;
  auto* h = reinterpret_cast<uv_handle_t*>(&block->handle);
  block->callback = nullptr;
  if (uv_is_closing(h)) return;
  uv_close(h, [](uv_handle_t* closed) {
    delete static_cast<HandleBlock<H, Cb>*>(closed->data);
  });
}
}  // namespace internal

// A one-shot or repeating timer.
class Timer {
 public:
  explicit Timer(uv_loop_t* loop);
  ~Timer();
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  // Replaces any running schedule. repeat_ms == 0: fires once.
  void Start(uint64_t timeout_ms, uint64_t repeat_ms, std::function<void()> cb);
  void Stop();
  bool active() const;
  // Lets the loop exit while only this timer is left.
  void Unref();

 private:
  using Block = internal::HandleBlock<uv_timer_t, std::function<void()>>;
  Block* block_;
};

// Calls back once per loop iteration, right before the loop polls for I/O.
class Prepare {
 public:
  Prepare(uv_loop_t* loop, std::function<void()> cb);
  ~Prepare();
  Prepare(const Prepare&) = delete;
  Prepare& operator=(const Prepare&) = delete;
  // Lets the loop exit while only this handle is left.
  void Unref();

 private:
  using Block = internal::HandleBlock<uv_prepare_t, std::function<void()>>;
  Block* block_;
};

// Watches one socket for readability/writability: the single mechanism that libssh2
// (block_directions), libpq (PQconnectPoll/PQflush), hiredis (addRead/addWrite) and libcurl
// (CURLMOPT_SOCKETFUNCTION) all need. One watcher per socket.
class SocketWatcher {
 public:
  // events: UV_READABLE | UV_WRITABLE; status < 0 is a libuv error on the socket.
  using Callback = std::function<void(int status, int events)>;

  // The socket stays owned by the caller; destroy (or Stop) the watcher before closing it.
  SocketWatcher(uv_loop_t* loop, int fd, Callback cb);
  ~SocketWatcher();
  SocketWatcher(const SocketWatcher&) = delete;
  SocketWatcher& operator=(const SocketWatcher&) = delete;

  const Status& init_status() const { return init_status_; }
  // Watches for exactly these directions; neither stops watching.
  Status Watch(bool readable, bool writable);
  void Stop() { (void)Watch(false, false); }

 private:
  using Block = internal::HandleBlock<uv_poll_t, Callback>;
  Block* block_ = nullptr;
  Status init_status_;
  int events_ = 0;
};

// Calls back on a POSIX signal, on the loop.
class SignalWatcher {
 public:
  SignalWatcher(uv_loop_t* loop, int signum, std::function<void()> cb);
  ~SignalWatcher();
  SignalWatcher(const SignalWatcher&) = delete;
  SignalWatcher& operator=(const SignalWatcher&) = delete;
  void Unref();

 private:
  using Block = internal::HandleBlock<uv_signal_t, std::function<void()>>;
  Block* block_;
};

// Reads a pipe or terminal (e.g. stdin) on the loop. Regular files are not pollable: read
// them with plain blocking I/O instead (IsPollableStream tells which).
class StreamReader {
 public:
  // Called with each chunk read; with an empty chunk and `eof` at the end (or `status` < 0
  // on a read error). Not called after the reader is destroyed.
  using Callback = std::function<void(std::string_view chunk, bool eof, int status)>;

  StreamReader(uv_loop_t* loop, int fd, Callback cb);
  ~StreamReader();
  StreamReader(const StreamReader&) = delete;
  StreamReader& operator=(const StreamReader&) = delete;

  const Status& init_status() const { return init_status_; }
  static bool IsPollableStream(int fd);

 private:
  union AnyStream {
    uv_pipe_t pipe;
    uv_tty_t tty;
  };
  using Block = internal::HandleBlock<AnyStream, Callback>;
  Block* block_ = nullptr;
  Status init_status_;
};

}  // namespace trapline
