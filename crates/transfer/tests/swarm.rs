//! The sans-IO swarm under a simulated network (simulated time, latency, bandwidth, loss),
//! fast and deterministic. Properties asserted:
//! - a download from one or many seeders ends with exactly the original bytes, and only
//!   verified bytes are ever written;
//! - two seeders both contribute pieces;
//! - a seeder that vanishes, or freezes, mid-transfer is replaced by the others;
//! - a peer that sends a corrupted piece or a forged manifest is banned and the data is
//!   fetched from an honest peer;
//! - a resumed download asks only for the missing pieces;
//! - peers that advertise small max message sizes still work, and no message ever exceeds
//!   the negotiated size (asserted by the simulator on every message);
//! - downloaders serve each other, so the seeder uploads less than one copy per viewer;
//! - random garbage from a peer never panics the swarm; a repeated manifest request closes
//!   the link (each answer is the whole manifest); links beyond the cap and idle links close;
//! - a peer that never sends the manifest is replaced after the stall timeout.
//! - issue 8: piece framing lies (bytes past a piece's end, wrong offsets, a piece not
//!   requested) ban the peer like a hash failure, and the file comes from the honest peer; a
//!   node that never answers a manifest request costs one answer timeout, however many links
//!   it has.

mod sim;

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shoal_protocol::NodeId;
use shoal_storage::{Bitfield, PIECE_LEN};
use shoal_transfer::wire::WireMessage;
use shoal_transfer::{Input, LinkId, Output, Swarm, SwarmConfig, SwarmEvent};
use sim::{PathSpec, Sim, content, manifest_of};

const MIB: usize = 1 << 20;

#[test]
fn one_seeder_one_downloader() {
    let (data, manifest) = content(3 * MIB + 12_345, 1);
    let mut sim = Sim::new(1);
    let seeder = sim.add_seeder(&data, &manifest);
    let viewer = sim.add_downloader(&manifest);
    sim.connect(seeder, viewer, PathSpec::default());
    assert!(sim.run_until(Duration::from_secs(30), |s| s.complete(viewer)));
    sim.assert_holds(viewer, &data);
    assert!(sim.nodes[viewer].events.iter().any(
        |e| matches!(e, SwarmEvent::ManifestReady(m) if m.info_hash() == manifest.info_hash())
    ));
    // 3 MiB at 50 MiB/s with 10 ms latency: well under a second of simulated time.
    assert!(
        sim.elapsed() < Duration::from_secs(1),
        "took {:?}",
        sim.elapsed()
    );
}

#[test]
fn empty_and_single_piece_files() {
    for len in [0usize, 1, PIECE_LEN as usize, PIECE_LEN as usize + 1] {
        let (data, manifest) = content(len, 2);
        let mut sim = Sim::new(2);
        let seeder = sim.add_seeder(&data, &manifest);
        let viewer = sim.add_downloader(&manifest);
        sim.connect(seeder, viewer, PathSpec::default());
        assert!(
            sim.run_until(Duration::from_secs(10), |s| s.complete(viewer)),
            "len {len}"
        );
        sim.assert_holds(viewer, &data);
    }
}

#[test]
fn a_small_file_over_two_links_to_one_holder_is_sent_once() {
    // Two peer connections to one holder (the node's default) and a file of one piece: the
    // endgame may ask a second node for a piece in flight, never the same node again (both
    // links share its uplink: the app showed a share "served 2.0 times" to one viewer).
    let (data, manifest) = content(80 * 1024, 5);
    let mut sim = Sim::new(5);
    let seeder = sim.add_seeder(&data, &manifest);
    let viewer = sim.add_downloader(&manifest);
    // Each connection's own path is the limit: both could carry the piece at once.
    let path = PathSpec {
        bandwidth: 1 << 20,
        ..PathSpec::default()
    };
    sim.connect(seeder, viewer, path);
    sim.connect(seeder, viewer, path);
    assert!(sim.run_until(Duration::from_secs(10), |s| s.complete(viewer)));
    // Anything still on its way arrives.
    sim.run_until(Duration::from_secs(2), |_| false);
    sim.assert_holds(viewer, &data);
    assert_eq!(
        sim.bytes_up(seeder),
        data.len() as u64,
        "the holder sent the piece more than once"
    );
}

#[test]
fn two_seeders_both_contribute() {
    let (data, manifest) = content(8 * MIB, 3);
    let mut sim = Sim::new(3);
    let a = sim.add_seeder(&data, &manifest);
    let b = sim.add_seeder(&data, &manifest);
    let viewer = sim.add_downloader(&manifest);
    sim.connect(a, viewer, PathSpec::default());
    sim.connect(b, viewer, PathSpec::default());
    assert!(sim.run_until(Duration::from_secs(30), |s| s.complete(viewer)));
    sim.assert_holds(viewer, &data);
    let from = &sim.nodes[viewer].received_from;
    let (ida, idb) = (sim.nodes[a].id, sim.nodes[b].id);
    let (fa, fb) = (
        from.get(&ida).copied().unwrap_or(0),
        from.get(&idb).copied().unwrap_or(0),
    );
    assert!(
        fa > MIB as u64 && fb > MIB as u64,
        "a sent {fa}, b sent {fb}"
    );
    assert_eq!(fa + fb, data.len() as u64);
}

#[test]
fn a_vanishing_seeder_is_replaced() {
    let (data, manifest) = content(16 * MIB, 4);
    let mut sim = Sim::new(4);
    let a = sim.add_seeder(&data, &manifest);
    let b = sim.add_seeder(&data, &manifest);
    let viewer = sim.add_downloader(&manifest);
    let la = sim.connect(a, viewer, PathSpec::default());
    sim.connect(b, viewer, PathSpec::default());
    // Run until a quarter has arrived, then kill seeder a's link.
    assert!(sim.run_until(Duration::from_secs(30), |s| {
        s.nodes[viewer].swarm.have().count() >= 16
    }));
    sim.cut(la);
    assert!(sim.run_until(Duration::from_secs(30), |s| s.complete(viewer)));
    sim.assert_holds(viewer, &data);
}

#[test]
fn a_frozen_seeder_is_dropped_after_the_stall_timeout() {
    let (data, manifest) = content(8 * MIB, 5);
    let mut sim = Sim::new(5);
    let a = sim.add_seeder(&data, &manifest);
    let b = sim.add_seeder(&data, &manifest);
    let viewer = sim.add_downloader(&manifest);
    let la = sim.connect(a, viewer, PathSpec::default());
    sim.connect(b, viewer, PathSpec::default());
    assert!(sim.run_until(Duration::from_secs(30), |s| {
        s.nodes[viewer].swarm.have().count() >= 4
    }));
    sim.freeze(la);
    let frozen_at = sim.elapsed();
    assert!(sim.run_until(Duration::from_secs(60), |s| s.complete(viewer)));
    sim.assert_holds(viewer, &data);
    // Endgame lets b finish the pieces a held, at the latest when a is dropped for stalling.
    assert!(
        sim.elapsed() <= frozen_at + SwarmConfig::default().stall_timeout + Duration::from_secs(2),
        "finished at {:?}, frozen at {frozen_at:?}",
        sim.elapsed()
    );
}

#[test]
fn a_corrupt_piece_bans_the_liar_and_is_refetched() {
    let (data, manifest) = content(4 * MIB, 6);
    let mut sim = Sim::new(6);
    let liar = sim.add_seeder(&data, &manifest);
    let honest = sim.add_seeder(&data, &manifest);
    sim.nodes[liar].misbehaviour.corrupt_pieces = (0..16).collect();
    let viewer = sim.add_downloader(&manifest);
    sim.connect(liar, viewer, PathSpec::default());
    sim.connect(honest, viewer, PathSpec::default());
    assert!(sim.run_until(Duration::from_secs(30), |s| s.complete(viewer)));
    sim.assert_holds(viewer, &data);
    let liar_id = sim.nodes[liar].id;
    assert!(sim.nodes[viewer].swarm.is_banned(&liar_id));
    assert!(sim.nodes[viewer].events.iter().any(|e| matches!(
        e,
        SwarmEvent::PeerBanned { node, .. } if *node == liar_id
    )));
    assert!(!sim.nodes[viewer].swarm.is_banned(&sim.nodes[honest].id));
}

#[test]
fn a_forged_manifest_bans_the_liar() {
    let (data, manifest) = content(2 * MIB, 7);
    let (_, other) = content(2 * MIB, 70);
    let mut sim = Sim::new(7);
    let liar = sim.add_seeder(&data, &manifest);
    sim.nodes[liar].misbehaviour.fake_manifest = Some(other.to_bytes());
    let honest = sim.add_seeder(&data, &manifest);
    let viewer = sim.add_downloader(&manifest);
    // The liar connects first, so it is asked for the manifest first.
    sim.connect(liar, viewer, PathSpec::default());
    sim.connect(honest, viewer, PathSpec::default());
    assert!(sim.run_until(Duration::from_secs(30), |s| s.complete(viewer)));
    sim.assert_holds(viewer, &data);
    assert!(sim.nodes[viewer].swarm.is_banned(&sim.nodes[liar].id));
}

#[test]
fn a_resumed_download_asks_only_for_missing_pieces() {
    let (data, manifest) = content(4 * MIB, 8);
    let count = manifest.layout().piece_count();
    let mut have = Bitfield::empty(count);
    for i in (0..count).filter(|i| i % 3 != 0) {
        have.set(manifest.layout().piece_index(i).expect("valid"));
    }
    let already = have.count();
    let mut sim = Sim::new(8);
    let seeder = sim.add_seeder(&data, &manifest);
    // The resumed node holds the bytes of the pieces it has.
    let mut disk = vec![0u8; data.len()];
    for i in have.iter_set() {
        let r = manifest
            .layout()
            .piece_range(manifest.layout().piece_index(i).expect("valid"));
        disk[r.start as usize..r.end as usize]
            .copy_from_slice(&data[r.start as usize..r.end as usize]);
    }
    let swarm = Swarm::with_manifest(manifest.clone(), have, SwarmConfig::default(), sim.now);
    let viewer = sim.add_node(swarm, disk);
    sim.connect(seeder, viewer, PathSpec::default());
    assert!(sim.run_until(Duration::from_secs(30), |s| s.complete(viewer)));
    sim.assert_holds(viewer, &data);
    let written: Vec<u32> = sim.nodes[viewer].written.iter().map(|(p, _)| *p).collect();
    assert_eq!(written.len() as u32, count - already);
    assert!(
        written.iter().all(|p| p % 3 == 0),
        "refetched a piece it had: {written:?}"
    );
}

#[test]
fn small_max_message_sizes_work() {
    for mms in [65_536usize, 16_384, 1024] {
        let (data, manifest) = content(MIB + 7, 9);
        let mut sim = Sim::new(9);
        let seeder = sim.add_seeder(&data, &manifest);
        let viewer = sim.add_downloader(&manifest);
        sim.connect(
            seeder,
            viewer,
            PathSpec {
                max_message_bytes: mms,
                ..PathSpec::default()
            },
        );
        assert!(
            sim.run_until(Duration::from_secs(30), |s| s.complete(viewer)),
            "max message size {mms}"
        );
        sim.assert_holds(viewer, &data);
    }
}

#[test]
fn many_peers_over_lossy_links() {
    let (data, manifest) = content(24 * MIB, 10);
    let mut sim = Sim::new(10);
    let seeders: Vec<usize> = (0..12).map(|_| sim.add_seeder(&data, &manifest)).collect();
    let viewer = sim.add_downloader(&manifest);
    let mut rng = StdRng::seed_from_u64(10);
    for s in seeders {
        let spec = PathSpec {
            latency: Duration::from_millis(rng.random_range(5..80)),
            bandwidth: rng.random_range(1..8) << 20,
            loss: 0.05,
            rto: Duration::from_millis(300),
            ..PathSpec::default()
        };
        sim.connect(s, viewer, spec);
    }
    assert!(sim.run_until(Duration::from_secs(120), |s| s.complete(viewer)));
    sim.assert_holds(viewer, &data);
    let contributors = sim.nodes[viewer].received_from.len();
    assert!(
        contributors >= 10,
        "only {contributors} of 12 seeders contributed"
    );
}

#[test]
fn eight_viewers_behind_one_seeder_trade_pieces() {
    let (data, manifest) = content(16 * MIB, 11);
    let mut sim = Sim::new(11);
    let seeder = sim.add_seeder(&data, &manifest);
    let viewers: Vec<usize> = (0..8).map(|_| sim.add_downloader(&manifest)).collect();
    // The seeder's uplink (8 MiB/s shared by all its links) is the bottleneck; viewers are
    // well connected to each other.
    sim.nodes[seeder].uplink = Some(8 << 20);
    for &v in &viewers {
        sim.connect(seeder, v, PathSpec::default());
    }
    for (i, &a) in viewers.iter().enumerate() {
        for &b in &viewers[i + 1..] {
            sim.connect(a, b, PathSpec::default());
        }
    }
    assert!(sim.run_until(Duration::from_secs(300), |s| {
        viewers.iter().all(|&v| s.complete(v))
    }));
    for &v in &viewers {
        sim.assert_holds(v, &data);
    }
    let seeder_id = sim.nodes[seeder].id;
    let from_seeder: u64 = viewers
        .iter()
        .map(|&v| {
            sim.nodes[v]
                .received_from
                .get(&seeder_id)
                .copied()
                .unwrap_or(0)
        })
        .sum();
    let total = data.len() as u64 * viewers.len() as u64;
    println!(
        "seeder uploaded {:.1} MiB of {:.1} MiB delivered ({:.0} %)",
        from_seeder as f64 / MIB as f64,
        total as f64 / MIB as f64,
        100.0 * from_seeder as f64 / total as f64
    );
    // A star (every viewer from the seeder) would be 8 file sizes.
    assert!(
        from_seeder < 2 * data.len() as u64,
        "seeder uploaded {from_seeder} bytes for a file of {} bytes",
        data.len()
    );
}

#[test]
fn garbage_from_a_peer_never_panics() {
    let (_, manifest) = content(MIB, 12);
    let mut rng = StdRng::seed_from_u64(12);
    let t0 = std::time::Instant::now();
    for round in 0..200 {
        let mut swarm = if round % 2 == 0 {
            Swarm::with_manifest(
                manifest.clone(),
                Bitfield::full(manifest.layout().piece_count()),
                SwarmConfig::default(),
                t0,
            )
        } else {
            Swarm::new_download(manifest.info_hash(), SwarmConfig::default(), t0)
        };
        let link = LinkId(1);
        swarm.handle_input(
            Input::LinkOpened {
                link,
                node: NodeId::random(),
                max_message_bytes: 262_144,
            },
            t0,
        );
        if round % 4 < 2 {
            let hs = WireMessage::Handshake {
                version: 1,
                info_hash: manifest.info_hash(),
            }
            .encode();
            swarm.handle_input(Input::Message { link, data: &hs }, t0);
        }
        for _ in 0..50 {
            let len = rng.random_range(0..64);
            let mut junk: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            if let Some(first) = junk.first_mut() {
                *first %= 10; // mostly valid type bytes, to reach deeper code
            }
            swarm.handle_input(Input::Message { link, data: &junk }, t0);
            while !matches!(swarm.poll_output(), Output::Timeout(_)) {}
        }
    }
}

#[test]
fn the_manifest_round_trips_through_the_wire() {
    // A downloader that knows only the info hash gets a manifest identical to the seeder's.
    let (data, manifest) = content(5 * MIB + 3, 13);
    let mut sim = Sim::new(13);
    let seeder = sim.add_seeder(&data, &manifest);
    let swarm = Swarm::new_download(manifest.info_hash(), SwarmConfig::default(), sim.now);
    let viewer = sim.add_node(swarm, vec![0; data.len()]);
    sim.connect(seeder, viewer, PathSpec::default());
    assert!(sim.run_until(Duration::from_secs(30), |s| s.complete(viewer)));
    assert_eq!(
        sim.nodes[viewer].swarm.manifest(),
        Some(&manifest_of(&data))
    );
}

#[test]
fn a_peer_that_withholds_the_manifest_is_replaced() {
    let (data, manifest) = content(MIB, 14);
    let mut sim = Sim::new(14);
    let liar = sim.add_seeder(&data, &manifest);
    sim.nodes[liar].misbehaviour.withhold_manifest = true;
    let honest = sim.add_seeder(&data, &manifest);
    let viewer = sim.add_downloader(&manifest);
    sim.connect(liar, viewer, PathSpec::default());
    sim.connect(honest, viewer, PathSpec::default());
    assert!(sim.run_until(Duration::from_secs(60), |s| s.complete(viewer)));
    sim.assert_holds(viewer, &data);
    let stall = SwarmConfig::default().stall_timeout;
    assert!(
        sim.elapsed() <= stall + Duration::from_secs(2),
        "took {:?}",
        sim.elapsed()
    );
}

/// Issue 8, item 3: a peer appending bytes to every piece was never banned.
#[test]
fn bytes_past_a_piece_end_ban_the_liar() {
    let (data, manifest) = content(4 * MIB, 16);
    let mut sim = Sim::new(16);
    let liar = sim.add_seeder(&data, &manifest);
    sim.nodes[liar].misbehaviour.extra_piece_bytes = 1000;
    let honest = sim.add_seeder(&data, &manifest);
    let viewer = sim.add_downloader(&manifest);
    sim.connect(liar, viewer, PathSpec::default());
    sim.connect(honest, viewer, PathSpec::default());
    assert!(sim.run_until(Duration::from_secs(30), |s| s.complete(viewer)));
    sim.assert_holds(viewer, &data);
    let liar_id = sim.nodes[liar].id;
    assert!(sim.nodes[viewer].swarm.is_banned(&liar_id));
    assert!(sim.nodes[viewer].events.iter().any(|e| matches!(
        e,
        SwarmEvent::PeerBanned { node, reason } if *node == liar_id
            && reason.to_string().contains("past the piece's end")
    )));
    assert_eq!(
        sim.nodes[viewer]
            .received_from
            .get(&liar_id)
            .copied()
            .unwrap_or(0),
        0,
        "no verified byte came from the liar"
    );
}

#[test]
fn wrong_piece_offsets_ban_the_liar() {
    let (data, manifest) = content(2 * MIB, 17);
    let mut sim = Sim::new(17);
    let liar = sim.add_seeder(&data, &manifest);
    sim.nodes[liar].misbehaviour.shift_offsets = true;
    let honest = sim.add_seeder(&data, &manifest);
    let viewer = sim.add_downloader(&manifest);
    // Small messages, so every piece has chunks after the first.
    let small = PathSpec {
        max_message_bytes: 16 * 1024,
        ..PathSpec::default()
    };
    sim.connect(liar, viewer, small);
    sim.connect(honest, viewer, small);
    assert!(sim.run_until(Duration::from_secs(30), |s| s.complete(viewer)));
    sim.assert_holds(viewer, &data);
    assert!(sim.nodes[viewer].swarm.is_banned(&sim.nodes[liar].id));
}

/// Issue 8, item 4: a holder that never answers the manifest request delayed the download by
/// two stall timeouts (the retry went to the same node's other connection).
#[test]
fn a_node_that_never_answers_the_manifest_costs_one_answer_timeout() {
    let (data, manifest) = content(MIB, 18);
    let mut sim = Sim::new(18);
    let liar = sim.add_seeder(&data, &manifest);
    sim.nodes[liar].misbehaviour.withhold_manifest = true;
    let honest = sim.add_seeder(&data, &manifest);
    let viewer = sim.add_downloader(&manifest);
    // The liar's two connections come first, so it is asked first.
    sim.connect(liar, viewer, PathSpec::default());
    sim.connect(liar, viewer, PathSpec::default());
    sim.connect(honest, viewer, PathSpec::default());
    assert!(sim.run_until(Duration::from_secs(60), |s| s.complete(viewer)));
    sim.assert_holds(viewer, &data);
    let answer = SwarmConfig::default().manifest_answer_timeout;
    assert!(
        sim.elapsed() <= answer + Duration::from_secs(1),
        "took {:?}",
        sim.elapsed()
    );
}

#[test]
fn a_piece_not_requested_bans_the_sender() {
    let (data, manifest) = content(2 * MIB, 19);
    let t0 = std::time::Instant::now();
    let mut viewer = Swarm::with_manifest(
        manifest.clone(),
        Bitfield::empty(manifest.layout().piece_count()),
        SwarmConfig::default(),
        t0,
    );
    let peer = NodeId::random();
    open_link_1(&mut viewer, peer, t0);
    // No bitfield from the peer: nothing is requested from it, yet it sends piece 3.
    let piece = WireMessage::Piece {
        piece: 3,
        offset: 0,
        data: &data[3 * PIECE_LEN as usize..3 * PIECE_LEN as usize + 1000],
    }
    .encode();
    viewer.handle_input(
        Input::Message {
            link: LinkId(1),
            data: &piece,
        },
        t0,
    );
    assert!(viewer.is_banned(&peer));
    assert!(drain(&mut viewer).iter().any(|o| matches!(
        o,
        Output::Event(SwarmEvent::PeerBanned { reason, .. }) if reason.to_string().contains("not requested")
    )));
}

/// Each request is answered at most once: a piece cancelled and asked for again may come
/// twice (the cancel crossed the first copy on the wire), one more copy is a lie. (A room
/// member's download was banning its host: a cancel for a critical piece raced the piece.)
#[test]
fn a_piece_cancelled_and_asked_again_may_come_twice_but_not_three_times() {
    let (data, manifest) = content(2 * MIB, 20);
    let t0 = std::time::Instant::now();
    let mut viewer = Swarm::with_manifest(
        manifest.clone(),
        Bitfield::empty(manifest.layout().piece_count()),
        SwarmConfig::default(),
        t0,
    );
    let peer = NodeId::random();
    open_link_1(&mut viewer, peer, t0);
    let full = Bitfield::full(manifest.layout().piece_count());
    let bitfield = WireMessage::Bitfield(full.as_bytes()).encode();
    viewer.handle_input(
        Input::Message {
            link: LinkId(1),
            data: &bitfield,
        },
        t0,
    );
    let requested: Vec<u32> = drain(&mut viewer)
        .iter()
        .filter_map(|o| match o {
            Output::Transmit { message, .. } => match WireMessage::decode(message) {
                Ok(WireMessage::Request(p)) => Some(p),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert!(requested.len() >= 2, "{requested:?}");
    // A playhead on the second piece requested makes it critical: the others queued behind
    // the first are cancelled, and it is asked for again.
    let second = requested[1];
    viewer.handle_input(
        Input::Playheads(&[shoal_transfer::Playhead {
            offset: u64::from(second) * u64::from(PIECE_LEN),
            ahead_bytes: 0,
        }]),
        t0,
    );
    drain(&mut viewer);
    let send = |viewer: &mut Swarm, piece: u32| {
        let start = piece as usize * PIECE_LEN as usize;
        let message = WireMessage::Piece {
            piece,
            offset: 0,
            data: &data[start..start + PIECE_LEN as usize],
        }
        .encode();
        viewer.handle_input(
            Input::Message {
                link: LinkId(1),
                data: &message,
            },
            t0,
        );
    };
    // Every piece that was asked for once comes once, and the last one twice.
    for &piece in &requested {
        send(&mut viewer, piece);
    }
    let last = *requested.last().expect("requests");
    send(&mut viewer, last);
    let outputs = drain(&mut viewer);
    let banned = |outputs: &[Output]| {
        outputs
            .iter()
            .any(|o| matches!(o, Output::Event(SwarmEvent::PeerBanned { .. })))
    };
    let asked_twice = requested.iter().filter(|p| **p == last).count() > 1
        || outputs.iter().any(|o| {
            matches!(o, Output::Transmit { message, .. }
            if matches!(WireMessage::decode(message), Ok(WireMessage::Request(p)) if p == last))
        });
    assert!(!viewer.is_banned(&peer), "{outputs:?}");
    assert!(!banned(&outputs));
    // A copy more than it asked for is a lie.
    send(&mut viewer, last);
    send(&mut viewer, last);
    assert!(viewer.is_banned(&peer), "asked twice: {asked_twice}");
}

/// A download cap bounds what is asked for, not only what is read: at 0.1 MiB/s one link
/// holds one piece requested (a second of the cap), where it would hold four uncapped.
#[test]
fn a_download_cap_bounds_the_requests_in_flight() {
    let requests = |cap: Option<u64>| {
        let (_, manifest) = content(2 * MIB, 21);
        let t0 = std::time::Instant::now();
        let mut viewer = Swarm::with_manifest(
            manifest.clone(),
            Bitfield::empty(manifest.layout().piece_count()),
            SwarmConfig::default(),
            t0,
        );
        viewer.set_download_cap(cap);
        open_link_1(&mut viewer, NodeId::random(), t0);
        let full = Bitfield::full(manifest.layout().piece_count());
        let bitfield = WireMessage::Bitfield(full.as_bytes()).encode();
        viewer.handle_input(
            Input::Message {
                link: LinkId(1),
                data: &bitfield,
            },
            t0,
        );
        drain(&mut viewer)
            .iter()
            .filter(|o| {
                matches!(o, Output::Transmit { message, .. }
                if matches!(WireMessage::decode(message), Ok(WireMessage::Request(_))))
            })
            .count()
    };
    assert_eq!(requests(Some(100 * 1024)), 1);
    assert_eq!(
        requests(None),
        SwarmConfig::default().initial_pipeline_pieces
    );
}

/// A seeder swarm with one link from `node`, handshake done.
fn seeder_with_link(manifest: &shoal_storage::Manifest, t0: std::time::Instant) -> Swarm {
    let mut swarm = Swarm::with_manifest(
        manifest.clone(),
        Bitfield::full(manifest.layout().piece_count()),
        SwarmConfig::default(),
        t0,
    );
    open_link_1(&mut swarm, NodeId::random(), t0);
    swarm
}

/// Opens `LinkId(1)` from `node` and feeds its handshake.
fn open_link_1(swarm: &mut Swarm, node: NodeId, t0: std::time::Instant) {
    swarm.handle_input(
        Input::LinkOpened {
            link: LinkId(1),
            node,
            max_message_bytes: 262_144,
        },
        t0,
    );
    let hs = WireMessage::Handshake {
        version: 1,
        info_hash: swarm.info_hash(),
    }
    .encode();
    swarm.handle_input(
        Input::Message {
            link: LinkId(1),
            data: &hs,
        },
        t0,
    );
}

fn drain(swarm: &mut Swarm) -> Vec<Output> {
    let mut out = Vec::new();
    loop {
        match swarm.poll_output() {
            Output::Timeout(_) => return out,
            o => out.push(o),
        }
    }
}

#[test]
fn a_second_manifest_request_closes_the_link() {
    let (_, manifest) = content(MIB, 15);
    let t0 = std::time::Instant::now();
    let mut swarm = seeder_with_link(&manifest, t0);
    drain(&mut swarm);
    let request = WireMessage::ManifestRequest.encode();
    swarm.handle_input(
        Input::Message {
            link: LinkId(1),
            data: &request,
        },
        t0,
    );
    let first = drain(&mut swarm);
    assert!(
        first.iter().any(|o| matches!(o, Output::Transmit { .. })),
        "answered once"
    );
    swarm.handle_input(
        Input::Message {
            link: LinkId(1),
            data: &request,
        },
        t0,
    );
    let second = drain(&mut swarm);
    assert!(
        second.iter().any(|o| matches!(
            o,
            Output::CloseLink {
                reason: shoal_transfer::CloseReason::ProtocolViolation(_),
                ..
            }
        )),
        "{second:?}"
    );
}

#[test]
fn links_beyond_the_cap_and_idle_links_close() {
    let (_, manifest) = content(MIB, 16);
    let t0 = std::time::Instant::now();
    let mut swarm = seeder_with_link(&manifest, t0);
    let cap = SwarmConfig::default().max_links;
    for i in 2..=cap as u64 + 1 {
        swarm.handle_input(
            Input::LinkOpened {
                link: LinkId(i),
                node: NodeId::random(),
                max_message_bytes: 262_144,
            },
            t0,
        );
    }
    let out = drain(&mut swarm);
    let refused: Vec<_> = out
        .iter()
        .filter(|o| {
            matches!(
                o,
                Output::CloseLink {
                    reason: shoal_transfer::CloseReason::TooManyLinks,
                    ..
                }
            )
        })
        .collect();
    assert_eq!(refused.len(), 1, "only the link past the cap is refused");
    assert_eq!(swarm.link_count(), cap);
    // Nothing arrives for the idle timeout: every link closes.
    let later = t0 + SwarmConfig::default().idle_timeout + Duration::from_secs(1);
    swarm.handle_input(Input::Timeout, later);
    drain(&mut swarm);
    assert_eq!(swarm.link_count(), 0);
}
