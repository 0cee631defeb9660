//! A log filter for webrtc-rs's reports of ICE candidate pairs that cannot work.
//!
//! ICE (RFC 8445 §6.1.2) pairs every local candidate with every remote one and checks them
//! all. On a machine with a loopback socket and a LAN socket, talking to a peer on another
//! network, most pairs cannot work: a socket bound to 127.0.0.1 cannot send to a LAN address
//! (EINVAL, os error 22), and an address of another network is unreachable (ENETUNREACH 101,
//! EHOSTUNREACH 113). webrtc-rs logs each such send at ERROR as "Failed to write packet to
//! ... from ...", dozens per connection, although the pair is simply abandoned and the
//! connection works over another. [`QuietUnworkablePairs`] drops exactly those lines; every
//! other webrtc-rs error still shows.

use std::fmt::Debug;

use tracing::field::{Field, Visit};
use tracing::{Event, Metadata};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Context, Filter};
use tracing_subscriber::prelude::*;

/// Logs to stderr for a front end: `RUST_LOG`, or `default_filter` when it is unset; colour
/// only on a terminal (a log file or a pipe gets plain text); without the unworkable-pair
/// lines ([`QuietUnworkablePairs`]).
pub fn init_stderr(default_filter: &str) {
    let env = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(env)
        .with_filter(QuietUnworkablePairs);
    tracing_subscriber::registry().with(layer).init();
}

/// Where webrtc-rs logs failed sends.
const TARGET: &str = "webrtc::peer_connection::driver";

/// A per-layer filter that drops webrtc-rs's ERROR lines for sends on unworkable candidate
/// pairs (see the module documentation); combine it with the layer's other filter, e.g.
/// `fmt::layer().with_filter(env_filter).with_filter(QuietUnworkablePairs)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct QuietUnworkablePairs;

impl<S> Filter<S> for QuietUnworkablePairs {
    fn enabled(&self, _meta: &Metadata<'_>, _cx: &Context<'_, S>) -> bool {
        true
    }

    fn event_enabled(&self, event: &Event<'_>, _cx: &Context<'_, S>) -> bool {
        // webrtc-rs logs through the `log` crate: bridged events have the target "log" and
        // carry the real one in a `log.target` field.
        let target = event.metadata().target();
        if target != TARGET && target != "log" {
            return true;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let from_webrtc = target == TARGET || fields.log_target.as_deref() == Some(TARGET);
        !(from_webrtc && fields.message.is_some_and(|text| is_unworkable_pair(&text)))
    }
}

/// Whether a webrtc-rs message reports a send on a pair that cannot work.
fn is_unworkable_pair(message: &str) -> bool {
    message.starts_with("Failed to write packet to")
        && ["(os error 22)", "(os error 101)", "(os error 113)"]
            .iter()
            .any(|code| message.ends_with(code))
}

#[derive(Default)]
struct Fields {
    message: Option<String>,
    log_target: Option<String>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "log.target" => self.log_target = Some(value.to_owned()),
            "message" => self.message = Some(value.to_owned()),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        match field.name() {
            "message" => self.message = Some(format!("{value:?}")),
            "log.target" => self.log_target = Some(format!("{value:?}")),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unworkable_pair_sends_are_quiet() {
        for quiet in [
            "Failed to write packet to 10.77.0.1:37867 from 127.0.0.1:56588: io error: Invalid argument (os error 22)",
            "Failed to write packet to 192.0.2.2:34279 from 10.77.0.2:38395: io error: Network is unreachable (os error 101)",
            "Failed to write packet to 192.0.2.9:1 from 10.0.0.2:2: io error: No route to host (os error 113)",
        ] {
            assert!(is_unworkable_pair(quiet), "{quiet}");
        }
        for loud in [
            "Failed to write packet to 10.0.0.1:1 from 10.0.0.2:2: io error: Permission denied (os error 13)",
            "Failed to handle event in stun_gatherer",
            "Failed to close turn_relayer: closed",
        ] {
            assert!(!is_unworkable_pair(loud), "{loud}");
        }
    }
}
