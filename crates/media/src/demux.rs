//! A media file's tracks and samples, in the form RTP packetisers take, without decoding:
//! MP4 (ISO/IEC 14496-12) through `re_mp4`, which indexes the samples without reading
//! `mdat`, and Matroska/WebM through `matroska-demuxer`. One video and one audio track are
//! kept (the first of each in a codec live mode sends); the others are listed with why.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::h264::AvcConfig;
use crate::{Codec, Kind, TrackTime};

/// Why a file cannot be streamed live.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// Reading the file failed.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Neither MP4 nor Matroska/WebM, or no track in a codec live mode sends.
    #[error("{0}")]
    Unsupported(String),
    /// The container or a sample is malformed.
    #[error("malformed media: {0}")]
    Malformed(String),
}

/// A track live mode sends.
#[derive(Debug, Clone, PartialEq)]
pub struct Track {
    /// Its codec.
    pub codec: Codec,
    /// Ticks per second of its samples' times.
    pub timescale: u32,
    /// For H.264: the parameter sets and `profile-level-id`.
    pub avc: Option<AvcConfig>,
    /// Picture size in pixels (0 for audio).
    pub width: u32,
    /// Picture height in pixels (0 for audio).
    pub height: u32,
    /// Audio channels (0 for video).
    pub channels: u16,
}

/// One sample (a video frame, an audio frame) ready for a packetiser: H.264 as an Annex-B
/// access unit with its parameter sets before each keyframe, VP8, VP9 and Opus as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Index into [`MediaFile::tracks`].
    pub track: usize,
    /// When it is decoded (send order).
    pub decode: TrackTime,
    /// When it is shown (its RTP timestamp).
    pub present: TrackTime,
    /// Decodable on its own (a sync sample).
    pub keyframe: bool,
    /// The bytes.
    pub data: Vec<u8>,
}

/// An open media file, read sample by sample in decode order.
pub struct MediaFile {
    path: PathBuf,
    tracks: Vec<Track>,
    skipped: Vec<String>,
    start: TrackTime,
    length: TrackTime,
    source: Source,
}

enum Source {
    Mp4 {
        file: File,
        /// (track index, sample) in decode order across tracks.
        order: Vec<(usize, re_mp4::Sample)>,
        next: usize,
    },
    Webm {
        demuxer: Box<matroska_demuxer::MatroskaFile<BufReader<File>>>,
        /// Matroska track number of each kept track, by index.
        numbers: Vec<u64>,
        /// Nanoseconds per Matroska timestamp tick.
        scale_ns: u64,
    },
}

impl std::fmt::Debug for MediaFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaFile")
            .field("path", &self.path)
            .field("tracks", &self.tracks)
            .field("start", &self.start)
            .field("length", &self.length)
            .finish_non_exhaustive()
    }
}

impl MediaFile {
    /// Opens `path`, an MP4 or a Matroska/WebM file (by its first bytes, not its name).
    ///
    /// # Errors
    /// [`MediaError::Io`], [`MediaError::Unsupported`] for another format or no sendable
    /// track, [`MediaError::Malformed`].
    pub fn open(path: &Path) -> Result<Self, MediaError> {
        let io = |source| MediaError::Io {
            path: path.to_owned(),
            source,
        };
        let mut file = File::open(path).map_err(io)?;
        let mut head = [0u8; 12];
        let n = file.read(&mut head).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        if n >= 4 && head[..4] == [0x1a, 0x45, 0xdf, 0xa3] {
            Self::open_matroska(path, file)
        } else if n >= 8 && &head[4..8] == b"ftyp" {
            Self::open_mp4(path, file)
        } else {
            Err(MediaError::Unsupported(format!(
                "{} is neither MP4 nor WebM/Matroska",
                path.display()
            )))
        }
    }

    fn open_mp4(path: &Path, mut file: File) -> Result<Self, MediaError> {
        let io = |source| MediaError::Io {
            path: path.to_owned(),
            source,
        };
        let size = file.metadata().map_err(io)?.len();
        let mp4 = re_mp4::Mp4::read(&mut file, size)
            .map_err(|e| MediaError::Malformed(format!("MP4: {e}")))?;
        let mut tracks = Vec::new();
        let mut skipped = Vec::new();
        let mut samples: Vec<Vec<re_mp4::Sample>> = Vec::new();
        for track in mp4.tracks().values() {
            let contents = &track.trak(&mp4).mdia.minf.stbl.stsd.contents;
            let codec = match contents {
                re_mp4::StsdBoxContent::Avc1(_) => Some(Codec::H264),
                re_mp4::StsdBoxContent::Vp08(_) => Some(Codec::Vp8),
                re_mp4::StsdBoxContent::Vp09(_) => Some(Codec::Vp9),
                re_mp4::StsdBoxContent::Mp4a(_) => Some(Codec::Aac),
                _ => None,
            };
            let name = match codec {
                Some(Codec::Aac) => "AAC".to_owned(),
                _ => track.codec_string(&mp4).unwrap_or_else(|| "unknown".into()),
            };
            let Some(codec) = codec.filter(|c| c.rtp_mime().is_some()) else {
                let why = if codec == Some(Codec::Aac) {
                    "WebRTC carries no AAC, so the stream goes without it"
                } else {
                    "not a codec live mode sends"
                };
                skipped.push(format!("track {} ({name}): {why}", track.track_id));
                continue;
            };
            if tracks
                .iter()
                .any(|t: &Track| t.codec.kind() == codec.kind())
            {
                skipped.push(format!(
                    "track {} ({name}): a second {:?} track",
                    track.track_id,
                    codec.kind()
                ));
                continue;
            }
            let avc = match codec {
                Codec::H264 => Some(AvcConfig::parse(
                    &track.raw_codec_config(&mp4).unwrap_or_default(),
                )?),
                _ => None,
            };
            let timescale = u32::try_from(track.timescale)
                .ok()
                .filter(|t| *t > 0)
                .ok_or_else(|| {
                    MediaError::Malformed(format!("MP4 timescale {}", track.timescale))
                })?;
            tracks.push(Track {
                codec,
                timescale,
                avc,
                width: u32::from(track.width),
                height: u32::from(track.height),
                channels: 0,
            });
            samples.push(track.samples.clone());
        }
        if tracks.is_empty() {
            return Err(no_track(path, &skipped));
        }
        let mut order: Vec<(usize, re_mp4::Sample)> = samples
            .iter()
            .enumerate()
            .flat_map(|(i, s)| s.iter().map(move |s| (i, *s)))
            .collect();
        // Decode order across tracks, by time in seconds (exact: cross-multiplied).
        order.sort_by(|(ta, a), (tb, b)| {
            let (sa, sb) = (tracks[*ta].timescale, tracks[*tb].timescale);
            (i128::from(a.decode_timestamp) * i128::from(sb))
                .cmp(&(i128::from(b.decode_timestamp) * i128::from(sa)))
                .then(ta.cmp(tb))
        });
        let time = |t: usize, ticks: i64| TrackTime::new(ticks, tracks[t].timescale);
        let start = order
            .iter()
            .map(|(t, s)| time(*t, s.composition_timestamp))
            .min_by(|a, b| compare(*a, *b))
            .unwrap_or(TrackTime::new(0, 1));
        let length = order
            .iter()
            .map(|(t, s)| time(*t, s.composition_timestamp + s.duration as i64))
            .max_by(|a, b| compare(*a, *b))
            .map(|end| minus(end, start))
            .unwrap_or(TrackTime::new(0, 1));
        Ok(Self {
            path: path.to_owned(),
            tracks,
            skipped,
            start,
            length,
            source: Source::Mp4 {
                file,
                order,
                next: 0,
            },
        })
    }

    fn open_matroska(path: &Path, file: File) -> Result<Self, MediaError> {
        let demuxer = matroska_demuxer::MatroskaFile::open(BufReader::new(file))
            .map_err(|e| MediaError::Malformed(format!("Matroska: {e}")))?;
        let scale_ns = demuxer.info().timestamp_scale().get();
        let mut tracks = Vec::new();
        let mut numbers = Vec::new();
        let mut skipped = Vec::new();
        for entry in demuxer.tracks() {
            let id = entry.codec_id();
            let codec = match id {
                "V_VP8" => Some(Codec::Vp8),
                "V_VP9" => Some(Codec::Vp9),
                "V_MPEG4/ISO/AVC" => Some(Codec::H264),
                "A_OPUS" => Some(Codec::Opus),
                _ => None,
            };
            let number = entry.track_number().get();
            let Some(codec) = codec else {
                skipped.push(format!(
                    "track {number} ({id}): not a codec live mode sends"
                ));
                continue;
            };
            if tracks
                .iter()
                .any(|t: &Track| t.codec.kind() == codec.kind())
            {
                skipped.push(format!(
                    "track {number} ({id}): a second {:?} track",
                    codec.kind()
                ));
                continue;
            }
            let avc = match codec {
                Codec::H264 => Some(AvcConfig::parse(entry.codec_private().unwrap_or_default())?),
                _ => None,
            };
            let (width, height) = entry.video().map_or((0, 0), |v| {
                (
                    u32::try_from(v.pixel_width().get()).unwrap_or(0),
                    u32::try_from(v.pixel_height().get()).unwrap_or(0),
                )
            });
            let channels = entry
                .audio()
                .map_or(0, |a| u16::try_from(a.channels().get()).unwrap_or(0));
            tracks.push(Track {
                codec,
                timescale: 1_000_000_000,
                avc,
                width,
                height,
                channels,
            });
            numbers.push(number);
        }
        if tracks.is_empty() {
            return Err(no_track(path, &skipped));
        }
        let duration_ns = demuxer
            .info()
            .duration()
            .filter(|d| d.is_finite() && *d > 0.0)
            .map(|d| (d * scale_ns as f64).round() as i64);
        let mut me = Self {
            path: path.to_owned(),
            tracks,
            skipped,
            start: TrackTime::new(0, 1_000_000_000),
            length: TrackTime::new(duration_ns.unwrap_or(0), 1_000_000_000),
            source: Source::Webm {
                demuxer: Box::new(demuxer),
                numbers,
                scale_ns,
            },
        };
        // The start, and the length when the header does not say: one pass over the frames.
        let mut first: Option<i64> = None;
        let mut end = 0i64;
        let needs_length = duration_ns.is_none();
        while let Some(sample) = me.next_sample()? {
            first.get_or_insert(sample.present.ticks);
            end = end.max(sample.present.ticks);
            if !needs_length {
                break;
            }
        }
        me.start = TrackTime::new(first.unwrap_or(0), 1_000_000_000);
        if needs_length {
            me.length = TrackTime::new(end - me.start.ticks, 1_000_000_000);
        }
        me.rewind()?;
        Ok(me)
    }

    /// The tracks sent: at most one video and one audio.
    pub fn tracks(&self) -> &[Track] {
        &self.tracks
    }

    /// The tracks left out, in words ("track 3 (A_AAC): not a codec live mode sends").
    pub fn skipped(&self) -> &[String] {
        &self.skipped
    }

    /// The earliest presentation time: what plays at a stream's start.
    pub fn start(&self) -> TrackTime {
        self.start
    }

    /// How long one play lasts (the longest track's end minus the start).
    pub fn length(&self) -> TrackTime {
        self.length
    }

    /// The schedule of a stream of this file: its start, its length as a lap, and each
    /// track's RTP clock (90 kHz video, 48 kHz Opus) with a base from `base` (random, RFC
    /// 3550 §5.1).
    pub fn schedule(&self, mut base: impl FnMut() -> u32) -> crate::Schedule {
        let clocks = self
            .tracks
            .iter()
            .map(|t| crate::RtpClock {
                rate: t.codec.rtp_clock_rate(),
                base: base(),
            })
            .collect();
        crate::Schedule::new(self.start, self.length, clocks)
    }

    /// The next sample in decode order; `None` at the end.
    ///
    /// # Errors
    /// [`MediaError::Io`], [`MediaError::Malformed`].
    pub fn next_sample(&mut self) -> Result<Option<Sample>, MediaError> {
        match &mut self.source {
            Source::Mp4 { file, order, next } => {
                let Some((track, s)) = order.get(*next).copied() else {
                    return Ok(None);
                };
                *next += 1;
                let mut data = vec![0u8; usize::try_from(s.size).unwrap_or(0)];
                let io = |source| MediaError::Io {
                    path: self.path.clone(),
                    source,
                };
                file.seek(SeekFrom::Start(s.offset)).map_err(io)?;
                file.read_exact(&mut data).map_err(io)?;
                let t = &self.tracks[track];
                if let Some(avc) = &t.avc {
                    data = avc.to_annex_b(&data, s.is_sync)?;
                }
                Ok(Some(Sample {
                    track,
                    decode: TrackTime::new(s.decode_timestamp, t.timescale),
                    present: TrackTime::new(s.composition_timestamp, t.timescale),
                    keyframe: s.is_sync || t.codec.kind() == Kind::Audio,
                    data,
                }))
            }
            Source::Webm {
                demuxer,
                numbers,
                scale_ns,
            } => {
                let mut frame = matroska_demuxer::Frame::default();
                loop {
                    let more = demuxer
                        .next_frame(&mut frame)
                        .map_err(|e| MediaError::Malformed(format!("Matroska: {e}")))?;
                    if !more {
                        return Ok(None);
                    }
                    let Some(track) = numbers.iter().position(|n| *n == frame.track) else {
                        continue;
                    };
                    let t = &self.tracks[track];
                    let ns = i64::try_from(frame.timestamp.saturating_mul(*scale_ns))
                        .map_err(|_| MediaError::Malformed("a timestamp past 292 years".into()))?;
                    let time = TrackTime::new(ns, 1_000_000_000);
                    let keyframe = match t.codec {
                        Codec::Opus | Codec::Aac => true,
                        // VP8's frame tag (RFC 6386 §9.1): bit 0 clear on a key frame.
                        Codec::Vp8 => frame.data.first().is_some_and(|b| b & 1 == 0),
                        _ => frame.is_keyframe.unwrap_or(false),
                    };
                    let data = match &t.avc {
                        Some(avc) => avc.to_annex_b(&frame.data, keyframe)?,
                        None => std::mem::take(&mut frame.data),
                    };
                    // Matroska stores presentation times; without B-frames (VP8, VP9, Opus)
                    // they are the decode order too.
                    return Ok(Some(Sample {
                        track,
                        decode: time,
                        present: time,
                        keyframe,
                        data,
                    }));
                }
            }
        }
    }

    /// Starts again from the first sample (the next lap of a looping stream).
    ///
    /// # Errors
    /// [`MediaError::Io`], [`MediaError::Malformed`].
    pub fn rewind(&mut self) -> Result<(), MediaError> {
        match &mut self.source {
            Source::Mp4 { next, .. } => *next = 0,
            Source::Webm { demuxer, .. } => {
                let file = File::open(&self.path).map_err(|source| MediaError::Io {
                    path: self.path.clone(),
                    source,
                })?;
                **demuxer = matroska_demuxer::MatroskaFile::open(BufReader::new(file))
                    .map_err(|e| MediaError::Malformed(format!("Matroska: {e}")))?;
            }
        }
        Ok(())
    }
}

fn no_track(path: &Path, skipped: &[String]) -> MediaError {
    MediaError::Unsupported(format!(
        "{} has no track live mode can send (H.264, VP8 or VP9 video; Opus audio){}",
        path.display(),
        if skipped.is_empty() {
            String::new()
        } else {
            format!(": {}", skipped.join("; "))
        }
    ))
}

/// Orders two times exactly (cross-multiplied).
fn compare(a: TrackTime, b: TrackTime) -> std::cmp::Ordering {
    (i128::from(a.ticks) * i128::from(b.timescale.max(1)))
        .cmp(&(i128::from(b.ticks) * i128::from(a.timescale.max(1))))
}

/// `a - b`, in a timebase both divide into (their product, reduced when one is a multiple of
/// the other).
fn minus(a: TrackTime, b: TrackTime) -> TrackTime {
    let (sa, sb) = (i64::from(a.timescale.max(1)), i64::from(b.timescale.max(1)));
    if sa % sb == 0 {
        return TrackTime::new(a.ticks - b.ticks * (sa / sb), a.timescale);
    }
    if sb % sa == 0 {
        return TrackTime::new(a.ticks * (sb / sa) - b.ticks, b.timescale);
    }
    // Rare (two unrelated timescales): in nanoseconds, rounded once.
    let ns = |t: TrackTime| i128::from(t.ticks) * 1_000_000_000 / i128::from(t.timescale.max(1));
    TrackTime::new((ns(a) - ns(b)) as i64, 1_000_000_000)
}
