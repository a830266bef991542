// The iSCSI target server: network portals (listeners), event-loop threads and
// the connections they run. This is the module's entry point.
//
//   auto directory = std::make_shared<iscsi::PortalDirectory>();
//   directory->UpsertTarget({.name = "iqn.2024-01.com.example:pair"});
//   auto server = iscsi::Server::Create(iscsi::TargetOptions(), directory, router);
//   auto portal = (*server)->AddPortal({.address = "0.0.0.0", .port = 3260,
//                                       .portal_group_tag = 1});
//   ... (*portal)->bound_port() ...
//   (*server)->Shutdown();   // or destroy it
//
// The router receives every SCSI command (scsi::TaskRouter::Submit) and task
// management function; it must outlive the server.
#ifndef TARGET_ISCSI_SERVER_H_
#define TARGET_ISCSI_SERVER_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "target/iscsi/options.h"
#include "target/scsi/task.h"

namespace iscsi {

class EventLoop;
struct ServerContext;
class Listener;

// A listening network portal (one IP:port, one portal group / LIF).
class Portal {
 public:
  const PortalConfig& config() const { return config_; }
  // The TCP port actually bound (useful with config().port == 0).
  uint16_t bound_port() const { return config_.port; }

 private:
  friend class Server;
  PortalConfig config_;
  std::shared_ptr<Listener> listener_;
  EventLoop* loop_ = nullptr;
};

class Server {
 public:
  // Starts options.event_loop_threads threads. directory lists the targets and
  // advertised portals; the server adds each portal it binds.
  static absl::StatusOr<std::unique_ptr<Server>> Create(
      TargetOptions options, std::shared_ptr<PortalDirectory> directory,
      scsi::TaskRouter& router);
  ~Server();

  // Binds config.address:config.port and accepts connections. The portal
  // (with its bound port) is upserted into the directory. Fails if the
  // portal_group_tag is already listening or the bind fails.
  absl::StatusOr<const Portal*> AddPortal(const PortalConfig& config);
  // Stops accepting on the portal; established connections stay. The portal
  // stays in the directory unless remove_from_directory.
  absl::Status RemovePortal(uint16_t portal_group_tag, bool remove_from_directory);

  // Sends every full-feature connection that arrived through the portal an
  // Async Message asking it to log out within seconds (AsyncEvent 1).
  void RequestLogout(uint16_t portal_group_tag, uint16_t seconds);

  struct Stats {
    uint64_t logins_completed = 0;      // logins that reached full feature phase
    uint64_t header_digest_logins = 0;  // ... with HeaderDigest=CRC32C
    uint64_t data_digest_logins = 0;    // ... with DataDigest=CRC32C
  };
  Stats stats() const;

  size_t session_count() const;
  size_t connection_count() const;

  // Stops listening, closes every connection (their tasks are cleaned up with
  // kItNexusLoss) and joins the threads. Idempotent.
  void Shutdown();

 private:
  Server(std::shared_ptr<ServerContext> context,
         std::vector<std::unique_ptr<EventLoop>> loops);

  std::shared_ptr<ServerContext> context_;
  std::vector<std::unique_ptr<EventLoop>> loops_;
  std::shared_ptr<std::atomic<uint32_t>> next_loop_;
  absl::Mutex mu_;
  std::vector<std::unique_ptr<Portal>> portals_ ABSL_GUARDED_BY(mu_);
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace iscsi

#endif  // TARGET_ISCSI_SERVER_H_
