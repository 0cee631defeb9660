//! The app's room (issue 11): at most one at a time, as its host or a member, over the
//! node's room sessions (`shoal_node::room`), the same code `shoal room` runs.
//!
//! The page plays the room's media in a `<video>` without native controls and calls
//! `room_tick` about ten times a second with the player's state; the answer carries what the
//! player must do (play, pause, seek, a rate) and the member list. Room events from the node
//! reach the session through [`AppRoom::on_event`]. The host's Play/Pause/seek buttons call
//! `room_control`; a member has none (a member's playback message would be refused by the
//! server anyway).

use shoal_node::room::{
    Action, FollowConfig, HostSession, MemberSession, Outgoing, PlayerState, Report, WaitConfig,
};
use shoal_node::{NodeHandle, NodeId, RoomEvent, RoomInfo};

use crate::dto::{PlayerAction, PlayerReport, Room, RoomMember, RoomTick, UiError};

/// The session, by role.
enum Session {
    Host(Box<HostSession>),
    Member(Box<MemberSession>),
}

/// The room this app is in.
pub struct AppRoom {
    session: Session,
    me: Option<NodeId>,
    /// Where the player last ran dry while playing (media ms), until it plays on by itself.
    ran_dry_at: Option<f64>,
    /// What `create_room` / `join_room` answered, for a reloaded page.
    pub info: Room,
}

impl AppRoom {
    /// The host of `info`.
    pub fn host(info: &RoomInfo, me: Option<NodeId>, now_ms: f64, dto: Room) -> Self {
        Self {
            session: Session::Host(Box::new(HostSession::with_follow(
                info,
                me,
                now_ms,
                WaitConfig::default(),
                FollowConfig::seek_only(),
            ))),
            me,
            ran_dry_at: None,
            info: dto,
        }
    }

    /// A member of `info`.
    pub fn member(info: &RoomInfo, me: Option<NodeId>, now_ms: f64, dto: Room) -> Self {
        Self {
            // The webview's player stalls at every rate change: seeks only.
            session: Session::Member(Box::new(MemberSession::with_follow(
                info,
                me,
                now_ms,
                FollowConfig::seek_only(),
            ))),
            me,
            ran_dry_at: None,
            info: dto,
        }
    }

    /// Whether a paused player may be called ready by what is on disk (an estimate from the
    /// average bitrate) rather than by its own `buffered` ranges: not within 10 s of where it
    /// last ran dry while playing, or the room would play, run dry and hold again for ever
    /// (each "ready" restarting the wait's timeout). It is there once the player plays on by
    /// itself.
    pub fn may_estimate_ready(&mut self, player: &PlayerReport) -> bool {
        if player.playing {
            self.ran_dry_at = if player.ready {
                None
            } else {
                Some(player.position_ms)
            };
        }
        self.ran_dry_at
            .is_none_or(|at| (player.position_ms - at).abs() >= 10_000.0)
    }

    /// The room's code.
    pub fn code(&self) -> &str {
        &self.info.code
    }

    /// A room event from the node.
    pub fn on_event(&mut self, event: &RoomEvent, now_ms: f64) {
        if let RoomEvent::Rejoined { room, me } = event
            && room.code == self.info.code
        {
            self.me = Some(*me);
        }
        match &mut self.session {
            Session::Host(s) => {
                s.on_event(event, now_ms);
            }
            Session::Member(s) => {
                s.on_event(event, now_ms);
            }
        }
    }

    /// The host's Play, Pause or seek (`position_ms`).
    ///
    /// # Errors
    /// `not_host` for a member; `bad_request` for an unknown action or a missing position.
    pub fn control(
        &mut self,
        action: &str,
        position_ms: Option<f64>,
        now_ms: f64,
    ) -> Result<(), UiError> {
        let Session::Host(s) = &mut self.session else {
            return Err(UiError::new(
                "not_host",
                "Only the room's host controls playback",
            ));
        };
        match (action, position_ms) {
            ("play", _) => s.play(now_ms),
            ("pause", _) => s.pause(now_ms),
            ("goOn", _) => s.go_on(now_ms),
            ("seek", Some(ms)) if ms.is_finite() && ms >= 0.0 => s.seek(ms, now_ms),
            _ => {
                return Err(UiError::new(
                    "bad_request",
                    format!("Unknown room control {action:?}"),
                ));
            }
        }
        Ok(())
    }

    /// One step: the player's state in, what it should do and who is in the room out; the
    /// messages due are returned for sending.
    pub fn tick(
        &mut self,
        player: &PlayerReport,
        progress: f64,
        name: Option<String>,
        now_ms: f64,
    ) -> (RoomTick, Vec<Outgoing>) {
        let state = PlayerState {
            position_ms: finite_or(player.position_ms, 0.0).max(0.0),
            playing: player.playing,
            seeking: player.seeking,
            ready: player.ready,
            rate: finite_or(player.rate, 1.0),
        };
        let report = Report::of(&state, progress, name);
        let (actions, out, host_position, drift, view, playing, host_wants, wake) =
            match &mut self.session {
                Session::Host(s) => {
                    s.tick(now_ms);
                    let actions = s.poll(now_ms, &state);
                    let out = s.outgoing(now_ms, &report, &state);
                    let current = s.current(now_ms);
                    let drift = s.drift_ms(now_ms, &state);
                    (
                        actions,
                        out,
                        Some(current.position_at(now_ms)),
                        drift,
                        s.view().clone(),
                        current.playing,
                        s.wants_playing(),
                        s.next_wake_ms(),
                    )
                }
                Session::Member(s) => {
                    let actions = s.poll(now_ms, &state);
                    let out = s.outgoing(now_ms, &report, &state);
                    let host_state = s.host_state(now_ms);
                    (
                        actions,
                        out,
                        s.host_position_ms(now_ms),
                        s.drift_ms(now_ms, &state),
                        s.view().clone(),
                        host_state.is_some_and(|h| h.playing),
                        host_state.is_some_and(|h| h.playing),
                        s.next_wake_ms(),
                    )
                }
            };
        if !actions.is_empty() {
            tracing::debug!(
                ?actions,
                position_ms = state.position_ms,
                playing = state.playing,
                ready = state.ready,
                ?host_position,
                "room player"
            );
        }
        let members = view
            .members
            .iter()
            .map(|id| {
                let s = view.states.get(id).cloned().unwrap_or_default();
                RoomMember {
                    id: id.to_string(),
                    name: view.name_of(*id),
                    is_host: view.host == Some(*id),
                    is_me: self.me == Some(*id),
                    state: s.state.map(|p| p.as_str().to_owned()),
                    position_ms: s.position_ms,
                    progress: s.progress,
                    drift_ms: s.drift_ms,
                }
            })
            .collect();
        let waiting_for = view.waiting_for.map(|m| {
            let progress = view.states.get(&m).map_or(0.0, |s| s.progress);
            format!("{} (buffering, {:.0} %)", view.name_of(m), progress * 100.0)
        });
        let tick = RoomTick {
            live: None,
            actions: actions
                .into_iter()
                .map(|a| match a {
                    Action::Play => PlayerAction::Play,
                    Action::Pause => PlayerAction::Pause,
                    Action::Seek { position_ms } => PlayerAction::Seek { position_ms },
                    Action::SetRate(rate) => PlayerAction::Rate { rate },
                })
                .collect(),
            members,
            waiting_for,
            closed: view.closed.clone(),
            host_position_ms: host_position,
            drift_ms: drift,
            playing,
            host_wants_playing: host_wants,
            next_tick_ms: next_tick_ms(wake - now_ms),
        };
        (tick, out)
    }
}

/// The page's usual tick, ms.
const TICK_MS: f64 = 100.0;

/// When the page should tick next for a session that wants to wake in `wake_in_ms`: then,
/// if that is within the usual tick; a wake already due (a player still seeking past its
/// hold) is left to the usual tick, so nothing spins.
fn next_tick_ms(wake_in_ms: f64) -> f64 {
    if wake_in_ms > 0.0 && wake_in_ms < TICK_MS {
        wake_in_ms
    } else {
        TICK_MS
    }
}

fn finite_or(v: f64, or: f64) -> f64 {
    if v.is_finite() { v } else { or }
}

/// Sends what a session returned; a failure is logged (the next tick sends state again).
pub async fn send_all(node: &NodeHandle, code: &str, out: Vec<Outgoing>) {
    for (to, body) in out {
        if let Err(e) = node.room_send(code, to, body).await {
            tracing::info!("room message not sent: {e}");
            return;
        }
    }
}
