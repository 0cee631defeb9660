//! The only crate in Shoal that names webrtc-rs types: peer connections, SDP offer/answer,
//! trickle ICE, data channels, backpressure.
//!
//! # API boundary
//!
//! Everything public here is a Shoal type: SDP travels as `String`, candidates as
//! [`shoal_protocol::IceCandidateInit`], signals as [`OutgoingSignal`] out and
//! [`shoal_protocol::Signal`] in, messages as [`bytes::Bytes`], failures as [`RtcError`]. No
//! webrtc-rs type crosses it, so the pinned `webrtc = "=0.21.1"` can move without touching
//! the rest of Shoal.
//!
//! # Shape
//!
//! One [`PeerLink`] is one `RTCPeerConnection` carrying exactly one ordered, reliable data
//! channel (RFC 8831), which [`PeerLink::channel`] hands out as a [`DataLink`]:
//!
//! ```text
//! offerer                                    answerer
//! PeerLink::offer(cfg, label, tx) ──Offer──▶ PeerLink::answer(cfg, sdp, tx)
//!        apply_remote(Answer)    ◀──Answer──
//!        apply_remote(Candidate) ◀─Candidate─▶ apply_remote(Candidate)   (trickle, RFC 8838)
//! channel(timeout) -> DataLink               channel(timeout) -> DataLink
//! ```
//!
//! # Invariants
//!
//! - Both sides advertise `a=max-message-size:262144` (RFC 8841, [`MAX_MESSAGE_BYTES`]).
//! - Every UDP socket gets [`SOCKET_BUFFER_BYTES`] of kernel buffer each way.
//! - A sender holds at most `high_watermark_bytes` + one message of unacknowledged data
//!   ([`DataLink::send`]); a receiver holds a bounded number of messages and, when its
//!   consumer is slow, stops reading so SCTP's window pushes back on the remote sender.
//! - Callbacks from the webrtc-rs driver only forward into channels or spawn; they never wait.
#![deny(missing_docs)]

mod assemble;
mod data;
mod link;
pub mod log;
mod media;
mod runtime;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

pub use data::DataLink;
pub use link::PeerLink;
pub use media::{MediaCodec, MediaLink, ReceivedFrame, TrackReceiver, TrackSender};

/// The largest data-channel message Shoal sends or accepts, in bytes (256 KiB). Both sides
/// advertise it as `a=max-message-size` (RFC 8841 §6); the negotiated value is the smaller of
/// the two sides. It is also webrtc-rs 0.21's hard ceiling: a 262 145-byte message fails even
/// when both sides allow more, so a frame header plus a full 256 KiB piece does not fit in one
/// message.
pub const MAX_MESSAGE_BYTES: usize = 262_144;

/// The max message size a peer that sends no `a=max-message-size` attribute is taken to
/// accept, in bytes (RFC 8841 §6.1: 64 KiB).
pub const DEFAULT_REMOTE_MESSAGE_BYTES: usize = 65_536;

/// `SO_RCVBUF` and `SO_SNDBUF` requested for every UDP socket, in bytes (4 MiB). With the
/// Linux default of about 208 KiB, loopback transfers overflow the receive buffer and run at
/// 26-29 MiB/s instead of about 70 (docs/ARCHITECTURE.md "Measured facts"). Linux caps the value at
/// `net.core.rmem_max`/`wmem_max`.
pub const SOCKET_BUFFER_BYTES: usize = 4 << 20;

/// The unit the default watermarks are counted in, in bytes: one piece (256 KiB), the size of
/// the messages Shoal sends in bulk.
pub const WATERMARK_UNIT_BYTES: usize = 262_144;

/// Default [`RtcConfig::high_watermark_bytes`]: 16 pieces (4 MiB).
pub const DEFAULT_HIGH_WATERMARK_BYTES: usize = 16 * WATERMARK_UNIT_BYTES;

/// Default [`RtcConfig::low_watermark_bytes`]: 4 pieces (1 MiB).
pub const DEFAULT_LOW_WATERMARK_BYTES: usize = 4 * WATERMARK_UNIT_BYTES;

/// How peer connections are built.
///
/// `Default` binds every IPv4 interface (`0.0.0.0:0`) and uses no STUN/TURN server;
/// [`RtcConfig::loopback`] binds `127.0.0.1:0` for tests on one host.
#[derive(Clone, Debug)]
pub struct RtcConfig {
    /// STUN and TURN servers for ICE (RFC 8445), usually from the signaling server's
    /// `welcome`. webrtc-rs 0.21 uses only `stun:` and `turn:` over UDP; `stuns:`, `turns:`
    /// and `?transport=tcp` URLs are skipped with a warning.
    pub ice_servers: Vec<shoal_protocol::IceServer>,
    /// Local UDP addresses to bind, one socket each; port 0 picks a free port. A wildcard
    /// (`0.0.0.0:0`) means every local interface *except loopback and link-local*, so tests
    /// on one host bind `127.0.0.1:0`. Must not be empty. Only IPv4 candidates are used.
    pub bind_addrs: Vec<SocketAddr>,
    /// Outstanding bytes above which [`DataLink::send`] stops and waits (W3C
    /// `RTCDataChannel.bufferedAmount` flow control). Must be ≥ `low_watermark_bytes`.
    pub high_watermark_bytes: usize,
    /// Outstanding bytes at or below which a waiting [`DataLink::send`] resumes; also set as
    /// the channel's `bufferedAmountLowThreshold`.
    pub low_watermark_bytes: usize,
    /// How long the selected ICE pair may stay silent before the connection counts as
    /// disconnected (RFC 7675 consent freshness). Keepalives go out every third of it (at
    /// most every 2 s). Zero disables the transition.
    pub ice_disconnected_timeout: Duration,
    /// How long a *disconnected* connection may stay silent before it fails for good; a
    /// vanished peer is therefore detected after `ice_disconnected_timeout +
    /// ice_failed_timeout` (13 s by default). This is webrtc-rs's meaning of the setting.
    pub ice_failed_timeout: Duration,
}

impl RtcConfig {
    /// The configuration for tests and benchmarks on one host: binds `127.0.0.1:0`, no
    /// STUN/TURN servers, default watermarks and timeouts.
    pub fn loopback() -> Self {
        Self {
            bind_addrs: vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 0))],
            ..Self::default()
        }
    }

    /// What the front ends run with: every interface (`0.0.0.0:0`, which webrtc-rs expands to
    /// each interface but loopback) and `127.0.0.1:0`, so two nodes on one machine also meet.
    pub fn every_interface() -> Self {
        Self {
            bind_addrs: vec![
                SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
                SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            ],
            ..Self::default()
        }
    }

    /// Checks the fields that can be wrong on their own.
    fn validate(&self) -> Result<(), RtcError> {
        if self.bind_addrs.is_empty() {
            return Err(RtcError::InvalidConfig(
                "bind_addrs is empty; bind at least one UDP address".into(),
            ));
        }
        if self.low_watermark_bytes > self.high_watermark_bytes {
            return Err(RtcError::InvalidConfig(format!(
                "low_watermark_bytes ({}) is above high_watermark_bytes ({})",
                self.low_watermark_bytes, self.high_watermark_bytes
            )));
        }
        if u32::try_from(self.low_watermark_bytes).is_err() {
            return Err(RtcError::InvalidConfig(format!(
                "low_watermark_bytes ({}) does not fit the 32-bit bufferedAmountLowThreshold",
                self.low_watermark_bytes
            )));
        }
        Ok(())
    }
}

/// Checks one STUN/TURN server entry the way a peer connection will use it: each URL must
/// parse (RFC 7064 `stun:host[:port]`, RFC 7065 `turn:host[:port][?transport=udp]`), TURN
/// needs a user name and a credential (W3C WebRTC "set the configuration", step 11.3.2), and
/// only `stun:` and UDP `turn:` are usable with webrtc-rs 0.21.
///
/// # Errors
/// A sentence for the user (capitalised) naming the URL and what is wrong with it.
pub fn check_ice_server(server: &shoal_protocol::IceServer) -> Result<(), String> {
    if server.urls.is_empty() {
        return Err("An ICE server needs at least one URL".into());
    }
    for url in &server.urls {
        let one = webrtc::peer_connection::RTCIceServer {
            urls: vec![url.clone()],
            username: server.username.clone().unwrap_or_default(),
            credential: server.credential.clone().unwrap_or_default(),
        };
        let parsed = match one.urls() {
            Ok(mut parsed) if parsed.len() == 1 => parsed.remove(0),
            Ok(_) => return Err(format!("“{url}” is not one STUN or TURN URL")),
            Err(webrtc::error::Error::ErrNoTurnCredentials) => {
                return Err(format!(
                    "The TURN server “{url}” needs a user name and a credential"
                ));
            }
            Err(e) => return Err(format!("“{url}” is not a usable STUN or TURN URL ({e})")),
        };
        if parsed.host.is_empty() {
            return Err(format!("“{url}” names no host"));
        }
        let scheme = parsed.scheme.to_string();
        if scheme != "stun" && scheme != "turn" {
            return Err(format!(
                "“{url}”: {scheme}: (over TLS) is not supported yet; use stun: or turn:"
            ));
        }
        if parsed.proto.to_string() != "udp" {
            return Err(format!(
                "“{url}”: TURN over {} is not supported yet; use UDP (no ?transport=)",
                parsed.proto
            ));
        }
    }
    Ok(())
}

impl Default for RtcConfig {
    fn default() -> Self {
        Self {
            ice_servers: Vec::new(),
            bind_addrs: vec![SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))],
            high_watermark_bytes: DEFAULT_HIGH_WATERMARK_BYTES,
            low_watermark_bytes: DEFAULT_LOW_WATERMARK_BYTES,
            ice_disconnected_timeout: Duration::from_secs(3),
            ice_failed_timeout: Duration::from_secs(10),
        }
    }
}

/// A message for the remote side, to be carried by signaling. Maps one to one onto
/// [`shoal_protocol::Signal`] (see [`OutgoingSignal::into_signal`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutgoingSignal {
    /// The SDP offer (RFC 3264, JSEP RFC 8829), sent once by [`PeerLink::offer`].
    Offer(String),
    /// The SDP answer, sent once by [`PeerLink::answer`].
    Answer(String),
    /// One trickled local ICE candidate (RFC 8838). After the last one a candidate with an
    /// empty `candidate` string marks the end of candidates (RFC 8838 §8.2).
    IceCandidate(shoal_protocol::IceCandidateInit),
    /// This side closed the connection (sent by a live stream's host at its end, so the
    /// viewer closes at once instead of after the ICE timeouts).
    Bye,
}

impl OutgoingSignal {
    /// The protocol message that carries this signal.
    pub fn into_signal(self) -> shoal_protocol::Signal {
        match self {
            Self::Offer(sdp) => shoal_protocol::Signal::Offer { sdp },
            Self::Answer(sdp) => shoal_protocol::Signal::Answer { sdp },
            Self::IceCandidate(candidate) => shoal_protocol::Signal::IceCandidate { candidate },
            Self::Bye => shoal_protocol::Signal::Bye,
        }
    }
}

impl From<OutgoingSignal> for shoal_protocol::Signal {
    fn from(signal: OutgoingSignal) -> Self {
        signal.into_signal()
    }
}

/// How the data of a connection travels: the ICE candidate type (RFC 8445 §5.1.1) of the
/// selected candidate pair.
///
/// It is the local candidate's type, except that it is [`CandidateType::Relay`] when either
/// end is relayed: a TURN server then carries every byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CandidateType {
    /// A local interface address: a direct path.
    Host,
    /// A server-reflexive address learned from STUN: a path through a NAT.
    Srflx,
    /// A peer-reflexive address learned during connectivity checks.
    Prflx,
    /// A TURN relay carries the data.
    Relay,
    /// No pair is selected yet, or the connection is gone.
    Unknown,
}

impl CandidateType {
    /// The W3C / RFC 8445 name: `host`, `srflx`, `prflx`, `relay`, or `unknown`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Host => "host",
            Self::Srflx => "srflx",
            Self::Prflx => "prflx",
            Self::Relay => "relay",
            Self::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for CandidateType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an operation of this crate failed. No webrtc-rs type appears in it; a library failure
/// is reported as [`RtcError::Webrtc`] with the operation and the library's message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RtcError {
    /// [`RtcConfig`] is unusable; the sentence says which field.
    #[error("invalid rtc configuration: {0}")]
    InvalidConfig(String),
    /// A message is larger than the negotiated max message size (RFC 8841); nothing was sent.
    #[error(
        "message of {len_bytes} bytes exceeds the negotiated max message size of {max_bytes} bytes"
    )]
    MessageTooLarge {
        /// Length of the refused message, in bytes.
        len_bytes: usize,
        /// [`DataLink::max_message_size`], in bytes.
        max_bytes: usize,
    },
    /// The remote SDP could not be parsed or applied.
    #[error("invalid remote session description: {0}")]
    InvalidSdp(String),
    /// The remote ICE candidate could not be parsed or applied.
    #[error("invalid remote ICE candidate: {0}")]
    InvalidCandidate(String),
    /// A signal that this side cannot take in its role or state (an answer on the answering
    /// side, a second answer to one offer, an offer on the offering side; a new offer on the
    /// answering side is an ICE restart).
    #[error("unexpected {signal} signal: {reason}")]
    UnexpectedSignal {
        /// The signal's kind: `offer`, `answer`, `ice_candidate`.
        signal: &'static str,
        /// Why it does not fit.
        reason: &'static str,
    },
    /// More remote candidates arrived before the remote description than are kept.
    #[error("more than {limit} ICE candidates arrived before the remote description")]
    TooManyEarlyCandidates {
        /// The number kept.
        limit: usize,
    },
    /// The receiver of the [`OutgoingSignal`] channel was dropped, so the offer or answer could
    /// not be sent.
    #[error("the signaling channel is closed")]
    SignalingClosed,
    /// The data channel did not open in time.
    #[error("the data channel did not open within {timeout_ms} ms")]
    Timeout {
        /// The time waited, in milliseconds.
        timeout_ms: u64,
    },
    /// ICE or DTLS failed: the peer is unreachable or vanished.
    #[error("the peer connection failed (ICE or DTLS)")]
    ConnectionFailed,
    /// The peer connection or the data channel is closed, by either side.
    #[error("the peer connection or its data channel is closed")]
    Closed,
    /// webrtc-rs refused an operation.
    #[error("webrtc {operation} failed: {message}")]
    Webrtc {
        /// What this crate was doing (`create_offer`, `send`, ...).
        operation: &'static str,
        /// The library's error, as text.
        message: String,
    },
}

impl RtcError {
    /// Wraps a webrtc-rs error without exposing its type.
    pub(crate) fn webrtc(operation: &'static str, error: impl std::fmt::Display) -> Self {
        Self::Webrtc {
            operation,
            message: error.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ice_servers_are_checked_as_a_peer_connection_uses_them() {
        let server = |url: &str, user: Option<&str>| shoal_protocol::IceServer {
            urls: vec![url.to_owned()],
            username: user.map(str::to_owned),
            credential: user.map(|_| "secret".to_owned()),
        };
        assert_eq!(
            check_ice_server(&server("stun:stun.example.org:3478", None)),
            Ok(())
        );
        assert_eq!(
            check_ice_server(&server("turn:10.0.0.1:3478", Some("u"))),
            Ok(())
        );
        let said =
            |url: &str, user: Option<&str>| check_ice_server(&server(url, user)).expect_err(url);
        assert!(said("turn:10.0.0.1:3478", None).contains("user name and a credential"));
        assert!(said("stun:", None).contains("“stun:”"));
        assert!(said("stun.example.org", None).contains("not a usable"));
        assert!(said("stun:host:notaport", None).contains("not a usable"));
        assert!(said("turns:10.0.0.1", Some("u")).contains("not supported"));
        assert!(said("turn:10.0.0.1?transport=tcp", Some("u")).contains("TURN over tcp"));
    }

    #[test]
    fn default_watermarks_are_counted_in_pieces() {
        let config = RtcConfig::default();
        assert_eq!(config.high_watermark_bytes, 16 * 262_144);
        assert_eq!(config.low_watermark_bytes, 4 * 262_144);
        assert_eq!(config.bind_addrs, vec![SocketAddr::from(([0, 0, 0, 0], 0))]);
        assert!(config.validate().is_ok());
        assert_eq!(
            RtcConfig::loopback().bind_addrs,
            vec![SocketAddr::from(([127, 0, 0, 1], 0))]
        );
    }

    #[test]
    fn validate_names_the_broken_field() {
        let empty = RtcConfig {
            bind_addrs: Vec::new(),
            ..RtcConfig::loopback()
        };
        assert!(
            matches!(empty.validate(), Err(RtcError::InvalidConfig(m)) if m.contains("bind_addrs"))
        );
        let inverted = RtcConfig {
            low_watermark_bytes: 10,
            high_watermark_bytes: 5,
            ..RtcConfig::loopback()
        };
        assert!(
            matches!(inverted.validate(), Err(RtcError::InvalidConfig(m)) if m.contains("low_watermark_bytes"))
        );
    }

    #[test]
    fn outgoing_signals_map_onto_protocol_signals() {
        let candidate = shoal_protocol::IceCandidateInit {
            candidate: "candidate:1 1 udp 1 127.0.0.1 9 typ host".into(),
            sdp_mid: Some("0".into()),
            sdp_mline_index: Some(0),
            username_fragment: None,
        };
        assert_eq!(
            OutgoingSignal::Offer("o".into()).into_signal(),
            shoal_protocol::Signal::Offer { sdp: "o".into() }
        );
        assert_eq!(
            shoal_protocol::Signal::from(OutgoingSignal::Answer("a".into())),
            shoal_protocol::Signal::Answer { sdp: "a".into() }
        );
        assert_eq!(
            OutgoingSignal::IceCandidate(candidate.clone()).into_signal(),
            shoal_protocol::Signal::IceCandidate { candidate }
        );
    }
}
