#include "common/uv.h"

#include <cstdio>
#include <cstdlib>
#include <memory>

namespace trapline {

Status UvError(const char* what, int uv_err) {
  std::string msg(what);
  msg += ": ";
  msg += uv_strerror(uv_err);
  msg += " (";
  msg += uv_err_name(uv_err);
  msg += ")";
  switch (uv_err) {
    case UV_ECONNREFUSED:
    case UV_ECONNRESET:
    case UV_EHOSTUNREACH:
    case UV_ENETUNREACH:
    case UV_EPIPE:
    case UV_ECONNABORTED:
    case UV_EAI_AGAIN:
      return Status::Unavailable(std::move(msg));
    case UV_ETIMEDOUT:
      return Status::Timeout(std::move(msg));
    default:
      return Status::IoError(std::move(msg));
  }
}

Loop::Loop() {
  int rc = uv_loop_init(&loop_);
  if (rc != 0) {
    std::fprintf(stderr, "fatal: uv_loop_init: %s\n", uv_strerror(rc));
    std::abort();
  }
}

Loop::~Loop() {
  // Let pending close callbacks run so their memory is freed.
  uv_run(&loop_, UV_RUN_NOWAIT);
  if (uv_loop_close(&loop_) == UV_EBUSY) {
    // Some handle is still open: close everything so that nothing leaks, then try again.
    uv_walk(
        &loop_,
        [](uv_handle_t* h, void*) {
          if (!uv_is_closing(h)) uv_close(h, nullptr);
        },
        nullptr);
    uv_run(&loop_, UV_RUN_DEFAULT);
    (void)uv_loop_close(&loop_);
  }
}

Timer::Timer(uv_loop_t* loop) : block_(new Block{}) {
  uv_timer_init(loop, &block_->handle);  // cannot fail
  block_->handle.data = block_;
}

Timer::~Timer() { internal::CloseAndFree(block_); }

void Timer::Start(uint64_t timeout_ms, uint64_t repeat_ms, std::function<void()> cb) {
  block_->callback = std::move(cb);
  uv_timer_start(
      &block_->handle,
      [](uv_timer_t* t) {
        auto* b = static_cast<Block*>(t->data);
        if (b->callback) {
          // Copy: the callback may destroy this timer or restart it with another callback.
          auto cb_copy = b->callback;
          cb_copy();
        }
      },
      timeout_ms, repeat_ms);
}

void Timer::Stop() { uv_timer_stop(&block_->handle); }

bool Timer::active() const {
  return uv_is_active(reinterpret_cast<const uv_handle_t*>(&block_->handle)) != 0;
}

void Timer::Unref() { uv_unref(reinterpret_cast<uv_handle_t*>(&block_->handle)); }

Prepare::Prepare(uv_loop_t* loop, std::function<void()> cb) : block_(new Block{}) {
  uv_prepare_init(loop, &block_->handle);  // cannot fail
  block_->handle.data = block_;
  block_->callback = std::move(cb);
  uv_prepare_start(&block_->handle, [](uv_prepare_t* p) {
    auto* b = static_cast<Block*>(p->data);
    if (b->callback) {
      auto cb_copy = b->callback;  // the callback may destroy this handle
      cb_copy();
    }
  });
}

Prepare::~Prepare() { internal::CloseAndFree(block_); }

void Prepare::Unref() { uv_unref(reinterpret_cast<uv_handle_t*>(&block_->handle)); }

SocketWatcher::SocketWatcher(uv_loop_t* loop, int fd, Callback cb) {
  auto* block = new Block{};
  int rc = uv_poll_init_socket(loop, &block->handle, fd);
  if (rc != 0) {
    delete block;  // never initialised: nothing to close
    init_status_ = UvError("uv_poll_init_socket", rc);
    return;
  }
  block->handle.data = block;
  block->callback = std::move(cb);
  block_ = block;
}

SocketWatcher::~SocketWatcher() { internal::CloseAndFree(block_); }

Status SocketWatcher::Watch(bool readable, bool writable) {
  if (block_ == nullptr) return init_status_;
  int events = (readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0);
  if (events == events_) return Status::OK();
  events_ = events;
  if (events == 0) {
    uv_poll_stop(&block_->handle);
    return Status::OK();
  }
  int rc = uv_poll_start(&block_->handle, events, [](uv_poll_t* p, int status, int ev) {
    auto* b = static_cast<Block*>(p->data);
    if (b->callback) {
      auto cb_copy = b->callback;
      cb_copy(status, ev);
    }
  });
  return rc == 0 ? Status::OK() : UvError("uv_poll_start", rc);
}

SignalWatcher::SignalWatcher(uv_loop_t* loop, int signum, std::function<void()> cb)
    : block_(new Block{}) {
  uv_signal_init(loop, &block_->handle);
  block_->handle.data = block_;
  block_->callback = std::move(cb);
  uv_signal_start(
      &block_->handle,
      [](uv_signal_t* s, int) {
        auto* b = static_cast<Block*>(s->data);
        if (b->callback) {
          auto cb_copy = b->callback;
          cb_copy();
        }
      },
      signum);
}

SignalWatcher::~SignalWatcher() { internal::CloseAndFree(block_); }

void SignalWatcher::Unref() { uv_unref(reinterpret_cast<uv_handle_t*>(&block_->handle)); }

bool StreamReader::IsPollableStream(int fd) {
  uv_handle_type t = uv_guess_handle(fd);
  return t == UV_NAMED_PIPE || t == UV_TTY || t == UV_TCP;
}

StreamReader::StreamReader(uv_loop_t* loop, int fd, Callback cb) {
  auto* block = new Block{};
  uv_handle_type t = uv_guess_handle(fd);
  int rc = t == UV_TTY ? uv_tty_init(loop, &block->handle.tty, fd, /*readable=*/1)
                       : uv_pipe_init(loop, &block->handle.pipe, 0);
  if (rc != 0) {
    delete block;
    init_status_ = UvError("stream init", rc);
    return;
  }
  // From here on the handle is initialised: it must be closed, even on error.
  block_ = block;
  block->handle.pipe.data = block;
  block->callback = std::move(cb);
  if (t != UV_TTY && (rc = uv_pipe_open(&block->handle.pipe, fd)) != 0) {
    init_status_ = UvError("uv_pipe_open", rc);
    return;
  }
  rc = uv_read_start(
      reinterpret_cast<uv_stream_t*>(&block->handle),
      [](uv_handle_t*, size_t suggested, uv_buf_t* b) {
        b->base = new char[suggested];
        b->len = suggested;
      },
      [](uv_stream_t* s, ssize_t n, const uv_buf_t* b) {
        std::unique_ptr<char[]> owned(b->base);
        auto* blk = static_cast<Block*>(s->data);
        if (n == 0 || !blk->callback) return;
        auto cb_copy = blk->callback;
        if (n > 0) {
          cb_copy(std::string_view(b->base, static_cast<size_t>(n)), false, 0);
        } else {
          uv_read_stop(s);
          cb_copy({}, n == UV_EOF, n == UV_EOF ? 0 : static_cast<int>(n));
        }
      });
  if (rc != 0) init_status_ = UvError("uv_read_start", rc);
}

StreamReader::~StreamReader() { internal::CloseAndFree(block_); }

}  // namespace trapline
