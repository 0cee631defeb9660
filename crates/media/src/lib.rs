//! Live media for Shoal (issue 12): read a video file's samples without re-encoding (MP4 with
//! H.264, WebM with VP8/VP9 and Opus), schedule them from one clock anchor with exact RTP
//! timestamps, and queue them per viewer within a bound. No network here: `shoal-rtc` sends
//! what this crate schedules.

#![deny(missing_docs)]

pub mod demux;
pub mod fmp4;
pub mod h264;
pub mod pacing;
pub mod queue;
pub mod sender;

pub use demux::{MediaError, MediaFile, Sample, Track};
pub use pacing::{RtpClock, Schedule, Slot, TrackTime};
pub use queue::{Dropped, Queued, SendQueue};
pub use sender::{Clock, Paced, SampleSource, TokioClock};

/// Video or audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A video track.
    Video,
    /// An audio track.
    Audio,
}

/// The codecs live mode passes through, with their RTP payload formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// H.264 (RFC 6184, packetization-mode 1).
    H264,
    /// VP8 (RFC 7741).
    Vp8,
    /// VP9 (RFC 9628).
    Vp9,
    /// Opus (RFC 7587).
    Opus,
    /// AAC: MP4's usual audio. WebRTC has no payload format for it; live mode sends such a
    /// file's video only and says so.
    Aac,
}

impl Codec {
    /// Video or audio.
    pub fn kind(self) -> Kind {
        match self {
            Self::H264 | Self::Vp8 | Self::Vp9 => Kind::Video,
            Self::Opus | Self::Aac => Kind::Audio,
        }
    }

    /// The RTP clock rate in Hz: 90 000 for video (RFC 6184 §5.1, RFC 7741 §4.1), 48 000 for
    /// Opus whatever the input rate (RFC 7587 §4.1).
    pub fn rtp_clock_rate(self) -> u32 {
        match self {
            Self::H264 | Self::Vp8 | Self::Vp9 => 90_000,
            Self::Opus => 48_000,
            Self::Aac => 90_000,
        }
    }

    /// The MIME type in SDP's terms (`video/H264`...), `None` for AAC.
    pub fn rtp_mime(self) -> Option<&'static str> {
        match self {
            Self::H264 => Some("video/H264"),
            Self::Vp8 => Some("video/VP8"),
            Self::Vp9 => Some("video/VP9"),
            Self::Opus => Some("audio/opus"),
            Self::Aac => None,
        }
    }
}
