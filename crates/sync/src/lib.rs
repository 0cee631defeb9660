//! Synchronised playback for rooms (issue 11; seed 000's room module), sans-IO: no clock
//! reads, no I/O, no tasks. Every time is a number of milliseconds the caller passes in:
//! "local" times on the member's own monotonic clock, "host" times on the host's.
//!
//! - [`ClockSync`] estimates the host's clock from a member: NTP's four timestamps (RFC 5905
//!   §8) over the room's relay, keeping the minimum-delay sample of the last eight
//!   exchanges (the sample least disturbed by queueing), refreshed every two seconds.
//! - [`HostState`] is the host's authoritative playback, `{playing, position, rate, at}` on
//!   the host's clock; a command names a host time slightly in the future
//!   ([`command_lead_ms`]) so every member starts together.
//! - [`Follower`] turns the host's state and the local player's into actions for the
//!   player: play, pause, seek, or a playback-rate nudge, with thresholds chosen from the
//!   simulator (`tests/sim.rs`; docs/ARCHITECTURE.md "Rooms").
//! - [`WaitPolicy`] is the host's side of "wait for the slowest, without hanging": hold
//!   playback while a member buffers, go on without it after a timeout.
//!
//! The driver (the node for the CLI, the desktop app for its player) runs:
//!
//! ```text
//! clock.poll_ping(local_now)      -> send the Ping to the host through the room
//! host answers with pong(...)     -> clock.on_pong(&pong, local_now)
//! host's playback message         -> follower.on_host(state)
//! every ~100 ms and at follower.next_wake(): host_now = clock.host_time(local_now);
//!   for action in follower.poll(host_now, &player_state) { apply it to the player }
//! ```

#![deny(missing_docs)]

mod clock;
mod follow;
mod wait;

pub use clock::{ClockConfig, ClockSync, Ping, Pong, pong};
pub use follow::{Action, FollowConfig, Follower, HostState, PlayerState, command_lead_ms};
pub use wait::{Decision, WaitConfig, WaitPolicy};
