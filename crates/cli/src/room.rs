//! `shoal room host FILE` and `shoal room join CODE [--follow]` (issue 11): a room's host and
//! a headless member over the node's room sessions ([`shoal_node::room`]).
//!
//! Both print the room's code and link on stdout and its events on stderr, one per line:
//! members joining and leaving, each member's state when it changes, the host's playback,
//! and whom the room waits for. The host reads commands from stdin (`play`, `pause`,
//! `seek 90` or `seek 60%`, `go-on`, `status`, `quit`). A member with `--follow` plays the
//! room's media with a headless player ([`crate::player`]) that follows the host, and says
//! once a second where it is: `follow position 61.503 s host 61.500 s drift +3 ms playing`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use shoal_node::room::{
    HostSession, MemberSession, MemberView, PlayerState, Report, RoomView, WaitConfig,
};
use shoal_node::text::inert;
use shoal_node::{MemberPlayback, NodeEvent, NodeHandle, RoomEvent};
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;

use crate::Served;

/// How often the sessions and the player are polled.
const TICK: Duration = Duration::from_millis(25);

/// `room host` options.
pub struct HostOptions {
    pub file: PathBuf,
    pub name: Option<String>,
    pub wait_timeout: Duration,
    /// Go live (issue 12), looping or not.
    pub live: Option<bool>,
}

/// `room join` options.
pub struct JoinOptions {
    pub room: String,
    pub out: PathBuf,
    pub follow: bool,
    pub name: Option<String>,
}

fn state_word(state: Option<MemberPlayback>) -> &'static str {
    state.map_or("unknown", MemberPlayback::as_str)
}

fn secs(ms: f64) -> String {
    format!("{:.3} s", ms / 1000.0)
}

/// Says on stderr what changed between two views of the room.
fn say_changes(before: &RoomView, after: &RoomView) {
    for m in &after.members {
        if !before.members.contains(m) {
            eprintln!("member {} joined", after.name_of(*m));
        }
    }
    for m in &before.members {
        if !after.members.contains(m) {
            eprintln!("member {} left", before.name_of(*m));
        }
    }
    if before.host.is_some() && after.host.is_none() {
        eprintln!("the host is reconnecting");
    }
    for (m, view) in &after.states {
        let old = before.states.get(m);
        if old.map(|o| o.state) != Some(view.state) {
            eprintln!(
                "member {} {} at {}, {:.0} % here",
                after.name_of(*m),
                state_word(view.state),
                secs(view.position_ms),
                view.progress * 100.0
            );
        }
    }
    if before.waiting_for != after.waiting_for {
        match after.waiting_for {
            Some(m) => {
                let progress = after
                    .states
                    .get(&m)
                    .map_or(0.0, |s: &MemberView| s.progress);
                eprintln!(
                    "waiting for {} (buffering, {:.0} %)",
                    after.name_of(m),
                    progress * 100.0
                );
            }
            None => eprintln!("waiting for nobody"),
        }
    }
    if let (None, Some(reason)) = (&before.closed, &after.closed) {
        eprintln!("room ended: {}", inert(reason, usize::MAX));
    }
}

/// Says what the room's view does not show: a refusal, a rejoin after a reconnect.
fn say_event(event: &RoomEvent) {
    match event {
        RoomEvent::Refused { reason } => eprintln!("refused: {}", inert(reason, usize::MAX)),
        RoomEvent::Rejoined { room, .. } => {
            eprintln!("rejoined room {} after a reconnect", room.code);
        }
        _ => {}
    }
}

/// Sends what a session wants sent. Offline, it is dropped: the node joins the room again
/// when it reconnects, and what matters is said again then (a member's state once a
/// second, the host's playback on rejoining).
async fn send_all(
    node: &NodeHandle,
    code: &str,
    out: Vec<shoal_node::room::Outgoing>,
) -> anyhow::Result<()> {
    for (to, body) in out {
        match node.room_send(code, to, body).await {
            Ok(()) => {}
            Err(shoal_node::NodeError::NotConnected { .. }) => {
                tracing::debug!("room message dropped while reconnecting");
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Hosts a room watching `file` until the room ends, stdin says `quit`, or a signal.
pub async fn host(
    node: &NodeHandle,
    events: &mut mpsc::Receiver<NodeEvent>,
    options: HostOptions,
    served: &Served,
) -> anyhow::Result<()> {
    let path = std::fs::canonicalize(&options.file)
        .with_context(|| format!("cannot open {}", options.file.display()))?;
    let duration_ms = shoal_node::media_duration_secs(&path).map(|s| s * 1000.0);
    let shared = crate::share_one(node, events, path.clone()).await?;
    let info = node.create_room(shared.info_hash).await?;
    let me = node.node_id().await?;
    println!("room {}", info.code);
    println!("link {}", info.link);
    eprintln!(
        "hosting {} in room {}; commands: play, pause, seek <seconds|N%>, go-on, live, status, quit",
        inert(&shared.name, usize::MAX),
        info.code
    );
    if duration_ms.is_none() {
        eprintln!("no playing time in the file's container: seek takes seconds only");
    }
    if let Some(looping) = options.live {
        go_live(node, &info.code, &path, looping).await?;
    }
    let mut session = HostSession::new(
        &info,
        me,
        node.clock_ms(),
        WaitConfig {
            timeout_ms: options.wait_timeout.as_secs_f64() * 1000.0,
        },
    );
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    let mut tick = tokio::time::interval(TICK);
    let mut said = session.state();
    loop {
        let before = session.view().clone();
        tokio::select! {
            line = stdin.next_line(), if stdin_open => match line {
                Ok(Some(line)) if line.trim() == "live" => {
                    if let Err(e) = go_live(node, &info.code, &path, false).await {
                        eprintln!("cannot go live: {e:#}");
                    }
                }
                Ok(Some(line)) => {
                    let now = node.clock_ms();
                    if !command(&mut session, line.trim(), now, duration_ms) {
                        node.leave_room(&info.code).await?;
                        eprintln!("room ended");
                        return Ok(());
                    }
                }
                _ => stdin_open = false,
            },
            event = events.recv() => match event {
                Some(NodeEvent::Room(event)) => {
                    say_event(&event);
                    session.on_event(&event, node.clock_ms());
                }
                Some(NodeEvent::UploadProgress(p)) => served.note(&p),
                Some(_) => {}
                None => bail!("the node stopped"),
            },
            _ = tick.tick() => session.tick(node.clock_ms()),
        }
        say_changes(&before, session.view());
        if session.view().closed.is_some() {
            return Ok(());
        }
        let now = node.clock_ms();
        let state = session.state();
        if state != said {
            said = state;
            eprintln!(
                "playback {} from {} in {:.0} ms",
                if state.playing { "playing" } else { "paused" },
                secs(state.position_ms),
                state.at_ms - now
            );
        }
        // The host's own player is the room's clock: never behind, never buffering.
        let current = session.current(now);
        let playing_now = current.playing;
        let player = PlayerState {
            position_ms: current.position_at(now),
            playing: playing_now,
            seeking: false,
            ready: true,
            rate: current.rate,
        };
        let report = Report::of(&player, 1.0, options.name.clone());
        let out = session.outgoing(now, &report, &player);
        send_all(node, &info.code, out).await?;
    }
}

/// Streams `path` live to the room's members (issue 12) and says what goes.
async fn go_live(
    node: &NodeHandle,
    room: &str,
    path: &std::path::Path,
    looping: bool,
) -> anyhow::Result<()> {
    let live = node.go_live(room, path.to_owned(), looping).await?;
    eprintln!(
        "live: {:?}{}",
        live.codecs,
        if looping { ", looping" } else { "" }
    );
    for skipped in &live.skipped {
        eprintln!("not sent: {skipped}");
    }
    Ok(())
}

/// Runs one host command; false to stop.
fn command(session: &mut HostSession, line: &str, now: f64, duration_ms: Option<f64>) -> bool {
    let mut words = line.split_whitespace();
    match (words.next(), words.next()) {
        (Some("play"), None) => session.play(now),
        (Some("pause"), None) => session.pause(now),
        (Some("go-on"), None) => session.go_on(now),
        (Some("quit"), None) => return false,
        (Some("status"), None) => {
            let position = session.current(now).position_at(now);
            let view = session.view();
            eprintln!(
                "status: room at {}, {} member(s)",
                secs(position),
                view.members.len()
            );
            for m in &view.members {
                let s = view.states.get(m).cloned().unwrap_or_default();
                eprintln!(
                    "  {} {} at {}, {:.0} % here, drift {}",
                    view.name_of(*m),
                    state_word(s.state),
                    secs(s.position_ms),
                    s.progress * 100.0,
                    s.drift_ms
                        .map_or_else(|| "unknown".into(), |d| format!("{d:+.0} ms"))
                );
            }
        }
        (Some("seek"), Some(to)) => match seek_target(to, duration_ms) {
            Ok(ms) => session.seek(ms, now),
            Err(e) => eprintln!("{e}"),
        },
        (None, _) => {}
        _ => eprintln!(
            "unknown command {:?}: play, pause, seek <seconds|N%>, go-on, status, quit",
            inert(line, 80)
        ),
    }
    true
}

/// `90` (seconds) or `60%` (of the playing time) as ms.
fn seek_target(text: &str, duration_ms: Option<f64>) -> Result<f64, String> {
    let bad =
        || format!("seek takes seconds (90) or a share of the playing time (60%), not {text:?}");
    if let Some(percent) = text.strip_suffix('%') {
        let p: f64 = percent.parse().map_err(|_| bad())?;
        let duration = duration_ms.ok_or("the playing time is unknown: seek in seconds")?;
        if !(0.0..=100.0).contains(&p) {
            return Err(bad());
        }
        return Ok(duration * p / 100.0);
    }
    let s: f64 = text.parse().map_err(|_| bad())?;
    if !(s.is_finite() && s >= 0.0) {
        return Err(bad());
    }
    Ok(s * 1000.0)
}

/// Joins a room, downloads its media, and (with `follow`) plays it in step with the host,
/// until the room ends or a signal.
pub async fn join(
    node: &NodeHandle,
    events: &mut mpsc::Receiver<NodeEvent>,
    options: JoinOptions,
) -> anyhow::Result<()> {
    let info = node
        .join_room(&options.room, None)
        .await
        .context("cannot join the room")?;
    println!("room {}", info.code);
    let transfer = node
        .download(info.info_hash, Some(options.out))
        .await?
        .transfer();
    let url = node.stream_url(transfer).await?;
    let me = node.node_id().await?;
    let mut session = MemberSession::new(&info, me, node.clock_ms());
    let mut player = options
        .follow
        .then(|| crate::player::HeadlessPlayer::new(url));
    eprintln!(
        "joined room {} with {} member(s){}",
        info.code,
        info.members.len(),
        if options.follow {
            "; following the host"
        } else {
            ""
        }
    );
    let mut progress = 0.0;
    let mut tick = tokio::time::interval(TICK);
    let mut next_line = node.clock_ms() + 1000.0;
    let mut next_map = node.clock_ms();
    loop {
        let before = session.view().clone();
        tokio::select! {
            event = events.recv() => match event {
                Some(NodeEvent::Room(event)) => {
                    say_event(&event);
                    session.on_event(&event, node.clock_ms());
                }
                Some(NodeEvent::DownloadStarted { transfer: t, len_bytes, .. }) if t == transfer => {
                    if let Some(p) = &mut player {
                        p.set_len(len_bytes);
                    }
                }
                Some(NodeEvent::DownloadProgress(p)) if p.transfer == transfer => {
                    progress = p.bytes_done as f64 / p.len_bytes.max(1) as f64;
                }
                Some(NodeEvent::Completed { transfer: t, path, .. }) if t == transfer => {
                    progress = 1.0;
                    eprintln!("complete: {}", path.display());
                    if let Some(p) = &mut player
                        && !p.knows_duration()
                        && let Some(secs) = shoal_node::media_duration_secs(&path)
                    {
                        p.set_duration(secs);
                    }
                }
                Some(NodeEvent::Failed { transfer: t, reason, .. }) if t == transfer => {
                    bail!("download failed: {reason}");
                }
                Some(_) => {}
                None => bail!("the node stopped"),
            },
            _ = tick.tick() => {}
        }
        say_changes(&before, session.view());
        if session.view().closed.is_some() {
            return Ok(());
        }
        let now = node.clock_ms();
        let player_state = match &mut player {
            Some(p) => {
                if !p.knows_duration() && now >= next_map {
                    next_map = now + 250.0;
                    if let Ok(map) = node.piece_map(transfer).await {
                        if map.len_bytes > 0 {
                            p.set_len(map.len_bytes);
                        }
                        if let Some(secs) = map.duration_secs {
                            p.set_duration(secs);
                        }
                    }
                }
                p.advance(now);
                for action in session.poll(now, &p.state()) {
                    p.apply(action);
                }
                p.state()
            }
            None => PlayerState {
                position_ms: 0.0,
                playing: false,
                seeking: false,
                ready: true,
                rate: 1.0,
            },
        };
        let report = Report::of(&player_state, progress, options.name.clone());
        let out = session.outgoing(now, &report, &player_state);
        send_all(node, &info.code, out).await?;
        if player.is_some() && now >= next_line {
            next_line = now + 1000.0;
            let host = session.host_position_ms(now);
            let drift = session.drift_ms(now, &player_state);
            eprintln!(
                "follow position {} host {} drift {} {}",
                secs(player_state.position_ms),
                host.map_or_else(|| "unknown".into(), secs),
                drift.map_or_else(|| "unknown".into(), |d| format!("{d:+.0} ms")),
                state_word(Some(report.state)),
            );
        }
    }
}
