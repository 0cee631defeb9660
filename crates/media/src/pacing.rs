//! When each sample of a live stream is sent, and the RTP timestamp it carries: both computed
//! from one clock anchor and the sample's presentation time in its track's timebase, never
//! accumulated (issue 12, item 1).
//!
//! Seed 002 sleeps one frame duration after each frame; every sleep overshoots a little, so
//! the stream falls behind its own clock the longer it runs, and audio and video drift apart.
//! Here sample `s` of lap `n` (a looping stream starts the file again at each lap) is due at
//!
//! `anchor + (pts(s) / timescale + n * lap_len - start)` seconds,
//!
//! and carries the RTP timestamp `base + round((pts(s) / timescale + n * lap_len - start) *
//! clock_rate)` (RFC 3550 §5.1: the sampling instant in the payload format's clock, 90 kHz
//! for video by RFC 6184 §5.1 and RFC 7741 §4.1, 48 kHz for Opus by RFC 7587 §4.1), each
//! computed afresh in integer arithmetic. A late send is late by its own delay only, and the
//! error of a timestamp is at most half a tick, however long the stream runs.

use std::time::Duration;

/// A time in a track's timebase: `ticks / timescale` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackTime {
    /// Ticks (may be negative: an edit list or codec delay can start a track before zero).
    pub ticks: i64,
    /// Ticks per second (at least 1).
    pub timescale: u32,
}

impl TrackTime {
    /// `ticks / timescale` seconds.
    pub const fn new(ticks: i64, timescale: u32) -> Self {
        Self { ticks, timescale }
    }

    fn timescale(self) -> i128 {
        i128::from(self.timescale.max(1))
    }
}

/// `numerator / denominator` rounded to the nearest integer (halves up); the denominator is
/// positive.
fn round_div(numerator: i128, denominator: i128) -> i128 {
    (2 * numerator + denominator).div_euclid(2 * denominator)
}

/// `(time + laps * lap) * rate`, rounded to the nearest whole unit, in one division (exact
/// for any timebase: nothing is rounded before the end).
fn in_rate(time: TrackTime, laps: u64, lap: TrackTime, rate: u64) -> i128 {
    let rate = i128::from(rate);
    let numerator = i128::from(time.ticks) * rate * lap.timescale()
        + i128::from(laps) * i128::from(lap.ticks) * rate * time.timescale();
    round_div(numerator, time.timescale() * lap.timescale())
}

/// Where a sample goes out: its delay after the anchor and its RTP timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// Time after the anchor at which the sample is sent.
    pub at: Duration,
    /// The sample's RTP timestamp (wrapping, RFC 3550 §5.1).
    pub rtp_timestamp: u32,
}

/// A track's RTP clock: its rate (Hz) and the timestamp of the stream's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpClock {
    /// Clock rate in Hz: 90 000 for video, 48 000 for Opus.
    pub rate: u32,
    /// The RTP timestamp at the start (random, RFC 3550 §5.1).
    pub base: u32,
}

/// One stream's schedule: the start (the earliest presentation time of the file, which plays
/// at the anchor), the length of one lap, and each track's RTP clock.
#[derive(Debug, Clone)]
pub struct Schedule {
    start: TrackTime,
    lap: TrackTime,
    tracks: Vec<RtpClock>,
}

impl Schedule {
    /// A schedule for a file whose earliest presentation time is `start` and whose laps last
    /// `lap` (the longest track's end minus `start`, as a time in some timebase), with one RTP
    /// clock per track (indexed as the samples' tracks).
    pub fn new(start: TrackTime, lap: TrackTime, tracks: Vec<RtpClock>) -> Self {
        Self { start, lap, tracks }
    }

    /// The slot of a sample of `track` decoded at `decode` and presented at `present`, in lap
    /// `lap` (0 for the first play): it is sent at its decode time (a B-frame's reference goes
    /// first) and stamped with its presentation time. `None` for a track the schedule does
    /// not have. A sample decoded before the start is due at once.
    pub fn slot(
        &self,
        track: usize,
        decode: TrackTime,
        present: TrackTime,
        lap: u64,
    ) -> Option<Slot> {
        let clock = self.tracks.get(track)?;
        let pts = present;
        let nanos = in_rate(decode, lap, self.lap, 1_000_000_000)
            - in_rate(self.start, 0, self.lap, 1_000_000_000);
        let rate = u64::from(clock.rate);
        let ticks = in_rate(pts, lap, self.lap, rate) - in_rate(self.start, 0, self.lap, rate);
        Some(Slot {
            at: Duration::from_nanos(u64::try_from(nanos.max(0)).unwrap_or(u64::MAX)),
            rtp_timestamp: clock.base.wrapping_add(ticks.rem_euclid(1 << 32) as u32),
        })
    }

    /// The length of one lap.
    pub fn lap(&self) -> Duration {
        let nanos = in_rate(self.lap, 0, self.lap, 1_000_000_000);
        Duration::from_nanos(u64::try_from(nanos.max(0)).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 10-minute file: 25 fps video in a 1 ms timebase (WebM), Opus in 20 ms frames.
    fn webm_like() -> (Schedule, Vec<(usize, TrackTime)>) {
        let mut samples = Vec::new();
        for i in 0..(10 * 60 * 25) {
            samples.push((0, TrackTime::new(i * 40, 1000)));
        }
        for i in 0..(10 * 60 * 50) {
            samples.push((1, TrackTime::new(i * 20, 1000)));
        }
        let schedule = Schedule::new(
            TrackTime::new(0, 1000),
            TrackTime::new(600_000, 1000),
            vec![
                RtpClock {
                    rate: 90_000,
                    base: 4_000_000_000,
                },
                RtpClock {
                    rate: 48_000,
                    base: 7,
                },
            ],
        );
        (schedule, samples)
    }

    #[test]
    fn timestamps_and_send_times_follow_the_timebase_exactly_across_laps() {
        let (schedule, samples) = webm_like();
        for lap in 0..3u64 {
            for &(track, pts) in &samples {
                let slot = schedule.slot(track, pts, pts, lap).expect("track");
                let secs_ms = pts.ticks as u64 + lap * 600_000;
                assert_eq!(slot.at, Duration::from_millis(secs_ms));
                let (rate, base) = if track == 0 {
                    (90u64, 4_000_000_000u32)
                } else {
                    (48, 7)
                };
                let ticks = secs_ms * rate;
                assert_eq!(
                    slot.rtp_timestamp,
                    base.wrapping_add((ticks % (1 << 32)) as u32),
                    "track {track} at {secs_ms} ms, lap {lap}"
                );
            }
        }
        // The last video frame of lap 3 (about 30 min in): no drift at all, and the
        // timestamp wrapped (base 4e9 + 162e6 ticks).
        let last = schedule
            .slot(
                0,
                TrackTime::new(599_960, 1000),
                TrackTime::new(599_960, 1000),
                2,
            )
            .expect("track");
        assert_eq!(last.at, Duration::from_millis(1_799_960));
        assert_eq!(
            last.rtp_timestamp,
            4_000_000_000u32.wrapping_add(1_799_960 * 90)
        );
    }

    #[test]
    fn a_ntsc_timebase_rounds_each_timestamp_once_and_never_accumulates() {
        // 30000/1001 fps in a 30000 Hz timebase (MP4), a lap of 10 minutes and 2 frames'
        // worth of rounding: 17982 frames.
        let frame = 1001;
        let frames = 17_982i64;
        let schedule = Schedule::new(
            TrackTime::new(0, 30_000),
            TrackTime::new(frames * frame, 30_000),
            vec![RtpClock {
                rate: 90_000,
                base: 0,
            }],
        );
        let mut previous = None;
        for lap_index in 0..4u64 {
            for i in 0..frames {
                let slot = schedule
                    .slot(
                        0,
                        TrackTime::new(i * frame, 30_000),
                        TrackTime::new(i * frame, 30_000),
                        lap_index,
                    )
                    .expect("track");
                // 90 kHz / 30 kHz = 3 ticks per timebase unit: exact, 3003 per frame.
                let n = lap_index * frames as u64 + i as u64;
                assert_eq!(u64::from(slot.rtp_timestamp), (n * 3003) % (1 << 32));
                // n * 1001 / 30000 s, rounded to the nanosecond once.
                let nanos = (n as u128 * 1001 * 1_000_000_000 * 2 + 30_000) / 60_000;
                assert_eq!(slot.at.as_nanos(), nanos);
                if let Some(prev) = previous {
                    assert!(slot.at > prev, "send times only move forward");
                }
                previous = Some(slot.at);
            }
        }
    }

    #[test]
    fn a_negative_start_plays_at_the_anchor() {
        // Opus with a codec delay: the first packet is presented at -6.5 ms.
        let schedule = Schedule::new(
            TrackTime::new(-312, 48_000),
            TrackTime::new(1, 1),
            vec![RtpClock {
                rate: 48_000,
                base: 100,
            }],
        );
        let first = schedule
            .slot(
                0,
                TrackTime::new(-312, 48_000),
                TrackTime::new(-312, 48_000),
                0,
            )
            .expect("track");
        assert_eq!(first.at, Duration::ZERO);
        assert_eq!(first.rtp_timestamp, 100);
        let next = schedule
            .slot(
                0,
                TrackTime::new(-312 + 960, 48_000),
                TrackTime::new(-312 + 960, 48_000),
                0,
            )
            .expect("track");
        assert_eq!(next.at, Duration::from_millis(20));
        assert_eq!(next.rtp_timestamp, 100 + 960);
        assert!(
            schedule
                .slot(1, TrackTime::new(0, 1), TrackTime::new(0, 1), 0)
                .is_none()
        );
    }
}
