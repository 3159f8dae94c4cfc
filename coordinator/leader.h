#pragma once
// Leader election with a session-level PostgreSQL advisory lock held on a connection of its
// own (not the one that does the work, so that a slow query never delays the ping, and
// closing the work connection never releases leadership by accident).
//
//   standby --every try_interval: SELECT pg_try_advisory_lock(key) = true--> bump the epoch
//           in coordinator_leader --> leader(epoch)
//   leader  --every try_interval: SELECT 1 (ping, answered within ping_timeout)--> leader
//   leader  --the lock connection is lost, or a ping fails or times out--> standby at once
//
// A leader whose lock connection is gone cannot know whether its session still holds the
// lock (the server may not have noticed yet), so it steps down at once; the server releases
// the lock when it notices the session is gone (at once after a crash or kill -9 of this
// process: the kernel closes the socket; after a lost network, TCP keepalives within ~8 s).
// The epoch lets the leader fence its writes (see Coordinator): a successor bumps it first.
//
// Thread: the loop's. The callback may destroy the elector.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "common/pg_client.h"
#include "common/uv.h"

namespace trapline::coordinator {

enum class Role { kStandby, kLeader };

class LeaderElector {
 public:
  struct Options {
    std::string conninfo;        // the registry
    std::string name;            // this coordinator's name, written with the epoch
    int64_t lock_key = 0;        // REQUIRES: the same on every coordinator of a registry
    double try_interval_s = 1;   // standby: try the lock; leader: ping
    double ping_timeout_s = 2;   // a ping unanswered this long drops the connection
  };
  // role == kLeader: `epoch` is the leader's new epoch. role == kStandby: `reason` says why
  // (only called on a change).
  using RoleCallback = std::function<void(Role role, int64_t epoch, const std::string& reason)>;

  LeaderElector(uv_loop_t* loop, Options options, RoleCallback cb);
  ~LeaderElector();
  LeaderElector(const LeaderElector&) = delete;
  LeaderElector& operator=(const LeaderElector&) = delete;

  // Connects and starts trying. Idempotent.
  void Start();
  // Steps down (calling back when leader) and closes the lock connection, which releases the
  // lock at once. Start() may follow.
  void Stop(const std::string& reason);
  // Steps down and reconnects: for a leader that found its epoch superseded.
  void Restart(const std::string& reason);

  Role role() const { return role_; }
  int64_t epoch() const { return epoch_; }

 private:
  void OnTimer();
  void TryAcquire();
  void Ping();
  void StepDown(const std::string& reason);

  Options options_;
  RoleCallback cb_;
  pg::Client client_;
  Timer timer_;
  Role role_ = Role::kStandby;
  int64_t epoch_ = 0;
  bool busy_ = false;       // a try or ping in flight
  uint64_t attempt_ = 0;    // bumped on every step-down: late answers of older tries are ignored
  bool started_ = false;
};

}  // namespace trapline::coordinator
