//! Following the host: the host's playback state, the local player's, and what to do about
//! the difference (the drift).
//!
//! - Paused host: the player pauses, and seeks when it stands more than
//!   [`FollowConfig::nudge_ms`] away from the host's frame.
//! - Playing host, drift under [`FollowConfig::nudge_ms`]: nothing (rate 1).
//! - Drift from there to [`FollowConfig::seek_ms`]: the playback rate is nudged, at most
//!   [`FollowConfig::max_rate_change`] either way, in proportion to the drift
//!   ([`FollowConfig::correction_ms`] is the time a drift is meant to take to close); it goes
//!   back to 1 once the drift is under [`FollowConfig::settle_ms`] (hysteresis: a rate that
//!   flips on every small error stutters, which is what made Jellyfin turn its correction off).
//! - Beyond [`FollowConfig::seek_ms`]: pause, seek ahead of the host by what seeks took
//!   before ([`Follower::seek_lead_ms`]), hold that frame until the host reaches it, and
//!   play, started early by the player's own start-up time as measured on earlier plays
//!   ([`Follower::play_latency_ms`]). A player that buffers is left alone until it has data
//!   (the room waits for it, or it then catches up this way).
//!
//! A state whose `at` is in the future takes effect then: commands are sent with a lead
//! ([`command_lead_ms`]) so that members that receive them at different times start
//! together.

/// The room's playback as the host set it: at host time `at_ms` the media was at
/// `position_ms`, playing at `rate` or paused.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HostState {
    /// Playing (true) or paused.
    pub playing: bool,
    /// Media position at `at_ms`, ms.
    pub position_ms: f64,
    /// Playback rate while playing (1 = normal).
    pub rate: f64,
    /// Host clock time the state holds from, ms.
    pub at_ms: f64,
}

impl HostState {
    /// The media position at host time `host_ms`, ms (a state is extrapolated backwards too:
    /// callers keep the previous state until `at_ms`).
    pub fn position_at(&self, host_ms: f64) -> f64 {
        if self.playing {
            (self.position_ms + (host_ms - self.at_ms) * self.rate).max(0.0)
        } else {
            self.position_ms
        }
    }

    /// Whether its numbers are usable (finite, a rate from 0.25 to 4): a host state comes
    /// from the network.
    pub fn is_valid(&self) -> bool {
        self.position_ms.is_finite()
            && self.position_ms >= 0.0
            && self.at_ms.is_finite()
            && self.rate.is_finite()
            && (0.25..=4.0).contains(&self.rate)
    }
}

/// How far ahead a host command is stamped: about twice the slowest member's round trip,
/// at least 300 ms (issue 11), at most 2 s. `max_rtt_ms` is the largest round trip the host
/// knows of, ms.
pub fn command_lead_ms(max_rtt_ms: f64) -> f64 {
    (2.0 * max_rtt_ms).clamp(300.0, 2000.0)
}

/// What the local player reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlayerState {
    /// Its position, ms (`currentTime` x 1000).
    pub position_ms: f64,
    /// Playing (not paused).
    pub playing: bool,
    /// A seek is under way.
    pub seeking: bool,
    /// It has the data to go on playing (`readyState` >= HAVE_FUTURE_DATA); false while it
    /// buffers.
    pub ready: bool,
    /// Its playback rate now.
    pub rate: f64,
}

/// What the player should do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Action {
    /// Start playing.
    Play,
    /// Pause.
    Pause,
    /// Jump to a position, ms.
    Seek {
        /// The position, ms.
        position_ms: f64,
    },
    /// Set the playback rate (1 = normal).
    SetRate(f64),
}

/// Thresholds of [`Follower`]. The defaults are the ones `tests/sim.rs` measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FollowConfig {
    /// Drift left alone, ms. Default 40.
    pub nudge_ms: f64,
    /// Drift at which a nudge ends, ms (below `nudge_ms`: hysteresis). Default 15.
    pub settle_ms: f64,
    /// Drift beyond which the player seeks instead of nudging, ms. Default 400: at 5 % a
    /// nudge closes 400 ms in 8 s, while a seek that lands ahead and holds the frame until
    /// the host reaches it is within a few tens of ms in about a second.
    pub seek_ms: f64,
    /// Largest rate change of a nudge (0.05 = 5 %). Default 0.05.
    pub max_rate_change: f64,
    /// The time a nudge means to close its drift in, ms (the rate change is drift over
    /// this, up to `max_rate_change`). Default 2000.
    pub correction_ms: f64,
    /// A seek's lead before any was measured, ms. Default 400.
    pub initial_seek_lead_ms: f64,
}

impl Default for FollowConfig {
    fn default() -> Self {
        Self {
            nudge_ms: 40.0,
            settle_ms: 15.0,
            seek_ms: 400.0,
            max_rate_change: 0.05,
            correction_ms: 2000.0,
            initial_seek_lead_ms: 400.0,
        }
    }
}

impl FollowConfig {
    /// For players whose playback-rate change costs more than it corrects: no nudges, a seek
    /// (ahead, held until the host gets there) once the drift passes 60 ms. WebKitGTK's
    /// GStreamer player stops for 100-200 ms at every `playbackRate` change (a flushing seek:
    /// measured in the app's room test), so a nudge of 40 ms of drift made it worse each time.
    /// 60 ms, as Jellyfin SyncPlay's threshold: with the hold released on time (the app ticks
    /// at the follower's wake), a viewer over 60 s drifted p95 27 ms and sought once after
    /// its first seconds; at 100 ms it sat at 40-58 ms without correcting.
    pub fn seek_only() -> Self {
        Self {
            max_rate_change: 0.0,
            seek_ms: 60.0,
            ..Self::default()
        }
    }
}

/// A member's player following the host.
#[derive(Debug, Clone)]
pub struct Follower {
    config: FollowConfig,
    current: Option<HostState>,
    /// A state that takes effect at its `at_ms`.
    pending: Option<HostState>,
    /// The rate this follower last set.
    rate: f64,
    nudging: bool,
    /// A seek was asked for, when the host's position was this: its landing is measured.
    seek: Option<f64>,
    /// How far ahead of the host's position a seek aims, ms (learned: what seeks took).
    seek_lead_ms: f64,
    /// Paused on a frame ahead of the host after a seek: play at this host time.
    hold: Option<f64>,
    /// A play was asked for, meant to start at this host time: its start is measured.
    starting: Option<f64>,
    /// How long the player takes to start after a play, ms (learned).
    play_latency_ms: f64,
    /// Host time of the last seek asked for: no second one before the player could act.
    last_seek_at: Option<f64>,
}

/// What a seek's lead keeps over what seeks took, ms: landing a little ahead costs a short
/// hold; landing behind costs another seek.
const SEEK_MARGIN_MS: f64 = 60.0;

/// Time after a seek is asked for in which no other is, host ms: the player reports
/// `seeking` only once it started.
const SEEK_COOLDOWN_MS: f64 = 1000.0;

impl Follower {
    /// A follower that has heard nothing from the host.
    pub fn new(config: FollowConfig) -> Self {
        Self {
            config,
            current: None,
            pending: None,
            rate: 1.0,
            nudging: false,
            seek: None,
            seek_lead_ms: config.initial_seek_lead_ms,
            hold: None,
            starting: None,
            play_latency_ms: 0.0,
            last_seek_at: None,
        }
    }

    /// The host's state changed. False (and ignored) for unusable numbers.
    pub fn on_host(&mut self, state: HostState) -> bool {
        if !state.is_valid() {
            return false;
        }
        match self.current {
            None => self.current = Some(state),
            Some(_) => self.pending = Some(state),
        }
        true
    }

    /// The host state in force at `host_now`.
    pub fn host_state(&mut self, host_now: f64) -> Option<HostState> {
        if let Some(p) = self.pending
            && host_now >= p.at_ms
        {
            self.current = Some(p);
            self.pending = None;
        }
        self.current
    }

    /// When [`Follower::poll`] should run next at the latest, host clock: the start of a
    /// pending state.
    pub fn next_wake(&self) -> Option<f64> {
        let start = |at: f64| at - self.play_latency_ms;
        match (self.pending.map(|p| start(p.at_ms)), self.hold.map(start)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// How long the player takes to start, as learned, ms.
    pub fn play_latency_ms(&self) -> f64 {
        self.play_latency_ms
    }

    /// The player's position minus the host's, ms (positive: ahead).
    pub fn drift_ms(&mut self, host_now: f64, player: &PlayerState) -> Option<f64> {
        let host = self.host_state(host_now)?;
        Some(player.position_ms - host.position_at(host_now))
    }

    /// A seek's lead now, ms: what earlier seeks took.
    pub fn seek_lead_ms(&self) -> f64 {
        self.seek_lead_ms
    }

    /// What the player should do now: pause or play, a seek, a rate, in that order.
    pub fn poll(&mut self, host_now: f64, player: &PlayerState) -> Vec<Action> {
        let mut actions = Vec::new();
        let Some(host) = self.host_state(host_now) else {
            return actions;
        };
        if player.seeking {
            return actions;
        }
        let expected = host.position_at(host_now);
        let drift = player.position_ms - expected;
        let may_seek = self
            .last_seek_at
            .is_none_or(|t| host_now - t >= SEEK_COOLDOWN_MS || host_now < t);
        if !host.playing {
            self.hold = None;
            self.seek = None;
            self.nudging = false;
            // A play due within the player's start-up time: start now, so that it runs
            // from the host's time on.
            if let Some(next) = self.pending.filter(|p| p.playing)
                && host_now + self.play_latency_ms >= next.at_ms
                && (player.position_ms - next.position_ms).abs() <= self.config.nudge_ms
            {
                if !player.playing {
                    self.starting = Some(next.at_ms);
                    actions.push(Action::Play);
                }
                return actions;
            }
            if player.playing {
                actions.push(Action::Pause);
            }
            if drift.abs() > self.config.nudge_ms && may_seek {
                self.last_seek_at = Some(host_now);
                actions.push(Action::Seek {
                    position_ms: expected,
                });
            }
            self.set_rate(1.0, &mut actions);
            return actions;
        }
        // Paused ahead after a seek: wait for the host to reach this frame.
        if let Some(at) = self.hold {
            if host_now + self.play_latency_ms >= at {
                self.hold = None;
                if !player.playing {
                    self.starting = Some(at);
                    actions.push(Action::Play);
                }
            } else if player.playing {
                actions.push(Action::Pause);
            }
            return actions;
        }
        // Buffering while playing: nothing to correct until it has data (the room waits, or
        // it catches up by a seek once it has). A paused player that lacks data is told to
        // play or seek below: some players load only once asked to.
        if !player.ready && player.playing {
            return actions;
        }
        if let Some(expected_then) = self.seek.take() {
            // Landed, paused on the target. What the seek took sets the next one's lead.
            let took = (expected - expected_then) / host.rate;
            self.seek_lead_ms = (0.5 * self.seek_lead_ms + 0.5 * (took + SEEK_MARGIN_MS))
                .clamp(SEEK_MARGIN_MS, 3000.0);
            if drift > 0.0 && drift <= self.config.seek_ms + 3000.0 {
                let at = host_now + drift / host.rate;
                self.hold = Some(at);
                if host_now + self.play_latency_ms >= at {
                    self.hold = None;
                    self.starting = Some(at);
                    actions.push(Action::Play);
                }
                return actions;
            }
        }
        if let Some(at) = self.starting {
            if !player.playing {
                // Not started yet.
                if host_now - at < SEEK_COOLDOWN_MS {
                    return actions;
                }
            } else {
                // Started: late by `-drift`, so start that much earlier next time.
                self.starting = None;
                if drift.abs() < self.config.seek_ms {
                    self.play_latency_ms = (self.play_latency_ms - 0.5 * drift).clamp(0.0, 1000.0);
                }
            }
        }
        if drift.abs() > self.config.seek_ms {
            if may_seek {
                self.last_seek_at = Some(host_now);
                if player.playing {
                    actions.push(Action::Pause);
                }
                self.seek = Some(expected);
                self.nudging = false;
                actions.push(Action::Seek {
                    position_ms: expected + self.seek_lead_ms * host.rate,
                });
                self.set_rate(host.rate, &mut actions);
            }
            return actions;
        }
        if !player.playing {
            self.starting = Some(host_now);
            actions.push(Action::Play);
            return actions;
        }
        if drift.abs() > self.config.nudge_ms
            || (self.nudging && drift.abs() > self.config.settle_ms)
        {
            self.nudging = true;
            let change = (drift / self.config.correction_ms)
                .clamp(-self.config.max_rate_change, self.config.max_rate_change);
            self.set_rate(host.rate * (1.0 - change), &mut actions);
        } else {
            self.nudging = false;
            self.set_rate(host.rate, &mut actions);
        }
        actions
    }

    /// Asks for `rate` unless it is (nearly) the rate already set.
    fn set_rate(&mut self, rate: f64, actions: &mut Vec<Action>) {
        if (rate - self.rate).abs() > 0.002 || (rate == 1.0 && self.rate != 1.0) {
            self.rate = rate;
            actions.push(Action::SetRate(rate));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{Action, FollowConfig, Follower, HostState, PlayerState, command_lead_ms};

    fn playing_at(position_ms: f64) -> PlayerState {
        PlayerState {
            position_ms,
            playing: true,
            seeking: false,
            ready: true,
            rate: 1.0,
        }
    }

    fn host(playing: bool, position_ms: f64, at_ms: f64) -> HostState {
        HostState {
            playing,
            position_ms,
            rate: 1.0,
            at_ms,
        }
    }

    #[test]
    fn small_drift_is_left_alone_medium_is_nudged_large_is_a_seek() {
        let mut f = Follower::new(FollowConfig::default());
        assert!(f.poll(0.0, &playing_at(0.0)).is_empty(), "no host yet");
        f.on_host(host(true, 0.0, 0.0));
        assert!(f.poll(10_000.0, &playing_at(10_020.0)).is_empty());
        // 100 ms ahead: slow down by 100/2000 = 5 %.
        assert_eq!(
            f.poll(10_000.0, &playing_at(10_100.0)),
            [Action::SetRate(0.95)]
        );
        // 30 ms: still nudging (hysteresis), gentler.
        assert_eq!(
            f.poll(10_000.0, &playing_at(10_030.0)),
            [Action::SetRate(1.0 - 0.015)]
        );
        // 10 ms: settled, back to 1.
        assert_eq!(
            f.poll(10_000.0, &playing_at(10_010.0)),
            [Action::SetRate(1.0)]
        );
        // 5 s behind: pause, and seek ahead by the lead.
        assert_eq!(
            f.poll(10_000.0, &playing_at(5_000.0)),
            [
                Action::Pause,
                Action::Seek {
                    position_ms: 10_400.0
                }
            ]
        );
        // Landed 300 ms ahead of the host (the seek took 100 ms): hold the frame, play when
        // the host gets there.
        let landed = PlayerState {
            playing: false,
            ..playing_at(10_400.0)
        };
        assert!(f.poll(10_100.0, &landed).is_empty());
        assert_eq!(f.next_wake(), Some(10_400.0));
        assert_eq!(f.poll(10_400.0, &landed), [Action::Play]);
        assert_eq!(f.seek_lead_ms(), 0.5 * 400.0 + 0.5 * (100.0 + 60.0));
    }

    #[test]
    fn a_paused_host_pauses_the_player_on_its_frame_and_a_future_play_waits_for_its_time() {
        let mut f = Follower::new(FollowConfig::default());
        f.on_host(host(false, 42_000.0, 0.0));
        assert_eq!(
            f.poll(5_000.0, &playing_at(30_000.0)),
            [
                Action::Pause,
                Action::Seek {
                    position_ms: 42_000.0
                }
            ]
        );
        let paused = PlayerState {
            playing: false,
            ..playing_at(42_000.0)
        };
        assert!(f.poll(5_100.0, &paused).is_empty());
        // Play from host time 6000: nothing before, Play at it.
        f.on_host(host(true, 42_000.0, 6_000.0));
        assert_eq!(f.next_wake(), Some(6_000.0));
        assert!(f.poll(5_900.0, &paused).is_empty());
        assert_eq!(f.poll(6_000.0, &paused), [Action::Play]);
    }

    #[test]
    fn nonsense_from_the_network_is_refused() {
        let mut f = Follower::new(FollowConfig::default());
        for bad in [
            HostState {
                rate: 0.0,
                ..host(true, 0.0, 0.0)
            },
            host(true, f64::NAN, 0.0),
            host(true, -5.0, 0.0),
            host(true, 0.0, f64::INFINITY),
        ] {
            assert!(!f.on_host(bad), "{bad:?}");
        }
        assert_eq!(f.host_state(0.0), None);
    }

    #[test]
    fn the_command_lead_is_twice_the_round_trip_within_bounds() {
        assert_eq!(command_lead_ms(20.0), 300.0);
        assert_eq!(command_lead_ms(400.0), 800.0);
        assert_eq!(command_lead_ms(5000.0), 2000.0);
    }
}
