//! Sans-IO swarm and transfer state machine: peer wire, piece picker, verification. No tokio,
//! no webrtc, no clock reads.
//!
//! One [`Swarm`] per content (info hash). The driver (crates/node) owns the data channels, the
//! disk and the clock, and runs this loop (str0m's `Rtc` pattern):
//!
//! ```text
//! loop {
//!     match swarm.poll_output() {
//!         Output::Transmit { link, message, piece_end } => send on the link's data channel,
//!             then Input::PieceSent { link } after a piece_end message
//!         Output::ReadPiece { link, piece }  => read from disk -> Input::PieceRead
//!         Output::WritePiece { piece, data } => write to disk -> Input::PieceWritten
//!         Output::CloseLink { link, reason } => close the channel
//!         Output::Event(e)                   => tell the user
//!         Output::Timeout(t)                 => wait for t or the next input, then feed it
//!     }
//! }
//! ```
//!
//! The swarm is written for many peers: each link has a request pipeline sized to its measured
//! rate ([`SwarmConfig::pipeline_pieces`]); the picker takes the rarest missing piece a link has
//! (ties broken by [`SwarmConfig::picker_seed`]); a link that stalls is
//! dropped and its requests move to other links; near the end (endgame) a piece may be asked of
//! two links at once and the loser is cancelled. Every piece is checked against the manifest
//! before it is written, and the manifest against the info hash before it is used; a node that
//! sends a bad piece or manifest is banned for this content.
//!
//! The peer wire format is in [`wire`] and `docs/wire.md`.

#![deny(missing_docs)]

mod swarm;
pub mod wire;

pub use swarm::{
    CloseReason, Input, LinkId, LinkStats, Output, Playhead, Swarm, SwarmConfig, SwarmEvent,
};
