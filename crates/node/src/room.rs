//! Room sessions (issue 11): what a room's host and its members run over the node's room
//! messages ([`crate::NodeHandle::room_send`], [`crate::RoomEvent`]), built on shoal-sync.
//!
//! Sans-IO like shoal-sync: every call takes the node's clock ([`crate::NodeHandle::clock_ms`],
//! ms) and returns what to send; the caller sends it and applies the player actions. The CLI
//! (`shoal room`, with a headless player) and the desktop app (with its `<video>`) drive the
//! same sessions, so what the tests measure through the CLI is what the app does.
//!
//! - [`MemberSession`]: keeps the clock offset to the host (clock pings), follows the host's
//!   playback with a [`Follower`], reports its own state (`member_state`) once a second and on
//!   every change.
//! - [`HostSession`]: turns the host's play/pause/seek into `playback` messages stamped a
//!   little in the future ([`command_lead_ms`]), holds the room while a member buffers for
//!   longer than [`BUFFERING_GRACE_MS`] and goes on without it after the wait timeout
//!   ([`WaitPolicy`]), and drives the host's own player with a [`Follower`] on its own clock,
//!   so the host starts at the same time as everyone else.

use std::collections::BTreeMap;

use shoal_protocol::{InfoHash, MemberPlayback, NodeId, RoomBody, RoomInfo};
pub use shoal_sync::{
    Action, ClockConfig, Decision, FollowConfig, HostState, PlayerState, WaitConfig,
    command_lead_ms,
};
use shoal_sync::{ClockSync, Follower, Pong, WaitPolicy};

use crate::RoomEvent;

/// A member reports its state at least this often, ms.
pub const REPORT_INTERVAL_MS: f64 = 1000.0;

/// A member that buffers for less than this is not waited for, ms: every member buffers for
/// a moment after a seek, and pausing the room for each of those would stutter.
pub const BUFFERING_GRACE_MS: f64 = 1000.0;

/// One member as the room sees it, from its `member_state` reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemberView {
    /// The name it goes by (untrusted text: show it through [`crate::text::inert`]).
    pub name: Option<String>,
    /// Playing, paused or buffering; `None` before its first report.
    pub state: Option<MemberPlayback>,
    /// Its player's position, ms.
    pub position_ms: f64,
    /// Share of the media it has, 0 to 1.
    pub progress: f64,
    /// Its position minus the host's, ms.
    pub drift_ms: Option<f64>,
    /// Its round trip to the host, ms.
    pub rtt_ms: Option<f64>,
}

/// A room as one of its members sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomView {
    /// The short code, `XXXX-XXXX`.
    pub code: String,
    /// The long form for pasting (32 hex digits).
    pub link: String,
    /// The media the room watches.
    pub info_hash: InfoHash,
    /// The host; `None` while it reconnects.
    pub host: Option<NodeId>,
    /// Every member, the host included, in the order they joined.
    pub members: Vec<NodeId>,
    /// What each member last said about itself.
    pub states: BTreeMap<NodeId, MemberView>,
    /// The member the room waits for (buffering), as the host said.
    pub waiting_for: Option<NodeId>,
    /// The room ended: why.
    pub closed: Option<String>,
}

impl RoomView {
    fn new(info: &RoomInfo) -> Self {
        Self {
            code: info.code.clone(),
            link: info.link.clone(),
            info_hash: info.info_hash,
            host: info.host,
            members: info.members.clone(),
            states: BTreeMap::new(),
            waiting_for: None,
            closed: None,
        }
    }

    /// Whether `event` is about this room.
    fn is_mine(&self, event: &RoomEvent) -> bool {
        match event {
            RoomEvent::Members { room, .. }
            | RoomEvent::Message { room, .. }
            | RoomEvent::Closed { room, .. } => *room == self.code,
            RoomEvent::Rejoined { room, .. } => room.code == self.code,
            RoomEvent::Refused { .. } => false,
        }
    }

    /// Applies what every member sees: the member list, states, the wait, the end.
    fn apply(&mut self, event: &RoomEvent) {
        match event {
            RoomEvent::Members { host, members, .. } => {
                self.host = *host;
                self.members = members.clone();
                self.states.retain(|id, _| members.contains(id));
                if self.waiting_for.is_some_and(|w| !members.contains(&w)) {
                    self.waiting_for = None;
                }
            }
            RoomEvent::Message { from, body, .. } => match body {
                RoomBody::MemberState {
                    state,
                    position_ms,
                    progress,
                    drift_ms,
                    rtt_ms,
                    name,
                } => {
                    self.states.insert(
                        *from,
                        MemberView {
                            name: name.clone(),
                            state: Some(*state),
                            position_ms: *position_ms,
                            progress: *progress,
                            drift_ms: *drift_ms,
                            rtt_ms: *rtt_ms,
                        },
                    );
                }
                RoomBody::Waiting { member } => self.waiting_for = *member,
                _ => {}
            },
            RoomEvent::Closed { reason, .. } => self.closed = Some(reason.clone()),
            RoomEvent::Rejoined { room, .. } => {
                self.host = room.host;
                self.members = room.members.clone();
                self.states.retain(|id, _| room.members.contains(id));
                // A wait that ended while this node was away would stay on screen; the host
                // says it again if it still waits.
                self.waiting_for = None;
            }
            RoomEvent::Refused { .. } => {}
        }
    }

    /// This node's own state, as it reports it.
    fn set_own(
        &mut self,
        me: Option<NodeId>,
        report: &Report,
        drift_ms: Option<f64>,
        rtt_ms: Option<f64>,
    ) {
        if let Some(me) = me {
            self.states.insert(
                me,
                MemberView {
                    name: report.name.as_deref().map(cut_name),
                    state: Some(report.state),
                    position_ms: report.position_ms,
                    progress: report.progress,
                    drift_ms,
                    rtt_ms,
                },
            );
        }
    }

    /// A member's name, or the start of its node id.
    pub fn name_of(&self, member: NodeId) -> String {
        self.states
            .get(&member)
            .and_then(|s| s.name.as_deref())
            .map(|n| crate::text::inert(n, 40).into_owned())
            .unwrap_or_else(|| member.short())
    }
}

/// What a member says about itself in `member_state`.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Playing, paused, or buffering (lacks the next few seconds at its position).
    pub state: MemberPlayback,
    /// Its player's position, ms.
    pub position_ms: f64,
    /// Share of the media it has, 0 to 1.
    pub progress: f64,
    /// Its name, at most [`shoal_protocol::MAX_MEMBER_NAME_BYTES`] bytes (cut to fit).
    pub name: Option<String>,
}

impl Report {
    /// What a player in `player`'s state says: buffering when it is not ready, else
    /// playing or paused.
    pub fn of(player: &PlayerState, progress: f64, name: Option<String>) -> Self {
        Self {
            state: if !player.ready {
                MemberPlayback::Buffering
            } else if player.playing {
                MemberPlayback::Playing
            } else {
                MemberPlayback::Paused
            },
            position_ms: player.position_ms,
            progress,
            name,
        }
    }
}

/// Sends `member_state` once a second, and at once when the state changes.
#[derive(Debug, Clone, Default)]
struct Reporter {
    next_at: f64,
    last: Option<MemberPlayback>,
}

impl Reporter {
    fn due(
        &mut self,
        now_ms: f64,
        report: &Report,
        drift_ms: Option<f64>,
        rtt_ms: Option<f64>,
    ) -> Option<RoomBody> {
        if now_ms < self.next_at && self.last == Some(report.state) {
            return None;
        }
        self.next_at = now_ms + REPORT_INTERVAL_MS;
        self.last = Some(report.state);
        let finite = |v: Option<f64>| v.filter(|v| v.is_finite());
        Some(RoomBody::MemberState {
            state: report.state,
            position_ms: if report.position_ms.is_finite() {
                report.position_ms.max(0.0)
            } else {
                0.0
            },
            progress: if report.progress.is_finite() {
                report.progress.clamp(0.0, 1.0)
            } else {
                0.0
            },
            drift_ms: finite(drift_ms),
            rtt_ms: finite(rtt_ms).map(|r| r.max(0.0)),
            name: report.name.as_deref().map(cut_name),
        })
    }
}

/// `name` cut to [`shoal_protocol::MAX_MEMBER_NAME_BYTES`] on a character boundary.
fn cut_name(name: &str) -> String {
    let mut end = name.len().min(shoal_protocol::MAX_MEMBER_NAME_BYTES);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_owned()
}

/// A room member that is not the host: follows the host's clock and playback.
#[derive(Debug, Clone)]
pub struct MemberSession {
    view: RoomView,
    me: Option<NodeId>,
    clock: ClockSync,
    follower: Follower,
    reporter: Reporter,
}

/// A message a session wants sent: to one member, or to everyone else (`to: None`).
pub type Outgoing = (Option<NodeId>, RoomBody);

impl MemberSession {
    /// A member of the room `info` (from [`crate::NodeHandle::join_room`]) at `now_ms`; in
    /// step at once with the host's last playback when the room has one. `me` is this node's
    /// id ([`crate::NodeHandle::node_id`]): its own state shows in [`MemberSession::view`].
    pub fn new(info: &RoomInfo, me: Option<NodeId>, now_ms: f64) -> Self {
        Self::with_follow(info, me, now_ms, FollowConfig::default())
    }

    /// As [`MemberSession::new`], with the player's own thresholds (e.g.
    /// [`FollowConfig::seek_only`] for a player that stalls at a rate change).
    pub fn with_follow(
        info: &RoomInfo,
        me: Option<NodeId>,
        now_ms: f64,
        follow: FollowConfig,
    ) -> Self {
        let mut follower = Follower::new(follow);
        if let Some(state) = info.playback.as_ref().and_then(host_state) {
            follower.on_host(state);
        }
        Self {
            view: RoomView::new(info),
            me,
            clock: ClockSync::new(ClockConfig::default(), now_ms),
            follower,
            reporter: Reporter::default(),
        }
    }

    /// The room as this member sees it.
    pub fn view(&self) -> &RoomView {
        &self.view
    }

    /// Takes a room event at `now_ms`; false if it is about another room.
    pub fn on_event(&mut self, event: &RoomEvent, now_ms: f64) -> bool {
        if !self.view.is_mine(event) {
            return false;
        }
        self.view.apply(event);
        if let RoomEvent::Rejoined { room, me } = event {
            // Under a new id; the host may have sent playback while this node was away.
            self.me = Some(*me);
            if let Some(state) = room.playback.as_ref().and_then(host_state) {
                self.follower.on_host(state);
            }
        }
        if let RoomEvent::Message { from, body, .. } = event
            && Some(*from) == self.view.host
        {
            match body {
                RoomBody::ClockPong { id, t0, t1, t2 } => {
                    self.clock.on_pong(
                        &Pong {
                            id: *id,
                            t0: *t0,
                            t1: *t1,
                            t2: *t2,
                        },
                        now_ms,
                    );
                }
                RoomBody::Playback { .. } => {
                    if let Some(state) = host_state(body) {
                        self.follower.on_host(state);
                    }
                }
                _ => {}
            }
        }
        true
    }

    /// The host's clock at `now_ms`, once a clock exchange has been answered.
    pub fn host_now(&self, now_ms: f64) -> Option<f64> {
        self.clock.host_time(now_ms)
    }

    /// The round trip to the host, ms (the best of the last eight exchanges).
    pub fn rtt_ms(&self) -> Option<f64> {
        self.clock.rtt_ms()
    }

    /// The host's playback in force at `now_ms`.
    pub fn host_state(&mut self, now_ms: f64) -> Option<HostState> {
        let host_now = self.host_now(now_ms)?;
        self.follower.host_state(host_now)
    }

    /// Where the host's media is at `now_ms`, ms.
    pub fn host_position_ms(&mut self, now_ms: f64) -> Option<f64> {
        let host_now = self.host_now(now_ms)?;
        Some(self.follower.host_state(host_now)?.position_at(host_now))
    }

    /// The player's position minus the host's, ms (positive: ahead).
    pub fn drift_ms(&mut self, now_ms: f64, player: &PlayerState) -> Option<f64> {
        let host_now = self.host_now(now_ms)?;
        self.follower.drift_ms(host_now, player)
    }

    /// What the player should do now (nothing before the clock is known).
    pub fn poll(&mut self, now_ms: f64, player: &PlayerState) -> Vec<Action> {
        match self.host_now(now_ms) {
            Some(host_now) => self.follower.poll(host_now, player),
            None => Vec::new(),
        }
    }

    /// Messages due at `now_ms`: a clock ping to the host, this member's state.
    pub fn outgoing(
        &mut self,
        now_ms: f64,
        report: &Report,
        player: &PlayerState,
    ) -> Vec<Outgoing> {
        let mut out = Vec::new();
        if let Some(host) = self.view.host
            && let Some(ping) = self.clock.poll_ping(now_ms)
        {
            out.push((
                Some(host),
                RoomBody::ClockPing {
                    id: ping.id,
                    t0: ping.t0,
                },
            ));
        }
        let drift = self.drift_ms(now_ms, player);
        let rtt = self.clock.rtt_ms();
        self.view.set_own(self.me, report, drift, rtt);
        if let Some(body) = self.reporter.due(now_ms, report, drift, rtt) {
            out.push((None, body));
        }
        out
    }

    /// When to call [`MemberSession::poll`] and [`MemberSession::outgoing`] next at the
    /// latest, node clock ms (callers also poll about ten times a second).
    pub fn next_wake_ms(&self) -> f64 {
        let follower = self
            .follower
            .next_wake()
            .and_then(|host| self.clock.local_time(host));
        let ping = self.clock.next_ping_at();
        let report = self.reporter.next_at;
        [follower, Some(ping), Some(report)]
            .into_iter()
            .flatten()
            .fold(f64::INFINITY, f64::min)
    }
}

/// The host's playback from a `playback` body with usable numbers.
fn host_state(body: &RoomBody) -> Option<HostState> {
    let RoomBody::Playback {
        playing,
        position_ms,
        rate,
        at_ms,
    } = *body
    else {
        return None;
    };
    let state = HostState {
        playing,
        position_ms,
        rate,
        at_ms,
    };
    state.is_valid().then_some(state)
}

fn playback_body(state: &HostState) -> RoomBody {
    RoomBody::Playback {
        playing: state.playing,
        position_ms: state.position_ms,
        rate: state.rate,
        at_ms: state.at_ms,
    }
}

/// The host of a room: its playback is the room's.
#[derive(Debug, Clone)]
pub struct HostSession {
    view: RoomView,
    me: Option<NodeId>,
    /// Playing, as the host asked; the room may be held while someone buffers.
    want_playing: bool,
    /// The room's playback as last sent.
    state: HostState,
    wait: WaitPolicy<NodeId>,
    /// Members that said they buffer, since when (ms); waited for after the grace.
    buffering_since: BTreeMap<NodeId, f64>,
    /// The host's own player, following the room on the host's clock.
    follower: Follower,
    reporter: Reporter,
    /// When the wait was last decided, ms.
    decided_at: f64,
    /// Messages to send, gathered by the calls that change the room.
    out: Vec<Outgoing>,
}

impl HostSession {
    /// The host of the room `info` (from [`crate::NodeHandle::create_room`] or a rejoin with
    /// the host key), paused at the start (or at the room's last playback). `me` is this
    /// node's id. Sends the room's playback at once.
    pub fn new(info: &RoomInfo, me: Option<NodeId>, now_ms: f64, wait: WaitConfig) -> Self {
        Self::with_follow(info, me, now_ms, wait, FollowConfig::default())
    }

    /// As [`HostSession::new`], with the host player's own thresholds.
    pub fn with_follow(
        info: &RoomInfo,
        me: Option<NodeId>,
        now_ms: f64,
        wait: WaitConfig,
        follow: FollowConfig,
    ) -> Self {
        let state = info
            .playback
            .as_ref()
            .and_then(host_state)
            .map(|s| HostState {
                position_ms: s.position_at(now_ms),
                at_ms: now_ms,
                ..s
            })
            .unwrap_or(HostState {
                playing: false,
                position_ms: 0.0,
                rate: 1.0,
                at_ms: now_ms,
            });
        let mut follower = Follower::new(follow);
        follower.on_host(state);
        let mut session = Self {
            view: RoomView::new(info),
            me,
            want_playing: state.playing,
            state,
            wait: WaitPolicy::new(wait),
            buffering_since: BTreeMap::new(),
            follower,
            reporter: Reporter::default(),
            decided_at: now_ms,
            out: Vec::new(),
        };
        session.send_state();
        session
    }

    /// The room as the host sees it.
    pub fn view(&self) -> &RoomView {
        &self.view
    }

    /// The room's playback as last sent (it may start in the future: `at_ms`).
    pub fn state(&self) -> HostState {
        self.state
    }

    /// The room's playback in force at `now_ms` (the one before [`HostSession::state`] until
    /// its `at_ms`).
    pub fn current(&mut self, now_ms: f64) -> HostState {
        self.follower.host_state(now_ms).unwrap_or(self.state)
    }

    /// Whether the host asked for playing (the room may be held for a member).
    pub fn wants_playing(&self) -> bool {
        self.want_playing
    }

    /// Where the room's media is at `now_ms`, ms.
    pub fn position_ms(&self, now_ms: f64) -> f64 {
        self.state.position_at(now_ms)
    }

    /// How far ahead commands are stamped now, ms: twice the largest round trip a member
    /// reported, at least 300 ms.
    pub fn lead_ms(&self) -> f64 {
        let max_rtt = self
            .view
            .states
            .values()
            .filter_map(|s| s.rtt_ms)
            .fold(0.0, f64::max);
        command_lead_ms(max_rtt)
    }

    /// Play from where the room is. Held while the room waits for a member.
    pub fn play(&mut self, now_ms: f64) {
        self.want_playing = true;
        self.decide(now_ms);
        if self.view.waiting_for.is_none() && !self.state.playing {
            self.change(now_ms, true, None);
        }
    }

    /// Pause where the room is, a command lead from now.
    pub fn pause(&mut self, now_ms: f64) {
        self.want_playing = false;
        if self.state.playing {
            self.change(now_ms, false, None);
        }
        self.set_waiting(None);
    }

    /// Jump to `position_ms` (clamped at 0), playing or paused as the room is.
    pub fn seek(&mut self, position_ms: f64, now_ms: f64) {
        let playing = self.state.playing;
        self.change(now_ms, playing, Some(position_ms.max(0.0)));
    }

    /// Stop waiting for the members waited for now (each is waited for again once it was
    /// ready and buffers again).
    pub fn go_on(&mut self, now_ms: f64) {
        self.wait.go_on();
        self.decide(now_ms);
    }

    /// Takes a room event at `now_ms`; false if it is about another room.
    pub fn on_event(&mut self, event: &RoomEvent, now_ms: f64) -> bool {
        if !self.view.is_mine(event) {
            return false;
        }
        self.view.apply(event);
        match event {
            RoomEvent::Members { members, .. } => {
                self.forget_gone(members);
                let waiting = self.view.waiting_for;
                self.decide(now_ms);
                // Someone new (or back) hears of a wait already under way.
                if waiting.is_some() && self.view.waiting_for == waiting {
                    self.out.push((None, RoomBody::Waiting { member: waiting }));
                }
            }
            RoomEvent::Rejoined { room, me } => {
                // Under a new id; members that left meanwhile are not waited for, and the
                // server gets the room's playback again (it may have missed a change).
                self.me = Some(*me);
                self.forget_gone(&room.members);
                self.send_state();
                self.decide(now_ms);
            }
            RoomEvent::Message {
                from,
                body: RoomBody::MemberState { state, .. },
                ..
            } if Some(*from) != self.me => {
                self.member_ready(*from, *state != MemberPlayback::Buffering, now_ms);
            }
            _ => {}
        }
        true
    }

    /// Re-decides the wait at `now_ms` (grace and timeouts); call about ten times a second.
    pub fn tick(&mut self, now_ms: f64) {
        self.decide(now_ms);
    }

    /// What the host's own player should do now.
    pub fn poll(&mut self, now_ms: f64, player: &PlayerState) -> Vec<Action> {
        self.follower.poll(now_ms, player)
    }

    /// The host's player's position minus the room's, ms.
    pub fn drift_ms(&mut self, now_ms: f64, player: &PlayerState) -> Option<f64> {
        self.follower.drift_ms(now_ms, player)
    }

    /// Messages due at `now_ms`: the room's playback and waits, the host's own state.
    pub fn outgoing(
        &mut self,
        now_ms: f64,
        report: &Report,
        player: &PlayerState,
    ) -> Vec<Outgoing> {
        // The host's own player is waited for like a member's (a host watching a file it is
        // still downloading buffers too).
        if let Some(me) = self.me {
            let ready = report.state != MemberPlayback::Buffering;
            if ready == self.buffering_since.contains_key(&me) {
                self.member_ready(me, ready, now_ms);
            }
        }
        let drift = self.follower.drift_ms(now_ms, player);
        self.view.set_own(self.me, report, drift, Some(0.0));
        let mut out = std::mem::take(&mut self.out);
        if let Some(body) = self.reporter.due(now_ms, report, drift, Some(0.0)) {
            out.push((None, body));
        }
        out
    }

    /// When to call [`HostSession::poll`], [`HostSession::tick`] and
    /// [`HostSession::outgoing`] next at the latest, node clock ms.
    pub fn next_wake_ms(&self) -> f64 {
        // Deadlines already passed were reported to the wait policy: its deadline counts.
        let grace = self
            .buffering_since
            .values()
            .map(|since| since + BUFFERING_GRACE_MS)
            .filter(|at| *at > self.decided_at)
            .fold(f64::INFINITY, f64::min);
        [
            self.follower.next_wake(),
            self.wait.next_deadline(),
            Some(grace),
            Some(self.reporter.next_at),
        ]
        .into_iter()
        .flatten()
        .fold(f64::INFINITY, f64::min)
    }

    /// The room's playback changes a command lead from now: playing or paused, at
    /// `position_ms` or where it will be by then.
    fn change(&mut self, now_ms: f64, playing: bool, position_ms: Option<f64>) {
        let at_ms = now_ms + self.lead_ms();
        self.state = HostState {
            playing,
            position_ms: position_ms.unwrap_or_else(|| self.state.position_at(at_ms)),
            rate: self.state.rate,
            at_ms,
        };
        self.follower.on_host(self.state);
        self.send_state();
    }

    fn send_state(&mut self) {
        self.out.push((None, playback_body(&self.state)));
    }

    fn set_waiting(&mut self, member: Option<NodeId>) {
        if self.view.waiting_for != member {
            self.view.waiting_for = member;
            self.out.push((None, RoomBody::Waiting { member }));
        }
    }

    /// Stops waiting for anyone not in `members`.
    fn forget_gone(&mut self, members: &[NodeId]) {
        let gone: Vec<NodeId> = self
            .buffering_since
            .keys()
            .filter(|m| !members.contains(m))
            .copied()
            .collect();
        for m in gone {
            self.buffering_since.remove(&m);
            self.wait.remove(&m);
        }
    }

    /// `member` (the host included) can play the next few seconds, or buffers.
    fn member_ready(&mut self, member: NodeId, ready: bool, now_ms: f64) {
        if ready {
            self.buffering_since.remove(&member);
            self.wait.report(member, true, now_ms);
        } else {
            self.buffering_since.entry(member).or_insert(now_ms);
        }
        self.decide(now_ms);
    }

    /// Holds or resumes the room for the members that buffer.
    fn decide(&mut self, now_ms: f64) {
        self.decided_at = self.decided_at.max(now_ms);
        for (member, since) in &self.buffering_since {
            if now_ms - since >= BUFFERING_GRACE_MS {
                self.wait.report(*member, false, *since);
            }
        }
        if !self.want_playing {
            self.set_waiting(None);
            return;
        }
        match self.wait.decide(now_ms) {
            Decision::Wait { member, .. } => {
                if self.state.playing {
                    self.change(now_ms, false, None);
                }
                self.set_waiting(Some(member));
            }
            Decision::Go => {
                self.set_waiting(None);
                if !self.state.playing {
                    self.change(now_ms, true, None);
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn info(host: NodeId, members: &[NodeId]) -> RoomInfo {
        RoomInfo {
            code: "K7M3-XQ9P".into(),
            link: "5d41402abc4b2a76b9719d911017c592".into(),
            info_hash: InfoHash::from_bytes([1; 32]),
            host: Some(host),
            members: members.to_vec(),
            host_key: None,
            playback: None,
        }
    }

    fn state_of(from: NodeId, state: MemberPlayback) -> RoomEvent {
        RoomEvent::Message {
            room: "K7M3-XQ9P".into(),
            from,
            body: RoomBody::MemberState {
                state,
                position_ms: 0.0,
                progress: 0.4,
                drift_ms: None,
                rtt_ms: Some(20.0),
                name: Some("Ana".into()),
            },
        }
    }

    fn bodies(out: Vec<Outgoing>) -> Vec<RoomBody> {
        out.into_iter().map(|(_, b)| b).collect()
    }

    /// A paused player at 0 with data.
    fn still() -> PlayerState {
        PlayerState {
            position_ms: 0.0,
            playing: false,
            seeking: false,
            ready: true,
            rate: 1.0,
        }
    }

    fn sent(host: &mut HostSession, now: f64) -> Vec<RoomBody> {
        let report = Report {
            state: MemberPlayback::Paused,
            position_ms: 0.0,
            progress: 1.0,
            name: None,
        };
        let player = still();
        bodies(host.outgoing(now, &report, &player))
            .into_iter()
            .filter(|b| !matches!(b, RoomBody::MemberState { .. }))
            .collect()
    }

    #[test]
    fn the_room_waits_for_a_member_that_buffers_past_the_grace_and_goes_on_after_the_timeout() {
        let (h, m) = (NodeId::random(), NodeId::random());
        let mut host = HostSession::new(&info(h, &[h, m]), Some(h), 0.0, WaitConfig::default());
        assert!(matches!(
            sent(&mut host, 0.0)[..],
            [RoomBody::Playback { playing: false, .. }]
        ));
        host.play(1000.0);
        // Stamped a command lead ahead: 300 ms for round trips of 20 ms.
        assert!(matches!(
            sent(&mut host, 1000.0)[..],
            [RoomBody::Playback {
                playing: true,
                position_ms: 0.0,
                at_ms: 1300.0,
                ..
            }]
        ));
        // A moment of buffering is not waited for.
        host.on_event(&state_of(m, MemberPlayback::Buffering), 5000.0);
        host.on_event(&state_of(m, MemberPlayback::Playing), 5500.0);
        host.tick(6600.0);
        assert!(sent(&mut host, 6600.0).is_empty());
        // Buffering for longer than the grace: the room pauses where it will be a lead from
        // now, and says for whom.
        host.on_event(&state_of(m, MemberPlayback::Buffering), 7000.0);
        host.tick(7999.0);
        assert!(sent(&mut host, 7999.0).is_empty());
        host.tick(8000.0);
        let held = sent(&mut host, 8000.0);
        assert_eq!(
            held,
            [
                RoomBody::Playback {
                    playing: false,
                    position_ms: 7000.0,
                    rate: 1.0,
                    at_ms: 8300.0
                },
                RoomBody::Waiting { member: Some(m) }
            ]
        );
        assert_eq!(host.view().name_of(m), "Ana");
        // Ready again: the room plays on from the same frame.
        host.on_event(&state_of(m, MemberPlayback::Paused), 9000.0);
        assert_eq!(
            sent(&mut host, 9000.0),
            [
                RoomBody::Waiting { member: None },
                RoomBody::Playback {
                    playing: true,
                    position_ms: 7000.0,
                    rate: 1.0,
                    at_ms: 9300.0
                },
            ]
        );
        // Buffering for good: waited for 15 s from when it started, then passed over.
        host.on_event(&state_of(m, MemberPlayback::Buffering), 10_000.0);
        host.tick(11_000.0);
        assert!(matches!(
            sent(&mut host, 11_000.0)[..],
            [
                RoomBody::Playback { playing: false, .. },
                RoomBody::Waiting { member: Some(_) }
            ]
        ));
        // Next: the host's own player pauses a lead after the hold.
        assert_eq!(host.next_wake_ms(), 11_300.0);
        host.tick(25_000.0);
        assert!(matches!(
            sent(&mut host, 25_000.0)[..],
            [
                RoomBody::Waiting { member: None },
                RoomBody::Playback { playing: true, .. }
            ]
        ));
    }

    #[test]
    fn a_host_that_buffers_holds_its_room_like_a_member() {
        let (h, m) = (NodeId::random(), NodeId::random());
        let mut host = HostSession::new(&info(h, &[h, m]), Some(h), 0.0, WaitConfig::default());
        sent(&mut host, 0.0);
        host.play(0.0);
        sent(&mut host, 0.0);
        // The host watches a file it is still downloading: its own player runs dry.
        let player = PlayerState {
            position_ms: 4000.0,
            playing: true,
            seeking: false,
            ready: false,
            rate: 1.0,
        };
        let dry = Report::of(&player, 0.3, Some("Host".into()));
        let others = |out: Vec<Outgoing>| -> Vec<RoomBody> {
            bodies(out)
                .into_iter()
                .filter(|b| !matches!(b, RoomBody::MemberState { .. }))
                .collect()
        };
        assert!(others(host.outgoing(4000.0, &dry, &player)).is_empty());
        host.tick(5000.0);
        let held = others(host.outgoing(5000.0, &dry, &player));
        assert!(
            matches!(
                held[..],
                [
                    RoomBody::Playback { playing: false, .. },
                    RoomBody::Waiting { member: Some(w) }
                ] if w == h
            ),
            "{held:?}"
        );
        assert_eq!(host.view().name_of(h), "Host");
        // Its pieces arrive: the room plays on.
        let ready = PlayerState {
            ready: true,
            playing: false,
            ..player
        };
        let back = others(host.outgoing(6000.0, &Report::of(&ready, 0.5, None), &ready));
        assert!(
            matches!(
                back[..],
                [
                    RoomBody::Waiting { member: None },
                    RoomBody::Playback { playing: true, .. }
                ]
            ),
            "{back:?}"
        );
    }

    #[test]
    fn after_a_reconnect_a_session_goes_on_under_its_new_id() {
        let (h, m, m2, h2) = (
            NodeId::random(),
            NodeId::random(),
            NodeId::random(),
            NodeId::random(),
        );
        let player = still();
        let report = Report::of(&player, 1.0, None);
        // A member comes back as m2; the host had sought to 30 s meanwhile.
        let mut member = MemberSession::new(&info(h, &[h, m]), Some(m), 0.0);
        let mut room = info(h, &[h, m2]);
        room.playback = Some(RoomBody::Playback {
            playing: false,
            position_ms: 30_000.0,
            rate: 1.0,
            at_ms: 1000.0,
        });
        assert!(member.on_event(&RoomEvent::Rejoined { room, me: m2 }, 100.0));
        assert_eq!(member.view().members, [h, m2]);
        let out = member.outgoing(100.0, &report, &player);
        let (_, RoomBody::ClockPing { id, t0 }) = out[0].clone() else {
            panic!("{out:?}")
        };
        assert!(member.view().states.contains_key(&m2));
        assert!(!member.view().states.contains_key(&m));
        member.on_event(
            &RoomEvent::Message {
                room: "K7M3-XQ9P".into(),
                from: h,
                body: RoomBody::ClockPong {
                    id,
                    t0,
                    t1: 2000.0,
                    t2: 2000.0,
                },
            },
            100.0,
        );
        assert_eq!(member.host_position_ms(100.0), Some(30_000.0));

        // A host comes back as h2: it says the room's playback again, and is itself.
        let mut host = HostSession::new(&info(h, &[h, m]), Some(h), 0.0, WaitConfig::default());
        sent(&mut host, 0.0);
        let rejoined = RoomEvent::Rejoined {
            room: info(h2, &[m, h2]),
            me: h2,
        };
        assert!(host.on_event(&rejoined, 500.0));
        assert!(matches!(
            sent(&mut host, 500.0)[..],
            [RoomBody::Playback { playing: false, .. }]
        ));
        assert_eq!(host.view().host, Some(h2));
        assert!(host.view().states.contains_key(&h2));
    }

    #[test]
    fn a_member_follows_the_hosts_playback_on_the_hosts_clock() {
        let (h, m) = (NodeId::random(), NodeId::random());
        let mut room = info(h, &[h, m]);
        room.playback = Some(RoomBody::Playback {
            playing: true,
            position_ms: 60_000.0,
            rate: 1.0,
            at_ms: 10_000.0,
        });
        let mut member = MemberSession::new(&room, Some(m), 0.0);
        let player = PlayerState {
            position_ms: 0.0,
            playing: false,
            seeking: false,
            ready: true,
            rate: 1.0,
        };
        let report = Report {
            state: MemberPlayback::Paused,
            position_ms: 0.0,
            progress: 0.0,
            name: Some("é".repeat(40)),
        };
        // First a clock ping to the host and the member's state.
        let out = member.outgoing(0.0, &report, &player);
        let (to, RoomBody::ClockPing { id, t0 }) = out[0].clone() else {
            panic!("{out:?}")
        };
        assert_eq!(to, Some(h));
        let RoomBody::MemberState {
            name: Some(name), ..
        } = &out[1].1
        else {
            panic!("{out:?}")
        };
        assert!(name.len() <= shoal_protocol::MAX_MEMBER_NAME_BYTES);
        assert!(member.poll(0.0, &player).is_empty(), "no clock yet");
        // The host's clock is 10 s ahead; the answer takes 10 ms each way.
        member.on_event(
            &RoomEvent::Message {
                room: room.code.clone(),
                from: h,
                body: RoomBody::ClockPong {
                    id,
                    t0,
                    t1: 10_010.0,
                    t2: 10_010.0,
                },
            },
            20.0,
        );
        assert_eq!(member.host_now(20.0), Some(10_020.0));
        // Host time 10 020: the media is at 60 020 ms; the player is far behind: seek.
        let actions = member.poll(20.0, &player);
        assert!(
            matches!(actions[..], [Action::Seek { position_ms }, ..] if position_ms > 60_020.0),
            "{actions:?}"
        );
        assert_eq!(member.host_position_ms(20.0), Some(60_020.0));
    }
}
