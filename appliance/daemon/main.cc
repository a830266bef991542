// applianced: one controller of the SAN appliance. The composition root: the
// only place that names concrete classes and wires them together.
//
//   applianced --config=/path/bootstrap.textproto
//
// Stops cleanly on SIGTERM or SIGINT.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "appliance/config/bootstrap.h"
#include "appliance/config/config_db.h"
#include "appliance/config/replicator.h"
#include "appliance/daemon/ha_controller.h"
#include "appliance/daemon/lif_manager.h"
#include "appliance/daemon/lif_portals.h"
#include "appliance/daemon/logging.h"
#include "appliance/daemon/node.h"
#include "appliance/daemon/pr_persistence.h"
#include "appliance/daemon/scsi_wiring.h"
#include "appliance/ha/mailbox.h"
#include "appliance/ha/mailbox_heartbeat.h"
#include "appliance/mgmt/credentials.h"
#include "appliance/mgmt/rest_server.h"
#include "appliance/nvlog/grpc_mirror_transport.h"
#include "appliance/nvlog/journal.h"
#include "appliance/nvlog/nvlog.h"
#include "appliance/nvlog/nvlog_replica.h"
#include "common/metrics.h"
#include "glog/logging.h"
#include "interconnect/partner_channel.h"
#include "interconnect/server.h"
#include "interconnect/tls.h"
#include "target/iscsi/options.h"
#include "target/iscsi/server.h"
#include "target/scsi/engine.h"
#include "target/virtual_target/module.h"
#include "vadapter/local_virtual_adapter.h"
#include "vadapter/partner_virtual_adapter.h"

ABSL_FLAG(std::string, config, "", "Path of the bootstrap config (textproto).");
// Threads by default: on buffered backing files io_uring punts writes to its
// io-wq workers, and our ring adds a submitter hop; measured on 2 cores
// (qemu-img bench, 4 KiB): QD1 writes 10.2-10.8k IOPS with threads vs
// 6.4-6.6k with io_uring, QD32 writes 53-62k vs 48k.
ABSL_FLAG(std::string, io_engine, "threads",
          "Backing-store I/O engine: threads (default), uring, or auto "
          "(io_uring when available, else threads).");

// Benchmark baseline only: with false, writes are acknowledged without the
// NVLOG (as a standalone node does), so a takeover loses whatever the page
// cache had not written back. bench/ha_bench.sh compares the two.
ABSL_FLAG(bool, nvlog, true,
          "Journal every write in the NVLOG mirrored to the partner before "
          "acknowledging it (default). false: benchmark baseline only, "
          "acknowledged writes can be lost at takeover.");

namespace appliance::daemon {
namespace {

absl::StatusOr<storage::IoEngine> ParseIoEngine(const std::string& name) {
  if (name == "auto") return storage::IoEngine::kAuto;
  if (name == "uring") return storage::IoEngine::kUring;
  if (name == "threads") return storage::IoEngine::kThreadPool;
  return absl::InvalidArgumentError(absl::StrCat(
      "--io_engine must be auto, uring or threads, not '", name, "'"));
}

// Blocks the termination signals in every thread, so one thread can sigwait.
sigset_t BlockTerminationSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
  return set;
}

// Writes path via a temporary file and rename, so readers never see half of it.
absl::Status WriteFileAtomically(const std::string& path,
                                 const std::string& contents) {
  const std::string tmp = path + ".tmp";
  FILE* f = fopen(tmp.c_str(), "w");
  if (f == nullptr) {
    return absl::PermissionDeniedError(absl::StrCat("cannot write ", tmp));
  }
  bool ok = fwrite(contents.data(), 1, contents.size(), f) == contents.size();
  ok = (fclose(f) == 0) && ok;
  if (!ok || rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("cannot write ", path));
  }
  return absl::OkStatus();
}

using GaugeList =
    std::vector<std::tuple<std::string, std::string, std::function<double()>>>;

// Registers (name, help, read) gauges evaluated at render time.
absl::Status RegisterGauges(metrics::MetricsRegistry& metrics,
                            const GaugeList& gauges) {
  for (const auto& [name, help, read] : gauges) {
    if (absl::Status s = metrics.AddCallbackGauge(name, help, read); !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

// NVLOG figures for /metrics: this node's log (what it mirrors) and the
// partner's log held here.
absl::Status RegisterNvlogMetrics(metrics::MetricsRegistry& metrics,
                                  const nvlog::Nvlog& log,
                                  const nvlog::Journal& journal,
                                  const nvlog::NvlogReplica& partner_log) {
  const GaugeList gauges = {
      {"appliance_nvlog_mirrored",
       "1 while the partner holds every acknowledged write (takeover "
       "possible), else 0",
       [&log] { return log.mirrored() ? 1.0 : 0.0; }},
      {"appliance_nvlog_entries", "NVLOG entries held (not yet retired)",
       [&log] { return static_cast<double>(log.stats().entries); }},
      {"appliance_nvlog_bytes", "NVLOG data bytes held",
       [&log] { return static_cast<double>(log.stats().bytes); }},
      {"appliance_nvlog_appends_total", "Writes appended to the NVLOG",
       [&log] { return static_cast<double>(log.stats().appends); }},
      {"appliance_nvlog_batches_total",
       "NVLOG batches sent to the partner (round trips)",
       [&log] { return static_cast<double>(log.stats().batches_sent); }},
      {"appliance_nvlog_append_waits_total",
       "Writes that waited for room in a full NVLOG",
       [&log] { return static_cast<double>(log.stats().append_waits); }},
      {"appliance_nvlog_sessions_lost_total",
       "Mirror sessions to the partner that broke",
       [&log] { return static_cast<double>(log.stats().sessions_lost); }},
      {"appliance_writes_mirrored_total",
       "Writes acknowledged once the partner held them",
       [&journal] {
         return static_cast<double>(journal.stats().mirrored_writes);
       }},
      {"appliance_writes_unmirrored_total",
       "Writes made durable before acknowledging because the partner "
       "could not hold them",
       [&journal] {
         return static_cast<double>(journal.stats().unmirrored_writes);
       }},
      {"appliance_nvlog_retired_total",
       "NVLOG entries retired after their data was flushed",
       [&journal] { return static_cast<double>(journal.stats().retired); }},
      {"appliance_partner_nvlog_records",
       "Records of the partner's NVLOG held here",
       [&partner_log] {
         return static_cast<double>(partner_log.Snapshot().records());
       }},
      {"appliance_partner_nvlog_bytes",
       "Data bytes of the partner's NVLOG held here", [&partner_log] {
         return static_cast<double>(partner_log.Snapshot().bytes());
       }}};
  return RegisterGauges(metrics, gauges);
}

// Proxy path figures for /metrics: commands this node forwards to its
// partner, and commands the partner forwards here. forwarded / batches is
// the envelopes per interconnect message.
absl::Status RegisterProxyMetrics(
    metrics::MetricsRegistry& metrics,
    const vadapter::LocalVirtualAdapter& local,
    const vadapter::PartnerVirtualAdapter& partner) {
  const GaugeList gauges = {
      {"appliance_proxy_forwarded_total",
       "Commands forwarded to the partner (the LUN's owner)",
       [&local] { return static_cast<double>(local.stats().forwarded); }},
      {"appliance_proxy_unavailable_total",
       "Forwarded commands answered here with the ALUA unavailable sense "
       "(partner unreachable, stream broken or timed out)",
       [&local] { return static_cast<double>(local.stats().unavailable); }},
      {"appliance_proxy_batches_sent_total",
       "Interconnect messages carrying forwarded commands",
       [&local] { return static_cast<double>(local.stats().batches_sent); }},
      {"appliance_proxy_outstanding",
       "Forwarded commands on the interconnect now",
       [&local] { return static_cast<double>(local.stats().outstanding); }},
      {"appliance_proxy_served_total",
       "Commands the partner forwarded to this node's engine",
       [&partner] { return static_cast<double>(partner.stats().envelopes); }},
      {"appliance_proxy_served_batches_total",
       "Interconnect messages carrying commands from the partner",
       [&partner] { return static_cast<double>(partner.stats().batches); }},
      {"appliance_proxy_rejected_total",
       "Commands from the partner answered as malformed",
       [&partner] { return static_cast<double>(partner.stats().rejected); }}};
  return RegisterGauges(metrics, gauges);
}

absl::Status Run(const std::string& config_path, const char* argv0) {
  sigset_t termination = BlockTerminationSignals();

  absl::StatusOr<config::NodeBootstrap> bootstrap =
      config::LoadBootstrapFile(config_path);
  if (!bootstrap.ok()) return bootstrap.status();
  const config::NodeBootstrap& b = *bootstrap;
  if (absl::Status s = SetUpLogging(argv0, b.state_dir() + "/logs"); !s.ok()) {
    return s;
  }
  LOG(INFO) << "applianced starting: node " << b.node_name() << ", target "
            << b.target_name();

  absl::StatusOr<storage::IoEngine> io_engine =
      ParseIoEngine(absl::GetFlag(FLAGS_io_engine));
  if (!io_engine.ok()) return io_engine.status();

  absl::StatusOr<std::unique_ptr<config::ConfigDb>> opened_db =
      config::ConfigDb::Open(b.state_dir() + "/configdb");
  if (!opened_db.ok()) return opened_db.status();
  std::shared_ptr<config::ConfigDb> db = std::move(*opened_db);

  metrics::MetricsRegistry metrics;
  const bool paired = !b.partner_name().empty();
  // A paired node keeps the pair's LUN definitions in step with its partner.
  std::unique_ptr<config::ConfigReplicator> replicator;
  if (paired) {
    config::ReplicatorOptions replicator_options;
    replicator_options.node_name = b.node_name();
    replicator =
        std::make_unique<config::ConfigReplicator>(db, replicator_options);
  }
  NodeOptions node_options;
  node_options.bootstrap = b;
  node_options.io.engine = *io_engine;

  // A paired node's link to its partner, made first: every LUN the node opens
  // is journaled in the NVLOG, which mirrors each write into the partner's
  // memory over it before the host is acknowledged (partner_log is the
  // partner's log, held here for a takeover).
  std::optional<interconnect::TlsMaterial> tls;
  // Every interconnect call of this node, client and server side, runs on
  // this queue and its one thread (destroyed last: after every user).
  std::unique_ptr<interconnect::NodeQueue> interconnect_queue;
  std::unique_ptr<interconnect::PartnerChannel> partner_channel;
  std::unique_ptr<nvlog::NvlogReplica> partner_log;
  std::unique_ptr<nvlog::GrpcMirrorTransport> mirror_transport;
  std::unique_ptr<nvlog::Nvlog> own_log;
  std::unique_ptr<nvlog::Journal> journal;
  if (paired) {
    absl::StatusOr<interconnect::TlsMaterial> loaded =
        interconnect::LoadTlsMaterial(interconnect::NodeCertPaths(
            b.interconnect_tls_dir(), b.node_name()));
    if (!loaded.ok()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "interconnect certificates (make them with pair_certs): ",
          loaded.status().message()));
    }
    tls = std::move(*loaded);
    interconnect::PartnerChannel::Options channel_options;
    channel_options.node_name = b.node_name();
    channel_options.partner_address = b.partner_interconnect_address();
    channel_options.credentials = interconnect::MakeChannelCredentials(*tls);
    interconnect_queue = std::make_unique<interconnect::NodeQueue>();
    channel_options.queue = interconnect_queue.get();
    absl::StatusOr<std::unique_ptr<interconnect::PartnerChannel>> channel =
        interconnect::PartnerChannel::Create(channel_options);
    if (!channel.ok()) return channel.status();
    partner_channel = std::move(*channel);

    partner_log = std::make_unique<nvlog::NvlogReplica>();
    nvlog::GrpcMirrorTransport::Options transport_options;
    interconnect::PartnerChannel* pc = partner_channel.get();
    transport_options.link_up = [pc] { return pc->connected(); };
    transport_options.cq = partner_channel->completion_queue();
    mirror_transport = std::make_unique<nvlog::GrpcMirrorTransport>(
        partner_channel->channel(), transport_options);
    nvlog::Nvlog::Options log_options;
    log_options.node_name = b.node_name();
    absl::StatusOr<std::unique_ptr<nvlog::Nvlog>> log =
        nvlog::Nvlog::Create(*mirror_transport, log_options);
    if (!log.ok()) return log.status();
    own_log = std::move(*log);
    journal = std::make_unique<nvlog::Journal>(*own_log);
    nvlog::Journal* j = journal.get();
    if (!absl::GetFlag(FLAGS_nvlog)) {
      LOG(WARNING) << "--nvlog=false: writes are NOT mirrored; a takeover "
                      "can lose acknowledged writes (benchmark baseline)";
    } else {
      node_options.wrap_store =
          [j](const config::LunDefinition& lun,
              std::shared_ptr<blockstore::BlockStore> store) {
            return j->Wrap(lun.id(), std::move(store));
          };
    }
    if (absl::Status s =
            RegisterNvlogMetrics(metrics, *own_log, *journal, *partner_log);
        !s.ok()) {
      return s;
    }
  }
  absl::StatusOr<std::unique_ptr<Node>> node =
      Node::Create(std::move(node_options), db, metrics, replicator.get());
  if (!node.ok()) return node.status();

  // The SCSI engine executes commands for the LUNs this node owns; ALUA states
  // are derived from where each LIF is hosted now (replicated placements) and
  // who owns the LUN.
  LifManager& lif_manager = (*node)->lifs();
  scsi::EngineOptions engine_options;
  // Whether the partner can be reached; set once the interconnect is up.
  auto link_up = std::make_shared<std::atomic<bool>>(!paired);
  lif_manager.SetPartnerReachable([link_up] { return link_up->load(); });
  engine_options.port_state = std::make_shared<LifPortStateProvider>(
      lif_manager, **node, [link_up] { return link_up->load(); });
  // SAM-5 task attributes: ORDERED waits for older tasks, HEAD OF QUEUE first.
  engine_options.honor_task_attributes = true;
  // REPORT LUNS answers for the whole pair.
  engine_options.lun_directory = std::make_shared<NodeLunDirectory>(**node);
  // Reservations made with APTPL survive restarts in the configuration
  // database.
  engine_options.pr_persistence = std::make_shared<ConfigDbPrPersistence>(db);
  absl::StatusOr<std::unique_ptr<scsi::Engine>> engine =
      scsi::Engine::Create(std::move(engine_options));
  if (!engine.ok()) return engine.status();
  scsi::Engine* engine_ptr = engine->get();
  (*node)->SetInventoryChangedCallback(
      [engine_ptr] { engine_ptr->NotifyReportedLunsChanged(); });
  EngineLunBinder binder(**engine);
  (*node)->AddListener(&binder);
  // On every way out (errors included), LUs leave the engine while it exists.
  absl::Cleanup node_shutdown = [&node, &replicator] {
    if (replicator != nullptr) replicator->SetListener(nullptr);
    (*node)->SetInventoryChangedCallback(nullptr);
    (*node)->Shutdown();
  };

  // The partner pair: the interconnect (mutual TLS with the pair CA) hosts the
  // partner virtual adapter (commands proxied to this node), the heartbeat and
  // configuration replication; the local virtual adapter forwards commands for
  // the partner's LUNs.
  std::unique_ptr<vadapter::PartnerVirtualAdapter> partner_adapter;
  std::unique_ptr<interconnect::HeartbeatService> heartbeat;
  std::unique_ptr<interconnect::InterconnectServer> interconnect_server;
  std::unique_ptr<vadapter::LocalVirtualAdapter> local_adapter;
  if (paired) {
    partner_adapter =
        std::make_unique<vadapter::PartnerVirtualAdapter>(**engine);
    heartbeat = std::make_unique<interconnect::HeartbeatService>(b.node_name());
    interconnect::InterconnectServer::Options server_options;
    server_options.address = b.interconnect_address();
    server_options.credentials = interconnect::MakeServerCredentials(*tls);
    absl::StatusOr<std::unique_ptr<interconnect::InterconnectServer>> server =
        interconnect::InterconnectServer::Create(
            server_options,
            {partner_adapter.get(), heartbeat.get(), replicator.get(),
             partner_log.get()},
            interconnect_queue.get());
    if (!server.ok()) return server.status();
    interconnect_server = std::move(*server);
    LOG(INFO) << "interconnect on " << interconnect_server->address();

    absl::StatusOr<std::unique_ptr<vadapter::LocalVirtualAdapter>> local =
        vadapter::LocalVirtualAdapter::Create(*partner_channel);
    if (!local.ok()) return local.status();
    local_adapter = std::move(*local);
    if (absl::Status s =
            RegisterProxyMetrics(metrics, *local_adapter, *partner_adapter);
        !s.ok()) {
      return s;
    }
    replicator->SetPartnerChannel(partner_channel->channel());
    const std::string partner_name = b.partner_name();
    partner_channel->AddStateListener(
        [link_up, engine_ptr, partner_name](bool connected) {
          // The first call is the view at registration (often still down).
          if (link_up->exchange(connected) == connected) return;
          LOG(INFO) << "interconnect to " << partner_name
                    << (connected ? " up" : " down");
          engine_ptr->NotifyAsymmetricAccessStateChanged();
        });
  }

  // The local virtual target module routes each task by the LUN's owner: here,
  // or through the local virtual adapter to the partner (a standalone node
  // answers for partner-owned LUNs with the ALUA unavailable sense).
  // High availability: takeover and giveback, driven by the failure
  // detector on the interconnect and the shared-storage mailbox. It also
  // gates the SCSI path while a state change is under way or this node is
  // fenced.
  std::unique_ptr<HaController> ha_controller;
  std::unique_ptr<ha::MailboxHeartbeat> mailbox;
  if (paired) {
    const config::HaSettings& hs = b.ha();
    HaController::Options ha_options;
    ha_options.node_name = b.node_name();
    ha_options.partner_name = b.partner_name();
    ha_options.auto_takeover = !hs.has_auto_takeover() || hs.auto_takeover();
    ha_options.auto_giveback = !hs.has_auto_giveback() || hs.auto_giveback();
    if (hs.giveback_delay_ms() != 0) {
      ha_options.giveback_delay = absl::Milliseconds(hs.giveback_delay_ms());
    }
    HaController::Parts parts;
    parts.node = node->get();
    parts.lifs = &lif_manager;
    parts.partner_log = partner_log.get();
    parts.journal = journal.get();
    parts.replicator = replicator.get();
    interconnect::PartnerChannel* pc = partner_channel.get();
    parts.interconnect_up = [pc] { return pc->connected(); };
    parts.access_changed = [engine_ptr] {
      engine_ptr->NotifyAsymmetricAccessStateChanged();
    };
    ha_controller = std::make_unique<HaController>(ha_options, parts);
    if (absl::Status s = ha_controller->RegisterMetrics(metrics); !s.ok()) {
      return s;
    }
    absl::StatusOr<std::unique_ptr<ha::Mailbox>> box = ha::Mailbox::Open(
        b.shared_storage_dir(), b.node_name(), b.partner_name());
    if (!box.ok()) return box.status();
    ha::MailboxHeartbeat::Options mailbox_options;
    if (hs.mailbox_interval_ms() != 0) {
      mailbox_options.interval = absl::Milliseconds(hs.mailbox_interval_ms());
    }
    if (hs.detection_time_ms() != 0) {
      mailbox_options.detector.detection_time =
          absl::Milliseconds(hs.detection_time_ms());
    }
    HaController* controller = ha_controller.get();
    absl::StatusOr<std::unique_ptr<ha::MailboxHeartbeat>> heartbeat_box =
        ha::MailboxHeartbeat::Create(
            std::move(*box), [controller] { return controller->state(); },
            [pc] { return pc->connected(); }, mailbox_options);
    if (!heartbeat_box.ok()) return heartbeat_box.status();
    mailbox = std::move(*heartbeat_box);
  }
  absl::Cleanup stop_ha = [&ha_controller, &mailbox] {
    if (ha_controller != nullptr) ha_controller->Stop();
    if (mailbox != nullptr) mailbox->Stop();
  };

  virtual_target::Module module(b.node_name(), **engine, **node,
                                local_adapter.get(), ha_controller.get());

  // iSCSI: one target on every LIF of the pair; this node listens on the LIFs
  // it hosts and advertises all of them in SendTargets.
  auto directory = std::make_shared<iscsi::PortalDirectory>();
  iscsi::TargetConfig target;
  target.name = b.target_name();
  target.alias = b.node_name();
  target.allowed_initiators.assign(b.security().allowed_initiators().begin(),
                                   b.security().allowed_initiators().end());
  target.auth.require_chap = b.security().require_chap();
  for (const config::ChapAccount& account : b.security().chap()) {
    iscsi::ChapCredentials credentials;
    credentials.initiator = {account.user(), account.secret()};
    if (!account.target_user().empty()) {
      credentials.target =
          iscsi::ChapSecret{account.target_user(), account.target_secret()};
    }
    target.auth.chap_by_initiator[account.initiator_name()] = credentials;
  }
  for (const config::Lif& lif : lif_manager.Lifs()) {
    const iscsi::PortalConfig portal = PortalConfigOf(lif);
    target.portal_group_tags.push_back(portal.portal_group_tag);
    directory->UpsertPortal(portal);
  }
  directory->UpsertTarget(target);
  absl::StatusOr<std::unique_ptr<iscsi::Server>> iscsi_server =
      iscsi::Server::Create(iscsi::TargetOptions(), directory, module);
  if (!iscsi_server.ok()) return iscsi_server.status();
  // iSCSI figures for /metrics.
  iscsi::Server* server = iscsi_server->get();
  if (absl::Status s = RegisterGauges(
          metrics,
          GaugeList{
              {"appliance_iscsi_sessions", "iSCSI sessions now",
               [server] {
                 return static_cast<double>(server->session_count());
               }},
              {"appliance_iscsi_connections", "iSCSI connections now",
               [server] {
                 return static_cast<double>(server->connection_count());
               }},
              {"appliance_iscsi_logins_total",
               "Logins that reached full feature phase",
               [server] {
                 return static_cast<double>(server->stats().logins_completed);
               }},
              {"appliance_iscsi_header_digest_logins_total",
               "Logins that negotiated HeaderDigest=CRC32C",
               [server] {
                 return static_cast<double>(
                     server->stats().header_digest_logins);
               }},
              {"appliance_iscsi_data_digest_logins_total",
               "Logins that negotiated DataDigest=CRC32C",
               [server] {
                 return static_cast<double>(server->stats().data_digest_logins);
               }}});
      !s.ok()) {
    return s;
  }
  // This node listens on the LIFs it hosts now, and follows placement
  // changes: a LIF leaving asks its sessions to log out and stops listening, a
  // LIF arriving is bound (once the partner released it); either way both
  // nodes raise ASYMMETRIC ACCESS STATE CHANGED.
  const std::string portals_file = b.state_dir() + "/iscsi.portals";
  auto serving = std::make_shared<std::atomic<bool>>(false);
  LifPortals::Options portal_options;
  portal_options.node_name = b.node_name();
  portal_options.placement_changed = [engine_ptr] {
    engine_ptr->NotifyAsymmetricAccessStateChanged();
  };
  portal_options.hosted_changed = [portals_file,
                                   serving](const std::string& text) {
    if (!serving->load()) return;  // written once startup is complete
    if (absl::Status s = WriteFileAtomically(portals_file, text); !s.ok()) {
      LOG(WARNING) << s;
    }
  };
  LifPortals lif_portals(std::move(portal_options), **iscsi_server,
                         lif_manager);
  if (ha_controller != nullptr) {
    // Before any portal is bound: a node its partner fences starts suspended.
    ha_controller->Attach(mailbox.get(), &lif_portals);
    mailbox->Start();
  }
  if (absl::Status s = lif_portals.Start(); !s.ok()) return s;
  if (ha_controller != nullptr) ha_controller->Start();
  lif_manager.AddListener(&lif_portals);
  absl::Cleanup stop_following = [&lif_manager, &lif_portals, &ha_controller] {
    // The controller suspends and resumes the portals: it stops first.
    if (ha_controller != nullptr) ha_controller->Stop();
    lif_manager.RemoveListener(&lif_portals);
    lif_portals.Stop();
  };

  // Management endpoint: HTTPS with a bearer token.
  std::string host;
  int port = 0;
  if (absl::Status s = config::SplitHostPort(b.mgmt_address(), host, port);
      !s.ok()) {
    return s;
  }
  std::string cert_file = b.tls_cert_file().empty()
                              ? b.state_dir() + "/mgmt.crt"
                              : b.tls_cert_file();
  std::string key_file =
      b.tls_key_file().empty() ? b.state_dir() + "/mgmt.key" : b.tls_key_file();
  absl::StatusOr<mgmt::CertificateFiles> cert =
      mgmt::EnsureSelfSignedCertificate(host, cert_file, key_file);
  if (!cert.ok()) return cert.status();
  if (cert->generated) LOG(INFO) << "generated REST certificate " << cert_file;
  std::string token_file = b.mgmt_token_file().empty()
                               ? b.state_dir() + "/mgmt.token"
                               : b.mgmt_token_file();
  absl::StatusOr<std::string> token = mgmt::LoadOrCreateToken(token_file);
  if (!token.ok()) return token.status();

  mgmt::RestServer::Options rest_options;
  rest_options.bind_address = host;
  rest_options.port = port;
  rest_options.cert_file = cert->cert_file;
  rest_options.key_file = cert->key_file;
  rest_options.token = *token;
  rest_options.ha = ha_controller.get();
  absl::StatusOr<std::unique_ptr<mgmt::RestServer>> rest =
      mgmt::RestServer::Create(**node, metrics, rest_options);
  if (!rest.ok()) return rest.status();
  if (absl::Status s = (*rest)->Start(); !s.ok()) return s;
  const std::string url = absl::StrCat(
      "https://", host.find(':') == std::string::npos ? host : "[" + host + "]",
      ":", (*rest)->port());
  LOG(INFO) << "REST endpoint on " << url;
  // Published for scripts and tests (the port may have been chosen by the
  // kernel).
  if (absl::Status s =
          WriteFileAtomically(b.state_dir() + "/mgmt.url", url + "\n");
      !s.ok()) {
    return s;
  }
  // Written last (scripts wait for it), with the LIFs hosted at this moment;
  // later changes are published by hosted_changed.
  if (absl::Status s =
          WriteFileAtomically(portals_file, lif_portals.HostedText());
      !s.ok()) {
    return s;
  }
  serving->store(true);

  LOG(INFO) << "applianced serving";
  int signal_number = 0;
  sigwait(&termination, &signal_number);
  LOG(INFO) << "signal " << signal_number << ": shutting down";

  serving->store(false);
  unlink((b.state_dir() + "/mgmt.url").c_str());
  unlink((b.state_dir() + "/iscsi.portals").c_str());
  (*rest)->Stop();
  std::move(stop_ha).Invoke();  // no takeover or giveback while stopping
  lif_portals.Stop();
  (*iscsi_server)->Shutdown();        // sessions end; their tasks are aborted
  std::move(node_shutdown).Invoke();  // LUs leave the engine, stores close
  LOG(INFO) << "applianced stopped";
  return absl::OkStatus();
}

}  // namespace
}  // namespace appliance::daemon

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("applianced --config=bootstrap.textproto");
  absl::ParseCommandLine(argc, argv);
  // Debian's Abseil is built without NDEBUG, so every Mutex acquisition would
  // also update the global lock-order graph (one more global lock on the I/O
  // path). The test suites keep the check; the daemon does not pay for it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  const std::string config = absl::GetFlag(FLAGS_config);
  if (config.empty()) {
    fprintf(stderr, "applianced: --config is required\n");
    return 2;
  }
  absl::Status status = appliance::daemon::Run(config, argv[0]);
  if (!status.ok()) {
    fprintf(stderr, "applianced: %s\n", std::string(status.message()).c_str());
    LOG(ERROR) << "applianced failed: " << status;
    return 1;
  }
  return 0;
}
