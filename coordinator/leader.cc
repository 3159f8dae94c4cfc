#include "coordinator/leader.h"

#include <cstdlib>

#include "common/log.h"

namespace trapline::coordinator {

namespace {

pg::Client::Options ClientOptions(const LeaderElector::Options& o) {
  pg::Client::Options c;
  c.conninfo = o.conninfo;
  c.name = "leader-lock";
  c.application_name = "trapline coordinator " + o.name + " (leader lock)";
  c.connect_timeout_s = 3;
  c.query_timeout_s = o.ping_timeout_s;
  c.reconnect = true;
  c.reconnect_base_s = 0.2;
  c.reconnect_max_s = 2;
  return c;
}

}  // namespace

LeaderElector::LeaderElector(uv_loop_t* loop, Options options, RoleCallback cb)
    : options_(std::move(options)),
      cb_(std::move(cb)),
      client_(loop, ClientOptions(options_)),
      timer_(loop) {
  client_.SetStateCallback([this](bool connected, const Status& why) {
    if (!connected) {
      busy_ = false;
      if (role_ == Role::kLeader) StepDown("lock connection lost: " + why.message());
      return;
    }
    OnTimer();  // try at once on a new connection
  });
}

LeaderElector::~LeaderElector() {
  cb_ = nullptr;  // no callback from our own destruction
  client_.Close();
}

void LeaderElector::Start() {
  if (started_) return;
  started_ = true;
  client_.Start();
  uint64_t ms = static_cast<uint64_t>(options_.try_interval_s * 1000);
  timer_.Start(ms, ms, [this] { OnTimer(); });
}

void LeaderElector::Stop(const std::string& reason) {
  started_ = false;
  timer_.Stop();
  if (role_ == Role::kLeader) StepDown(reason);
  ++attempt_;
  busy_ = false;
  client_.Close();  // the session ends: the server releases the lock
}

void LeaderElector::Restart(const std::string& reason) {
  Stop(reason);
  Start();
}

void LeaderElector::StepDown(const std::string& reason) {
  role_ = Role::kStandby;
  ++attempt_;
  if (cb_) {
    auto cb = cb_;
    cb(Role::kStandby, epoch_, reason);
  }
}

void LeaderElector::OnTimer() {
  if (!started_ || busy_ || !client_.connected()) return;
  if (role_ == Role::kLeader) {
    Ping();
  } else {
    TryAcquire();
  }
}

void LeaderElector::TryAcquire() {
  busy_ = true;
  uint64_t attempt = attempt_;
  client_.Query("leader try-lock", "SELECT pg_try_advisory_lock($1::bigint)",
                {std::to_string(options_.lock_key)}, [this, attempt](Result<pg::Rows> r) {
    if (attempt != attempt_) return;
    busy_ = false;
    if (!r.ok()) {
      spdlog::debug("[coordinator] leader: {}", r.status().message());
      return;
    }
    if (r->rows.empty() || r->rows[0].empty() || r->rows[0][0] != "t") return;
    // Held. Bump the epoch before acting as leader, so that the previous leader's writes are
    // fenced off from here on (the row is upserted: a registry edited by hand still works).
    busy_ = true;
    client_.Query(
        "leader epoch",
        "INSERT INTO coordinator_leader (id, epoch, name, since) VALUES (1, 1, $1, now()) "
        "ON CONFLICT (id) DO UPDATE SET epoch = coordinator_leader.epoch + 1, "
        "name = EXCLUDED.name, since = now() RETURNING epoch",
        {options_.name}, [this, attempt](Result<pg::Rows> e) {
          if (attempt != attempt_) return;
          busy_ = false;
          if (!e.ok() || e->rows.empty() || e->rows[0].empty() || !e->rows[0][0]) {
            spdlog::error("[coordinator] leader: lock acquired but the epoch could not be "
                          "bumped ({}); releasing the lock",
                          e.ok() ? "no row" : e.status().message());
            client_.Query("leader unlock", "SELECT pg_advisory_unlock($1::bigint)",
                          {std::to_string(options_.lock_key)}, [](Result<pg::Rows>) {});
            return;
          }
          epoch_ = std::atoll(e->rows[0][0]->c_str());
          role_ = Role::kLeader;
          if (cb_) {
            auto cb = cb_;
            cb(Role::kLeader, epoch_, "");
          }
        });
  });
}

void LeaderElector::Ping() {
  busy_ = true;
  uint64_t attempt = attempt_;
  client_.Query("leader ping", "SELECT 1", {}, [this, attempt](Result<pg::Rows> r) {
    if (attempt != attempt_) return;
    busy_ = false;
    // A failed ping that did not drop the connection (an error answer): the session may be
    // in a state we do not understand; drop it and step down rather than guess.
    if (!r.ok() && client_.connected()) Restart("leader ping failed: " + r.status().message());
  });
}

}  // namespace trapline::coordinator
