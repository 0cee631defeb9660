//! Streaming a download while it runs (issue 10, item 3): the media server answers HTTP Range
//! requests (RFC 9110 §14) for a download in progress from its `.part` file, verified bytes
//! only, and tells the download's swarm where each request reads so those pieces come first
//! (`shoal_transfer::Input::Playheads`).
//!
//! The swarm task owns the writing side ([`StreamState`] through a `watch` channel: the
//! manifest, the `.part` file opened for reading, the pieces written); each HTTP request is a
//! reader with its own playhead. A request waits for a missing piece; after 30 s in which no
//! piece at all was written it fails: before the response started, with 504 Gateway Timeout,
//! after, by ending the body early (the player shows a network error). Every piece read is
//! hashed again against the manifest before a byte of it is sent, so neither a piece that was
//! never verified nor a `.part` file changed behind the node's back reaches a player.
//!
//! The `.part` file descriptor stays valid when the download completes: the finished file is
//! a hard link to the same inode, so a request that started on the partial file reads on.

use std::ops::RangeInclusive;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use shoal_storage::{Bitfield, Manifest};
use tokio::sync::{mpsc, watch};

/// How long a request waits while no piece at all is written before it fails.
pub(crate) const STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Read-ahead of a streamed download, in seconds of media (issue 10).
pub(crate) const READ_AHEAD_SECS: f64 = 30.0;

/// Read-ahead of a streamed download until its container says how long it plays: 30 s at
/// an assumed 8 Mbit/s (1 MiB/s), the bitrate of a 1080p H.264 file.
pub(crate) const READ_AHEAD_BYTES: u64 = 30 << 20;

/// Bounds of a read-ahead sized from the file's bitrate: 1 MiB (30 s of a song) to 256 MiB
/// (30 s of a 70 Mbit/s 4K file).
pub(crate) const READ_AHEAD_MIN_BYTES: u64 = 1 << 20;
pub(crate) const READ_AHEAD_MAX_BYTES: u64 = 256 << 20;

/// [`READ_AHEAD_SECS`] of a file of `len_bytes` that plays `secs` seconds, at its average
/// bitrate, within [`READ_AHEAD_MIN_BYTES`]..=[`READ_AHEAD_MAX_BYTES`].
pub(crate) fn read_ahead_bytes(len_bytes: u64, secs: f64) -> u64 {
    let bytes = len_bytes as f64 / secs * READ_AHEAD_SECS;
    (bytes as u64).clamp(READ_AHEAD_MIN_BYTES, READ_AHEAD_MAX_BYTES)
}

/// What the swarm task publishes about a download for its readers.
#[derive(Debug, Default)]
pub(crate) struct StreamState {
    /// Known once the manifest is.
    pub(crate) manifest: Option<Manifest>,
    /// The `.part` file, opened for reading.
    pub(crate) file: Option<Arc<std::fs::File>>,
    /// Pieces verified and written.
    pub(crate) have: Option<Bitfield>,
    /// The download stopped without its file (failed, cancelled): why.
    pub(crate) ended: Option<String>,
}

/// A reader's position, sent to the swarm task.
#[derive(Debug)]
pub(crate) enum ReaderUpdate {
    /// Reader `id` needs the byte at `offset` next.
    At { id: u64, offset: u64 },
    /// Reader `id` is gone (the request ended or the player closed it).
    Gone { id: u64 },
}

/// A download readers can stream: shared by the actor, the media server and its requests.
#[derive(Debug)]
pub(crate) struct Stream {
    pub(crate) state: watch::Receiver<StreamState>,
    readers: mpsc::UnboundedSender<ReaderUpdate>,
    next_reader: AtomicU64,
    /// `Content-Type` of the responses.
    pub(crate) mime: String,
}

/// The swarm task's side of a [`Stream`].
pub(crate) struct StreamFeed {
    /// Where the task publishes what it has.
    pub(crate) state: watch::Sender<StreamState>,
    /// Where readers say where they read.
    pub(crate) readers: mpsc::UnboundedReceiver<ReaderUpdate>,
}

/// A new stream and the swarm task's side of it.
pub(crate) fn stream(mime: String) -> (Arc<Stream>, StreamFeed) {
    let (state_tx, state_rx) = watch::channel(StreamState::default());
    let (readers_tx, readers_rx) = mpsc::unbounded_channel();
    (
        Arc::new(Stream {
            state: state_rx,
            readers: readers_tx,
            next_reader: AtomicU64::new(1),
            mime,
        }),
        StreamFeed {
            state: state_tx,
            readers: readers_rx,
        },
    )
}

/// One request's registration as a reader; tells the swarm task when it ends.
struct Reader {
    id: u64,
    readers: mpsc::UnboundedSender<ReaderUpdate>,
    last_piece: Option<u64>,
}

impl Reader {
    fn at(&mut self, offset: u64, piece_len: u64) {
        let piece = offset / piece_len.max(1);
        if self.last_piece != Some(piece) {
            self.last_piece = Some(piece);
            let _ = self.readers.send(ReaderUpdate::At {
                id: self.id,
                offset,
            });
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let _ = self.readers.send(ReaderUpdate::Gone { id: self.id });
    }
}

/// Why a wait ended without the piece.
enum WaitError {
    /// No piece written for [`STALL_TIMEOUT`].
    Stalled,
    /// The download stopped: why.
    Ended(String),
}

/// Waits until `ready` holds, failing after [`STALL_TIMEOUT`] without any change, or when
/// the download ends.
async fn wait_until(
    state: &mut watch::Receiver<StreamState>,
    ready: impl Fn(&StreamState) -> bool,
) -> Result<(), WaitError> {
    loop {
        {
            let s = state.borrow_and_update();
            if ready(&s) {
                return Ok(());
            }
            if let Some(reason) = &s.ended {
                return Err(WaitError::Ended(reason.clone()));
            }
        }
        match tokio::time::timeout(STALL_TIMEOUT, state.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(WaitError::Ended("the download stopped".into())),
            Err(_) => return Err(WaitError::Stalled),
        }
    }
}

fn wait_error_response(e: WaitError) -> Response {
    match e {
        WaitError::Stalled => (
            StatusCode::GATEWAY_TIMEOUT,
            "no piece of this download arrived for 30 s: no holder sends it",
        )
            .into_response(),
        WaitError::Ended(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("download stopped: {reason}"),
        )
            .into_response(),
    }
}

/// Reads the verified bytes `range` of piece `piece` (all inside it) from the `.part` file.
fn read_verified(
    file: &std::fs::File,
    manifest: &Manifest,
    piece: u32,
    range: std::ops::Range<u64>,
) -> std::io::Result<Bytes> {
    let layout = manifest.layout();
    let index = layout
        .piece_index(piece)
        .ok_or_else(|| std::io::Error::other(format!("piece {piece} out of range")))?;
    let piece_range = layout.piece_range(index);
    let mut buf = vec![0u8; (piece_range.end - piece_range.start) as usize];
    file.read_exact_at(&mut buf, piece_range.start)?;
    if !manifest.verify_piece(index, &buf) {
        return Err(std::io::Error::other(format!(
            "piece {piece} in the .part file no longer matches its hash"
        )));
    }
    let from = (range.start - piece_range.start) as usize;
    let to = (range.end - piece_range.start) as usize;
    Ok(Bytes::from(buf).slice(from..to))
}

/// Answers one GET (or HEAD) for a download in progress.
pub(crate) async fn serve(stream: Arc<Stream>, headers: &HeaderMap) -> Response {
    let mut state = stream.state.clone();
    // The length and piece size come with the manifest.
    if let Err(e) = wait_until(&mut state, |s| s.manifest.is_some() && s.file.is_some()).await {
        return wait_error_response(e);
    }
    let (manifest, file) = {
        let s = state.borrow();
        match (&s.manifest, &s.file) {
            (Some(m), Some(f)) => (m.clone(), f.clone()),
            _ => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        }
    };
    let len = manifest.layout().len_bytes();
    let piece_len = u64::from(manifest.layout().piece_len());
    let range_header = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let span: Option<RangeInclusive<u64>> = match range_header {
        None => None,
        Some(text) => match http_range_header::parse_range_header(text)
            .and_then(|parsed| parsed.validate(len))
        {
            // Several ranges: one part covering them all (a server may coalesce them).
            Ok(ranges) if !ranges.is_empty() => {
                let start = ranges.iter().map(|r| *r.start()).min().unwrap_or(0);
                let end = ranges.iter().map(|r| *r.end()).max().unwrap_or(0);
                Some(start..=end)
            }
            _ => {
                return (
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    [(header::CONTENT_RANGE, format!("bytes */{len}"))],
                )
                    .into_response();
            }
        },
    };
    let (start, end_exclusive) = match &span {
        Some(r) => (*r.start(), r.end() + 1),
        None => (0, len),
    };
    let id = stream.next_reader.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(reader = id, start, end = end_exclusive, "stream request");
    let mut reader = Reader {
        id,
        readers: stream.readers.clone(),
        last_piece: None,
    };
    // The first piece before the headers: a request that cannot start fails with a status.
    if start < end_exclusive {
        reader.at(start, piece_len);
        let first = (start / piece_len) as u32;
        if let Err(e) = wait_until(&mut state, |s| {
            s.have.as_ref().is_some_and(|h| h.has_raw(first))
        })
        .await
        {
            return wait_error_response(e);
        }
        tracing::debug!(reader = reader.id, "first piece here; answering");
    }
    let body = futures_util::stream::unfold(
        (start, state, reader, false),
        move |(offset, mut state, mut reader, failed)| {
            let manifest = manifest.clone();
            let file = file.clone();
            async move {
                if failed || offset >= end_exclusive {
                    return None;
                }
                reader.at(offset, piece_len);
                let piece = (offset / piece_len) as u32;
                let ready = wait_until(&mut state, |s| {
                    s.have.as_ref().is_some_and(|h| h.has_raw(piece))
                })
                .await;
                if let Err(e) = ready {
                    let why = match e {
                        WaitError::Stalled => "no piece arrived for 30 s".to_owned(),
                        WaitError::Ended(reason) => reason,
                    };
                    let error = std::io::Error::new(std::io::ErrorKind::TimedOut, why);
                    return Some((Err(error), (offset, state, reader, true)));
                }
                let until = ((u64::from(piece) + 1) * piece_len).min(end_exclusive);
                let read = tokio::task::spawn_blocking(move || {
                    read_verified(&file, &manifest, piece, offset..until)
                })
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
                match read {
                    Ok(bytes) => Some((Ok(bytes), (until, state, reader, false))),
                    Err(e) => Some((Err(e), (offset, state, reader, true))),
                }
            }
        },
    );
    let mut response = Response::new(Body::from_stream(body));
    let headers = response.headers_mut();
    if let Ok(mime) = HeaderValue::from_str(&stream.mime) {
        headers.insert(header::CONTENT_TYPE, mime);
    }
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(end_exclusive - start),
    );
    if span.is_some() {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        if let Ok(v) = HeaderValue::from_str(&format!(
            "bytes {start}-{}/{len}",
            end_exclusive.saturating_sub(1)
        )) {
            response.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    response
}
