//! The loopback media server: serves shared and downloaded files to the app's player over
//! HTTP with Range support (RFC 9110 §14), at `http://127.0.0.1:<port>/<token>/<info hash>/<name>`.
//!
//! WebKitGTK plays `<video>` from a loopback HTTP server but not from a custom URI scheme
//! (docs/ARCHITECTURE.md "Measured facts"; tauri#3725), hence a server. The random token keeps other local programs and web
//! pages out; only files registered by the node (its shares and downloads) are served. A
//! download in progress is served from its `.part` file by [`crate::stream`], verified bytes
//! only, waiting for missing pieces.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use shoal_protocol::InfoHash;
use tokio::sync::{broadcast, mpsc, oneshot};
use tower::ServiceExt;
use tower_http::services::ServeFile;
use tracing::{debug, warn};

use crate::live::{LiveEvent, LiveMp4};
use crate::stream::Stream;

/// What a URL serves.
#[derive(Clone)]
enum Entry {
    /// A whole file on disk (a share or a finished download).
    File(PathBuf),
    /// A download in progress, from its `.part` file ([`crate::stream`]).
    Stream(Arc<Stream>),
}

#[derive(Clone)]
struct Shared {
    token: Arc<str>,
    files: Arc<RwLock<HashMap<InfoHash, Entry>>>,
    /// The node's received live frames ([`crate::NodeHandle::live_frames`]).
    live: broadcast::Sender<LiveEvent>,
}

/// A running media server.
pub(crate) struct MediaServer {
    addr: SocketAddr,
    shared: Shared,
}

impl MediaServer {
    /// Binds 127.0.0.1 on a free port and serves until the runtime stops; `/live` serves
    /// what `live` carries.
    pub(crate) async fn start(live: broadcast::Sender<LiveEvent>) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let token: String = (0..4)
            .map(|_| format!("{:08x}", rand::random::<u32>()))
            .collect();
        let shared = Shared {
            token: token.into(),
            files: Arc::new(RwLock::new(HashMap::new())),
            live,
        };
        let app = Router::new()
            .route("/{token}/live", get(live_stream))
            .route("/{token}/{info_hash}/{name}", get(serve))
            .with_state(shared.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                warn!(error = %e, "media server stopped");
            }
        });
        debug!(%addr, "media server listening");
        Ok(Self { addr, shared })
    }

    /// Stops serving `info_hash`: its URLs answer 404 from now on.
    pub(crate) fn revoke(&self, info_hash: InfoHash) {
        if let Ok(mut files) = self.shared.files.write() {
            files.remove(&info_hash);
        }
    }

    /// Makes `path` playable as `info_hash` and returns its URL.
    pub(crate) fn register(&self, info_hash: InfoHash, path: PathBuf) -> String {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "file".into());
        if let Ok(mut files) = self.shared.files.write() {
            files.insert(info_hash, Entry::File(path));
        }
        self.url(info_hash, &name)
    }

    /// Makes a download in progress playable as `info_hash` under `name`; returns its URL.
    /// Registering the finished file later ([`MediaServer::register`]) takes over for new
    /// requests; requests under way read on.
    pub(crate) fn register_stream(
        &self,
        info_hash: InfoHash,
        name: &str,
        stream: Arc<Stream>,
    ) -> String {
        if let Ok(mut files) = self.shared.files.write() {
            files.insert(info_hash, Entry::Stream(stream));
        }
        self.url(info_hash, name)
    }

    /// Whether `info_hash` is served from a download in progress.
    pub(crate) fn is_stream(&self, info_hash: InfoHash) -> bool {
        self.shared
            .files
            .read()
            .is_ok_and(|f| matches!(f.get(&info_hash), Some(Entry::Stream(_))))
    }

    /// The URL of the live stream this node receives, as fragmented MP4
    /// ([`crate::NodeHandle::live_url`]).
    pub(crate) fn live_url(&self) -> String {
        format!("http://{}/{}/live", self.addr, self.shared.token)
    }

    fn url(&self, info_hash: InfoHash, name: &str) -> String {
        format!(
            "http://{}/{}/{}/{}",
            self.addr,
            self.shared.token,
            info_hash,
            percent_encode(name)
        )
    }
}

/// Percent-encodes everything but unreserved characters (RFC 3986 §2.3).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn serve(
    State(shared): State<Shared>,
    Path((token, info_hash, _name)): Path<(String, String, String)>,
    request: Request,
) -> Response {
    if token.as_bytes() != shared.token.as_bytes() {
        return StatusCode::NOT_FOUND.into_response();
    }
    let Ok(info_hash) = info_hash.parse::<InfoHash>() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let entry = shared
        .files
        .read()
        .ok()
        .and_then(|files| files.get(&info_hash).cloned());
    let path = match entry {
        None => return StatusCode::NOT_FOUND.into_response(),
        Some(Entry::Stream(stream)) => {
            return crate::stream::serve(stream, request.headers()).await;
        }
        Some(Entry::File(path)) => path,
    };
    match ServeFile::new(path).oneshot(request).await {
        Ok(response) => response.into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// How long `/live` waits for a stream's first keyframe before it answers 504.
const LIVE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);
/// Fragments queued for a player that does not read; past this the stream skips to the
/// next keyframe.
const LIVE_QUEUE: usize = 256;

/// `GET /<token>/live`: the live stream this node receives, as fragmented MP4 from its next
/// keyframe on, with its MIME type and codecs as `Content-Type`, until the stream ends. A
/// reader that falls behind (or a node that lags the broadcast) skips to the next keyframe,
/// so memory stays bounded and the player stays near the live edge. 504 when no stream
/// starts within 30 s.
async fn live_stream(State(shared): State<Shared>, Path(token): Path<String>) -> Response {
    if token.as_bytes() != shared.token.as_bytes() {
        return StatusCode::NOT_FOUND.into_response();
    }
    let events = shared.live.subscribe();
    let (body_tx, body_rx) = mpsc::channel(LIVE_QUEUE);
    let (mime_tx, mime_rx) = oneshot::channel();
    tokio::spawn(feed_live(events, body_tx, mime_tx));
    let mime = match tokio::time::timeout(LIVE_WAIT, mime_rx).await {
        Ok(Ok(mime)) => mime,
        Ok(Err(_)) => {
            return (
                StatusCode::GONE,
                [("Access-Control-Allow-Origin", "*")],
                "the live stream ended",
            )
                .into_response();
        }
        Err(_) => {
            return (
                StatusCode::GATEWAY_TIMEOUT,
                [("Access-Control-Allow-Origin", "*")],
                "no live stream",
            )
                .into_response();
        }
    };
    let body = futures_util::stream::unfold(body_rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, std::convert::Infallible>(chunk), rx))
    });
    Response::builder()
        .header("Content-Type", mime)
        .header("Cache-Control", "no-store")
        // The page reads this with fetch() from its own origin (tauri://localhost), so the
        // response must allow it (W3C Fetch, CORS); the random token in the path is what
        // keeps other pages and programs out, as for every URL here.
        .header("Access-Control-Allow-Origin", "*")
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Muxes one host's frames for one reader (see [`live_stream`]).
async fn feed_live(
    mut events: broadcast::Receiver<LiveEvent>,
    body: mpsc::Sender<bytes::Bytes>,
    mime: oneshot::Sender<String>,
) {
    let mut mime = Some(mime);
    let mut mp4 = LiveMp4::new();
    let mut host = None;
    // After a gap: frames are skipped until a video keyframe.
    let mut skipping = false;
    loop {
        let event = match events.recv().await {
            Ok(event) => event,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                debug!(
                    frames = n,
                    "live reader lagged the broadcast; on at a keyframe"
                );
                skipping = true;
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        match event {
            LiveEvent::Started { from } => {
                host.get_or_insert(from);
            }
            LiveEvent::Ended { from, .. } if host == Some(from) => return,
            LiveEvent::Ended { .. } => {}
            LiveEvent::Frame {
                from,
                codec,
                rtp_timestamp,
                data,
                ..
            } => {
                if *host.get_or_insert(from) != from {
                    continue;
                }
                if skipping {
                    if !LiveMp4::is_keyframe(&codec, &data) {
                        continue;
                    }
                    skipping = false;
                }
                let bytes = match mp4.push(&codec, rtp_timestamp, &data) {
                    Ok(bytes) => bytes,
                    Err(error) => {
                        warn!(%error, "live stream cannot be muxed");
                        return;
                    }
                };
                if bytes.is_empty() {
                    continue;
                }
                if let Some(tx) = mime.take() {
                    let Some(m) = mp4.mime() else { return };
                    if tx.send(m).is_err() {
                        return;
                    }
                }
                match body.try_send(bytes::Bytes::from(bytes)) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        debug!("live reader is behind; on at a keyframe");
                        skipping = true;
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_percent_encoded() {
        assert_eq!(super::percent_encode("a b/ü.mp4"), "a%20b%2F%C3%BC.mp4");
    }
}
