//! A deterministic network simulator for [`Swarm`]s: simulated time, per-link latency,
//! bandwidth and loss (as retransmission delay on an ordered, reliable channel), links that
//! close or go silent, and peers that lie. Disks are in memory and answer at once.

#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shoal_protocol::NodeId;
use shoal_storage::{Bitfield, Layout, Manifest, PieceIndex, sha256};
use shoal_transfer::wire::WireMessage;
use shoal_transfer::{Input, LinkId, Output, Swarm, SwarmConfig, SwarmEvent};

/// Makes `len` bytes of deterministic pseudo-random content and its manifest.
pub fn content(len: usize, seed: u64) -> (Vec<u8>, Manifest) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut data = vec![0u8; len];
    rng.fill(&mut data[..]);
    let manifest = manifest_of(&data);
    (data, manifest)
}

pub fn manifest_of(data: &[u8]) -> Manifest {
    let layout = Layout::standard(data.len() as u64).expect("layout");
    let hashes = data
        .chunks(layout.piece_len() as usize)
        .map(sha256)
        .collect();
    Manifest::new(layout, hashes).expect("manifest")
}

/// How a simulated peer misbehaves.
#[derive(Debug, Clone, Default)]
pub struct Misbehaviour {
    /// Flips a byte in these pieces as they go on the wire (after the sender's own check).
    pub corrupt_pieces: Vec<u32>,
    /// Answers a manifest request with this instead of the real manifest.
    pub fake_manifest: Option<Vec<u8>>,
    /// Never sends manifest data (but keeps the link open).
    pub withhold_manifest: bool,
    /// Sends this many extra bytes past the end of every piece (issue 8: a peer appending
    /// 1,000 bytes to every piece was never banned).
    pub extra_piece_bytes: usize,
    /// Shifts the offset of every piece chunk after the first by one byte.
    pub shift_offsets: bool,
}

pub struct SimNode {
    pub id: NodeId,
    pub swarm: Swarm,
    /// What this node holds: the original for seeders, the download buffer otherwise.
    pub disk: Vec<u8>,
    pub misbehaviour: Misbehaviour,
    pub timeout: Option<Instant>,
    pub events: Vec<SwarmEvent>,
    /// Every piece written, with the bytes that were written.
    pub written: Vec<(u32, Bytes)>,
    /// Bytes of piece data received per sending node.
    pub received_from: HashMap<NodeId, u64>,
    pub completed_at: Option<Instant>,
    pub closed_links: Vec<(LinkId, String)>,
    /// Total upload capacity shared by all of this node's links, bytes per second.
    pub uplink: Option<u64>,
    uplink_busy_until: Instant,
}

#[derive(Clone, Copy, Debug)]
pub struct PathSpec {
    pub latency: Duration,
    /// Bytes per second in each direction.
    pub bandwidth: u64,
    /// Probability that a message is lost once and retransmitted after `rto`.
    pub loss: f64,
    pub rto: Duration,
    pub max_message_bytes: usize,
}

impl Default for PathSpec {
    fn default() -> Self {
        Self {
            latency: Duration::from_millis(10),
            bandwidth: 50 << 20,
            loss: 0.0,
            rto: Duration::from_millis(200),
            max_message_bytes: 262_144,
        }
    }
}

struct Direction {
    busy_until: Instant,
    last_arrival: Instant,
}

struct SimLink {
    ends: [(usize, LinkId); 2],
    spec: PathSpec,
    dirs: [Direction; 2],
    up: bool,
    /// Silently drops everything (a frozen peer), without closing.
    blackhole: bool,
}

enum Delivery {
    Message {
        link: usize,
        to_end: usize,
        data: Bytes,
    },
    PieceSent {
        node: usize,
        link: LinkId,
    },
    Closed {
        node: usize,
        link: LinkId,
    },
}

pub struct Sim {
    pub t0: Instant,
    pub now: Instant,
    pub nodes: Vec<SimNode>,
    links: Vec<SimLink>,
    /// (node, LinkId) -> index into `links` and which end.
    by_end: HashMap<(usize, LinkId), (usize, usize)>,
    queue: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    deliveries: HashMap<usize, Delivery>,
    seq: u64,
    next_link: u64,
    rng: StdRng,
}

impl Sim {
    pub fn new(seed: u64) -> Self {
        let t0 = Instant::now();
        Self {
            t0,
            now: t0,
            nodes: Vec::new(),
            links: Vec::new(),
            by_end: HashMap::new(),
            queue: BinaryHeap::new(),
            deliveries: HashMap::new(),
            seq: 0,
            next_link: 1,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.t0
    }

    pub fn add_seeder(&mut self, data: &[u8], manifest: &Manifest) -> usize {
        let have = Bitfield::full(manifest.layout().piece_count());
        let swarm = Swarm::with_manifest(manifest.clone(), have, SwarmConfig::default(), self.now);
        self.add_node(swarm, data.to_vec())
    }

    /// A downloader with a random picker seed, as drivers configure it.
    pub fn add_downloader(&mut self, manifest: &Manifest) -> usize {
        let config = SwarmConfig {
            picker_seed: self.rng.random_range(1..u32::MAX),
            ..SwarmConfig::default()
        };
        self.add_downloader_with(manifest, config)
    }

    pub fn add_downloader_with(&mut self, manifest: &Manifest, config: SwarmConfig) -> usize {
        let swarm = Swarm::new_download(manifest.info_hash(), config, self.now);
        self.add_node(swarm, vec![0; manifest.layout().len_bytes() as usize])
    }

    pub fn add_node(&mut self, swarm: Swarm, disk: Vec<u8>) -> usize {
        self.nodes.push(SimNode {
            id: NodeId::random(),
            swarm,
            disk,
            misbehaviour: Misbehaviour::default(),
            timeout: None,
            events: Vec::new(),
            written: Vec::new(),
            received_from: HashMap::new(),
            completed_at: None,
            closed_links: Vec::new(),
            uplink: None,
            uplink_busy_until: self.now,
        });
        self.nodes.len() - 1
    }

    /// Opens a link between two nodes; returns its index.
    pub fn connect(&mut self, a: usize, b: usize, spec: PathSpec) -> usize {
        let la = LinkId(self.next_link);
        let lb = LinkId(self.next_link + 1);
        self.next_link += 2;
        let idx = self.links.len();
        self.links.push(SimLink {
            ends: [(a, la), (b, lb)],
            spec,
            dirs: [
                Direction {
                    busy_until: self.now,
                    last_arrival: self.now,
                },
                Direction {
                    busy_until: self.now,
                    last_arrival: self.now,
                },
            ],
            up: true,
            blackhole: false,
        });
        self.by_end.insert((a, la), (idx, 0));
        self.by_end.insert((b, lb), (idx, 1));
        let (ida, idb) = (self.nodes[a].id, self.nodes[b].id);
        let now = self.now;
        self.nodes[a].swarm.handle_input(
            Input::LinkOpened {
                link: la,
                node: idb,
                max_message_bytes: spec.max_message_bytes,
            },
            now,
        );
        self.nodes[b].swarm.handle_input(
            Input::LinkOpened {
                link: lb,
                node: ida,
                max_message_bytes: spec.max_message_bytes,
            },
            now,
        );
        idx
    }

    /// Piece bytes node `n` sent on its links still open.
    pub fn bytes_up(&self, n: usize) -> u64 {
        self.links
            .iter()
            .flat_map(|l| l.ends)
            .filter(|(node, _)| *node == n)
            .filter_map(|(_, link)| self.nodes[n].swarm.link_stats(link))
            .map(|s| s.bytes_up)
            .sum()
    }

    /// Closes a link as a vanished peer would: both ends see it close after the latency.
    pub fn cut(&mut self, link: usize) {
        let l = &mut self.links[link];
        if !l.up {
            return;
        }
        l.up = false;
        let at = self.now + l.spec.latency;
        let ends = l.ends;
        for (node, id) in ends {
            self.schedule(at, Delivery::Closed { node, link: id });
        }
    }

    /// Makes a link drop everything silently, like a frozen process.
    pub fn freeze(&mut self, link: usize) {
        self.links[link].blackhole = true;
    }

    fn schedule(&mut self, at: Instant, d: Delivery) {
        let id = self.seq as usize;
        self.seq += 1;
        self.deliveries.insert(id, d);
        self.queue.push(Reverse((at, self.seq, id)));
    }

    fn drain(&mut self, n: usize) {
        loop {
            let out = self.nodes[n].swarm.poll_output();
            match out {
                Output::Timeout(t) => {
                    self.nodes[n].timeout = Some(t);
                    return;
                }
                Output::Transmit {
                    link,
                    message,
                    piece_end,
                } => self.transmit(n, link, message, piece_end),
                Output::ReadPiece { link, piece } => {
                    let data = self.read_piece(n, piece);
                    let now = self.now;
                    self.nodes[n]
                        .swarm
                        .handle_input(Input::PieceRead { link, piece, data }, now);
                }
                Output::WritePiece { piece, data } => {
                    let node = &mut self.nodes[n];
                    let layout = *node.swarm.manifest().expect("manifest").layout();
                    let range = layout.piece_range(piece);
                    node.disk[range.start as usize..range.end as usize].copy_from_slice(&data);
                    node.written.push((piece.get(), data));
                    let now = self.now;
                    node.swarm.handle_input(Input::PieceWritten { piece }, now);
                }
                Output::CloseLink { link, reason } => {
                    self.nodes[n].closed_links.push((link, reason.to_string()));
                    if let Some(&(idx, end)) = self.by_end.get(&(n, link)) {
                        let l = &mut self.links[idx];
                        if l.up {
                            l.up = false;
                            let (other, other_id) = l.ends[1 - end];
                            let at = self.now + l.spec.latency;
                            self.schedule(
                                at,
                                Delivery::Closed {
                                    node: other,
                                    link: other_id,
                                },
                            );
                        }
                    }
                }
                Output::Event(e) => {
                    if let SwarmEvent::Verified { piece, from } = &e {
                        let size = self.nodes[n]
                            .swarm
                            .manifest()
                            .map(|m| m.layout().piece_size(*piece))
                            .unwrap_or(0);
                        *self.nodes[n].received_from.entry(*from).or_default() += u64::from(size);
                    }
                    if matches!(e, SwarmEvent::Completed) {
                        self.nodes[n].completed_at = Some(self.now);
                    }
                    self.nodes[n].events.push(e);
                }
            }
        }
    }

    fn read_piece(&mut self, n: usize, piece: PieceIndex) -> Bytes {
        let node = &self.nodes[n];
        let layout = *node.swarm.manifest().expect("manifest").layout();
        let range = layout.piece_range(piece);
        Bytes::from(node.disk[range.start as usize..range.end as usize].to_vec())
    }

    fn transmit(&mut self, n: usize, link: LinkId, message: Bytes, piece_end: bool) {
        let Some(&(idx, end)) = self.by_end.get(&(n, link)) else {
            return;
        };
        let lossy =
            self.links[idx].spec.loss > 0.0 && self.rng.random_bool(self.links[idx].spec.loss);
        let l = &mut self.links[idx];
        if !l.up {
            return;
        }
        assert!(
            message.len() <= l.spec.max_message_bytes,
            "message of {} bytes exceeds the negotiated {}",
            message.len(),
            l.spec.max_message_bytes
        );
        let mut message = message;
        if self.nodes[n].misbehaviour.withhold_manifest
            && matches!(
                WireMessage::decode(&message),
                Ok(WireMessage::ManifestData { .. })
            )
        {
            return;
        }
        // A liar corrupting pieces on the wire.
        if let Ok(WireMessage::Piece {
            piece,
            offset,
            data,
        }) = WireMessage::decode(&message)
            && self.nodes[n].misbehaviour.corrupt_pieces.contains(&piece)
        {
            let mut bad = data.to_vec();
            bad[0] ^= 0xff;
            message = WireMessage::Piece {
                piece,
                offset,
                data: &bad,
            }
            .encode();
        }
        // A liar sending bytes past a piece's end, or chunks at wrong offsets.
        if let Ok(WireMessage::Piece {
            piece,
            offset,
            data,
        }) = WireMessage::decode(&message)
        {
            let extra = self.nodes[n].misbehaviour.extra_piece_bytes;
            if piece_end && extra > 0 {
                let mut longer = data.to_vec();
                longer.extend(std::iter::repeat_n(0x5a, extra));
                message = WireMessage::Piece {
                    piece,
                    offset,
                    data: &longer,
                }
                .encode();
            } else if self.nodes[n].misbehaviour.shift_offsets && offset > 0 {
                message = WireMessage::Piece {
                    piece,
                    offset: offset + 1,
                    data,
                }
                .encode();
            }
        }
        // A liar answering manifest requests with something else.
        if let Some(fake) = &self.nodes[n].misbehaviour.fake_manifest
            && let Ok(WireMessage::ManifestData { offset: 0, .. }) = WireMessage::decode(&message)
        {
            message = WireMessage::ManifestData {
                total_len: fake.len() as u32,
                offset: 0,
                data: fake,
            }
            .encode();
        } else if self.nodes[n].misbehaviour.fake_manifest.is_some()
            && matches!(
                WireMessage::decode(&message),
                Ok(WireMessage::ManifestData { .. })
            )
        {
            return;
        }
        let spec = l.spec;
        let dir = &mut l.dirs[end];
        let serialise = Duration::from_secs_f64(message.len() as f64 / spec.bandwidth as f64);
        let mut depart = dir.busy_until.max(self.now) + serialise;
        let node = &mut self.nodes[n];
        if let Some(uplink) = node.uplink {
            let shared = Duration::from_secs_f64(message.len() as f64 / uplink as f64);
            node.uplink_busy_until = node.uplink_busy_until.max(self.now) + shared;
            depart = depart.max(node.uplink_busy_until);
        }
        dir.busy_until = depart;
        let mut arrival = depart + spec.latency;
        if lossy {
            arrival += spec.rto;
        }
        // Ordered delivery: nothing overtakes.
        arrival = arrival.max(dir.last_arrival);
        dir.last_arrival = arrival;
        let blackhole = l.blackhole;
        if piece_end {
            self.schedule(depart, Delivery::PieceSent { node: n, link });
        }
        if !blackhole {
            self.schedule(
                arrival,
                Delivery::Message {
                    link: idx,
                    to_end: 1 - end,
                    data: message,
                },
            );
        }
    }

    /// Runs until `done` holds or `limit` of simulated time passes. Returns whether `done`.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Sim) -> bool) -> bool {
        let deadline = self.now + limit;
        loop {
            for n in 0..self.nodes.len() {
                self.drain(n);
            }
            if done(self) {
                return true;
            }
            let next_timer = self
                .nodes
                .iter()
                .enumerate()
                .filter_map(|(i, n)| n.timeout.map(|t| (t, i)))
                .min();
            let next_delivery = self.queue.peek().map(|Reverse((t, _, _))| *t);
            let (at, timer_node) = match (next_timer, next_delivery) {
                (Some((t, i)), Some(d)) if t < d => (t, Some(i)),
                (_, Some(d)) => (d, None),
                (Some((t, i)), None) => (t, Some(i)),
                (None, None) => return false,
            };
            if at > deadline {
                self.now = deadline;
                return false;
            }
            self.now = self.now.max(at);
            let now = self.now;
            if let Some(i) = timer_node {
                self.nodes[i].timeout = None;
                self.nodes[i].swarm.handle_input(Input::Timeout, now);
                continue;
            }
            let Some(Reverse((_, _, id))) = self.queue.pop() else {
                continue;
            };
            let Some(d) = self.deliveries.remove(&id) else {
                continue;
            };
            match d {
                Delivery::Message { link, to_end, data } => {
                    let l = &self.links[link];
                    if !l.up {
                        continue;
                    }
                    let (node, id) = l.ends[to_end];
                    self.nodes[node].swarm.handle_input(
                        Input::Message {
                            link: id,
                            data: &data,
                        },
                        now,
                    );
                }
                Delivery::PieceSent { node, link } => {
                    self.nodes[node]
                        .swarm
                        .handle_input(Input::PieceSent { link }, now);
                }
                Delivery::Closed { node, link } => {
                    self.nodes[node]
                        .swarm
                        .handle_input(Input::LinkClosed { link }, now);
                }
            }
        }
    }

    pub fn complete(&self, n: usize) -> bool {
        self.nodes[n].swarm.is_complete()
    }

    /// Asserts node `n` holds exactly `data` and wrote only verified bytes.
    pub fn assert_holds(&self, n: usize, data: &[u8]) {
        let node = &self.nodes[n];
        assert!(node.swarm.is_complete(), "node {n} is not complete");
        assert_eq!(
            sha256(&node.disk),
            sha256(data),
            "node {n} holds other bytes"
        );
        let layout = *node.swarm.manifest().expect("manifest").layout();
        for (piece, bytes) in &node.written {
            let range = layout.piece_range(layout.piece_index(*piece).expect("valid"));
            assert_eq!(
                &bytes[..],
                &data[range.start as usize..range.end as usize],
                "piece {piece} was written with wrong bytes"
            );
        }
    }
}
