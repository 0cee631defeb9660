//! Fragmented MP4 from a live stream's frames, as a browser's Media Source Extensions take it
//! (W3C "ISO BMFF Byte Stream Format": an initialization segment, then media segments), and as
//! a file ffmpeg reads (`shoal room join --record out.mp4`).
//!
//! The boxes are written with `mp4-atom`; this module decides what goes in them:
//!
//! - **Tracks.** Video (H.264 as `avc1`, VP8 as `vp08`, VP9 as `vp09`; track 1, 90 kHz) and
//!   Opus audio (`Opus` with `dOps`, track 2, 48 kHz). The initialization segment is written
//!   at the first video keyframe, once the muxer has seen whether audio comes too (it waits
//!   [`AUDIO_WAIT`] of arrival time for it). A new H.264 parameter set at a later keyframe
//!   writes a new initialization segment (MSE takes one between media segments).
//! - **One fragment per frame** (`moof` + `mdat`): nothing waits for a later frame, so the
//!   muxer adds no latency. A frame's duration is not known until the next one arrives, so
//!   each carries an estimate: Opus's from its TOC byte (RFC 6716 §3.1), exact; video's from
//!   the last step between presentation times.
//! - **Times.** RTP gives presentation times only, in decode order. Decode times must rise
//!   and not pass presentation times, so a video frame's decode time is its presentation time
//!   minus [`REORDER`], raised to one tick past the previous frame's where B-frames come
//!   back in time. Media time zero is [`REORDER`] before the first keyframe's presentation.
//! - **Lining tracks up.** Each track's RTP timestamps start at a random base (RFC 3550
//!   §5.1), so audio is placed by arrival: the first audio frame after the keyframe is put
//!   as far after the keyframe's presentation as it arrived after it. That is exact to the
//!   network's jitter when no frame is reordered (VP8, VP9; H.264 without B-frames); H.264
//!   with B-frames comes from MP4s whose AAC live mode skips, so has no audio to line up.
//!   From there each track runs on its own RTP clock, so the offset does not drift.

use std::time::Duration;

use mp4_atom::{
    Audio, Avc1, Avcc, Dinf, Dops, Dref, Encode, FourCC, Ftyp, Hdlr, Mdat, Mdhd, Mdia, Mfhd, Minf,
    Moof, Moov, Mvex, Mvhd, Opus, Smhd, Stbl, Stco, Stsc, Stsd, Stsz, Stts, Tfdt, Tfhd, Tkhd, Traf,
    Trak, Trex, Trun, TrunEntry, TrunSamples, Url, Visual, Vmhd, Vp08, Vp09, VpcC,
};

use crate::{Codec, MediaError};

/// Video's media timescale (ticks per second): the RTP clock's.
const VIDEO_RATE: u32 = 90_000;
/// Audio's media timescale: Opus's RTP clock.
const AUDIO_RATE: u32 = 48_000;
/// How far a video frame's decode time may sit before its presentation time: 200 ms, room
/// for three B-frames at 15 fps.
pub const REORDER: Duration = Duration::from_millis(200);
/// How long after the first keyframe's arrival the muxer waits for audio before it writes a
/// video-only initialization segment.
pub const AUDIO_WAIT: Duration = Duration::from_millis(300);
/// Frames held while waiting for a keyframe and for audio; the oldest go first.
const MAX_HELD: usize = 1024;
/// `sample_flags` of a sync sample: depends on no other (ISO/IEC 14496-12 §8.8.3.1).
const SYNC: u32 = 0x0200_0000;
/// `sample_flags` of a frame that depends on others and is not a sync sample.
const NON_SYNC: u32 = 0x0101_0000;

/// One received frame: what the RTP depacketiser gives.
#[derive(Debug, Clone, Copy)]
pub struct LiveFrame<'a> {
    /// Its codec (not [`Codec::Aac`], which live mode never sends).
    pub codec: Codec,
    /// Its RTP timestamp (90 kHz video, 48 kHz Opus).
    pub rtp_timestamp: u32,
    /// An H.264 access unit as Annex-B, a VP8 or VP9 frame, an Opus packet.
    pub data: &'a [u8],
    /// When it arrived, on any clock that only goes forward (e.g. since the stream started).
    pub arrived: Duration,
}

/// What a video keyframe says about its stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoFormat {
    /// Picture width in pixels.
    pub width: u16,
    /// Picture height in pixels.
    pub height: u16,
    /// H.264 only: the first SPS and PPS (NAL units without start codes).
    pub sps: Vec<u8>,
    /// H.264 only: the PPS.
    pub pps: Vec<u8>,
}

#[derive(Debug, Clone)]
struct Held {
    codec: Codec,
    rtp_timestamp: u32,
    data: Vec<u8>,
    arrived: Duration,
}

/// One track's clock: RTP timestamps unwrapped from its first frame.
#[derive(Debug, Clone, Copy)]
struct TrackClock {
    last_rtp: u32,
    /// The last frame's presentation, in media ticks.
    last_pts: i64,
    /// The last frame's decode time, in media ticks.
    last_dts: i64,
    /// The last step between presentation times (a duration estimate), ticks.
    step: i64,
}

impl TrackClock {
    /// The media presentation time of `rtp`, unwrapped against the last frame's.
    fn pts(&self, rtp: u32) -> i64 {
        self.last_pts + i64::from(rtp.wrapping_sub(self.last_rtp) as i32)
    }
}

/// The stream's layout once known.
#[derive(Debug, Clone)]
struct Layout {
    video: Option<(Codec, VideoFormat)>,
    audio: bool,
}

/// Turns a live stream's frames into fragmented MP4 bytes (see the module's text).
#[derive(Debug)]
pub struct LiveMuxer {
    held: Vec<Held>,
    layout: Option<Layout>,
    video: Option<TrackClock>,
    audio: Option<TrackClock>,
    /// The keyframe's arrival and its presentation in video ticks: where audio is placed from.
    anchor: Option<(Duration, i64)>,
    sequence: u32,
    audio_seen: bool,
}

impl Default for LiveMuxer {
    fn default() -> Self {
        Self::new()
    }
}

impl LiveMuxer {
    /// A muxer that has seen nothing.
    pub fn new() -> Self {
        Self {
            held: Vec::new(),
            layout: None,
            video: None,
            audio: None,
            anchor: None,
            sequence: 0,
            audio_seen: false,
        }
    }

    /// Whether the initialization segment has been written.
    pub fn started(&self) -> bool {
        self.layout.is_some()
    }

    /// The MIME type with codecs (RFC 6381) for `MediaSource.addSourceBuffer`, e.g.
    /// `video/mp4; codecs="avc1.64001f,opus"`; `None` before the initialization segment.
    pub fn mime(&self) -> Option<String> {
        let layout = self.layout.as_ref()?;
        let mut codecs = Vec::new();
        if let Some((codec, format)) = &layout.video {
            codecs.push(match codec {
                Codec::H264 => match format.sps.get(1..4) {
                    Some(p) => format!("avc1.{:02x}{:02x}{:02x}", p[0], p[1], p[2]),
                    None => "avc1.42e01f".into(),
                },
                // WebKit's MSE says no to "vp08.00.10.08" and yes to "vp8" (measured in the
                // app's webview); ffmpeg reads either.
                Codec::Vp8 => "vp8".into(),
                _ => "vp09.00.10.08".into(),
            });
        }
        if layout.audio {
            codecs.push("opus".into());
        }
        let kind = if layout.video.is_some() {
            "video"
        } else {
            "audio"
        };
        Some(format!("{kind}/mp4; codecs=\"{}\"", codecs.join(",")))
    }

    /// Takes one frame; returns the bytes to append (empty while it waits for a keyframe
    /// and for audio; an initialization segment first once it has them). Video before the
    /// first keyframe is dropped, and so is audio that arrived before it.
    ///
    /// # Errors
    /// [`MediaError::Malformed`] when a box cannot be written (a frame over 4 GiB).
    pub fn push(&mut self, frame: LiveFrame<'_>) -> Result<Vec<u8>, MediaError> {
        let mut out = Vec::new();
        if self.layout.is_none() {
            if frame.codec == Codec::Opus {
                self.audio_seen = true;
            }
            self.held.push(Held {
                codec: frame.codec,
                rtp_timestamp: frame.rtp_timestamp,
                data: frame.data.to_vec(),
                arrived: frame.arrived,
            });
            if self.held.len() > MAX_HELD {
                self.held.remove(0);
            }
            let Some(layout) = self.ready(frame.arrived) else {
                return Ok(out);
            };
            self.layout = Some(layout);
            self.write_init(&mut out)?;
            for held in std::mem::take(&mut self.held) {
                let frame = LiveFrame {
                    codec: held.codec,
                    rtp_timestamp: held.rtp_timestamp,
                    data: &held.data,
                    arrived: held.arrived,
                };
                self.fragment(frame, &mut out)?;
            }
            return Ok(out);
        }
        self.fragment(frame, &mut out)?;
        Ok(out)
    }

    /// Whether the layout is known by `now`: a video keyframe and either audio or
    /// [`AUDIO_WAIT`] since the keyframe; or, with no video at all, audio for a second.
    /// Drops what comes before the keyframe.
    fn ready(&mut self, now: Duration) -> Option<Layout> {
        let key = self.held.iter().position(|h| {
            h.codec.kind() == crate::Kind::Video && video_format(h.codec, &h.data).is_some()
        });
        match key {
            Some(at) => {
                let key_arrived = self.held[at].arrived;
                let audio = self.held.iter().any(|h| h.codec == Codec::Opus);
                if !audio && now.saturating_sub(key_arrived) < AUDIO_WAIT {
                    return None;
                }
                let key = self.held[at].clone();
                self.held.drain(..at);
                self.held
                    .retain(|h| h.codec.kind() == crate::Kind::Video || h.arrived >= key_arrived);
                Some(Layout {
                    video: video_format(key.codec, &key.data).map(|f| (key.codec, f)),
                    audio,
                })
            }
            None => {
                let first_audio = self.held.iter().find(|h| h.codec == Codec::Opus)?.arrived;
                let video = self
                    .held
                    .iter()
                    .any(|h| h.codec.kind() == crate::Kind::Video);
                if video || now.saturating_sub(first_audio) < Duration::from_secs(1) {
                    return None;
                }
                self.held.retain(|h| h.codec == Codec::Opus);
                Some(Layout {
                    video: None,
                    audio: true,
                })
            }
        }
    }

    fn write_init(&self, out: &mut Vec<u8>) -> Result<(), MediaError> {
        let layout = self.layout.as_ref().expect("written after the layout");
        let mut traks = Vec::new();
        let mut trex = Vec::new();
        if let Some((codec, format)) = &layout.video {
            traks.push(video_trak(*codec, format)?);
            trex.push(Trex {
                track_id: 1,
                default_sample_description_index: 1,
                ..Default::default()
            });
        }
        if layout.audio {
            traks.push(audio_trak());
            trex.push(Trex {
                track_id: 2,
                default_sample_description_index: 1,
                ..Default::default()
            });
        }
        let ftyp = Ftyp {
            major_brand: FourCC::new(b"iso6"),
            minor_version: 0,
            compatible_brands: vec![
                FourCC::new(b"iso6"),
                FourCC::new(b"cmfc"),
                FourCC::new(b"mp41"),
            ],
        };
        let moov = Moov {
            mvhd: Mvhd {
                timescale: 1000,
                rate: 1.into(),
                volume: 1.into(),
                next_track_id: 3,
                ..Default::default()
            },
            mvex: Some(Mvex {
                trex,
                ..Default::default()
            }),
            trak: traks,
            ..Default::default()
        };
        ftyp.encode(out).map_err(encode_error)?;
        moov.encode(out).map_err(encode_error)
    }

    /// Writes one frame as a `moof` + `mdat`.
    fn fragment(&mut self, frame: LiveFrame<'_>, out: &mut Vec<u8>) -> Result<(), MediaError> {
        let layout = self.layout.clone().expect("fragments follow the layout");
        let video = frame.codec.kind() == crate::Kind::Video;
        if video && layout.video.as_ref().map(|v| v.0) != Some(frame.codec) {
            return Ok(());
        }
        if !video && (!layout.audio || frame.codec != Codec::Opus) {
            return Ok(());
        }
        let keyframe = video && video_format(frame.codec, frame.data).is_some();
        let (track_id, pts, dts, duration, data) = if video {
            let reorder = i64::try_from(REORDER.as_millis()).unwrap_or(200) * 90;
            let (pts, dts) = match self.video {
                None => {
                    self.anchor = Some((frame.arrived, reorder));
                    (reorder, 0)
                }
                Some(clock) => {
                    let pts = clock.pts(frame.rtp_timestamp);
                    (pts, (pts - reorder).max(clock.last_dts + 1))
                }
            };
            if pts < 0 || dts > pts {
                // Before the first keyframe (an open GOP's B-frame), or reordered further
                // than REORDER: it cannot be placed.
                return Ok(());
            }
            let mut step = self.video.map_or(3000, |c| c.step);
            if let Some(clock) = self.video
                && pts > clock.last_pts
                && pts - clock.last_pts <= i64::from(VIDEO_RATE)
            {
                step = pts - clock.last_pts;
            }
            if keyframe
                && frame.codec == Codec::H264
                && let Some((_, current)) = &layout.video
                && let Some(format) = video_format(frame.codec, frame.data)
                && (format.sps != current.sps || format.pps != current.pps)
            {
                let mut layout = layout.clone();
                layout.video = Some((frame.codec, format));
                self.layout = Some(layout);
                self.write_init(out)?;
            }
            self.video = Some(TrackClock {
                last_rtp: frame.rtp_timestamp,
                last_pts: pts,
                last_dts: dts,
                step,
            });
            let data = if frame.codec == Codec::H264 {
                annex_b_to_avcc(frame.data)
            } else {
                frame.data.to_vec()
            };
            (1, pts, dts, step, data)
        } else {
            let pts = match self.audio {
                None => {
                    match self.anchor {
                        // An audio-only stream starts at zero.
                        None => 0,
                        Some((key_arrived, key_pts)) => {
                            let after = frame.arrived.saturating_sub(key_arrived);
                            let ticks = i64::try_from(after.as_micros()).unwrap_or(0)
                                * i64::from(AUDIO_RATE)
                                / 1_000_000;
                            key_pts * i64::from(AUDIO_RATE) / i64::from(VIDEO_RATE) + ticks
                        }
                    }
                }
                Some(clock) => clock.pts(frame.rtp_timestamp),
            };
            if pts < 0 || self.audio.is_some_and(|c| pts <= c.last_pts) {
                return Ok(());
            }
            let duration = i64::from(opus_samples(frame.data).unwrap_or(960));
            self.audio = Some(TrackClock {
                last_rtp: frame.rtp_timestamp,
                last_pts: pts,
                last_dts: pts,
                step: duration,
            });
            (2, pts, pts, duration, frame.data.to_vec())
        };
        self.sequence = self.sequence.wrapping_add(1);
        let size = u32::try_from(data.len()).map_err(|_| bad("a frame over 4 GiB"))?;
        let flags = if !video || keyframe { SYNC } else { NON_SYNC };
        let mut moof = Moof {
            mfhd: Mfhd {
                sequence_number: self.sequence,
            },
            traf: vec![Traf {
                tfhd: Tfhd {
                    track_id,
                    default_base_is_moof: true,
                    ..Default::default()
                },
                tfdt: Some(Tfdt {
                    base_media_decode_time: u64::try_from(dts).unwrap_or(0),
                }),
                trun: vec![Trun {
                    data_offset: Some(0),
                    samples: TrunSamples::Explicit(vec![TrunEntry {
                        duration: Some(u32::try_from(duration.max(1)).unwrap_or(3000)),
                        size: Some(size),
                        flags: Some(flags),
                        cts: Some(pts - dts),
                    }]),
                }],
                sbgp: vec![],
                sgpd: vec![],
                subs: vec![],
                saiz: vec![],
                saio: vec![],
                meta: None,
                senc: None,
                udta: None,
            }],
        };
        let mut sized = Vec::new();
        moof.encode(&mut sized).map_err(encode_error)?;
        let offset = i32::try_from(sized.len() + 8).map_err(|_| bad("a moof over 2 GiB"))?;
        moof.traf[0].trun[0].data_offset = Some(offset);
        moof.encode(out).map_err(encode_error)?;
        Mdat { data }.encode(out).map_err(encode_error)
    }
}

fn video_trak(codec: Codec, format: &VideoFormat) -> Result<Trak, MediaError> {
    let visual = Visual {
        data_reference_index: 1,
        width: format.width,
        height: format.height,
        horizresolution: 72.into(),
        vertresolution: 72.into(),
        frame_count: 1,
        compressor: "".into(),
        depth: 24,
    };
    let vpcc = VpcC {
        profile: 0,
        level: 10,
        bit_depth: 8,
        chroma_subsampling: 1,
        video_full_range_flag: false,
        color_primaries: 1,
        transfer_characteristics: 1,
        matrix_coefficients: 1,
        codec_initialization_data: Vec::new(),
    };
    let entry: mp4_atom::Codec = match codec {
        Codec::H264 => {
            let p = format
                .sps
                .get(1..4)
                .ok_or_else(|| bad("an SPS under 4 bytes"))?;
            Avc1 {
                visual,
                avcc: Avcc {
                    configuration_version: 1,
                    avc_profile_indication: p[0],
                    profile_compatibility: p[1],
                    avc_level_indication: p[2],
                    length_size: 4,
                    sequence_parameter_sets: vec![format.sps.clone()],
                    picture_parameter_sets: vec![format.pps.clone()],
                    ext: None,
                },
                btrt: None,
                colr: None,
                pasp: None,
                taic: None,
                fiel: None,
                spatial: Default::default(),
            }
            .into()
        }
        Codec::Vp8 => Vp08 {
            visual,
            vpcc,
            btrt: None,
            colr: None,
            pasp: None,
            spatial: None,
        }
        .into(),
        _ => Vp09 {
            visual,
            vpcc,
            btrt: None,
            colr: None,
            pasp: None,
            spatial: None,
        }
        .into(),
    };
    Ok(Trak {
        tkhd: Tkhd {
            track_id: 1,
            enabled: true,
            in_movie: true,
            width: format.width.into(),
            height: format.height.into(),
            ..Default::default()
        },
        mdia: Mdia {
            mdhd: Mdhd {
                timescale: VIDEO_RATE,
                language: "und".into(),
                ..Default::default()
            },
            hdlr: Hdlr {
                handler: FourCC::new(b"vide"),
                name: "Shoal live video".into(),
            },
            minf: Minf {
                vmhd: Some(Vmhd::default()),
                dinf: dinf(),
                stbl: empty_stbl(entry),
                ..Default::default()
            },
        },
        ..Default::default()
    })
}

fn audio_trak() -> Trak {
    let entry: mp4_atom::Codec = Opus {
        audio: Audio {
            data_reference_index: 1,
            channel_count: 2,
            sample_size: 16,
            sample_rate: 48_000u16.into(),
        },
        dops: Dops {
            output_channel_count: 2,
            pre_skip: 312,
            input_sample_rate: AUDIO_RATE,
            output_gain: 0,
            channel_mapping: None,
        },
        btrt: None,
    }
    .into();
    Trak {
        tkhd: Tkhd {
            track_id: 2,
            alternate_group: 1,
            enabled: true,
            in_movie: true,
            volume: 1.into(),
            ..Default::default()
        },
        mdia: Mdia {
            mdhd: Mdhd {
                timescale: AUDIO_RATE,
                language: "und".into(),
                ..Default::default()
            },
            hdlr: Hdlr {
                handler: FourCC::new(b"soun"),
                name: "Shoal live audio".into(),
            },
            minf: Minf {
                smhd: Some(Smhd::default()),
                dinf: dinf(),
                stbl: empty_stbl(entry),
                ..Default::default()
            },
        },
        ..Default::default()
    }
}

fn dinf() -> Dinf {
    Dinf {
        dref: Dref {
            entries: vec![
                Url {
                    location: "".into(),
                }
                .into(),
            ],
        },
    }
}

fn empty_stbl(entry: mp4_atom::Codec) -> Stbl {
    Stbl {
        stsd: Stsd {
            codecs: vec![entry],
        },
        stts: Stts::default(),
        stsc: Stsc::default(),
        stsz: Stsz::default(),
        stco: Some(Stco::default()),
        ..Default::default()
    }
}

fn encode_error(error: mp4_atom::Error) -> MediaError {
    bad(&format!("cannot write a box: {error}"))
}

fn bad(what: &str) -> MediaError {
    MediaError::Malformed(what.to_string())
}

/// The NAL units of an Annex-B stream (ITU-T H.264 Annex B), without start codes.
pub fn nal_units(annex_b: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= annex_b.len() {
        if annex_b[i] == 0 && annex_b[i + 1] == 0 && annex_b[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let ends: Vec<usize> = starts
        .iter()
        .skip(1)
        .map(|&s| {
            // Back over the start code and a fourth zero byte before it.
            let mut end = s - 3;
            while end > 0 && annex_b[end - 1] == 0 {
                end -= 1;
            }
            end
        })
        .chain(std::iter::once(annex_b.len()))
        .collect();
    starts
        .into_iter()
        .zip(ends)
        .filter(|(s, e)| e > s)
        .map(move |(s, e)| &annex_b[s..e])
}

/// An Annex-B access unit as MP4 stores it: each NAL unit behind a 4-byte length (ISO/IEC
/// 14496-15 §5.3.2), without the parameter sets and access unit delimiters the sample entry
/// and the fragment boundaries stand for.
fn annex_b_to_avcc(annex_b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(annex_b.len() + 16);
    for nal in nal_units(annex_b) {
        if matches!(nal[0] & 0x1f, 7..=9) {
            continue;
        }
        out.extend_from_slice(&u32::try_from(nal.len()).unwrap_or(0).to_be_bytes());
        out.extend_from_slice(nal);
    }
    out
}

/// The picture size and parameter sets a keyframe carries; `None` for a frame that is not a
/// keyframe (or an H.264 IDR without an SPS and a PPS before it, which the sender always
/// puts there).
pub fn video_format(codec: Codec, frame: &[u8]) -> Option<VideoFormat> {
    match codec {
        Codec::H264 => {
            let mut sps = None;
            let mut pps = None;
            let mut idr = false;
            for nal in nal_units(frame) {
                match nal[0] & 0x1f {
                    5 => idr = true,
                    7 if sps.is_none() => sps = Some(nal),
                    8 if pps.is_none() => pps = Some(nal),
                    _ => {}
                }
            }
            let (sps, pps) = (sps?, pps?);
            if !idr {
                return None;
            }
            let (width, height) = sps_size(sps)?;
            Some(VideoFormat {
                width,
                height,
                sps: sps.to_vec(),
                pps: pps.to_vec(),
            })
        }
        Codec::Vp8 => {
            // RFC 6386 §9.1: a key frame's tag has bit 0 clear, then the start code
            // 9d 01 2a and two 14-bit sizes, little-endian.
            let head = frame.get(..10)?;
            if head[0] & 1 != 0 || head[3..6] != [0x9d, 0x01, 0x2a] {
                return None;
            }
            Some(VideoFormat {
                width: u16::from_le_bytes([head[6], head[7]]) & 0x3fff,
                height: u16::from_le_bytes([head[8], head[9]]) & 0x3fff,
                sps: Vec::new(),
                pps: Vec::new(),
            })
        }
        Codec::Vp9 => vp9_key_size(frame).map(|(width, height)| VideoFormat {
            width,
            height,
            sps: Vec::new(),
            pps: Vec::new(),
        }),
        Codec::Opus | Codec::Aac => None,
    }
}

/// Reads bits most significant first, with Exp-Golomb codes (ITU-T H.264 §9.1).
struct Bits<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Bits<'_> {
    fn bit(&mut self) -> Option<u32> {
        let byte = *self.bytes.get(self.at / 8)?;
        let bit = (byte >> (7 - self.at % 8)) & 1;
        self.at += 1;
        Some(u32::from(bit))
    }

    fn bits(&mut self, n: u32) -> Option<u32> {
        (0..n).try_fold(0u32, |acc, _| Some(acc << 1 | self.bit()?))
    }

    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        Some((1u32 << zeros) - 1 + self.bits(zeros)?)
    }

    fn se(&mut self) -> Option<i32> {
        let k = self.ue()?;
        let magnitude = i32::try_from(k.div_ceil(2)).ok()?;
        Some(if k % 2 == 1 { magnitude } else { -magnitude })
    }
}

/// The cropped picture size an H.264 SPS gives (ITU-T H.264 §7.3.2.1.1, §7.4.2.1.1).
pub fn sps_size(sps: &[u8]) -> Option<(u16, u16)> {
    // Emulation prevention bytes (00 00 03) out first (§7.4.1).
    let mut rbsp = Vec::with_capacity(sps.len());
    let mut zeros = 0;
    for &b in sps.get(1..)? {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        rbsp.push(b);
    }
    let mut r = Bits {
        bytes: &rbsp,
        at: 0,
    };
    let profile = r.bits(8)?;
    r.bits(16)?; // constraint flags, level
    r.ue()?; // seq_parameter_set_id
    let mut chroma_format = 1;
    if matches!(
        profile,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format = r.ue()?;
        if chroma_format == 3 {
            r.bit()?; // separate_colour_plane_flag
        }
        r.ue()?; // bit_depth_luma_minus8
        r.ue()?; // bit_depth_chroma_minus8
        r.bit()?; // qpprime_y_zero_transform_bypass_flag
        if r.bit()? == 1 {
            let lists = if chroma_format == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.bit()? == 1 {
                    let size = if i < 6 { 16 } else { 64 };
                    let (mut last, mut next) = (8i32, 8i32);
                    for _ in 0..size {
                        if next != 0 {
                            next = (last + r.se()? + 256) % 256;
                        }
                        if next != 0 {
                            last = next;
                        }
                    }
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?;
        }
        1 => {
            r.bit()?;
            r.se()?;
            r.se()?;
            for _ in 0..r.ue()?.min(255) {
                r.se()?;
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.bit()?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = r.ue()?.checked_add(1)?;
    let height_units = r.ue()?.checked_add(1)?;
    let frame_mbs_only = r.bit()?;
    if frame_mbs_only == 0 {
        r.bit()?;
    }
    r.bit()?; // direct_8x8_inference_flag
    let (mut left, mut right, mut top, mut bottom) = (0, 0, 0, 0);
    if r.bit()? == 1 {
        left = r.ue()?;
        right = r.ue()?;
        top = r.ue()?;
        bottom = r.ue()?;
    }
    let (crop_x, crop_y) = match chroma_format {
        0 | 3 => (1, 2 - frame_mbs_only),
        1 => (2, 2 * (2 - frame_mbs_only)),
        _ => (2, 2 - frame_mbs_only),
    };
    let width = width_mbs
        .checked_mul(16)?
        .checked_sub(crop_x * (left.checked_add(right)?))?;
    let height = height_units
        .checked_mul(16 * (2 - frame_mbs_only))?
        .checked_sub(crop_y * (top.checked_add(bottom)?))?;
    Some((u16::try_from(width).ok()?, u16::try_from(height).ok()?))
}

/// A VP9 key frame's size from its uncompressed header (VP9 Bitstream Specification
/// §6.2); `None` for an inter frame.
fn vp9_key_size(frame: &[u8]) -> Option<(u16, u16)> {
    let mut r = Bits {
        bytes: frame,
        at: 0,
    };
    if r.bits(2)? != 2 {
        return None; // frame_marker
    }
    let low = r.bit()?;
    let high = r.bit()?;
    let profile = high << 1 | low;
    if profile == 3 {
        r.bit()?;
    }
    if r.bit()? == 1 {
        return None; // show_existing_frame
    }
    if r.bit()? != 0 {
        return None; // frame_type: not KEY_FRAME
    }
    r.bits(2)?; // show_frame, error_resilient_mode
    if r.bits(24)? != 0x49_83_42 {
        return None;
    }
    if profile >= 2 {
        r.bit()?;
    }
    let color_space = r.bits(3)?;
    if color_space != 7 {
        r.bit()?;
        if profile == 1 || profile == 3 {
            r.bits(3)?;
        }
    } else if profile == 1 || profile == 3 {
        r.bit()?;
    }
    let width = r.bits(16)? + 1;
    let height = r.bits(16)? + 1;
    Some((u16::try_from(width).ok()?, u16::try_from(height).ok()?))
}

/// Samples at 48 kHz in an Opus packet, from its TOC byte (RFC 6716 §3.1); `None` for an
/// empty or cut-short packet.
pub fn opus_samples(packet: &[u8]) -> Option<u32> {
    let toc = *packet.first()?;
    let config = toc >> 3;
    // Frame size in units of 2.5 ms (120 samples at 48 kHz).
    let units = match config {
        0..=11 => [4, 8, 16, 24][usize::from(config & 3)],
        12..=15 => [4, 8][usize::from(config & 1)],
        _ => [1, 2, 4, 8][usize::from(config & 3)],
    };
    let frames = match toc & 3 {
        0 => 1,
        1 | 2 => 2,
        _ => u32::from(*packet.get(1)? & 0x3f),
    };
    Some(units * 120 * frames)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sps_sizes_with_and_without_cropping() {
        // Both from ffmpeg's libx264 (testsrc2). High profile, 640x360: 40x23 macroblocks cropped by 8 rows.
        let sps = [
            0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00,
            0x03, 0x00, 0x01, 0x00, 0x00, 0x03, 0x00, 0x32, 0x0f, 0x16, 0x2d, 0x96,
        ];
        assert_eq!(sps_size(&sps), Some((640, 360)));
        // Baseline 320x240 (uncropped).
        let sps = [
            0x67, 0x42, 0xc0, 0x0d, 0xda, 0x05, 0x07, 0xec, 0x04, 0x40, 0x00, 0x00, 0x03, 0x00,
            0x40, 0x00, 0x00, 0x0c, 0x83, 0xc5, 0x0a, 0xa8,
        ];
        assert_eq!(sps_size(&sps), Some((320, 240)));
        assert_eq!(sps_size(&[0x67, 0x64]), None);
    }

    #[test]
    fn opus_durations_come_from_the_toc() {
        // CELT 20 ms, one frame: config 31, code 0.
        assert_eq!(opus_samples(&[31 << 3]), Some(960));
        // SILK 60 ms.
        assert_eq!(opus_samples(&[3 << 3]), Some(2880));
        // CELT 10 ms, two frames (code 1).
        assert_eq!(opus_samples(&[(30 << 3) | 1]), Some(960));
        // Code 3 with 3 frames of 2.5 ms.
        assert_eq!(opus_samples(&[(28 << 3) | 3, 3]), Some(360));
        assert_eq!(opus_samples(&[]), None);
        assert_eq!(opus_samples(&[(28 << 3) | 3]), None);
    }

    #[test]
    fn nal_units_split_on_three_and_four_byte_start_codes() {
        let stream = [
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4, 5,
        ];
        let units: Vec<&[u8]> = nal_units(&stream).collect();
        assert_eq!(units, vec![&[0x67, 1, 2][..], &[0x68, 3], &[0x65, 4, 5]]);
        assert_eq!(annex_b_to_avcc(&stream), vec![0, 0, 0, 3, 0x65, 4, 5]);
    }

    #[test]
    fn vp8_key_frames_give_their_size() {
        let key = [0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01];
        let format = video_format(Codec::Vp8, &key).expect("a key frame");
        assert_eq!((format.width, format.height), (640, 360));
        let inter = [0x51, 0x42, 0x00, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(video_format(Codec::Vp8, &inter), None);
    }

    #[test]
    fn nothing_is_written_before_a_keyframe_and_decode_times_rise() {
        let mut muxer = LiveMuxer::new();
        let key = [0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01];
        let inter = [0x51, 0x42, 0x00, 1, 2, 3, 4, 5, 6, 7];
        let at = |ms| Duration::from_millis(ms);
        let frame = |data, rtp, ms| LiveFrame {
            codec: Codec::Vp8,
            rtp_timestamp: rtp,
            data,
            arrived: at(ms),
        };
        assert!(muxer.push(frame(&inter, 1000, 0)).unwrap().is_empty());
        assert!(muxer.push(frame(&key, 4600, 40)).unwrap().is_empty());
        // No audio by AUDIO_WAIT: video only, from the keyframe.
        let out = muxer.push(frame(&inter, 8200, 400)).unwrap();
        assert!(!out.is_empty());
        assert_eq!(muxer.mime().as_deref(), Some("video/mp4; codecs=\"vp8\""));
        // ftyp, moov, then two fragments: the keyframe and the inter frame after it.
        let mut buf = std::io::Cursor::new(&out[..]);
        use mp4_atom::Decode;
        Ftyp::decode(&mut buf).unwrap();
        Moov::decode(&mut buf).unwrap();
        let mut times = Vec::new();
        while let Ok(moof) = Moof::decode(&mut buf) {
            Mdat::decode(&mut buf).unwrap();
            let traf = &moof.traf[0];
            let entry = traf.trun[0].samples.get(0).unwrap();
            times.push((
                traf.tfdt.as_ref().unwrap().base_media_decode_time,
                entry.cts,
            ));
        }
        // The keyframe presents at REORDER (18 000 ticks), decoded at 0; the next 3600 later.
        assert_eq!(times, vec![(0, Some(18_000)), (3600, Some(18_000))]);
        // Wrapping RTP timestamps go on rising.
        let out = muxer
            .push(frame(&inter, 8200u32.wrapping_add(3600), 440))
            .unwrap();
        assert!(!out.is_empty());
    }
}
