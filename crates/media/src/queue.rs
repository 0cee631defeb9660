//! A viewer's bounded queue of samples waiting to be sent (seed 002's throttle: a slow viewer
//! makes the sender drop, never grow). When the queue is full, video goes first and whole:
//! the queued video frames are dropped and later ones too until the next keyframe, because a
//! frame decoded without the frames it refers to shows garbage until then. Audio is never
//! dropped for video's sake; it is dropped only when audio alone fills the queue.

use std::collections::VecDeque;

/// What the queue holds of one sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued<T> {
    /// Video (droppable until the next keyframe) or audio.
    pub kind: crate::Kind,
    /// A keyframe (a sync sample): decodable on its own.
    pub keyframe: bool,
    /// Its size in bytes, as counted against the limit.
    pub bytes: usize,
    /// The sample.
    pub item: T,
}

/// Samples dropped so far, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Video frames.
    pub video: u64,
    /// Audio frames.
    pub audio: u64,
}

/// A bounded FIFO of samples for one viewer.
#[derive(Debug)]
pub struct SendQueue<T> {
    items: VecDeque<Queued<T>>,
    bytes: usize,
    max_bytes: usize,
    /// Video is being skipped until the next keyframe.
    awaiting_keyframe: bool,
    dropped: Dropped,
}

impl<T> SendQueue<T> {
    /// A queue holding at most `max_bytes` bytes of samples (a keyframe larger than that is
    /// still taken when the queue is empty).
    pub fn new(max_bytes: usize) -> Self {
        Self {
            items: VecDeque::new(),
            bytes: 0,
            max_bytes,
            awaiting_keyframe: false,
            dropped: Dropped::default(),
        }
    }

    /// Queues a sample, or drops it (or others) to stay within the limit. True when it was
    /// queued.
    pub fn push(&mut self, sample: Queued<T>) -> bool {
        let video = sample.kind == crate::Kind::Video;
        if video && self.awaiting_keyframe {
            if !sample.keyframe {
                self.dropped.video += 1;
                return false;
            }
            self.awaiting_keyframe = false;
        }
        if self.bytes + sample.bytes > self.max_bytes && !self.items.is_empty() {
            // Video first, and the frames after it until a keyframe.
            let before = self.items.len();
            self.items.retain(|q| q.kind != crate::Kind::Video);
            self.dropped.video += (before - self.items.len()) as u64;
            self.bytes = self.items.iter().map(|q| q.bytes).sum();
            if video && !sample.keyframe {
                self.awaiting_keyframe = true;
                self.dropped.video += 1;
                return false;
            }
            if !video {
                // Video in flight has lost its queued frames: skip to a keyframe.
                self.awaiting_keyframe = true;
            }
            while self.bytes + sample.bytes > self.max_bytes {
                let Some(oldest) = self.items.pop_front() else {
                    break;
                };
                self.bytes -= oldest.bytes;
                match oldest.kind {
                    crate::Kind::Video => self.dropped.video += 1,
                    crate::Kind::Audio => self.dropped.audio += 1,
                }
            }
        }
        self.bytes += sample.bytes;
        self.items.push_back(sample);
        true
    }

    /// The oldest sample, to send now.
    pub fn pop(&mut self) -> Option<Queued<T>> {
        let q = self.items.pop_front()?;
        self.bytes -= q.bytes;
        Some(q)
    }

    /// Bytes queued.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Samples queued.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Nothing queued.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// What was dropped so far.
    pub fn dropped(&self) -> Dropped {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Kind;

    fn video(n: u32, keyframe: bool) -> Queued<u32> {
        Queued {
            kind: Kind::Video,
            keyframe,
            bytes: 100,
            item: n,
        }
    }

    fn audio(n: u32) -> Queued<u32> {
        Queued {
            kind: Kind::Audio,
            keyframe: true,
            bytes: 10,
            item: n,
        }
    }

    #[test]
    fn a_full_queue_drops_video_until_the_next_keyframe_and_keeps_audio() {
        let mut q = SendQueue::new(330);
        assert!(q.push(video(0, true)));
        assert!(q.push(audio(1)));
        assert!(q.push(video(2, false)));
        assert!(q.push(audio(3)));
        assert!(q.push(video(4, false)));
        // 320 bytes; the next frame does not fit: the video goes, the audio stays, and video
        // is skipped until a keyframe.
        assert!(!q.push(video(5, false)));
        assert_eq!(q.bytes(), 20);
        assert!(q.push(audio(6)));
        assert!(
            !q.push(video(7, false)),
            "not decodable without the dropped frames"
        );
        assert!(q.push(video(8, true)));
        assert!(q.push(video(9, false)));
        let sent: Vec<u32> = std::iter::from_fn(|| q.pop().map(|s| s.item)).collect();
        assert_eq!(sent, [1, 3, 6, 8, 9]);
        assert_eq!(q.dropped(), Dropped { video: 5, audio: 0 });
    }

    #[test]
    fn memory_stays_flat_when_the_viewer_never_reads() {
        let mut q = SendQueue::new(10_000);
        for i in 0..100_000u32 {
            if i % 3 == 0 {
                q.push(audio(i));
            } else {
                q.push(video(i, i % 50 == 1));
            }
            assert!(q.bytes() <= 10_000);
        }
        assert!(q.dropped().video > 60_000);
        // Audio alone can fill it: then the oldest audio goes.
        assert!(q.dropped().audio > 0);
    }
}
