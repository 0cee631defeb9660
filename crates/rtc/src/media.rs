//! Live media tracks (issue 12; seed 002): a [`MediaLink`] is a peer connection of its own
//! with no data channel, on which a host sends one video and one audio track and a viewer
//! receives them.
//!
//! - **Codecs** (one table on both sides, so payload types agree): VP8 (PT 96, RFC 7741),
//!   VP9 (98), H.264 packetization-mode 1 (RFC 6184) in Baseline (102), Main (104) and High
//!   (106) profiles, Opus (111, RFC 7587), each with NACK; video also with PLI. webrtc-rs
//!   0.21 registers none by default.
//! - **Retransmission**: `register_default_interceptors` answers NACKs from a 1024-packet
//!   history and asks for lost packets every 100 ms on the receiving side.
//! - **The sender writes RTP itself** ([`TrackSender::send_frame`]): webrtc-rs's sample track
//!   advances the timestamp by each sample's duration, which fits neither B-frames (sent in
//!   decode order, stamped in presentation order) nor a schedule computed from one anchor.
//! - **The receiver rebuilds frames** ([`TrackReceiver::next_frame`], [`crate::assemble`]):
//!   in sequence order, each the moment its last packet is in; a frame whose packet is lost
//!   for good is given up and a keyframe asked for (PLI). A depacketiser that panics on a
//!   malformed packet (rtc-rtp 0.21.1's STAP-A parser indexes past the end) costs the frames
//!   being rebuilt, never the node.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rtc::interceptor::Registry;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp::codec::{h264, opus, vp8, vp9};
use rtc::rtp::packetizer::Payloader;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RtpCodecKind,
};
use tokio::sync::mpsc;
use tracing::{debug, warn};
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::RTCPeerConnectionState;
use webrtc::rtp_transceiver::RtpSender;

use crate::assemble::{Assembler, BoxedDepacketizer};
use crate::link::{PeerLink, Role};
use crate::{OutgoingSignal, RtcConfig, RtcError};

/// Remote tracks a media link keeps until they are taken (one video, one audio, and room).
pub(crate) const MAX_REMOTE_TRACKS: usize = 4;

/// Payload bytes per RTP packet: webrtc-rs's 1200-byte sample MTU less the 12-byte RTP
/// header, which fits any path's MTU with IP, UDP, SRTP and DTLS overhead.
const RTP_PAYLOAD_BYTES: usize = 1188;

/// Packets a receiver waits past a missing one before it gives the frame up: at 2 Mbit/s
/// about 1 s of video, time for a NACK round trip (asked every 100 ms) on most paths.
const MAX_LATE_PACKETS: u16 = 256;

/// A codec a media link carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaCodec {
    /// H.264, packetization-mode 1, with the stream's `profile-level-id` (six hex digits,
    /// RFC 6184 §8.1).
    H264 {
        /// `profile-level-id`, e.g. `"64001f"`.
        profile_level_id: String,
    },
    /// VP8.
    Vp8,
    /// VP9.
    Vp9,
    /// Opus, 48 kHz, stereo in SDP (RFC 7587 §7).
    Opus,
}

impl MediaCodec {
    /// Video or audio.
    pub fn is_video(&self) -> bool {
        !matches!(self, Self::Opus)
    }

    fn kind(&self) -> RtpCodecKind {
        if self.is_video() {
            RtpCodecKind::Video
        } else {
            RtpCodecKind::Audio
        }
    }

    /// The codec as SDP describes it.
    fn rtp_codec(&self) -> RTCRtpCodec {
        let (mime_type, clock_rate, channels, sdp_fmtp_line) = match self {
            Self::H264 { profile_level_id } => (
                "video/H264",
                90_000,
                0,
                format!(
                    "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id={profile_level_id}"
                ),
            ),
            Self::Vp8 => ("video/VP8", 90_000, 0, String::new()),
            Self::Vp9 => ("video/VP9", 90_000, 0, "profile-id=0".to_owned()),
            Self::Opus => (
                "audio/opus",
                48_000,
                2,
                "minptime=10;useinbandfec=1".to_owned(),
            ),
        };
        RTCRtpCodec {
            mime_type: mime_type.to_owned(),
            clock_rate,
            channels,
            sdp_fmtp_line,
            rtcp_feedback: Vec::new(),
        }
    }

    /// The codec a remote track announced, from its MIME type and fmtp line.
    fn from_rtp(codec: &RTCRtpCodec) -> Option<Self> {
        let mime = codec.mime_type.to_ascii_lowercase();
        match mime.as_str() {
            "video/vp8" => Some(Self::Vp8),
            "video/vp9" => Some(Self::Vp9),
            "audio/opus" => Some(Self::Opus),
            "video/h264" => {
                let profile_level_id = codec
                    .sdp_fmtp_line
                    .split(';')
                    .find_map(|p| p.trim().strip_prefix("profile-level-id="))
                    .unwrap_or("42e01f")
                    .to_owned();
                Some(Self::H264 { profile_level_id })
            }
            _ => None,
        }
    }
}

/// What a media link is built with: the codecs and the interceptors.
pub(crate) struct MediaSetup {
    pub(crate) engine: MediaEngine,
    pub(crate) interceptors: Registry,
}

/// The codec table of every media link, and NACK/RTX, RTCP reports.
fn media_setup() -> Result<MediaSetup, RtcError> {
    let mut engine = MediaEngine::default();
    let table = [
        (MediaCodec::Vp8, 96),
        (MediaCodec::Vp9, 98),
        (
            MediaCodec::H264 {
                profile_level_id: "42e01f".into(),
            },
            102,
        ),
        (
            MediaCodec::H264 {
                profile_level_id: "4d001f".into(),
            },
            104,
        ),
        (
            MediaCodec::H264 {
                profile_level_id: "64001f".into(),
            },
            106,
        ),
        (MediaCodec::Opus, 111),
    ];
    for (codec, payload_type) in table {
        let kind = codec.kind();
        engine
            .register_codec(
                RTCRtpCodecParameters {
                    rtp_codec: codec.rtp_codec(),
                    payload_type,
                },
                kind,
            )
            .map_err(|error| RtcError::webrtc("register codec", error))?;
    }
    // Feedback applies to the codecs registered so far: video gets NACK and PLI from the
    // default interceptors; audio's NACK is added here.
    engine.register_feedback(
        RTCPFeedback {
            typ: "nack".into(),
            parameter: String::new(),
        },
        RtpCodecKind::Audio,
    );
    let interceptors = register_default_interceptors(Registry::new(), &mut engine)
        .map_err(|error| RtcError::webrtc("register interceptors", error))?;
    Ok(MediaSetup {
        engine,
        interceptors,
    })
}

/// A peer connection carrying live media tracks and no data channel. The host offers with
/// its tracks ([`MediaLink::offer`]), the viewer answers ([`MediaLink::answer`]); signals go
/// through [`MediaLink::apply_remote`] as for a data link.
pub struct MediaLink {
    link: PeerLink,
    /// The host's tracks, in the order given to `offer`.
    local: Vec<LocalTrack>,
}

struct LocalTrack {
    track: Arc<TrackLocalStaticRTP>,
    sender: Arc<dyn RtpSender>,
    codec: MediaCodec,
    ssrc: u32,
}

impl std::fmt::Debug for MediaLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaLink")
            .field("link", &self.link)
            .field("tracks", &self.local.len())
            .finish()
    }
}

impl MediaLink {
    /// Host: a peer connection sending one track per codec in `codecs` (at most one video and
    /// one audio), then the offer and the local candidates through `signals`.
    ///
    /// # Errors
    /// [`RtcError::InvalidConfig`], [`RtcError::SignalingClosed`], [`RtcError::Webrtc`].
    pub async fn offer(
        config: &RtcConfig,
        codecs: &[MediaCodec],
        signals: mpsc::Sender<OutgoingSignal>,
    ) -> Result<Self, RtcError> {
        let (link, candidates) =
            PeerLink::build(config, Role::Offerer, Some(media_setup()?)).await?;
        let mut local = Vec::new();
        for (i, codec) in codecs.iter().enumerate() {
            let ssrc = rand::random::<u32>();
            let id = if codec.is_video() { "video" } else { "audio" };
            let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
                "shoal-live".to_owned(),
                format!("{id}-{i}"),
                format!("shoal {id}"),
                codec.kind(),
                vec![RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters {
                        ssrc: Some(ssrc),
                        ..Default::default()
                    },
                    codec: codec.rtp_codec(),
                    ..Default::default()
                }],
            )));
            let sender = link
                .pc
                .add_track(track.clone() as Arc<dyn TrackLocal>)
                .await
                .map_err(|error| RtcError::webrtc("add_track", error))?;
            local.push(LocalTrack {
                track,
                sender,
                codec: codec.clone(),
                ssrc,
            });
        }
        link.send_offer("live", signals, candidates).await?;
        Ok(Self { link, local })
    }

    /// Viewer: applies the host's offer and sends the answer and the local candidates; the
    /// host's tracks arrive with [`MediaLink::next_track`].
    ///
    /// # Errors
    /// [`RtcError::InvalidSdp`], [`RtcError::InvalidConfig`], [`RtcError::SignalingClosed`],
    /// [`RtcError::Webrtc`].
    pub async fn answer(
        config: &RtcConfig,
        offer_sdp: &str,
        signals: mpsc::Sender<OutgoingSignal>,
    ) -> Result<Self, RtcError> {
        let link = PeerLink::answer_with(config, offer_sdp, signals, Some(media_setup()?)).await?;
        Ok(Self {
            link,
            local: Vec::new(),
        })
    }

    /// Applies a signal from the remote side, as [`PeerLink::apply_remote`].
    ///
    /// # Errors
    /// As [`PeerLink::apply_remote`].
    pub async fn apply_remote(&self, signal: shoal_protocol::Signal) -> Result<(), RtcError> {
        self.link.apply_remote(signal).await
    }

    /// Waits until the connection is up (ICE and DTLS done): packets written before are lost.
    ///
    /// # Errors
    /// [`RtcError::Timeout`], [`RtcError::ConnectionFailed`], [`RtcError::Closed`].
    pub async fn connected(&self, timeout: Duration) -> Result<(), RtcError> {
        let mut state = self.link.shared.connection_state();
        let waited = tokio::time::timeout(
            timeout,
            state.wait_for(|s| {
                matches!(
                    s,
                    RTCPeerConnectionState::Connected
                        | RTCPeerConnectionState::Failed
                        | RTCPeerConnectionState::Closed
                )
            }),
        )
        .await;
        match waited {
            Err(_) => Err(RtcError::Timeout {
                timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            }),
            Ok(Err(_)) => Err(RtcError::Closed),
            Ok(Ok(s)) => match *s {
                RTCPeerConnectionState::Connected => Ok(()),
                RTCPeerConnectionState::Failed => Err(RtcError::ConnectionFailed),
                _ => Err(RtcError::Closed),
            },
        }
    }

    /// The host's senders, one per codec given to `offer`, with the payload types the answer
    /// chose. Call once connected.
    ///
    /// # Errors
    /// [`RtcError::Webrtc`] when the answer left a track without a codec.
    pub async fn senders(&self) -> Result<Vec<TrackSender>, RtcError> {
        let mut out = Vec::new();
        for local in &self.local {
            let parameters = local
                .sender
                .get_parameters()
                .await
                .map_err(|error| RtcError::webrtc("get_parameters", error))?;
            let payload_type = parameters
                .rtp_parameters
                .codecs
                .first()
                .map(|c| c.payload_type)
                .ok_or(RtcError::UnexpectedSignal {
                    signal: "answer",
                    reason: "the viewer accepted no codec for a track",
                })?;
            out.push(TrackSender {
                track: local.track.clone(),
                payloader: payloader(&local.codec),
                codec: local.codec.clone(),
                ssrc: local.ssrc,
                payload_type,
                sequence: rand::random::<u16>(),
            });
        }
        Ok(out)
    }

    /// The viewer's next remote track; `None` once the connection is gone.
    pub async fn next_track(&self) -> Option<TrackReceiver> {
        let tracks = self.link.tracks.as_ref()?;
        loop {
            let track = tracks.lock().await.recv().await?;
            match TrackReceiver::new(track).await {
                Some(receiver) => return Some(receiver),
                None => warn!("ignoring a remote track in a codec live mode does not play"),
            }
        }
    }

    /// Host side: keeps the link through a network change (seed 002): each time the
    /// connection turns disconnected (no packet for `RtcConfig::ice_disconnected_timeout`),
    /// restarts ICE ([`crate::PeerLink::restart_ice`]: a new offer through the signaling
    /// server, new candidates) and waits until it is connected again or ends; at most
    /// `max_restarts` times. `on_restart` hears each restart's number (from 1) before it
    /// starts. Returns when the link ends, or after a restart fails to start (its error).
    ///
    /// # Errors
    /// What [`crate::PeerLink::restart_ice`] returns.
    pub async fn restart_when_disconnected(
        &self,
        max_restarts: u32,
        mut on_restart: impl FnMut(u32),
    ) -> Result<(), RtcError> {
        let mut state = self.link.shared.connection_state();
        let mut shutdown = self.link.shared.shutdown.subscribe();
        let mut restarts = 0;
        loop {
            tokio::select! {
                _ = shutdown.wait_for(|closed| *closed) => return Ok(()),
                seen = state.wait_for(|s| {
                    matches!(
                        s,
                        RTCPeerConnectionState::Disconnected
                            | RTCPeerConnectionState::Failed
                            | RTCPeerConnectionState::Closed
                    )
                }) => if seen.is_err() { return Ok(()) },
            }
            if *state.borrow() != RTCPeerConnectionState::Disconnected || restarts >= max_restarts {
                return Ok(());
            }
            restarts += 1;
            on_restart(restarts);
            self.link.restart_ice().await?;
            tokio::select! {
                _ = shutdown.wait_for(|closed| *closed) => return Ok(()),
                seen = state.wait_for(|s| {
                    matches!(
                        s,
                        RTCPeerConnectionState::Connected
                            | RTCPeerConnectionState::Failed
                            | RTCPeerConnectionState::Closed
                    )
                }) => if seen.is_err() { return Ok(()) },
            }
        }
    }

    /// Waits until the connection is closed (here, or by the remote's `bye`) or failed.
    pub async fn ended(&self) {
        let mut state = self.link.shared.connection_state();
        let mut shutdown = self.link.shared.shutdown.subscribe();
        tokio::select! {
            _ = state.wait_for(|s| {
                matches!(
                    s,
                    RTCPeerConnectionState::Closed | RTCPeerConnectionState::Failed
                )
            }) => {}
            _ = shutdown.wait_for(|closed| *closed) => {}
        }
    }

    /// Closes the connection (idempotent).
    pub async fn close(&self) {
        self.link.close().await;
    }
}

fn payloader(codec: &MediaCodec) -> Box<dyn Payloader + Send + Sync> {
    match codec {
        MediaCodec::H264 { .. } => Box::<h264::H264Payloader>::default(),
        MediaCodec::Vp8 => {
            let mut payloader = vp8::Vp8Payloader::default();
            payloader.enable_picture_id = true;
            Box::new(payloader)
        }
        MediaCodec::Vp9 => Box::<vp9::Vp9Payloader>::default(),
        MediaCodec::Opus => Box::new(opus::OpusPayloader),
    }
}

/// Sends one track's frames as RTP packets.
pub struct TrackSender {
    track: Arc<TrackLocalStaticRTP>,
    payloader: Box<dyn Payloader + Send + Sync>,
    codec: MediaCodec,
    ssrc: u32,
    payload_type: u8,
    /// The next packet's sequence number (random start, RFC 3550 §5.1).
    sequence: u16,
}

impl std::fmt::Debug for TrackSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackSender")
            .field("codec", &self.codec)
            .field("ssrc", &self.ssrc)
            .field("payload_type", &self.payload_type)
            .finish_non_exhaustive()
    }
}

impl TrackSender {
    /// The codec.
    pub fn codec(&self) -> &MediaCodec {
        &self.codec
    }

    /// Sends one frame (an H.264 access unit in Annex-B form, a VP8 or VP9 frame, an Opus
    /// packet) stamped `rtp_timestamp`, split into packets of at most 1188 payload bytes; the
    /// last packet of a video frame carries the marker bit (RFC 6184 §5.1, RFC 7741 §4.1).
    /// Answers the packets sent.
    ///
    /// # Errors
    /// [`RtcError::Webrtc`] when the payloader refuses the frame or the track is gone.
    pub async fn send_frame(
        &mut self,
        frame: &[u8],
        rtp_timestamp: u32,
    ) -> Result<usize, RtcError> {
        let payloads = self
            .payloader
            .payload(RTP_PAYLOAD_BYTES, &Bytes::copy_from_slice(frame))
            .map_err(|error| RtcError::webrtc("packetise a frame", error))?;
        let count = payloads.len();
        for (i, payload) in payloads.into_iter().enumerate() {
            let packet = rtc::rtp::packet::Packet {
                header: rtc::rtp::header::Header {
                    version: 2,
                    marker: self.codec.is_video() && i + 1 == count,
                    payload_type: self.payload_type,
                    sequence_number: self.sequence,
                    timestamp: rtp_timestamp,
                    ssrc: self.ssrc,
                    ..Default::default()
                },
                payload,
            };
            self.sequence = self.sequence.wrapping_add(1);
            self.track
                .write_rtp(packet)
                .await
                .map_err(|error| RtcError::webrtc("write_rtp", error))?;
        }
        Ok(count)
    }
}

/// A frame rebuilt from a remote track's packets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedFrame {
    /// H.264 as an Annex-B access unit, VP8/VP9 frames and Opus packets as sent.
    pub data: Bytes,
    /// The RTP timestamp it was sent with.
    pub rtp_timestamp: u32,
    /// Packets given up on before this frame (lost, or a frame that could not be rebuilt).
    pub dropped_packets: u16,
}

/// An assembler for `codec`'s frames (H.264 out in Annex-B form: `is_avc` false).
fn assembler(codec: &MediaCodec) -> Assembler {
    let (new, video): (fn() -> BoxedDepacketizer, bool) = match codec {
        MediaCodec::H264 { .. } => (|| Box::<h264::H264Packet>::default(), true),
        MediaCodec::Vp8 => (|| Box::<vp8::Vp8Packet>::default(), true),
        MediaCodec::Vp9 => (|| Box::<vp9::Vp9Packet>::default(), true),
        MediaCodec::Opus => (|| Box::new(opus::OpusPacket), false),
    };
    Assembler::new(new, video, MAX_LATE_PACKETS)
}

/// Receives one remote track's frames.
pub struct TrackReceiver {
    track: Arc<dyn TrackRemote>,
    codec: MediaCodec,
    builder: Assembler,
    media_ssrc: u32,
}

impl std::fmt::Debug for TrackReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackReceiver")
            .field("codec", &self.codec)
            .field("ssrc", &self.media_ssrc)
            .finish_non_exhaustive()
    }
}

impl TrackReceiver {
    async fn new(track: Arc<dyn TrackRemote>) -> Option<Self> {
        let ssrc = track.ssrcs().await.first().copied()?;
        let codec = MediaCodec::from_rtp(&track.codec(ssrc).await?)?;
        debug!(?codec, ssrc, "remote track");
        Some(Self {
            builder: assembler(&codec),
            track,
            codec,
            media_ssrc: ssrc,
        })
    }

    /// The codec.
    pub fn codec(&self) -> &MediaCodec {
        &self.codec
    }

    /// The next whole frame, the moment its last packet is in; `None` once the track ended.
    /// A video frame given up (a packet lost for good) makes it ask the host for a keyframe.
    pub async fn next_frame(&mut self) -> Option<ReceivedFrame> {
        loop {
            if let Some(frame) = self.pop() {
                return Some(frame);
            }
            if self.builder.take_keyframe_needed()
                && let Err(error) = self.request_keyframe().await
            {
                debug!(%error, "keyframe request");
            }
            let event = self.track.poll().await;
            match event {
                Some(TrackRemoteEvent::OnRtpPacket(packet)) => self.builder.push(packet),
                Some(TrackRemoteEvent::OnEnded) | None => {
                    let (held, next) = self.builder.held();
                    if held > 0 {
                        debug!(held, ?next, codec = ?self.codec, "track ended with packets of unfinished frames");
                    }
                    return None;
                }
                Some(_) => {}
            }
        }
    }

    /// Pops a finished frame; a depacketiser panic on a malformed packet resets the builder.
    fn pop(&mut self) -> Option<ReceivedFrame> {
        let popped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.builder.pop()));
        match popped {
            Ok(frame) => frame.map(|f| ReceivedFrame {
                data: f.data,
                rtp_timestamp: f.rtp_timestamp,
                dropped_packets: f.dropped_packets,
            }),
            Err(_) => {
                warn!(codec = ?self.codec, "a malformed packet broke the depacketiser; frames dropped");
                self.builder = assembler(&self.codec);
                None
            }
        }
    }

    /// Asks the host for a keyframe (RTCP PLI, RFC 4585 §6.3.1): after a loss, the frames
    /// until the next keyframe cannot be decoded.
    ///
    /// # Errors
    /// [`RtcError::Webrtc`] once the connection is gone.
    pub async fn request_keyframe(&self) -> Result<(), RtcError> {
        self.track
            .write_rtcp(vec![Box::new(PictureLossIndication {
                sender_ssrc: 0,
                media_ssrc: self.media_ssrc,
            })])
            .await
            .map_err(|error| RtcError::webrtc("write_rtcp", error))
    }
}
