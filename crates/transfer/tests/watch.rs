//! Watching while downloading (issue 10), under the simulated network: a player reads the
//! file at a media bitrate while the swarm downloads it, telling the swarm its playhead.
//! Properties asserted (figures printed):
//! - over twelve lossy holders of 1-7 MiB/s the player starts within a second and stalls for
//!   at most 100 ms in all (deadline misses are counted and printed), where rarest first
//!   alone needs far longer before the first second of media is there;
//! - a seek to 80 % plays again within a second;
//! - a slow holder asked first for a critical piece never holds it past its deadline: the
//!   piece is asked of a fast holder too, or of the same holder's other, fast link.

mod sim;

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shoal_transfer::{Input, Playhead};
use sim::{PathSpec, Sim, content};

const MIB: usize = 1 << 20;

/// A player reading `bitrate` bytes per second from node `node`'s download.
struct Player {
    node: usize,
    bitrate: u64,
    /// Next byte to play.
    position: u64,
    len: u64,
    /// Read-ahead window in bytes (30 s of media).
    ahead: u64,
    started_at: Option<Duration>,
    /// Times the player ran out of data after it started.
    stalls: u32,
    stalled_for: Duration,
    stalled: bool,
    told: Option<u64>,
}

impl Player {
    fn new(node: usize, len: u64, bitrate: u64) -> Self {
        Self {
            node,
            bitrate,
            position: 0,
            len,
            ahead: 30 * bitrate,
            started_at: None,
            stalls: 0,
            stalled_for: Duration::ZERO,
            stalled: false,
            told: None,
        }
    }

    /// Whether the bytes `[from, to)` are verified and written.
    fn available(sim: &Sim, node: usize, from: u64, to: u64) -> bool {
        let swarm = &sim.nodes[node].swarm;
        let Some(manifest) = swarm.manifest() else {
            return false;
        };
        let piece_len = u64::from(manifest.layout().piece_len());
        let first = from / piece_len;
        let last = to.saturating_sub(1).max(from) / piece_len;
        (first..=last).all(|p| swarm.have().has_raw(p as u32))
    }

    /// Tells the swarm where the player reads, when it moved to another piece.
    fn tell(&mut self, sim: &mut Sim) {
        let piece = self.position / u64::from(shoal_storage::PIECE_LEN);
        if self.told == Some(piece) {
            return;
        }
        self.told = Some(piece);
        let now = sim.now;
        let playheads = [Playhead {
            offset: self.position,
            ahead_bytes: self.ahead,
        }];
        sim.nodes[self.node]
            .swarm
            .handle_input(Input::Playheads(&playheads), now);
    }

    fn seek(&mut self, sim: &mut Sim, to: u64) {
        self.position = to;
        self.started_at = None;
        self.told = None;
        self.tell(sim);
    }

    /// Plays `step` of time: advances if the bytes are there, else counts a stall.
    fn play(&mut self, sim: &Sim, step: Duration) {
        let want = (self.bitrate as f64 * step.as_secs_f64()) as u64;
        let to = (self.position + want).min(self.len);
        if Self::available(sim, self.node, self.position, to) {
            if self.started_at.is_none() {
                self.started_at = Some(sim.elapsed());
            }
            self.position = to;
            self.stalled = false;
        } else if self.started_at.is_some() {
            if !self.stalled {
                self.stalls += 1;
                self.stalled = true;
            }
            self.stalled_for += step;
        }
    }

    fn done(&self) -> bool {
        self.position >= self.len
    }
}

/// Runs the simulation in 20 ms steps with the player until it reaches the end, or `limit`.
fn run_player(
    sim: &mut Sim,
    player: &mut Player,
    limit: Duration,
    until: impl Fn(&Player) -> bool,
) {
    let step = Duration::from_millis(20);
    let end = sim.elapsed() + limit;
    player.tell(sim);
    while !until(player) && sim.elapsed() < end {
        sim.run_until(step, |_| false);
        player.play(sim, step);
        player.tell(sim);
    }
}

/// `holders` seeders of 1 to `max_mib` MiB/s each, 5-80 ms away, 5 % loss, and a viewer.
fn lossy_swarm(
    sim: &mut Sim,
    data: &[u8],
    manifest: &shoal_storage::Manifest,
    seed: u64,
    holders: usize,
    max_mib: u64,
) -> usize {
    let seeders: Vec<usize> = (0..holders)
        .map(|_| sim.add_seeder(data, manifest))
        .collect();
    let viewer = sim.add_downloader(manifest);
    let mut rng = StdRng::seed_from_u64(seed);
    for s in seeders {
        let spec = PathSpec {
            latency: Duration::from_millis(rng.random_range(5..80)),
            bandwidth: rng.random_range(1..=max_mib) << 20,
            loss: 0.05,
            rto: Duration::from_millis(300),
            ..PathSpec::default()
        };
        sim.connect(s, viewer, spec);
    }
    viewer
}

#[test]
fn a_playhead_over_lossy_holders_starts_within_a_second_and_barely_stalls() {
    let (data, manifest) = content(64 * MIB, 20);
    let len = data.len() as u64;
    // 2 MiB/s is 16.8 Mbit/s: a high-bitrate 1080p video.
    let bitrate = 2 << 20;

    // Rarest first alone: how long until the first second of media is there.
    let mut plain = Sim::new(20);
    let viewer = lossy_swarm(&mut plain, &data, &manifest, 20, 12, 7);
    assert!(
        plain.run_until(Duration::from_secs(120), |s| Player::available(
            s, viewer, 0, bitrate
        ))
    );
    let plain_first = plain.elapsed();

    let mut sim = Sim::new(20);
    let viewer = lossy_swarm(&mut sim, &data, &manifest, 20, 12, 7);
    let mut player = Player::new(viewer, len, bitrate);
    run_player(
        &mut sim,
        &mut player,
        Duration::from_secs(120),
        Player::done,
    );
    assert!(player.done(), "the player did not reach the end");
    let started = player.started_at.expect("started");
    println!(
        "first second of media: {:.2} s with the playhead, {:.2} s with rarest first alone; \
         {} stalls ({:.2} s) over {:.0} s of media",
        started.as_secs_f64(),
        plain_first.as_secs_f64(),
        player.stalls,
        player.stalled_for.as_secs_f64(),
        len as f64 / bitrate as f64
    );
    assert!(
        started < Duration::from_secs(1),
        "started after {started:?}"
    );
    // At most a few frames in all (a frame at 25 fps is 40 ms).
    assert!(
        player.stalled_for <= Duration::from_millis(100),
        "stalled {} times, {:?}",
        player.stalls,
        player.stalled_for
    );
    assert!(sim.run_until(Duration::from_secs(60), |s| s.complete(viewer)));
    sim.assert_holds(viewer, &data);
}

#[test]
fn a_seek_to_80_percent_plays_again_within_a_second() {
    let (data, manifest) = content(64 * MIB, 21);
    let len = data.len() as u64;
    let bitrate = 1 << 20;
    let mut sim = Sim::new(21);
    // Four holders of 1-3 MiB/s: the download is still far from 80 % when the seek comes.
    let viewer = lossy_swarm(&mut sim, &data, &manifest, 21, 4, 3);
    let mut player = Player::new(viewer, len, bitrate);
    // Play 3 s of media, then seek.
    run_player(&mut sim, &mut player, Duration::from_secs(30), |p| {
        p.position >= 3 * p.bitrate
    });
    let target = len * 8 / 10;
    assert!(
        !Player::available(&sim, viewer, target, target + bitrate),
        "the seek target is already there: nothing to measure"
    );
    let seek_at = sim.elapsed();
    player.seek(&mut sim, target);
    run_player(&mut sim, &mut player, Duration::from_secs(30), |p| {
        p.started_at.is_some()
    });
    let resumed = player.started_at.expect("playing again") - seek_at;
    println!(
        "seek to 80 %: playing again after {:.2} s",
        resumed.as_secs_f64()
    );
    assert!(resumed < Duration::from_secs(1), "{resumed:?}");
    run_player(&mut sim, &mut player, Duration::from_secs(60), Player::done);
    println!(
        "after the seek: {} stalls ({:.2} s)",
        player.stalls,
        player.stalled_for.as_secs_f64()
    );
    assert!(
        player.stalled_for <= Duration::from_millis(100),
        "stalled {} times, {:?} after the seek",
        player.stalls,
        player.stalled_for
    );
}

/// A path of `bandwidth` bytes per second (the rest as by default).
fn path(bandwidth: u64) -> PathSpec {
    PathSpec {
        bandwidth,
        ..PathSpec::default()
    }
}

/// Once `viewer` knows the manifest, a player of 1 MiB/s seeks to 8 MiB: how long until it
/// plays (at most `limit`).
fn time_to_play_after_seek(sim: &mut Sim, viewer: usize, len: u64, limit: Duration) -> Duration {
    assert!(sim.run_until(Duration::from_secs(10), |s| {
        s.nodes[viewer].swarm.manifest().is_some()
    }));
    let mut player = Player::new(viewer, len, 1 << 20);
    let asked = sim.elapsed();
    player.seek(sim, 8 * MIB as u64);
    run_player(sim, &mut player, limit, |p| p.started_at.is_some());
    player.started_at.expect("playing") - asked
}

#[test]
fn a_slow_holder_never_holds_a_critical_piece_past_its_deadline() {
    let (data, manifest) = content(16 * MIB, 22);
    let mut sim = Sim::new(22);
    let slow = sim.add_seeder(&data, &manifest);
    let fast = sim.add_seeder(&data, &manifest);
    let viewer = sim.add_downloader(&manifest);
    // 64 KiB/s: four seconds per piece. Connected first, so it is the first link tried
    // while no rate is measured.
    sim.connect(slow, viewer, path(64 << 10));
    sim.connect(fast, viewer, path(8 << 20));
    // Read from the middle.
    let waited =
        time_to_play_after_seek(&mut sim, viewer, data.len() as u64, Duration::from_secs(20));
    println!(
        "critical piece with a 64 KiB/s holder tried first: playing after {:.2} s",
        waited.as_secs_f64()
    );
    // Its deadline is 1.5 s (no rate measured yet) plus 100 ms; then the fast holder
    // delivers in well under half a second. The slow holder alone would take 4 s.
    assert!(waited < Duration::from_millis(2500), "{waited:?}");
}

#[test]
fn a_trickling_link_to_a_holder_does_not_hold_a_critical_piece_its_other_link_can_bring() {
    // One holder over two peer connections (the node's default): the first one trickles at
    // 16 KiB/s (a congested path; it keeps making progress, so it never times out), the
    // second is fast. While the critical piece is on the first, the second asks for nothing
    // (the links share the holder's uplink); once the piece is overdue the second must take
    // it, or the player waits 16 s for one piece.
    let (data, manifest) = content(16 * MIB, 24);
    let mut sim = Sim::new(24);
    let holder = sim.add_seeder(&data, &manifest);
    let viewer = sim.add_downloader(&manifest);
    sim.connect(holder, viewer, path(16 << 10));
    sim.connect(holder, viewer, path(8 << 20));
    let waited =
        time_to_play_after_seek(&mut sim, viewer, data.len() as u64, Duration::from_secs(30));
    println!(
        "critical piece on a 16 KiB/s link to a holder whose other link is fast: playing after {:.2} s",
        waited.as_secs_f64()
    );
    // The slow link's rate is not measured yet (one piece takes it 16 s), so its deadline is
    // 1.5 x one assumed second per piece ahead of the critical one, plus 100 ms: about 3 s
    // with one piece under way. Before the fix the fast link never took it: 16 s.
    assert!(waited < Duration::from_millis(4000), "{waited:?}");
}

#[test]
fn a_second_reader_at_the_end_gets_its_piece_while_the_first_reads_on() {
    // A player reading from the start (the first request of an MP4 whose `moov` is at the
    // end) and its second request at the end, over one seeder sending 4 MiB/s (the issue's
    // figure for a 1080p file's holders).
    let (data, manifest) = content(24 * MIB, 23);
    let len = data.len() as u64;
    let mut sim = Sim::new(23);
    let seeder = sim.add_seeder(&data, &manifest);
    let viewer = sim.add_downloader(&manifest);
    sim.nodes[seeder].uplink = Some(4 << 20);
    sim.connect(seeder, viewer, PathSpec::default());
    sim.connect(seeder, viewer, PathSpec::default());
    let mut first = Player::new(viewer, len, 4 << 20);
    first.tell(&mut sim);
    // The first reader reads as fast as pieces come (the HTTP body is pulled ahead).
    let step = Duration::from_millis(20);
    let end_piece_at = len - 2000;
    let mut second_asked = None;
    let limit = sim.elapsed() + Duration::from_secs(30);
    while sim.elapsed() < limit {
        sim.run_until(step, |_| false);
        first.play(&sim, step);
        if second_asked.is_none() && first.started_at.is_some() {
            second_asked = Some(sim.elapsed());
        }
        let playheads: Vec<Playhead> = std::iter::once(Playhead {
            offset: first.position,
            ahead_bytes: 30 << 20,
        })
        .chain(second_asked.map(|_| Playhead {
            offset: end_piece_at,
            ahead_bytes: 30 << 20,
        }))
        .collect();
        let now = sim.now;
        sim.nodes[viewer]
            .swarm
            .handle_input(Input::Playheads(&playheads), now);
        if second_asked.is_some() && Player::available(&sim, viewer, end_piece_at, len) {
            break;
        }
    }
    let asked = second_asked.expect("the first reader started");
    let waited = sim.elapsed() - asked;
    println!(
        "end piece for a second reader over a 4 MiB/s seeder: {:.2} s",
        waited.as_secs_f64()
    );
    // Bounded by what the seeder already handed its links (two pieces each) and the first
    // reader's own critical pieces: about 1.5 pieces' time per link.
    assert!(waited < Duration::from_secs(1), "{waited:?}");
}
