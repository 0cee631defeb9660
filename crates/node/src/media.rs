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
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use shoal_protocol::InfoHash;
use tower::ServiceExt;
use tower_http::services::ServeFile;
use tracing::{debug, warn};

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
}

/// A running media server.
pub(crate) struct MediaServer {
    addr: SocketAddr,
    shared: Shared,
}

impl MediaServer {
    /// Binds 127.0.0.1 on a free port and serves until the runtime stops.
    pub(crate) async fn start() -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let token: String = (0..4)
            .map(|_| format!("{:08x}", rand::random::<u32>()))
            .collect();
        let shared = Shared {
            token: token.into(),
            files: Arc::new(RwLock::new(HashMap::new())),
        };
        let app = Router::new()
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

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_percent_encoded() {
        assert_eq!(super::percent_encode("a b/ü.mp4"), "a%20b%2F%C3%BC.mp4");
    }
}
