//! Rebuilds frames from a remote track's RTP packets (RFC 3550 sequence numbers, RFC 6184 and
//! RFC 7741 marker bits): a video frame is the run of packets from a frame start to the
//! packet with the marker bit, an Opus frame is one packet. A frame is let out the moment its
//! last packet is in, in sequence order; rtc's `SampleBuilder` waits for the next frame's
//! first packet, which cost a frame interval (40 ms at 25 fps) on every frame.
//!
//! Packets may arrive out of order (NACK retransmissions come late); a missing packet is
//! waited for until [`Assembler::new`]'s `max_late` newer packets arrived, then its frame is
//! given up and the next frame start is looked for. Sans-IO: no clock, no network.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};

/// Most packets held (about 5 MB of payload): a sender that never ends a frame (no marker
/// bit) or never starts one costs this much and no more.
const MAX_HELD_PACKETS: usize = 4096;
use rtc::rtp::packet::Packet;
use rtc::rtp::packetizer::Depacketizer;

/// A rebuilt frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Assembled {
    /// The depacketised frame.
    pub(crate) data: Bytes,
    /// Its RTP timestamp.
    pub(crate) rtp_timestamp: u32,
    /// Packets given up on since the previous frame.
    pub(crate) dropped_packets: u16,
}

/// A codec's depacketiser (H.264, VP8, VP9, Opus), boxed so one assembler serves them all.
pub(crate) type BoxedDepacketizer = Box<dyn Depacketizer + Send + Sync>;

/// Frames from one track's packets.
pub(crate) struct Assembler {
    depacketizer: BoxedDepacketizer,
    new_depacketizer: fn() -> BoxedDepacketizer,
    /// Video (frames end at the marker bit) or audio (a frame per packet).
    video: bool,
    max_late: u64,
    /// Packets held, by extended sequence number (RFC 3550 §A.1's cycles << 16 | seq).
    packets: BTreeMap<u64, Packet>,
    /// The highest extended sequence number seen.
    highest: Option<u64>,
    /// Where the next frame starts; `None` until the first frame start is seen.
    next: Option<u64>,
    dropped: u16,
    /// A frame was given up since the last keyframe request was answered.
    keyframe_needed: bool,
}

impl Assembler {
    /// An assembler waiting `max_late` packets past a missing one.
    pub(crate) fn new(
        new_depacketizer: fn() -> BoxedDepacketizer,
        video: bool,
        max_late: u16,
    ) -> Self {
        Self {
            depacketizer: new_depacketizer(),
            new_depacketizer,
            video,
            max_late: u64::from(max_late.max(1)),
            packets: BTreeMap::new(),
            highest: None,
            next: None,
            dropped: 0,
            keyframe_needed: false,
        }
    }

    /// Takes one packet (a duplicate, or one older than the frames let out, is dropped).
    pub(crate) fn push(&mut self, packet: Packet) {
        let seq = packet.header.sequence_number;
        let extended = match self.highest {
            None => (1u64 << 16) | u64::from(seq),
            Some(highest) => {
                // The candidate nearest to the highest (wrap-around either way).
                let base = highest & !0xffff;
                [base.wrapping_sub(1 << 16), base, base + (1 << 16)]
                    .into_iter()
                    .map(|b| b | u64::from(seq))
                    .min_by_key(|c| c.abs_diff(highest))
                    .unwrap_or(base | u64::from(seq))
            }
        };
        if self.next.is_some_and(|n| extended < n) {
            return;
        }
        self.highest = Some(self.highest.map_or(extended, |h| h.max(extended)));
        self.packets.entry(extended).or_insert(packet);
        // Bounded: before the first frame start only the newest `max_late` packets can
        // matter; after it, a frame that never completes is given up past the cap.
        match self.next {
            None => {
                while self.packets.len() > self.max_late as usize {
                    self.packets.pop_first();
                }
            }
            Some(next) if self.packets.len() > MAX_HELD_PACKETS => self.give_up(next, next),
            Some(_) => {}
        }
    }

    /// Packets held, and the sequence number (extended) the next frame starts at: what a
    /// track that ends leaves unfinished.
    pub(crate) fn held(&self) -> (usize, Option<u64>) {
        (self.packets.len(), self.next)
    }

    /// Whether a frame was given up since the last call (the caller asks for a keyframe).
    pub(crate) fn take_keyframe_needed(&mut self) -> bool {
        std::mem::take(&mut self.keyframe_needed)
    }

    /// The next whole frame, if its packets are in.
    pub(crate) fn pop(&mut self) -> Option<Assembled> {
        loop {
            let start = match self.next {
                Some(next) => next,
                None => {
                    // The first frame: the oldest packet that starts one.
                    let (&seq, _) = self
                        .packets
                        .iter()
                        .find(|(_, p)| self.depacketizer.is_partition_head(&p.payload))?;
                    self.packets.retain(|s, _| *s >= seq);
                    self.next = Some(seq);
                    seq
                }
            };
            match self.complete_from(start) {
                Run::Complete(end) => match self.emit(start, end) {
                    Some(frame) => return Some(frame),
                    // A frame that did not depacketise: on to the next.
                    None => continue,
                },
                Run::Waiting(missing) => {
                    let highest = self.highest.unwrap_or(missing);
                    if highest < missing + self.max_late {
                        return None;
                    }
                    self.give_up(start, missing);
                }
                Run::Empty => return None,
            }
        }
    }

    /// Whether the packets from `start` make a whole frame.
    fn complete_from(&self, start: u64) -> Run {
        let Some(first) = self.packets.get(&start) else {
            return if self.packets.range(start..).next().is_some() {
                Run::Waiting(start)
            } else {
                Run::Empty
            };
        };
        if !self.video {
            return Run::Complete(start);
        }
        let timestamp = first.header.timestamp;
        let mut seq = start;
        loop {
            let Some(packet) = self.packets.get(&seq) else {
                return Run::Waiting(seq);
            };
            if packet.header.timestamp != timestamp {
                // A frame that lost its marker bit ends where the next one begins.
                return Run::Complete(seq - 1);
            }
            if packet.header.marker {
                return Run::Complete(seq);
            }
            seq += 1;
        }
    }

    /// Depacketises packets `start..=end` into a frame; `None` when it does not depacketise
    /// (counted as dropped).
    fn emit(&mut self, start: u64, end: u64) -> Option<Assembled> {
        let mut data = BytesMut::new();
        let mut timestamp = 0;
        let mut broken = false;
        for seq in start..=end {
            let Some(packet) = self.packets.remove(&seq) else {
                continue;
            };
            timestamp = packet.header.timestamp;
            match self.depacketizer.depacketize(&packet.payload) {
                Ok(bytes) => data.extend_from_slice(&bytes),
                Err(_) => broken = true,
            }
        }
        self.next = Some(end + 1);
        let dropped = std::mem::take(&mut self.dropped);
        if broken || data.is_empty() {
            let packets = u16::try_from(end + 1 - start).unwrap_or(u16::MAX);
            self.dropped = dropped.saturating_add(packets);
            self.depacketizer = (self.new_depacketizer)();
            self.keyframe_needed |= self.video;
            return None;
        }
        Some(Assembled {
            data: data.freeze(),
            rtp_timestamp: timestamp,
            dropped_packets: dropped,
        })
    }

    /// Gives up the frame at `start`, which lacks packet `missing`: drops its packets and
    /// continues at the next packet that starts a frame.
    fn give_up(&mut self, start: u64, missing: u64) {
        let lost_timestamp = self.packets.get(&start).map(|p| p.header.timestamp);
        let mut resume = None;
        let mut previous_marker = false;
        for (&seq, packet) in self.packets.range(missing..) {
            let starts = previous_marker
                || (lost_timestamp != Some(packet.header.timestamp)
                    && self.depacketizer.is_partition_head(&packet.payload));
            if starts || !self.video {
                resume = Some(seq);
                break;
            }
            previous_marker = packet.header.marker;
        }
        let resume = resume.unwrap_or_else(|| self.highest.unwrap_or(missing) + 1);
        let before = self.packets.len();
        self.packets.retain(|s, _| *s >= resume);
        let gone = (before - self.packets.len()) as u64 + 1;
        self.dropped = self
            .dropped
            .saturating_add(u16::try_from(gone).unwrap_or(u16::MAX));
        self.next = Some(resume);
        self.depacketizer = (self.new_depacketizer)();
        self.keyframe_needed |= self.video;
    }
}

enum Run {
    /// Packets `start..=end` are a whole frame.
    Complete(u64),
    /// This packet is missing.
    Waiting(u64),
    /// Nothing held.
    Empty,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::rtp::codec::{opus, vp8};
    use rtc::rtp::packetizer::Payloader;

    /// Packets of `frames` (each 3000 bytes of a VP8-like frame), from sequence `first`.
    fn packets(frames: u32, first: u16) -> (Vec<Bytes>, Vec<Packet>) {
        let mut payloader = vp8::Vp8Payloader::default();
        let mut seq = first;
        let mut out = Vec::new();
        let mut datas = Vec::new();
        for f in 0..frames {
            let data: Bytes = (0..3000u32)
                .map(|i| (i * 7 + f) as u8)
                .collect::<Vec<_>>()
                .into();
            let payloads = payloader.payload(1188, &data).expect("payload");
            let n = payloads.len();
            for (i, payload) in payloads.into_iter().enumerate() {
                out.push(Packet {
                    header: rtc::rtp::header::Header {
                        marker: i + 1 == n,
                        sequence_number: seq,
                        timestamp: f * 3600,
                        ..Default::default()
                    },
                    payload,
                });
                seq = seq.wrapping_add(1);
            }
            datas.push(data);
        }
        (datas, out)
    }

    fn vp8() -> BoxedDepacketizer {
        Box::<vp8::Vp8Packet>::default()
    }

    fn assembler() -> Assembler {
        Assembler::new(vp8, true, 16)
    }

    #[test]
    fn a_frame_is_let_out_with_its_last_packet_across_a_sequence_wrap() {
        let (datas, packets) = packets(4, 65_530);
        let mut a = assembler();
        let mut frames = Vec::new();
        for p in packets {
            let last = p.header.marker;
            a.push(p);
            let popped = a.pop();
            assert_eq!(popped.is_some(), last, "out exactly with its marker packet");
            frames.extend(popped);
        }
        assert_eq!(
            frames.iter().map(|f| f.data.clone()).collect::<Vec<_>>(),
            datas
        );
        assert_eq!(frames[3].rtp_timestamp, 3 * 3600);
    }

    #[test]
    fn reordered_packets_make_the_same_frames() {
        let (datas, mut packets) = packets(6, 100);
        // Swap neighbours: every packet out of order.
        for pair in packets.chunks_mut(2) {
            pair.reverse();
        }
        let mut a = assembler();
        let mut frames = Vec::new();
        for p in packets {
            a.push(p);
            while let Some(f) = a.pop() {
                frames.push(f.data);
            }
        }
        assert_eq!(frames, datas);
    }

    #[test]
    fn a_lost_packet_costs_its_frame_only_and_asks_for_a_keyframe() {
        let (datas, mut packets) = packets(30, 7);
        packets.remove(4); // in frame 1 (3 packets a frame)
        let mut a = assembler();
        let mut frames = Vec::new();
        for p in packets {
            a.push(p);
            while let Some(f) = a.pop() {
                frames.push(f);
            }
        }
        let got: Vec<Bytes> = frames.iter().map(|f| f.data.clone()).collect();
        let mut expected = datas.clone();
        expected.remove(1);
        // Frames after the gap wait for it, then come out once it is given up.
        assert_eq!(got, expected);
        assert_eq!(
            frames[1].dropped_packets, 3,
            "frame 1's two packets and the lost one"
        );
        assert!(a.take_keyframe_needed());
        assert!(!a.take_keyframe_needed());
    }

    #[test]
    fn a_sender_that_never_ends_or_starts_a_frame_costs_bounded_memory() {
        // Marker-less packets of one timestamp: the frame never completes.
        let mut a = assembler();
        for seq in 0..20_000u32 {
            a.push(Packet {
                header: rtc::rtp::header::Header {
                    sequence_number: seq as u16,
                    timestamp: 1,
                    ..Default::default()
                },
                payload: Bytes::from_static(&[0x10, 0, 0, 0]),
            });
            assert!(a.pop().is_none());
            assert!(a.held().0 <= MAX_HELD_PACKETS);
        }
        // No frame start at all (VP8's S bit clear): only the newest few are kept.
        let mut a = assembler();
        for seq in 0..20_000u32 {
            a.push(Packet {
                header: rtc::rtp::header::Header {
                    sequence_number: seq as u16,
                    marker: true,
                    ..Default::default()
                },
                payload: Bytes::from_static(&[0x00, 0, 0, 0]),
            });
            assert!(a.pop().is_none());
            assert!(a.held().0 <= 16);
        }
    }

    #[test]
    fn many_frames_that_do_not_depacketise_end_in_a_loop_not_a_deep_recursion() {
        // Thousands of one-packet "frames" whose payloads VP8 refuses (under 4 bytes... with
        // a start bit), then one good frame: no stack overflow, the good frame comes out.
        let mut a = Assembler::new(vp8, true, 20_000);
        for seq in 1..=3000u16 {
            a.push(Packet {
                header: rtc::rtp::header::Header {
                    sequence_number: seq,
                    marker: true,
                    timestamp: u32::from(seq),
                    ..Default::default()
                },
                payload: Bytes::from_static(&[0x10]),
            });
        }
        let (datas, mut good) = packets(1, 3001);
        for p in &mut good {
            p.header.timestamp = 999_999;
        }
        for p in good {
            a.push(p);
        }
        let frame = a.pop().expect("the good frame");
        assert_eq!(frame.data, datas[0]);
        assert!(frame.dropped_packets >= 3000);
    }

    #[test]
    fn opus_packets_are_frames_and_duplicates_are_dropped() {
        let mut a = Assembler::new(|| Box::new(opus::OpusPacket), false, 4);
        for (i, seq) in [10u16, 11, 11, 12].into_iter().enumerate() {
            a.push(Packet {
                header: rtc::rtp::header::Header {
                    sequence_number: seq,
                    timestamp: u32::from(seq) * 960,
                    ..Default::default()
                },
                payload: Bytes::from(vec![i as u8; 3]),
            });
        }
        let frames: Vec<u32> = std::iter::from_fn(|| a.pop())
            .map(|f| f.rtp_timestamp)
            .collect();
        assert_eq!(frames, [9600, 10560, 11520]);
    }
}
