//! `shoal room join CODE --record PATH` (issue 12): a headless viewer of a room's live stream
//! that writes the video it receives, as it arrives, in the codec's plainest container: IVF
//! for VP8 and VP9 (the WebM project's frame container: a 32-byte header, then each frame
//! behind its size and 90 kHz timestamp), an Annex-B byte stream for H.264 (ITU-T H.264
//! Annex B). Both are what ffmpeg and ffprobe read; audio frames are counted, not written.
//! A path ending in `.mp4` gets video and Opus audio as fragmented MP4
//! ([`shoal_node::LiveMp4`], the bytes the app's player appends).

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use shoal_node::{LiveEvent, LiveMp4, MediaCodec, NodeEvent, NodeHandle};
use tokio::sync::{broadcast, mpsc};

/// Writes a live stream's video to a file.
enum Writer {
    Ivf {
        file: std::fs::File,
        frames: u32,
        first: Option<u32>,
        /// The last timestamp since the first, unwrapped past 2^32 (90 kHz; negative for a
        /// frame stamped before the first).
        last: i64,
        fourcc: [u8; 4],
        size: Option<(u16, u16)>,
    },
    AnnexB {
        file: std::io::BufWriter<std::fs::File>,
        frames: u32,
    },
    Mp4 {
        file: std::io::BufWriter<std::fs::File>,
        mp4: Box<LiveMp4>,
        frames: u32,
        first: Option<u32>,
        last: i64,
    },
}

impl Writer {
    fn create(path: &Path, codec: &MediaCodec) -> anyhow::Result<Self> {
        let mut file = std::fs::File::create(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("mp4"))
        {
            return Ok(Self::Mp4 {
                file: std::io::BufWriter::new(file),
                mp4: Box::new(LiveMp4::new()),
                frames: 0,
                first: None,
                last: 0,
            });
        }
        Ok(match codec {
            MediaCodec::Vp8 | MediaCodec::Vp9 => {
                let fourcc = if *codec == MediaCodec::Vp8 {
                    *b"VP80"
                } else {
                    *b"VP90"
                };
                file.write_all(&ivf_header(fourcc, (0, 0), 0))?;
                Self::Ivf {
                    file,
                    frames: 0,
                    first: None,
                    last: 0,
                    fourcc,
                    size: None,
                }
            }
            MediaCodec::H264 { .. } => Self::AnnexB {
                file: std::io::BufWriter::new(file),
                frames: 0,
            },
            MediaCodec::Opus => bail!("an audio-only stream: nothing to record yet"),
        })
    }

    /// Whether audio goes into the file too.
    fn takes_audio(&self) -> bool {
        matches!(self, Self::Mp4 { .. })
    }

    fn write(&mut self, codec: &MediaCodec, rtp_timestamp: u32, data: &[u8]) -> anyhow::Result<()> {
        match self {
            Self::Mp4 {
                file,
                mp4,
                frames,
                first,
                last,
            } => {
                file.write_all(&mp4.push(codec, rtp_timestamp, data)?)?;
                if codec.is_video() {
                    let first = *first.get_or_insert(rtp_timestamp);
                    let previous = first.wrapping_add(*last as u32);
                    *last += i64::from(rtp_timestamp.wrapping_sub(previous) as i32);
                    *frames += 1;
                }
            }
            Self::Ivf {
                file,
                frames,
                first,
                last,
                size,
                ..
            } => {
                let first = *first.get_or_insert(rtp_timestamp);
                // Unwrapped: the distance from the last, taken as signed.
                let previous = first.wrapping_add(*last as u32);
                let step = i64::from(rtp_timestamp.wrapping_sub(previous) as i32);
                *last += step;
                if size.is_none() {
                    *size = vp8_size(data);
                }
                file.write_all(&(data.len() as u32).to_le_bytes())?;
                file.write_all(&(*last).max(0).to_le_bytes())?;
                file.write_all(data)?;
                *frames += 1;
            }
            Self::AnnexB { file, frames } => {
                file.write_all(data)?;
                *frames += 1;
            }
        }
        Ok(())
    }

    /// Finishes the file (IVF's header gets the frame count and picture size); answers the
    /// frames written and the seconds they span.
    fn finish(self) -> anyhow::Result<(u32, f64)> {
        match self {
            Self::Ivf {
                mut file,
                frames,
                last,
                fourcc,
                size,
                ..
            } => {
                file.seek(SeekFrom::Start(0))?;
                file.write_all(&ivf_header(fourcc, size.unwrap_or((0, 0)), frames))?;
                file.sync_all()?;
                Ok((frames, last.max(0) as f64 / 90_000.0))
            }
            Self::AnnexB { mut file, frames } => {
                file.flush()?;
                Ok((frames, f64::NAN))
            }
            Self::Mp4 {
                mut file,
                frames,
                last,
                ..
            } => {
                file.flush()?;
                file.into_inner()?.sync_all()?;
                Ok((frames, last.max(0) as f64 / 90_000.0))
            }
        }
    }
}

/// IVF's file header: signature, version 0, header size, codec, picture size, a 90 kHz
/// timebase, frame count.
fn ivf_header(fourcc: [u8; 4], (width, height): (u16, u16), frames: u32) -> [u8; 32] {
    let mut h = [0u8; 32];
    h[0..4].copy_from_slice(b"DKIF");
    h[6..8].copy_from_slice(&32u16.to_le_bytes());
    h[8..12].copy_from_slice(&fourcc);
    h[12..14].copy_from_slice(&width.to_le_bytes());
    h[14..16].copy_from_slice(&height.to_le_bytes());
    h[16..20].copy_from_slice(&90_000u32.to_le_bytes());
    h[20..24].copy_from_slice(&1u32.to_le_bytes());
    h[24..28].copy_from_slice(&frames.to_le_bytes());
    h
}

/// Whether a frame decodes on its own: a VP8 key frame (RFC 6386 §9.1), a VP9 key frame
/// (its uncompressed header), an H.264 access unit with an IDR slice or parameter sets.
fn is_keyframe(codec: &MediaCodec, data: &[u8]) -> bool {
    match codec {
        MediaCodec::Vp8 => data.first().is_some_and(|b| b & 1 == 0),
        // frame_marker (2 bits), profile (2), show_existing_frame, frame_type: 0 is a key
        // frame (VP9 bitstream §6.2; profiles 0-2).
        MediaCodec::Vp9 => data
            .first()
            .is_some_and(|b| b & 0b1100_0000 == 0b1000_0000 && b & 0b0000_1100 == 0),
        MediaCodec::H264 { .. } => data
            .windows(4)
            .filter(|w| w[..3] == [0, 0, 1])
            .any(|w| matches!(w[3] & 0x1f, 5 | 7)),
        MediaCodec::Opus => true,
    }
}

/// A VP8 key frame's picture size (RFC 6386 §9.1: the start code 9d 01 2a, then 14-bit width
/// and height).
fn vp8_size(frame: &[u8]) -> Option<(u16, u16)> {
    if frame.len() < 10 || frame[0] & 1 != 0 || frame[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let width = u16::from_le_bytes([frame[6], frame[7]]) & 0x3fff;
    let height = u16::from_le_bytes([frame[8], frame[9]]) & 0x3fff;
    Some((width, height))
}

/// Joins `room` and records its live stream's video to `path` until the stream ends.
pub async fn record(
    node: &NodeHandle,
    events: &mut mpsc::Receiver<NodeEvent>,
    room: &str,
    path: PathBuf,
) -> anyhow::Result<()> {
    // Before joining: the host offers the stream as soon as the member list says we are in.
    let mut live = node.live_frames();
    let info = node
        .join_room(room, None)
        .await
        .context("cannot join the room")?;
    println!("room {}", info.code);
    eprintln!("waiting for the host to go live");
    let mut writer: Option<Writer> = None;
    let mut audio = 0u64;
    let mut dropped = 0u64;
    loop {
        tokio::select! {
            event = live.recv() => match event {
                Ok(LiveEvent::Started { from }) => eprintln!("live from {}", from.short()),
                Ok(LiveEvent::Frame { codec, rtp_timestamp, data, dropped_packets, .. }) => {
                    dropped += u64::from(dropped_packets);
                    if !codec.is_video() {
                        audio += 1;
                        if let Some(w) = writer.as_mut().filter(|w| w.takes_audio()) {
                            w.write(&codec, rtp_timestamp, &data)?;
                        }
                        continue;
                    }
                    if writer.is_none() {
                        // A recording starts at a keyframe: before it, nothing decodes.
                        if !is_keyframe(&codec, &data) {
                            continue;
                        }
                        eprintln!("recording {codec:?} video to {}", path.display());
                        writer = Some(Writer::create(&path, &codec)?);
                    }
                    if let Some(w) = writer.as_mut() {
                        w.write(&codec, rtp_timestamp, &data)?;
                    }
                }
                Ok(LiveEvent::Ended { reason, .. }) => {
                    eprintln!("live stream ended: {reason}");
                    break;
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    eprintln!("the recorder fell behind; {n} frames lost");
                }
                Err(broadcast::error::RecvError::Closed) => bail!("the node stopped"),
            },
            event = events.recv() => match event {
                Some(NodeEvent::Room(shoal_node::RoomEvent::Closed { reason, .. })) => {
                    eprintln!("room ended: {reason}");
                    break;
                }
                Some(_) => {}
                None => bail!("the node stopped"),
            },
        }
    }
    let _ = node.leave_room(&info.code).await;
    match writer {
        Some(w) => {
            let (frames, secs) = w.finish()?;
            let span = if secs.is_nan() {
                String::new()
            } else {
                format!(" spanning {secs:.2} s")
            };
            println!(
                "recorded {frames} video frames{span} to {}; {audio} audio frames received; {dropped} packets lost",
                path.display()
            );
            Ok(())
        }
        None => bail!("the stream ended before any video arrived"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_vp8_key_frames_picture_size() {
        let mut key = vec![0x10, 0, 0, 0x9d, 0x01, 0x2a];
        key.extend_from_slice(&640u16.to_le_bytes());
        key.extend_from_slice(&360u16.to_le_bytes());
        assert_eq!(vp8_size(&key), Some((640, 360)));
        key[0] |= 1; // an inter frame
        assert_eq!(vp8_size(&key), None);
        assert_eq!(&ivf_header(*b"VP80", (640, 360), 3)[..4], b"DKIF");
    }
}
