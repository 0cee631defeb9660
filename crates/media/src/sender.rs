//! The sender's loop: samples in send order with their slots ([`Paced`]), each handed to the
//! network at `anchor + slot.at` ([`run`]). The wait is for an absolute instant, so time spent
//! sending one sample never delays the next one's slot: a late sample is late by its own
//! delay only (issue 12, item 1; seed 002 slept a frame duration after each frame and drifted).

use std::future::Future;
use std::time::Duration;

use crate::{MediaError, MediaFile, Sample, Schedule, Slot};

/// Where samples come from: a [`MediaFile`], or a test's synthetic stream.
pub trait SampleSource {
    /// The next sample in decode order; `None` at the end.
    ///
    /// # Errors
    /// The source's read errors.
    fn next_sample(&mut self) -> Result<Option<Sample>, MediaError>;

    /// Starts again from the first sample.
    ///
    /// # Errors
    /// The source's read errors.
    fn rewind(&mut self) -> Result<(), MediaError>;
}

impl<S: SampleSource + ?Sized> SampleSource for &mut S {
    fn next_sample(&mut self) -> Result<Option<Sample>, MediaError> {
        (**self).next_sample()
    }

    fn rewind(&mut self) -> Result<(), MediaError> {
        (**self).rewind()
    }
}

impl SampleSource for MediaFile {
    fn next_sample(&mut self) -> Result<Option<Sample>, MediaError> {
        MediaFile::next_sample(self)
    }

    fn rewind(&mut self) -> Result<(), MediaError> {
        MediaFile::rewind(self)
    }
}

/// A source's samples with their slots, lap after lap when it loops.
#[derive(Debug)]
pub struct Paced<S> {
    source: S,
    schedule: Schedule,
    lap: u64,
    looping: bool,
}

impl<S: SampleSource> Paced<S> {
    /// Paces `source` by `schedule`; at its end it starts again (`looping`) or ends.
    pub fn new(source: S, schedule: Schedule, looping: bool) -> Self {
        Self {
            source,
            schedule,
            lap: 0,
            looping,
        }
    }

    /// The next sample and its slot; `None` at the end of a stream that does not loop.
    ///
    /// # Errors
    /// The source's read errors; [`MediaError::Malformed`] for a sample of a track the
    /// schedule lacks, or an empty looping source.
    pub fn next_slot(&mut self) -> Result<Option<(Slot, Sample)>, MediaError> {
        let sample = match self.source.next_sample()? {
            Some(sample) => sample,
            None if self.looping => {
                // A lap of no length would send the file again and again at once.
                if self.schedule.lap().is_zero() {
                    return Err(MediaError::Unsupported(
                        "the file plays for no time, so it cannot loop".into(),
                    ));
                }
                self.source.rewind()?;
                self.lap += 1;
                self.source
                    .next_sample()?
                    .ok_or_else(|| MediaError::Malformed("the file has no sample to loop".into()))?
            }
            None => return Ok(None),
        };
        let slot = self
            .schedule
            .slot(sample.track, sample.decode, sample.present, self.lap)
            .ok_or_else(|| MediaError::Malformed(format!("a sample of track {}", sample.track)))?;
        Ok(Some((slot, sample)))
    }

    /// The lap under way (0 for the first play).
    pub fn lap(&self) -> u64 {
        self.lap
    }
}

/// The time a stream runs on, since its anchor: tokio's clock ([`TokioClock`]), or a
/// simulated one in tests.
pub trait Clock {
    /// Time since the anchor.
    fn now(&self) -> Duration;
    /// Waits until `at` after the anchor (at once when that is past).
    fn sleep_until(&self, at: Duration) -> impl Future<Output = ()>;
}

/// Tokio's clock from an anchor instant.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    /// The stream's start.
    pub anchor: tokio::time::Instant,
}

impl Clock for TokioClock {
    fn now(&self) -> Duration {
        self.anchor.elapsed()
    }

    fn sleep_until(&self, at: Duration) -> impl Future<Output = ()> {
        tokio::time::sleep_until(self.anchor + at)
    }
}

/// Sends `paced`'s samples, each through `send` at its slot on `clock` (at once when that is
/// past), until the stream ends or `send` answers `false` (the viewer left). Answers the
/// number of samples sent.
///
/// # Errors
/// The source's read errors.
pub async fn run<S, C, F, Fut>(
    mut paced: Paced<S>,
    clock: &C,
    mut send: F,
) -> Result<u64, MediaError>
where
    S: SampleSource,
    C: Clock,
    F: FnMut(Slot, Sample) -> Fut,
    Fut: Future<Output = bool>,
{
    let mut sent = 0u64;
    while let Some((slot, sample)) = paced.next_slot()? {
        clock.sleep_until(slot.at).await;
        if !send(slot, sample).await {
            break;
        }
        sent += 1;
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::{RtpClock, TrackTime};

    /// 10 minutes of 25 fps video and 20 ms audio frames in a 1 ms timebase, in decode order.
    struct Synthetic {
        samples: Vec<Sample>,
        next: usize,
    }

    impl Synthetic {
        fn ten_minutes() -> Self {
            let mut samples = Vec::new();
            for ms in (0..600_000i64).step_by(20) {
                if ms % 40 == 0 {
                    samples.push(sample(0, ms, ms % 2000 == 0));
                }
                samples.push(sample(1, ms, true));
            }
            Self { samples, next: 0 }
        }
    }

    fn sample(track: usize, ms: i64, keyframe: bool) -> Sample {
        let t = TrackTime::new(ms, 1000);
        Sample {
            track,
            decode: t,
            present: t,
            keyframe,
            data: vec![0; 4],
        }
    }

    impl SampleSource for Synthetic {
        fn next_sample(&mut self) -> Result<Option<Sample>, MediaError> {
            self.next += 1;
            Ok(self.samples.get(self.next - 1).cloned())
        }
        fn rewind(&mut self) -> Result<(), MediaError> {
            self.next = 0;
            Ok(())
        }
    }

    /// Simulated time: a sleep ends at once, at its instant; work advances it by hand.
    #[derive(Default)]
    struct SimClock(Cell<Duration>);

    impl SimClock {
        fn advance(&self, by: Duration) {
            self.0.set(self.0.get() + by);
        }
    }

    impl Clock for SimClock {
        fn now(&self) -> Duration {
            self.0.get()
        }
        fn sleep_until(&self, at: Duration) -> impl Future<Output = ()> {
            self.0.set(self.0.get().max(at));
            std::future::ready(())
        }
    }

    /// Runs a future that never waits (everything here is ready at once).
    fn finish<T>(future: impl Future<Output = T>) -> T {
        let mut future = std::pin::pin!(future);
        let waker = std::task::Waker::noop();
        match future
            .as_mut()
            .poll(&mut std::task::Context::from_waker(waker))
        {
            std::task::Poll::Ready(out) => out,
            std::task::Poll::Pending => panic!("a simulated stream waited"),
        }
    }

    fn schedule() -> Schedule {
        Schedule::new(
            TrackTime::new(0, 1000),
            TrackTime::new(600_000, 1000),
            vec![
                RtpClock {
                    rate: 90_000,
                    base: 0,
                },
                RtpClock {
                    rate: 48_000,
                    base: 0,
                },
            ],
        )
    }

    #[test]
    fn a_ten_minute_stream_goes_out_on_its_timebase_for_two_laps_with_slow_sends() {
        let clock = SimClock::default();
        let mut late = Vec::new();
        let mut stamps: [Vec<u32>; 2] = [Vec::new(), Vec::new()];
        let paced = Paced::new(Synthetic::ten_minutes(), schedule(), true);
        let mut count = 0u64;
        let sent = finish(run(paced, &clock, |slot, sample| {
            count += 1;
            late.push(clock.now() - slot.at);
            stamps[sample.track].push(slot.rtp_timestamp);
            // Every video frame takes 15 ms to hand over (a slow network write).
            if sample.track == 0 {
                clock.advance(Duration::from_millis(15));
            }
            std::future::ready(count < 2 * 45_000)
        }))
        .expect("run");
        assert_eq!(
            sent,
            2 * 45_000 - 1,
            "two laps of 15 000 frames and 30 000 packets"
        );
        // The audio packet due with a video frame waits for it (15 ms) but is never later
        // than that, in the first minute or the twentieth: nothing accumulates.
        let worst = late.iter().max().copied().unwrap_or_default();
        assert_eq!(worst, Duration::from_millis(15));
        assert!(
            late[late.len() - 100..]
                .iter()
                .all(|l| *l <= Duration::from_millis(15))
        );
        // RTP timestamps: 3600 ticks a frame, 960 a packet, across the lap boundary too.
        assert!(
            stamps[0]
                .windows(2)
                .all(|p| p[1].wrapping_sub(p[0]) == 3600)
        );
        assert!(stamps[1].windows(2).all(|p| p[1].wrapping_sub(p[0]) == 960));
        // The last send of lap 2 is where the timebase puts it: 20 min less 20 ms.
        assert_eq!(clock.now(), Duration::from_millis(1_199_980));
    }

    #[test]
    fn a_file_of_no_length_does_not_loop() {
        let one_frame = Synthetic {
            samples: vec![sample(0, 0, true)],
            next: 0,
        };
        let schedule = Schedule::new(
            TrackTime::new(0, 1000),
            TrackTime::new(0, 1000),
            vec![RtpClock {
                rate: 90_000,
                base: 0,
            }],
        );
        let clock = SimClock::default();
        let result = finish(run(
            Paced::new(one_frame, schedule, true),
            &clock,
            |_, _| std::future::ready(true),
        ));
        assert!(
            matches!(&result, Err(MediaError::Unsupported(why)) if why.contains("cannot loop")),
            "{result:?}"
        );
    }

    #[test]
    fn a_stream_that_does_not_loop_ends_with_the_file() {
        let clock = SimClock::default();
        let paced = Paced::new(Synthetic::ten_minutes(), schedule(), false);
        let sent = finish(run(paced, &clock, |_, _| std::future::ready(true))).expect("run");
        assert_eq!(sent, 45_000);
        assert_eq!(clock.now(), Duration::from_millis(599_980));
    }

    #[test]
    fn per_frame_sleeps_drift_where_the_anchor_does_not() {
        // Seed 002's way: sleep a frame's duration after each frame. With 1 ms of work per
        // frame, 10 minutes of 25 fps end 15 s late; from the anchor, on time.
        let clock = SimClock::default();
        for _ in 0..15_000 {
            clock.advance(Duration::from_millis(1));
            let now = clock.now();
            finish(clock.sleep_until(now + Duration::from_millis(40)));
        }
        assert_eq!(clock.now(), Duration::from_secs(615));
        let clock = SimClock::default();
        let video_only = Synthetic {
            samples: Synthetic::ten_minutes()
                .samples
                .into_iter()
                .filter(|s| s.track == 0)
                .collect(),
            next: 0,
        };
        finish(run(
            Paced::new(video_only, schedule(), false),
            &clock,
            |_, _| {
                clock.advance(Duration::from_millis(1));
                std::future::ready(true)
            },
        ))
        .expect("run");
        assert_eq!(clock.now(), Duration::from_millis(599_961));
    }
}
