//! A headless player for `shoal room join --follow`: it plays a download's stream URL the way
//! a media player does, without decoding: an HTTP Range reader fetches the bytes ahead of the
//! playhead (which tells the node where it plays, so those pieces come first), and the
//! playhead moves at the playback rate only through bytes that have arrived. Out of data it
//! stalls and says it is buffering, exactly what makes a room wait.
//!
//! Media time maps to bytes at the file's average bitrate (position / duration x length): a
//! model of a player's buffer, good to a few seconds for constant-bitrate media, which is all
//! the following logic needs. A real player in the app reports its own `readyState`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header::{HOST, RANGE};
use hyper_util::rt::TokioIo;
use shoal_node::room::{Action, PlayerState};
use tokio::sync::watch;

/// Media the player wants buffered ahead of its position to count as ready, ms.
const READY_AHEAD_MS: f64 = 2000.0;
/// A position this far past the reader's bytes is read by a new request, bytes.
const OFF_TRACK_BYTES: u64 = 1 << 20;
/// Media the reader fetches ahead of the position at most, ms (a player's buffer).
const BUFFER_AHEAD_MS: f64 = 30_000.0;

/// One HTTP request reading the stream from `start`.
struct Reader {
    start: u64,
    /// Bytes received since `start`.
    got: Arc<AtomicU64>,
    /// The request ended (the end of the file, or an error).
    ended: Arc<AtomicBool>,
    /// The reader reads up to this byte, then waits.
    limit: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Reader {
    fn start(url: &str, start: u64, limit: u64) -> Self {
        let got = Arc::new(AtomicU64::new(0));
        let ended = Arc::new(AtomicBool::new(false));
        let (limit_tx, limit_rx) = watch::channel(limit);
        let task = {
            let (url, got, ended) = (url.to_owned(), got.clone(), ended.clone());
            tokio::spawn(async move {
                if let Err(e) = read(&url, start, &got, limit_rx).await {
                    tracing::info!("stream reader at byte {start} ended: {e}");
                }
                ended.store(true, Ordering::Release);
            })
        };
        Self {
            start,
            got,
            ended,
            limit: limit_tx,
            task,
        }
    }

    fn end(&self) -> u64 {
        self.start + self.got.load(Ordering::Acquire)
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// GETs `url` from byte `start`, counting the bytes in `got`, pausing whenever it is past
/// `limit`.
async fn read(
    url: &str,
    start: u64,
    got: &AtomicU64,
    mut limit: watch::Receiver<u64>,
) -> anyhow::Result<()> {
    let uri: hyper::Uri = url.parse()?;
    let authority = uri
        .authority()
        .ok_or_else(|| anyhow::anyhow!("no host in {url}"))?
        .clone();
    let stream = tokio::net::TcpStream::connect(authority.as_str()).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let connection = tokio::spawn(connection);
    let request = hyper::Request::get(uri.path())
        .header(HOST, authority.as_str())
        .header(RANGE, format!("bytes={start}-"))
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    if !response.status().is_success() {
        connection.abort();
        anyhow::bail!("the stream answered {}", response.status());
    }
    let mut body = response.into_body();
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame?.data_ref() {
            let now = got.fetch_add(data.len() as u64, Ordering::AcqRel) + data.len() as u64;
            while start + now >= *limit.borrow_and_update() {
                limit.changed().await?;
            }
        }
    }
    connection.abort();
    Ok(())
}

/// A player without a picture: position, play/pause, rate, and a buffer fed over HTTP.
pub struct HeadlessPlayer {
    url: String,
    len_bytes: Option<u64>,
    duration_ms: Option<f64>,
    position_ms: f64,
    /// Node clock of the last [`HeadlessPlayer::advance`], ms.
    last_ms: Option<f64>,
    playing: bool,
    rate: f64,
    reader: Option<Reader>,
}

impl HeadlessPlayer {
    /// A paused player at 0 for the stream at `url`.
    pub fn new(url: String) -> Self {
        Self {
            url,
            len_bytes: None,
            duration_ms: None,
            position_ms: 0.0,
            last_ms: None,
            playing: false,
            rate: 1.0,
            reader: None,
        }
    }

    /// The file's length, bytes.
    pub fn set_len(&mut self, len_bytes: u64) {
        self.len_bytes = Some(len_bytes);
    }

    /// The media's playing time, once known, seconds.
    pub fn set_duration(&mut self, secs: f64) {
        if secs.is_finite() && secs > 0.0 {
            self.duration_ms = Some(secs * 1000.0);
        }
    }

    /// Whether the playing time is known.
    pub fn knows_duration(&self) -> bool {
        self.duration_ms.is_some()
    }

    /// The byte at media time `ms`, at the average bitrate.
    fn byte_at(&self, ms: f64) -> Option<u64> {
        let (len, duration) = (self.len_bytes?, self.duration_ms?);
        Some(((ms / duration).clamp(0.0, 1.0) * len as f64) as u64)
    }

    /// The media time at byte `byte`.
    fn ms_at(&self, byte: u64) -> Option<f64> {
        let (len, duration) = (self.len_bytes?, self.duration_ms?);
        Some(byte as f64 / len.max(1) as f64 * duration)
    }

    /// How far the buffer reaches, bytes (the end of what the reader has from the position
    /// on).
    fn buffered_end(&self) -> u64 {
        self.reader.as_ref().map_or(0, Reader::end)
    }

    /// Moves the playhead to node clock `now_ms` through the bytes it has, and keeps the
    /// reader going.
    pub fn advance(&mut self, now_ms: f64) {
        let dt = self.last_ms.map_or(0.0, |last| (now_ms - last).max(0.0));
        self.last_ms = Some(now_ms);
        // A seek made before the playing time was known, or one past what the reader will
        // reach soon: read from the position instead.
        let position_byte = self.byte_at(self.position_ms);
        let off_track = |r: &Reader| {
            position_byte.is_some_and(|b| b < r.start || b > r.end() + OFF_TRACK_BYTES)
        };
        if self.reader.as_ref().is_some_and(off_track) {
            self.reader = None;
        }
        if self
            .reader
            .as_ref()
            .is_none_or(|r| r.ended.load(Ordering::Acquire) && Some(r.end()) < self.len_bytes)
        {
            // None yet, or the request failed: go on from where the buffer ends.
            let from = match &self.reader {
                Some(r) if self.byte_at(self.position_ms).is_some_and(|b| b >= r.start) => r.end(),
                _ => self.byte_at(self.position_ms).unwrap_or(0),
            };
            self.reader = Some(Reader::start(&self.url, from, self.limit()));
        }
        if self.playing
            && let Some(cap) = self.ms_at(self.buffered_end())
        {
            let end = self.duration_ms.unwrap_or(f64::INFINITY);
            let cap = if Some(self.buffered_end()) >= self.len_bytes {
                end
            } else {
                cap
            };
            let target = self.position_ms + dt * self.rate;
            self.position_ms = target.min(cap.max(self.position_ms)).min(end);
        }
        let limit = self.limit();
        if let Some(r) = &self.reader {
            r.limit
                .send_if_modified(|l| std::mem::replace(l, limit) != limit);
        }
    }

    /// The reader's limit: [`BUFFER_AHEAD_MS`] past the position (the whole file until the
    /// playing time is known: the node needs the header to say it).
    fn limit(&self) -> u64 {
        self.byte_at(self.position_ms + BUFFER_AHEAD_MS)
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Whether the next [`READY_AHEAD_MS`] (or the rest of the file) are buffered.
    pub fn ready(&self) -> bool {
        let (Some(len), Some(duration)) = (self.len_bytes, self.duration_ms) else {
            return false;
        };
        let want = self
            .byte_at((self.position_ms + READY_AHEAD_MS).min(duration))
            .unwrap_or(len)
            .min(len);
        let start = self.reader.as_ref().map_or(u64::MAX, |r| r.start);
        start <= self.byte_at(self.position_ms).unwrap_or(0) && self.buffered_end() >= want
    }

    /// What the follower needs to know.
    pub fn state(&self) -> PlayerState {
        PlayerState {
            position_ms: self.position_ms,
            playing: self.playing,
            seeking: false,
            ready: self.ready(),
            rate: self.rate,
        }
    }

    /// Carries out what the follower asked for.
    pub fn apply(&mut self, action: Action) {
        match action {
            Action::Play => self.playing = true,
            Action::Pause => self.playing = false,
            Action::SetRate(rate) => self.rate = rate,
            Action::Seek { position_ms } => {
                let end = self.duration_ms.unwrap_or(f64::INFINITY);
                self.position_ms = position_ms.clamp(0.0, end);
                let Some(byte) = self.byte_at(self.position_ms) else {
                    return;
                };
                let buffered = self
                    .reader
                    .as_ref()
                    .is_some_and(|r| r.start <= byte && byte <= r.end());
                if !buffered {
                    self.reader = Some(Reader::start(&self.url, byte, self.limit()));
                }
            }
        }
    }
}
