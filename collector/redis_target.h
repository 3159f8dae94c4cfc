#pragma once
// A Redis instance: one hiredis async connection on the loop, INFO once per tick. hiredis's
// event hooks (addRead/delRead/addWrite/delWrite/cleanup) are served by our SocketWatcher,
// like every other client library here.

#include <memory>
#include <string>

#include "collector/target.h"

namespace trapline {

// What a redis:// URI says: redis://[user[:password]@]host[:port][/db].
struct RedisAddress {
  std::string host;
  int port = 6379;
  std::string user;
  std::string password;
};
Result<RedisAddress> ParseRedisUri(const std::string& uri);

class RedisTarget : public TargetBase {
 public:
  RedisTarget(uv_loop_t* loop, TargetConfig config, DeliverFn deliver);
  ~RedisTarget() override;

 protected:
  void Connect() override;
  void Tick() override;
  void Disconnect() override;

 private:
  struct Link;
  void OnConnected(int status, const char* errstr);
  void OnAuth(void* reply, const char* errstr);
  void OnInfo(void* reply, const char* errstr);

  Link* link_ = nullptr;  // the live connection, or null
  Timer connect_deadline_;  // hiredis 0.14 has no async connect timeout of its own
  std::string password_;  // from config.password or password_file
};

}  // namespace trapline
