//! One client connection: WebSocket handshake, the message loop, heartbeat, and clean-up.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use shoal_protocol::{
    ClientToServer, ErrorCode, MAX_CLIENT_FRAME_BYTES, MAX_CLIENT_MESSAGE_BYTES, NodeId,
    PROTOCOL_VERSION, ServerToClient, decode_client_message,
};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tracing::{debug, info};

use crate::limits::{Admission, Slot, TokenBucket};
use crate::registry::{Outbox, QueuedBytes, RelayError};
use crate::rooms;
use crate::{
    ADDRESS_QUERIES_BURST, ADDRESS_QUERIES_PER_SEC, ADDRESS_ROOM_JOINS_BURST,
    ADDRESS_ROOM_JOINS_PER_SEC, INDEX_CHANGES_BURST, INDEX_CHANGES_PER_SEC, QUERIES_BURST,
    QUERIES_PER_SEC, ROOM_JOINS_BURST, ROOM_JOINS_PER_SEC, ROOM_MESSAGES_BURST,
    ROOM_MESSAGES_PER_SEC, Shared,
};

/// Read buffer per connection, in bytes. Small on purpose: signaling messages are short and a
/// server holds thousands of idle clients (tokio-tungstenite's default is 128 KiB).
const READ_BUFFER_BYTES: usize = 4096;

/// Kernel send buffer per client socket, in bytes (Linux doubles it). Small, so a backlog for a
/// slow reader waits in the server's own queue, where it is counted and where a ping can go
/// ahead of it, rather than in the kernel, behind which a ping would wait for megabytes.
const SOCKET_SEND_BUFFER_BYTES: usize = 64 * 1024;

/// Cap on bytes waiting in the WebSocket write buffer when the socket is full.
const MAX_WRITE_BUFFER_BYTES: usize = 1 << 20;

/// How long a closing connection waits for the client's close frame.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

fn websocket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_WRITE_BUFFER_BYTES)
        .max_message_size(Some(MAX_CLIENT_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_CLIENT_FRAME_BYTES))
}

/// Serves one TCP connection until it closes, is dropped or the server shuts down.
pub(crate) async fn run(
    stream: TcpStream,
    addr: SocketAddr,
    slot: Slot,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
    _done: mpsc::Sender<()>,
) {
    if let Err(e) = socket2::SockRef::from(&stream).set_send_buffer_size(SOCKET_SEND_BUFFER_BYTES) {
        debug!(%addr, error = %e, "cannot set the socket's send buffer");
    }
    let handshake = tokio_tungstenite::accept_async_with_config(stream, Some(websocket_config()));
    let ws = match tokio::time::timeout(shared.config.handshake_timeout, handshake).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            debug!(%addr, error = %e, "WebSocket handshake failed");
            return;
        }
        Err(_) => {
            debug!(%addr, "WebSocket handshake timed out");
            return;
        }
    };
    let (tx, rx) = mpsc::channel(shared.config.send_queue_depth);
    let now = std::time::Instant::now();
    let mut connection = Connection {
        ws,
        addr,
        admission: slot.admission,
        shared,
        node: None,
        tx,
        queued: Arc::new(QueuedBytes::default()),
        revision_rx: None,
        index_changes: TokenBucket::new(INDEX_CHANGES_BURST, INDEX_CHANGES_PER_SEC, now),
        queries: TokenBucket::new(QUERIES_BURST, QUERIES_PER_SEC, now),
        room_joins: TokenBucket::new(ROOM_JOINS_BURST, ROOM_JOINS_PER_SEC, now),
        room_messages: TokenBucket::new(ROOM_MESSAGES_BURST, ROOM_MESSAGES_PER_SEC, now),
        refusals: 0,
        last_seen: Instant::now(),
    };
    connection.serve(rx, shutdown).await;
    connection.leave();
    drop(slot);
}

/// The rate an `announce`/`unannounce` went past, in words.
fn index_change_limit() -> String {
    format!(
        "too many index changes; at most {INDEX_CHANGES_BURST} at once and {INDEX_CHANGES_PER_SEC} per second"
    )
}

/// The rate a `list`/`search` went past, in words.
fn room_join_limit() -> String {
    format!(
        "at most {ROOM_JOINS_BURST} room joins at once and one per {} s after that",
        1.0 / ROOM_JOINS_PER_SEC
    )
}

fn room_message_limit() -> String {
    format!(
        "at most {ROOM_MESSAGES_BURST} room messages at once and {ROOM_MESSAGES_PER_SEC} per second after that"
    )
}

fn query_limit() -> String {
    format!(
        "too many list and search requests; at most {QUERIES_BURST} at once and {QUERIES_PER_SEC} per second per connection, {ADDRESS_QUERIES_BURST} and {ADDRESS_QUERIES_PER_SEC} per address"
    )
}

/// What the message loop does next.
enum Flow {
    Continue,
    /// Send this close frame, linger briefly for the reply, and end.
    Close(CloseCode, &'static str),
    /// End at once (the transport is gone or broken).
    End,
}

struct Connection {
    ws: WebSocketStream<TcpStream>,
    addr: SocketAddr,
    admission: Admission,
    shared: Arc<Shared>,
    /// Set by `hello`.
    node: Option<NodeId>,
    /// Cloned into the registry at `hello`.
    tx: mpsc::Sender<Message>,
    /// Bytes of relayed frames queued in `tx`.
    queued: Arc<QueuedBytes>,
    /// The index revision to tell this node; set by `hello`.
    revision_rx: Option<watch::Receiver<u64>>,
    index_changes: TokenBucket,
    queries: TokenBucket,
    room_joins: TokenBucket,
    room_messages: TokenBucket,
    refusals: u32,
    last_seen: Instant,
}

/// Waits for a new index revision, or forever before `hello`.
async fn revision_changed(rx: &mut Option<watch::Receiver<u64>>) -> u64 {
    if let Some(rx) = rx
        && rx.changed().await.is_ok()
    {
        return *rx.borrow_and_update();
    }
    std::future::pending().await
}

impl Connection {
    async fn serve(
        &mut self,
        mut rx: mpsc::Receiver<Message>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let heartbeat = self.shared.config.heartbeat_interval;
        let mut ping = tokio::time::interval_at(Instant::now() + heartbeat, heartbeat);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let hello_deadline = tokio::time::sleep(self.shared.config.hello_timeout);
        tokio::pin!(hello_deadline);
        if *shutdown.borrow() {
            return self
                .finish(Flow::Close(CloseCode::Away, "server shutting down"))
                .await;
        }
        let flow = loop {
            // Biased, in this order: what the client sent (a pong is life) comes before the
            // silence check, and the ping before queued frames, so a client busy draining a
            // backlog is still pinged, answers, and is not taken for silent.
            let flow = tokio::select! {
                biased;
                _ = shutdown.changed() => Flow::Close(CloseCode::Away, "server shutting down"),
                incoming = self.ws.next() => self.on_incoming(incoming).await,
                _ = ping.tick() => {
                    if self.last_seen.elapsed() > heartbeat * 3 {
                        info!(addr = %self.addr, node = ?self.node.map(|n| n.short()), "client silent for three heartbeats; dropping");
                        Flow::Close(CloseCode::Away, "heartbeat timeout")
                    } else {
                        self.send(Message::Ping(Default::default())).await
                    }
                }
                _ = &mut hello_deadline, if self.node.is_none() => {
                    info!(addr = %self.addr, "no hello in time; closing with 1008");
                    Flow::Close(CloseCode::Policy, "hello required in time")
                }
                revision = revision_changed(&mut self.revision_rx) => {
                    self.reply(&ServerToClient::IndexChanged { revision }).await
                }
                Some(frame) = rx.recv() => {
                    let len = frame.len();
                    self.queued.sub(len);
                    self.shared.queued_total.sub(len);
                    self.send(frame).await
                }
            };
            if !matches!(flow, Flow::Continue) {
                break flow;
            }
        };
        self.finish(flow).await;
    }

    async fn finish(&mut self, flow: Flow) {
        if let Flow::Close(code, reason) = flow {
            let frame = CloseFrame {
                code,
                reason: reason.into(),
            };
            let _ = tokio::time::timeout(CLOSE_LINGER, async {
                if self.ws.close(Some(frame)).await.is_ok() {
                    // Wait for the client's close reply so the close frame is not lost to a
                    // TCP reset.
                    while let Some(Ok(_)) = self.ws.next().await {}
                }
            })
            .await;
        }
    }

    /// Removes this node and its files from the index.
    fn leave(&mut self) {
        let Some(node) = self.node.take() else {
            return;
        };
        self.shared.registry().unregister(node);
        let changed = self.shared.index_mut().remove_node(node);
        if changed {
            self.shared.index_changed.notify_one();
        }
        let changes = self
            .shared
            .rooms()
            .node_gone(node, std::time::Instant::now());
        let orphaned = changes
            .iter()
            .any(|c| matches!(c, rooms::Change::Members { host: None, .. }));
        self.shared.tell(changes);
        if orphaned {
            // The room waits for its host; after the grace it ends.
            let shared = self.shared.clone();
            tokio::spawn(async move {
                let grace = shared.config.room_host_grace;
                tokio::time::sleep(grace).await;
                let ended = shared.rooms().expire(std::time::Instant::now(), grace);
                shared.tell(ended);
            });
        }
        debug!(node = %node.short(), "left");
    }

    async fn on_incoming(&mut self, incoming: Option<Result<Message, WsError>>) -> Flow {
        let message = match incoming {
            None => return Flow::End,
            Some(Err(WsError::Capacity(e))) => {
                info!(addr = %self.addr, error = %e, "oversized message; closing with 1009");
                return Flow::Close(CloseCode::Size, "message or frame too big");
            }
            Some(Err(WsError::Protocol(e))) => {
                info!(addr = %self.addr, error = %e, "WebSocket protocol violation; closing with 1002");
                return Flow::Close(CloseCode::Protocol, "WebSocket protocol violation");
            }
            Some(Err(WsError::Utf8(e))) => {
                info!(addr = %self.addr, error = %e, "text message is not UTF-8; closing with 1007");
                return Flow::Close(CloseCode::Invalid, "text message is not UTF-8");
            }
            Some(Err(e)) => {
                debug!(addr = %self.addr, error = %e, "connection error");
                return Flow::End;
            }
            Some(Ok(message)) => message,
        };
        self.last_seen = Instant::now();
        match message {
            Message::Text(text) => self.on_text(&text).await,
            Message::Binary(_) => {
                self.refuse(
                    ErrorCode::MalformedJson,
                    "binary messages are not part of the protocol; send JSON text".into(),
                    None,
                )
                .await
            }
            // tungstenite answers pings and close frames itself; the stream then ends.
            Message::Ping(_) | Message::Pong(_) | Message::Close(_) | Message::Frame(_) => {
                Flow::Continue
            }
        }
    }

    async fn on_text(&mut self, text: &str) -> Flow {
        let message = match decode_client_message(text) {
            Ok(message) => message,
            Err(e) => return self.refuse(e.code, e.reason, None).await,
        };
        let request_id = message.request_id();
        let node = match (&message, self.node) {
            (ClientToServer::Hello { version, agent }, None) => {
                return self.on_hello(*version, agent.as_deref()).await;
            }
            (ClientToServer::Hello { .. }, Some(_)) => {
                return self
                    .refuse(
                        ErrorCode::DuplicateHello,
                        "this connection already said hello".into(),
                        None,
                    )
                    .await;
            }
            (ClientToServer::Status { request_id }, _) => {
                let status = self.shared.current_status();
                return self
                    .reply(&ServerToClient::Status {
                        request_id: *request_id,
                        status,
                    })
                    .await;
            }
            (_, None) => {
                return self
                    .refuse(
                        ErrorCode::HelloRequired,
                        "send hello before anything else".into(),
                        request_id,
                    )
                    .await;
            }
            (_, Some(node)) => node,
        };
        match message {
            ClientToServer::Hello { .. } | ClientToServer::Status { .. } => Flow::Continue,
            ClientToServer::Announce { files, request_id } => {
                let allowed = self.index_change_allowed();
                if let Some(flow) = self.throttle(allowed, index_change_limit, request_id).await {
                    return flow;
                }
                let max_files = self.shared.config.max_files_per_node;
                let result = self.shared.index_mut().announce(node, files, max_files);
                match result {
                    Ok(info_hashes) => {
                        self.shared.index_changed.notify_one();
                        self.reply(&ServerToClient::Announced {
                            request_id,
                            info_hashes,
                        })
                        .await
                    }
                    Err((code, reason)) => self.refuse(code, reason, request_id).await,
                }
            }
            ClientToServer::Unannounce { info_hashes } => {
                let allowed = self.index_change_allowed();
                if let Some(flow) = self.throttle(allowed, index_change_limit, None).await {
                    return flow;
                }
                if self.shared.index_mut().unannounce(node, &info_hashes) {
                    self.shared.index_changed.notify_one();
                }
                Flow::Continue
            }
            ClientToServer::List {
                category,
                request_id,
            } => {
                let allowed = self.query_allowed();
                if let Some(flow) = self.throttle(allowed, query_limit, request_id).await {
                    return flow;
                }
                let (files, total) = {
                    let _turn = self.shared.query_permits.acquire().await;
                    self.shared.index().list(category)
                };
                self.reply(&ServerToClient::ListResult {
                    request_id,
                    files,
                    total,
                })
                .await
            }
            ClientToServer::Search {
                query,
                category,
                request_id,
            } => {
                let allowed = self.query_allowed();
                if let Some(flow) = self.throttle(allowed, query_limit, request_id).await {
                    return flow;
                }
                let found = {
                    let _turn = self.shared.query_permits.acquire().await;
                    self.shared.index().search(&query, category)
                };
                match found {
                    Ok((files, total)) => {
                        self.reply(&ServerToClient::SearchResult {
                            request_id,
                            files,
                            total,
                        })
                        .await
                    }
                    Err((code, reason)) => self.refuse(code, reason, request_id).await,
                }
            }
            ClientToServer::Lookup {
                info_hash,
                request_id,
            } => {
                let file = self.shared.index().lookup(info_hash);
                self.reply(&ServerToClient::LookupResult {
                    request_id,
                    info_hash,
                    file,
                })
                .await
            }
            ClientToServer::Signal {
                to,
                connection_id,
                signal,
            } => {
                // The sender is this connection's node, whatever the client wrote.
                let relayed = ServerToClient::Signal {
                    from: node,
                    connection_id,
                    signal,
                };
                let Ok(text) = serde_json::to_string(&relayed) else {
                    return Flow::Continue;
                };
                let result = self.shared.registry().relay(to, Message::text(text));
                let (code, reason) = match result {
                    Ok(()) => return Flow::Continue,
                    Err(RelayError::UnknownPeer) => {
                        (ErrorCode::UnknownPeer, format!("no connected node {to}"))
                    }
                    Err(RelayError::Busy) => (
                        ErrorCode::PeerBusy,
                        format!("node {to} is not keeping up; the signal was dropped"),
                    ),
                    Err(RelayError::ServerBusy) => (
                        ErrorCode::ServerBusy,
                        "the server holds its limit of queued signals; the signal was dropped"
                            .into(),
                    ),
                };
                self.refuse(code, reason, None).await
            }
            ClientToServer::CreateRoom {
                info_hash,
                request_id,
            } => {
                let allowed = self.room_message_allowed();
                if let Some(flow) = self.throttle(allowed, room_message_limit, request_id).await {
                    return flow;
                }
                let created = self.shared.rooms().create(node, info_hash);
                match created {
                    Ok(room) => {
                        debug!(node = %node.short(), room = %room.code, "room created");
                        self.reply(&ServerToClient::RoomJoined { request_id, room })
                            .await
                    }
                    Err((code, reason)) => self.refuse(code, reason, request_id).await,
                }
            }
            ClientToServer::JoinRoom {
                room,
                host_key,
                request_id,
            } => {
                let allowed = self.room_join_allowed();
                if let Some(flow) = self.throttle(allowed, room_join_limit, request_id).await {
                    return flow;
                }
                let joined = self.shared.rooms().join(node, &room, host_key.as_deref());
                match joined {
                    Ok((room, change)) => {
                        let flow = self
                            .reply(&ServerToClient::RoomJoined { request_id, room })
                            .await;
                        self.shared.tell(change.into_iter().collect());
                        flow
                    }
                    Err((code, reason)) => self.refuse(code, reason, request_id).await,
                }
            }
            ClientToServer::LeaveRoom { room } => {
                let allowed = self.room_message_allowed();
                if let Some(flow) = self.throttle(allowed, room_message_limit, None).await {
                    return flow;
                }
                let left = self.shared.rooms().leave(node, &room);
                match left {
                    Ok(change) => {
                        self.shared.tell(change.into_iter().collect());
                        Flow::Continue
                    }
                    Err((code, reason)) => self.refuse(code, reason, None).await,
                }
            }
            ClientToServer::RoomSend { room, to, body } => {
                let allowed = self.room_message_allowed();
                if let Some(flow) = self.throttle(allowed, room_message_limit, None).await {
                    return flow;
                }
                let sent = self.shared.rooms().send(node, &room, to, &body);
                match sent {
                    Ok((room, recipients)) => {
                        // The sender is this connection's node, whatever the client wrote.
                        let message = ServerToClient::RoomMessage {
                            room,
                            from: node,
                            body,
                        };
                        self.shared.relay_to(&recipients, &message);
                        Flow::Continue
                    }
                    Err((code, reason)) => self.refuse(code, reason, None).await,
                }
            }
        }
    }

    async fn on_hello(&mut self, version: u32, agent: Option<&str>) -> Flow {
        if version != PROTOCOL_VERSION {
            let error = ServerToClient::Error {
                code: ErrorCode::UnsupportedVersion,
                reason: format!(
                    "this server speaks protocol version {PROTOCOL_VERSION}, not {version}"
                ),
                request_id: None,
            };
            self.reply(&error).await;
            return Flow::Close(CloseCode::Protocol, "unsupported protocol version");
        }
        if self.admission == Admission::MonitorOnly {
            let error = ServerToClient::Error {
                code: ErrorCode::ServerFull,
                reason: "the server holds its limit of nodes; try again later".into(),
                request_id: None,
            };
            self.reply(&error).await;
            return Flow::Close(CloseCode::Again, "server full");
        }
        let node = NodeId::random();
        self.shared
            .registry()
            .register(node, Outbox::new(self.tx.clone(), self.queued.clone()));
        self.revision_rx = Some(self.shared.revision_tx.subscribe());
        self.node = Some(node);
        let agent = shoal_protocol::text::inert(agent.unwrap_or(""), 64);
        info!(node = %node.short(), addr = %self.addr, agent = %agent, "joined");
        self.reply(&ServerToClient::Welcome {
            version: PROTOCOL_VERSION,
            node_id: node,
            ice_servers: self.shared.config.ice_servers.clone(),
            heartbeat_interval_ms: self.shared.config.heartbeat_interval.as_millis() as u64,
        })
        .await
    }

    /// Answers with an `error` and counts the refusal; too many close the connection (1008).
    async fn refuse(&mut self, code: ErrorCode, reason: String, request_id: Option<u64>) -> Flow {
        debug!(addr = %self.addr, ?code, %reason, "refused");
        let flow = self
            .reply(&ServerToClient::Error {
                code,
                reason,
                request_id,
            })
            .await;
        // A signal racing a departing peer, or to a busy one, is not the sender's abuse.
        if !matches!(
            code,
            ErrorCode::UnknownPeer | ErrorCode::PeerBusy | ErrorCode::ServerBusy
        ) {
            self.refusals += 1;
        }
        if self.refusals >= self.shared.config.max_refusals {
            info!(addr = %self.addr, "too many refused messages; closing with 1008");
            return Flow::Close(CloseCode::Policy, "too many refused messages");
        }
        flow
    }

    /// Takes a token for an `announce` or `unannounce`.
    fn index_change_allowed(&mut self) -> bool {
        self.index_changes.try_take(std::time::Instant::now())
    }

    /// Takes a token for a `list` or `search`, from this connection's and this address's
    /// buckets.
    fn query_allowed(&mut self) -> bool {
        let now = std::time::Instant::now();
        self.queries.try_take(now)
            && self.shared.address_queries.try_take(
                self.addr.ip(),
                ADDRESS_QUERIES_BURST,
                ADDRESS_QUERIES_PER_SEC,
                now,
            )
    }

    /// Takes a token for a `join_room`, from this connection's and this address's buckets.
    fn room_join_allowed(&mut self) -> bool {
        let now = std::time::Instant::now();
        self.room_joins.try_take(now)
            && self.shared.address_joins.try_take(
                self.addr.ip(),
                ADDRESS_ROOM_JOINS_BURST,
                ADDRESS_ROOM_JOINS_PER_SEC,
                now,
            )
    }

    fn room_message_allowed(&mut self) -> bool {
        self.room_messages.try_take(std::time::Instant::now())
    }

    /// `None` when `allowed`; else refuses with `rate_limited`, `limit` naming the rate.
    async fn throttle(
        &mut self,
        allowed: bool,
        limit: fn() -> String,
        request_id: Option<u64>,
    ) -> Option<Flow> {
        if allowed {
            return None;
        }
        Some(
            self.refuse(ErrorCode::RateLimited, limit(), request_id)
                .await,
        )
    }

    async fn reply(&mut self, message: &ServerToClient) -> Flow {
        match serde_json::to_string(message) {
            Ok(text) => self.send(Message::text(text)).await,
            Err(_) => Flow::Continue,
        }
    }

    async fn send(&mut self, frame: Message) -> Flow {
        match tokio::time::timeout(self.shared.config.write_timeout, self.ws.send(frame)).await {
            Ok(Ok(())) => Flow::Continue,
            Ok(Err(e)) => {
                debug!(addr = %self.addr, error = %e, "write failed");
                Flow::End
            }
            Err(_) => {
                info!(addr = %self.addr, "client not reading; dropping");
                Flow::End
            }
        }
    }
}
