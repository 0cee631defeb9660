//! Helpers for the server's integration tests: the real `shoal-signal` process and a real
//! WebSocket client.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use shoal_protocol::{NodeId, ServerToClient};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Bound on any single wait in these tests. Waits end as soon as the awaited event happens;
/// this only turns a hang into a failure.
pub const WAIT: Duration = Duration::from_secs(10);

/// A `shoal-signal` child process, killed on drop.
pub struct ServerProcess {
    pub child: Child,
    pub url: String,
}

impl ServerProcess {
    /// Starts the binary on 127.0.0.1:0 with extra flags and reads the URL it prints.
    pub fn start(extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_shoal-signal"))
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start shoal-signal");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the first line");
        let url = line.trim().to_owned();
        assert!(
            url.starts_with("ws://127.0.0.1:"),
            "first line is the URL: {url:?}"
        );
        Self { child, url }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A WebSocket client speaking raw JSON, so tests can send what a real node never would.
pub struct Client {
    pub ws: Ws,
    pub node_id: Option<NodeId>,
}

/// What a client saw next.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // a test helper; boxing would only add noise to every match
pub enum Seen {
    Message(ServerToClient),
    Closed(Option<CloseFrame>),
}

impl Client {
    pub async fn connect(url: &str) -> Self {
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .expect("connect in time")
            .expect("connect");
        Self { ws, node_id: None }
    }

    /// Connects and completes hello/welcome.
    pub async fn joined(url: &str) -> Self {
        let mut client = Self::connect(url).await;
        client
            .send_json(serde_json::json!({"type": "hello", "version": 1, "agent": "test"}))
            .await;
        match client.recv().await {
            ServerToClient::Welcome { node_id, .. } => client.node_id = Some(node_id),
            other => panic!("expected welcome, got {other:?}"),
        }
        client
    }

    pub fn id(&self) -> NodeId {
        self.node_id.expect("joined")
    }

    pub async fn send_json(&mut self, value: serde_json::Value) {
        self.send_text(value.to_string()).await;
    }

    pub async fn send_text(&mut self, text: String) {
        self.ws.send(Message::text(text)).await.expect("send");
    }

    /// Next protocol message or close; panics on timeout.
    pub async fn next(&mut self) -> Seen {
        loop {
            let item = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("server answered in time");
            match item {
                Some(Ok(Message::Text(text))) => {
                    let message = serde_json::from_str(&text)
                        .unwrap_or_else(|e| panic!("server sent bad JSON {text}: {e}"));
                    return Seen::Message(message);
                }
                Some(Ok(Message::Close(frame))) => return Seen::Closed(frame),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Seen::Closed(None),
            }
        }
    }

    /// Next protocol message, skipping `index_changed` notices.
    pub async fn recv(&mut self) -> ServerToClient {
        loop {
            match self.next().await {
                Seen::Message(ServerToClient::IndexChanged { .. }) => continue,
                Seen::Message(m) => return m,
                Seen::Closed(frame) => panic!("connection closed: {frame:?}"),
            }
        }
    }

    /// Waits for the next `index_changed`, skipping anything else.
    pub async fn index_changed(&mut self) -> u64 {
        loop {
            match self.next().await {
                Seen::Message(ServerToClient::IndexChanged { revision }) => return revision,
                Seen::Message(_) => continue,
                Seen::Closed(frame) => panic!("connection closed: {frame:?}"),
            }
        }
    }

    /// Reads until the server closes; returns the close code, if a close frame came.
    pub async fn close_code(&mut self) -> Option<u16> {
        loop {
            if let Seen::Closed(frame) = self.next().await {
                return frame.map(|f| u16::from(f.code));
            }
        }
    }
}

pub fn announce(
    hash: &str,
    name: &str,
    size: u64,
    mime: &str,
    category: &str,
) -> serde_json::Value {
    serde_json::json!({"type": "announce", "files": [
        {"info_hash": hash, "name": name, "size": size, "mime": mime, "category": category}
    ]})
}

/// The server in this process on 127.0.0.1:0, for tests that need a config no flag sets;
/// returns it with its URL.
pub async fn serve(config: shoal_signal::Config) -> (shoal_signal::ServerHandle, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let server = shoal_signal::serve(listener, config).expect("serve");
    let url = server.url();
    (server, url)
}

/// The code of an `error` message, `None` for anything else.
pub fn error_code(message: &ServerToClient) -> Option<shoal_protocol::ErrorCode> {
    match message {
        ServerToClient::Error { code, .. } => Some(*code),
        _ => None,
    }
}

/// A distinct, valid info hash per `n`.
pub fn hash(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}
