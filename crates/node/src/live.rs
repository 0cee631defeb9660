//! Live mode in rooms (issue 12): the host of a room streams a video file over media tracks
//! ([`shoal_rtc::MediaLink`]) to every member, paced from one clock anchor
//! ([`shoal_media::sender`]); a member's node receives the frames and hands them to its front
//! end ([`crate::NodeHandle::live_frames`]).
//!
//! - One *pacer* task per stream reads the file and broadcasts each sample at its slot.
//! - One *viewer* task per member offers a media link to it, waits for the connection, and
//!   sends what the pacer broadcasts. A viewer that falls behind the broadcast's buffer (512
//!   samples, about 7 s of 25 fps video with 50 audio packets a second) loses the oldest
//!   samples and resumes video at the next keyframe.
//! - A member's node accepts a media offer only from the host of a room it is in; the offer
//!   is told apart from a data link's by its SDP (media sections, no data channel).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use shoal_media::{Codec, MediaFile, Schedule, TokioClock};
use shoal_protocol::{NodeId, Signal};
use shoal_rtc::{MediaCodec, MediaLink, OutgoingSignal, RtcConfig};
use tokio::sync::{broadcast, mpsc};
use tracing::{debug, info, warn};

use crate::NodeError;

/// ICE restarts per viewer link before the host gives up on it.
const MAX_ICE_RESTARTS: u32 = 5;

/// How long a finished stream's links stay open for the last packets (and their NACKs).
const LINGER: Duration = Duration::from_millis(500);

/// Samples a stream's broadcast holds for viewers that lag.
const BROADCAST_SAMPLES: usize = 512;

/// One sample on its way to every viewer.
#[derive(Debug, Clone)]
pub(crate) enum LiveItem {
    /// A sample of track `track` (the order of the stream's codecs).
    Sample {
        track: usize,
        rtp_timestamp: u32,
        keyframe: bool,
        data: Bytes,
    },
    /// The file ended (a stream that does not loop).
    End,
}

/// What a member's node receives of a live stream ([`crate::NodeHandle::live_frames`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveEvent {
    /// The host's stream connected: its tracks' codecs follow as frames arrive.
    Started {
        /// The host.
        from: NodeId,
    },
    /// One frame: an H.264 access unit (Annex-B), a VP8 or VP9 frame, an Opus packet.
    Frame {
        /// The host.
        from: NodeId,
        /// Its track's codec.
        codec: MediaCodec,
        /// Its RTP timestamp (90 kHz video, 48 kHz Opus).
        rtp_timestamp: u32,
        /// The bytes.
        data: Bytes,
        /// Packets given up on before it (lost for good).
        dropped_packets: u16,
    },
    /// The stream ended (the host stopped, or the connection is gone).
    Ended {
        /// The host.
        from: NodeId,
        /// Why, in words.
        reason: String,
    },
}

/// What a stream sends, from a file: its codecs and schedule.
pub(crate) struct Source {
    pub(crate) file: MediaFile,
    pub(crate) codecs: Vec<MediaCodec>,
    pub(crate) schedule: Schedule,
    /// Tracks left out, in words.
    pub(crate) skipped: Vec<String>,
}

/// Opens `path` for a live stream.
///
/// # Errors
/// [`NodeError::Live`] for a file live mode cannot send.
pub(crate) fn open(path: &std::path::Path) -> Result<Source, NodeError> {
    let file = MediaFile::open(path).map_err(|e| NodeError::Live(e.to_string()))?;
    let codecs = file
        .tracks()
        .iter()
        .filter_map(|t| match t.codec {
            Codec::H264 => t.avc.as_ref().map(|avc| MediaCodec::H264 {
                profile_level_id: avc.profile_level_id_hex(),
            }),
            Codec::Vp8 => Some(MediaCodec::Vp8),
            Codec::Vp9 => Some(MediaCodec::Vp9),
            Codec::Opus => Some(MediaCodec::Opus),
            Codec::Aac => None,
        })
        .collect::<Vec<_>>();
    if codecs.len() != file.tracks().len() {
        return Err(NodeError::Live("an H.264 track without its avcC".into()));
    }
    let schedule = file.schedule(rand::random);
    let skipped = file.skipped().to_vec();
    Ok(Source {
        file,
        codecs,
        schedule,
        skipped,
    })
}

/// A broadcast for a stream's samples.
pub(crate) fn broadcast() -> broadcast::Sender<LiveItem> {
    broadcast::channel(BROADCAST_SAMPLES).0
}

/// How long going live waits for the members present to connect before the stream starts.
const START_WAIT: Duration = Duration::from_secs(5);

/// Reads and broadcasts `source`'s samples at their slots, lap after lap when `looping`;
/// ends with [`LiveItem::End`] after the last sample of a stream that does not loop. Starts
/// once every viewer in `ready` connected (at most [`START_WAIT`]), so those present when the
/// host goes live see it from its first frame.
pub(crate) async fn pace(
    source: Source,
    looping: bool,
    frames: broadcast::Sender<LiveItem>,
    ready: Vec<tokio::sync::oneshot::Receiver<()>>,
    over: tokio::sync::watch::Sender<bool>,
) {
    let waiting = ready.len();
    let started = tokio::time::Instant::now();
    let _ = tokio::time::timeout(START_WAIT, futures_util::future::join_all(ready)).await;
    info!(
        viewers = waiting,
        waited_ms = started.elapsed().as_millis() as u64,
        "live stream starts"
    );
    let clock = TokioClock {
        anchor: tokio::time::Instant::now(),
    };
    let paced = shoal_media::Paced::new(source.file, source.schedule, looping);
    let sent = shoal_media::sender::run(paced, &clock, |slot, sample| {
        // No receiver yet (nobody watching) is no reason to stop.
        let _ = frames.send(LiveItem::Sample {
            track: sample.track,
            rtp_timestamp: slot.rtp_timestamp,
            keyframe: sample.keyframe,
            data: Bytes::from(sample.data),
        });
        std::future::ready(true)
    })
    .await;
    match sent {
        Ok(samples) => info!(samples, "live stream ended"),
        Err(error) => warn!(%error, "live stream stopped"),
    }
    let _ = frames.send(LiveItem::End);
    over.send_replace(true);
}

/// Host side, one viewer: offers a media link carrying `codecs`, and once connected sends what
/// `frames` broadcasts from then on (the live edge: what was broadcast while it connected
/// would arrive as one burst, more than a receiver's queue holds), starting at a keyframe,
/// and says `ready`. Ends when the stream ends (with a `bye`), the viewer's connection fails,
/// or `remote` closes (the viewer left).
pub(crate) async fn serve_viewer(
    setup: LinkSetup,
    codecs: Vec<MediaCodec>,
    frames: broadcast::Receiver<LiveItem>,
    mut over: tokio::sync::watch::Receiver<bool>,
    ready: tokio::sync::oneshot::Sender<()>,
) -> Result<u64, String> {
    let LinkSetup {
        rtc,
        signals,
        remote,
        timeout,
    } = setup;
    let bye = signals.clone();
    let link = Arc::new(
        MediaLink::offer(&rtc, &codecs, signals)
            .await
            .map_err(|e| e.to_string())?,
    );
    let relay = relay(link.clone(), remote);
    // Set by an ICE restart: what was sent while the network was gone is lost, so the
    // stream goes on from the next keyframe.
    let restarted = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let keeper = {
        let link = link.clone();
        let restarted = restarted.clone();
        tokio::spawn(async move {
            let result = link
                .restart_when_disconnected(MAX_ICE_RESTARTS, |n| {
                    warn!(
                        restart = n,
                        "a live viewer's connection dropped; restarting ICE"
                    );
                    restarted.store(true, std::sync::atomic::Ordering::Release);
                })
                .await;
            if let Err(error) = result {
                warn!(%error, "ICE restart for a live viewer");
            }
        })
    };
    let result = async {
        link.connected(timeout).await.map_err(|e| e.to_string())?;
        let mut senders = link.senders().await.map_err(|e| e.to_string())?;
        let mut frames = frames.resubscribe();
        let _ = ready.send(());
        let mut ending = false;
        // A viewer starts, and starts again after lagging, at a keyframe.
        let mut awaiting_keyframe = true;
        let mut sent = 0u64;
        loop {
            // Once the stream is over, what is left in the buffer goes, then the end.
            let item = if ending {
                match frames.try_recv() {
                    Ok(item) => Ok(item),
                    Err(broadcast::error::TryRecvError::Lagged(n)) => {
                        Err(broadcast::error::RecvError::Lagged(n))
                    }
                    Err(_) => Ok(LiveItem::End),
                }
            } else {
                tokio::select! {
                    item = frames.recv() => item,
                    _ = over.wait_for(|o| *o) => {
                        ending = true;
                        continue;
                    }
                    () = link.ended() => return Err("the viewer's connection ended".to_string()),
                }
            };
            match item {
                Ok(LiveItem::Sample {
                    track,
                    rtp_timestamp,
                    keyframe,
                    data,
                }) => {
                    let Some(sender) = senders.get_mut(track) else {
                        continue;
                    };
                    if restarted.swap(false, std::sync::atomic::Ordering::AcqRel) {
                        awaiting_keyframe = true;
                    }
                    if sender.codec().is_video() {
                        if awaiting_keyframe && !keyframe {
                            continue;
                        }
                        awaiting_keyframe = false;
                    }
                    // A send fails while the connection is down; the link's end, not a send
                    // error, ends the viewer (an ICE restart may bring it back).
                    match sender.send_frame(&data, rtp_timestamp).await {
                        Ok(_) => sent += 1,
                        Err(error) => {
                            debug!(%error, "live send failed; on at the next keyframe");
                            awaiting_keyframe = true;
                        }
                    }
                }
                Ok(LiveItem::End) | Err(broadcast::error::RecvError::Closed) => {
                    // The last packets reach the viewer (and their NACKs come back) before
                    // the connection closes.
                    tokio::time::sleep(LINGER).await;
                    let _ = bye.send(OutgoingSignal::Bye).await;
                    return Ok(sent);
                }
                Err(broadcast::error::RecvError::Lagged(skipped)) => {
                    warn!(
                        skipped,
                        "a viewer fell behind the live stream; video resumes at the next keyframe"
                    );
                    awaiting_keyframe = true;
                }
            }
        }
    }
    .await;
    if result.is_err() {
        let _ = bye.send(OutgoingSignal::Bye).await;
    }
    keeper.abort();
    relay.abort();
    link.close().await;
    result
}

/// What a media link needs from the node: its WebRTC settings, the way to the remote
/// (signals out, the remote's signals in) and how long connecting may take.
pub(crate) struct LinkSetup {
    pub(crate) rtc: RtcConfig,
    pub(crate) signals: mpsc::Sender<OutgoingSignal>,
    pub(crate) remote: mpsc::Receiver<Signal>,
    pub(crate) timeout: Duration,
}

/// Applies the remote side's signals to `link` until the route closes.
fn relay(link: Arc<MediaLink>, mut remote: mpsc::Receiver<Signal>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(signal) = remote.recv().await {
            if let Err(error) = link.apply_remote(signal).await {
                debug!(%error, "live signal from the remote");
            }
        }
    })
}

/// Whether an offer's SDP is a live stream's (media sections, no data channel).
pub(crate) fn is_media_offer(sdp: &str) -> bool {
    let has = |kind: &str| sdp.lines().any(|l| l.starts_with(kind));
    (has("m=video ") || has("m=audio ")) && !has("m=application ")
}

/// Member side: answers the host's media offer and forwards every frame of every track to
/// `out` until the connection ends.
pub(crate) async fn watch_host(
    rtc: RtcConfig,
    from: NodeId,
    sdp: String,
    signals: mpsc::Sender<OutgoingSignal>,
    remote: mpsc::Receiver<Signal>,
    out: broadcast::Sender<LiveEvent>,
    timeout: Duration,
) {
    let link = match MediaLink::answer(&rtc, &sdp, signals).await {
        Ok(link) => Arc::new(link),
        Err(error) => {
            let _ = out.send(LiveEvent::Ended {
                from,
                reason: error.to_string(),
            });
            return;
        }
    };
    let relay = relay(link.clone(), remote);
    if let Err(error) = link.connected(timeout).await {
        let _ = out.send(LiveEvent::Ended {
            from,
            reason: error.to_string(),
        });
        relay.abort();
        link.close().await;
        return;
    }
    let _ = out.send(LiveEvent::Started { from });
    // Tracks show up with their first packet; each is read until it ends.
    let taker = {
        let link = link.clone();
        let out = out.clone();
        tokio::spawn(async move {
            let mut readers = tokio::task::JoinSet::new();
            while let Some(mut track) = link.next_track().await {
                let out = out.clone();
                readers.spawn(async move {
                    let codec = track.codec().clone();
                    while let Some(frame) = track.next_frame().await {
                        let _ = out.send(LiveEvent::Frame {
                            from,
                            codec: codec.clone(),
                            rtp_timestamp: frame.rtp_timestamp,
                            data: frame.data,
                            dropped_packets: frame.dropped_packets,
                        });
                    }
                });
            }
            readers.join_all().await;
        })
    };
    link.ended().await;
    taker.abort();
    relay.abort();
    link.close().await;
    let _ = out.send(LiveEvent::Ended {
        from,
        reason: "the stream ended".into(),
    });
}

/// A live stream's frames as fragmented MP4 ([`shoal_media::fmp4`]): what the app's player
/// appends through Media Source Extensions (the media server's `/live` URL,
/// [`crate::NodeHandle::live_url`]) and what `shoal room join --record out.mp4` writes.
#[derive(Debug)]
pub struct LiveMp4 {
    muxer: shoal_media::fmp4::LiveMuxer,
    epoch: std::time::Instant,
}

impl Default for LiveMp4 {
    fn default() -> Self {
        Self::new()
    }
}

impl LiveMp4 {
    /// A muxer that has seen nothing; frames' arrival is timed from now.
    pub fn new() -> Self {
        Self {
            muxer: shoal_media::fmp4::LiveMuxer::new(),
            epoch: std::time::Instant::now(),
        }
    }

    /// Takes one received frame ([`LiveEvent::Frame`]); answers the bytes to append: none
    /// until a video keyframe (and audio, or 300 ms without), then an initialization segment
    /// and a `moof` + `mdat` per frame.
    ///
    /// # Errors
    /// [`NodeError::Live`] when a box cannot be written (a frame over 4 GiB).
    pub fn push(
        &mut self,
        codec: &MediaCodec,
        rtp_timestamp: u32,
        data: &[u8],
    ) -> Result<Vec<u8>, NodeError> {
        let codec = codec_of(codec);
        self.muxer
            .push(shoal_media::fmp4::LiveFrame {
                codec,
                rtp_timestamp,
                data,
                arrived: self.epoch.elapsed(),
            })
            .map_err(|e| NodeError::Live(e.to_string()))
    }

    /// The MIME type with codecs (RFC 6381) once the initialization segment is out, e.g.
    /// `video/mp4; codecs="vp8,opus"`.
    pub fn mime(&self) -> Option<String> {
        self.muxer.mime()
    }

    /// Whether `data` of `codec` is a keyframe (a VP8/VP9 key frame, an H.264 IDR with its
    /// parameter sets): where a stream can be picked up again after a gap.
    pub fn is_keyframe(codec: &MediaCodec, data: &[u8]) -> bool {
        shoal_media::fmp4::video_format(codec_of(codec), data).is_some()
    }
}

/// The media crate's name for a link's codec.
fn codec_of(codec: &MediaCodec) -> Codec {
    match codec {
        MediaCodec::H264 { .. } => Codec::H264,
        MediaCodec::Vp8 => Codec::Vp8,
        MediaCodec::Vp9 => Codec::Vp9,
        MediaCodec::Opus => Codec::Opus,
    }
}
