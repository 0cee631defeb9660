//! Fuzzing on the stable toolchain (issue 9, item 7): the peer wire decoder and the swarm fed
//! random and mutated bytes, as a lying or broken peer would send them. Each property runs
//! `PROPTEST_CASES` cases (256 by default, about a second); a longer run by hand:
//! `PROPTEST_CASES=200000 cargo test --release -p shoal-transfer --test fuzz_wire`.
//!
//! Properties: decoding never panics; whatever decodes re-encodes to the same bytes (so
//! there is one reading of every message); every message encodes to bytes that decode back
//! to it; a swarm given any sequence of messages on its links never panics and keeps its
//! accounting (no piece it has that it did not verify); a seeder and a downloader that know
//! the content, after a right handshake, survive any messages and never count a piece they
//! were sent random bytes for.

use std::time::{Duration, Instant};

use bytes::Bytes;
use proptest::prelude::*;
use shoal_protocol::{InfoHash, NodeId};
use shoal_storage::{Bitfield, Layout, Manifest, sha256};
use shoal_transfer::wire::{RejectReason, WireMessage};
use shoal_transfer::{Input, LinkId, Output, Playhead, Swarm, SwarmConfig};

fn message() -> impl Strategy<Value = (u8, u32, u32, u8, Vec<u8>)> {
    (
        0u8..9,
        any::<u32>(),
        any::<u32>(),
        any::<u8>(),
        proptest::collection::vec(any::<u8>(), 0..64),
    )
}

/// A valid message from generated parts.
fn build(kind: u8, a: u32, b: u32, byte: u8, data: &[u8]) -> WireMessage<'_> {
    let reasons = [
        RejectReason::NotHave,
        RejectReason::Busy,
        RejectReason::Unavailable,
        RejectReason::NoManifest,
    ];
    let mut hash = [byte; 32];
    hash[..4].copy_from_slice(&a.to_be_bytes());
    match kind {
        0 => WireMessage::Handshake {
            version: byte,
            info_hash: InfoHash::from_bytes(hash),
        },
        1 => WireMessage::Bitfield(data),
        2 => WireMessage::Have(a),
        3 => WireMessage::Request(a),
        4 => WireMessage::Piece {
            piece: a,
            offset: b,
            data,
        },
        5 => WireMessage::Cancel(a),
        6 => WireMessage::Reject {
            piece: a,
            reason: reasons[usize::from(byte) % reasons.len()],
        },
        7 => WireMessage::ManifestRequest,
        _ => WireMessage::ManifestData {
            total_len: a,
            offset: b,
            data,
        },
    }
}

proptest! {
    #[test]
    fn any_bytes_decode_or_fail_and_what_decodes_has_one_encoding(
        bytes in proptest::collection::vec(any::<u8>(), 0..300)
    ) {
        if let Ok(message) = WireMessage::decode(&bytes) {
            prop_assert_eq!(&message.encode()[..], &bytes[..]);
            prop_assert_eq!(message.encoded_len(), bytes.len());
        }
    }

    #[test]
    fn every_message_round_trips((kind, a, b, byte, data) in message()) {
        let message = build(kind, a, b, byte, &data);
        let bytes = message.encode();
        prop_assert_eq!(bytes.len(), message.encoded_len());
        prop_assert_eq!(WireMessage::decode(&bytes), Ok(message));
    }

    #[test]
    fn mutated_messages_never_panic(
        (kind, a, b, byte, data) in message(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        cut in any::<usize>(),
    ) {
        let mut bytes = build(kind, a, b, byte, &data).encode().to_vec();
        for (at, value) in flips {
            let len = bytes.len();
            bytes[at % len] ^= value;
        }
        bytes.truncate(cut % (bytes.len() + 1));
        if let Ok(message) = WireMessage::decode(&bytes) {
            prop_assert_eq!(&message.encode()[..], &bytes[..]);
        }
    }

    #[test]
    fn a_swarm_survives_any_messages_from_its_peers(
        seed in any::<[u8; 32]>(),
        messages in proptest::collection::vec(
            (0u64..3, prop_oneof![
                message().prop_map(|(k, a, b, byte, data)| build(k, a % 8, b, byte, &data).encode().to_vec()),
                proptest::collection::vec(any::<u8>(), 0..48),
            ]),
            1..40,
        ),
    ) {
        let start = Instant::now();
        let info_hash = InfoHash::from_bytes(seed);
        let mut swarm = Swarm::new_download(info_hash, SwarmConfig::default(), start);
        let nodes = [NodeId::random(), NodeId::random(), NodeId::random()];
        for (i, node) in nodes.iter().enumerate() {
            swarm.handle_input(
                Input::LinkOpened {
                    link: LinkId(i as u64),
                    node: *node,
                    max_message_bytes: 262_144,
                },
                start,
            );
        }
        let mut now = start;
        for (link, data) in &messages {
            now += Duration::from_millis(50);
            swarm.handle_input(Input::Message { link: LinkId(*link), data }, now);
            // Drain what the swarm wants done; none of it is carried out (no disk, no wire).
            for _ in 0..10_000 {
                if matches!(swarm.poll_output(), Output::Timeout(_)) {
                    break;
                }
            }
            swarm.handle_input(Input::Timeout, now);
        }
        // Nothing was verified (no manifest can match a random info hash), so nothing is had.
        prop_assert!(swarm.manifest().is_none());
        prop_assert!(!swarm.is_complete());
    }

    #[test]
    fn swarms_that_know_the_content_survive_any_messages_and_take_no_unverified_piece(
        content in proptest::collection::vec(any::<u8>(), 1..40_000),
        messages in proptest::collection::vec(
            (0u64..4, prop_oneof![
                message().prop_map(|(k, a, b, byte, data)| build(k, a % 4, b % 20_000, byte, &data).encode().to_vec()),
                proptest::collection::vec(any::<u8>(), 0..48),
            ]),
            1..60,
        ),
        playheads in proptest::collection::vec((any::<u64>(), any::<u64>()), 0..4),
    ) {
        // Pieces of 16 KiB: up to three pieces, so random piece numbers hit real ones.
        let layout = Layout::new(content.len() as u64, 16_384).expect("layout");
        let hashes = content.chunks(16_384).map(sha256).collect();
        let manifest = Manifest::new(layout, hashes).expect("manifest");
        let pieces = manifest.layout().piece_count();
        let start = Instant::now();
        let mut seeder = Swarm::with_manifest(
            manifest.clone(),
            Bitfield::full(pieces),
            SwarmConfig::default(),
            start,
        );
        let mut downloader = Swarm::with_manifest(
            manifest.clone(),
            Bitfield::empty(pieces),
            SwarmConfig::default(),
            start,
        );
        let handshake = WireMessage::Handshake {
            version: shoal_transfer::wire::WIRE_VERSION,
            info_hash: manifest.info_hash(),
        }
        .encode();
        for swarm in [&mut seeder, &mut downloader] {
            for link in 0..4 {
                swarm.handle_input(
                    Input::LinkOpened {
                        link: LinkId(link),
                        node: NodeId::random(),
                        max_message_bytes: 262_144,
                    },
                    start,
                );
                swarm.handle_input(Input::Message { link: LinkId(link), data: &handshake }, start);
            }
        }
        // Readers anywhere (issue 10), even past the end, set now and moved half-way.
        let playheads: Vec<Playhead> = playheads
            .iter()
            .map(|(offset, ahead)| Playhead { offset: *offset % (2 * content.len() as u64), ahead_bytes: *ahead })
            .collect();
        downloader.handle_input(Input::Playheads(&playheads), start);
        let mut now = start;
        for (i, (link, data)) in messages.iter().enumerate() {
            now += Duration::from_millis(20);
            if i == messages.len() / 2 {
                let moved: Vec<Playhead> = playheads
                    .iter()
                    .map(|p| Playhead { offset: p.offset / 2, ..*p })
                    .collect();
                downloader.handle_input(Input::Playheads(&moved), now);
            }
            for swarm in [&mut seeder, &mut downloader] {
                swarm.handle_input(Input::Message { link: LinkId(*link), data }, now);
                for _ in 0..10_000 {
                    match swarm.poll_output() {
                        Output::Timeout(_) => break,
                        // The seeder reads its pieces from `content`, as its file would give them.
                        Output::ReadPiece { link, piece } => {
                            let range = manifest.layout().piece_range(piece);
                            let data = Bytes::copy_from_slice(
                                &content[range.start as usize..range.end as usize],
                            );
                            swarm.handle_input(Input::PieceRead { link, piece, data }, now);
                        }
                        _ => {}
                    }
                }
                swarm.handle_input(Input::Timeout, now);
            }
        }
        // Random bytes never verify against a piece hash of real content (a chunk that
        // happens to carry the right bytes would; 16 KiB of them do not come by chance).
        prop_assert_eq!(downloader.have().count(), 0);
        prop_assert!(seeder.is_complete());
    }
}
