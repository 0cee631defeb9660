//! A media file's playing time, read from its container, so the read-ahead of a watched
//! download can be measured in seconds of media (issue 10: "about 30 s", at the file's own
//! bitrate) rather than in a fixed number of bytes.
//!
//! Only verified bytes are read (the caller's `read` answers `None` for bytes whose pieces
//! are not here yet), so a call may find nothing now and succeed once more pieces arrive:
//! - MP4/QuickTime (ISO/IEC 14496-12 §4.2, §8.2.2): the top-level boxes are walked from the
//!   start by their sizes, header by header, to `moov` wherever it is (an MP4 written without
//!   `+faststart` has it after `mdat`, at the end); its `mvhd` gives timescale and duration.
//! - Matroska/WebM (RFC 9559 §5.1.2): `Segment` → `Info` holds `TimestampScale` (ns per
//!   tick, default 1,000,000) and `Duration` (a float, in ticks); they are within the first
//!   kilobytes, before any cluster.
//!
//! Anything else, or values out of range, is `None`: the caller keeps its byte-sized
//! read-ahead.

/// Longest playing time believed, in seconds (a week); shortest, 0.1 s.
const MAX_SECS: f64 = 7.0 * 24.0 * 3600.0;
const MIN_SECS: f64 = 0.1;
/// Top-level MP4 boxes walked before giving up.
const MAX_BOXES: usize = 64;
/// Bytes of `moov` (or of a Matroska file's start) read to find the header.
const HEAD_BYTES: u64 = 64 * 1024;

/// What the container says, or why not yet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Duration {
    /// Seconds of media.
    Secs(f64),
    /// Bytes it needs are not here yet: ask again later.
    NotYet,
    /// Not a container this reads, or no usable duration: stop asking.
    Unknown,
}

/// The playing time of a file of `len` bytes. `read(offset, n)` answers the `n` bytes at
/// `offset` (fewer at the end of the file) if they are here and verified, else `None`.
pub(crate) fn duration(len: u64, read: &dyn Fn(u64, usize) -> Option<Vec<u8>>) -> Duration {
    let Some(head) = read(0, 12.min(len) as usize) else {
        return Duration::NotYet;
    };
    if head.len() >= 4 && head[..4] == [0x1A, 0x45, 0xDF, 0xA3] {
        return matroska(len, read);
    }
    if head.len() >= 8 && is_mp4_box_type(&head[4..8]) {
        return mp4(len, read);
    }
    Duration::Unknown
}

fn checked(secs: f64) -> Duration {
    if secs.is_finite() && (MIN_SECS..=MAX_SECS).contains(&secs) {
        Duration::Secs(secs)
    } else {
        Duration::Unknown
    }
}

/// Four printable ASCII characters (`ftyp`, `moov`, `mdat`, `free`...).
fn is_mp4_box_type(t: &[u8]) -> bool {
    t.len() == 4 && t.iter().all(|c| c.is_ascii_graphic() || *c == b' ')
}

fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn be_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Walks the top-level boxes to `moov`, then reads its `mvhd`.
fn mp4(len: u64, read: &dyn Fn(u64, usize) -> Option<Vec<u8>>) -> Duration {
    let mut offset = 0u64;
    for _ in 0..MAX_BOXES {
        if offset.saturating_add(8) > len {
            return Duration::Unknown;
        }
        let Some(header) = read(offset, 16.min(len - offset) as usize) else {
            return Duration::NotYet;
        };
        let (Some(size32), Some(kind)) = (be_u32(&header, 0), header.get(4..8)) else {
            return Duration::Unknown;
        };
        if !is_mp4_box_type(kind) {
            return Duration::Unknown;
        }
        let (size, header_len) = match size32 {
            0 => (len - offset, 8),
            1 => match be_u64(&header, 8) {
                Some(large) => (large, 16),
                None => return Duration::Unknown,
            },
            n => (u64::from(n), 8),
        };
        if size < header_len {
            return Duration::Unknown;
        }
        if kind == b"moov" {
            let body = offset + header_len;
            let n = (size - header_len).min(HEAD_BYTES).min(len - body.min(len));
            let Some(moov) = read(body, n as usize) else {
                return Duration::NotYet;
            };
            return mvhd(&moov);
        }
        offset = match offset.checked_add(size) {
            Some(next) => next,
            None => return Duration::Unknown,
        };
    }
    Duration::Unknown
}

/// The `mvhd` among the first children of `moov`.
fn mvhd(moov: &[u8]) -> Duration {
    let mut at = 0usize;
    while at + 8 <= moov.len() {
        let (Some(size), Some(kind)) = (be_u32(moov, at), moov.get(at + 4..at + 8)) else {
            break;
        };
        if kind == b"mvhd" {
            let body = &moov[at + 8..];
            let version = body.first().copied();
            let (timescale, duration) = match version {
                // version, flags (4), creation and modification (4 or 8 each), timescale,
                // duration.
                Some(0) => (be_u32(body, 12), be_u32(body, 16).map(u64::from)),
                Some(1) => (be_u32(body, 20), be_u64(body, 24)),
                _ => (None, None),
            };
            return match (timescale, duration) {
                // All ones: "duration cannot be determined".
                (Some(ts), Some(d)) if ts > 0 && d != u64::from(u32::MAX) && d != u64::MAX => {
                    checked(d as f64 / f64::from(ts))
                }
                _ => Duration::Unknown,
            };
        }
        if size < 8 {
            break;
        }
        at = at.saturating_add(size as usize);
    }
    Duration::Unknown
}

/// An EBML variable-length integer at `at`: (value, its length). Element ids keep their
/// marker bit (`keep_marker`), sizes drop it.
fn vint(b: &[u8], at: usize, keep_marker: bool) -> Option<(u64, usize)> {
    let first = *b.get(at)?;
    let n = first.leading_zeros() as usize + 1;
    if n > 8 {
        return None;
    }
    let mut value = if keep_marker {
        u64::from(first)
    } else {
        u64::from(first) & ((1u64 << (8 - n)) - 1)
    };
    for i in 1..n {
        value = (value << 8) | u64::from(*b.get(at + i)?);
    }
    Some((value, n))
}

const EBML_HEADER: u64 = 0x1A45_DFA3;
const SEGMENT: u64 = 0x1853_8067;
const INFO: u64 = 0x1549_A966;
const TIMESTAMP_SCALE: u64 = 0x2A_D7B1;
const DURATION: u64 = 0x4489;

/// `Segment` → `Info` → `TimestampScale` and `Duration`, from the file's first bytes.
fn matroska(len: u64, read: &dyn Fn(u64, usize) -> Option<Vec<u8>>) -> Duration {
    let Some(b) = read(0, HEAD_BYTES.min(len) as usize) else {
        return Duration::NotYet;
    };
    let mut at = 0usize;
    // The EBML header, then the Segment, whose children are walked.
    let mut in_segment = false;
    while at < b.len() {
        let Some((id, id_len)) = vint(&b, at, true) else {
            break;
        };
        let Some((size, size_len)) = vint(&b, at + id_len, false) else {
            break;
        };
        let body = at + id_len + size_len;
        match id {
            EBML_HEADER if !in_segment => at = body.saturating_add(size as usize),
            SEGMENT => {
                in_segment = true;
                at = body;
            }
            INFO if in_segment => {
                let end = body.saturating_add(size as usize).min(b.len());
                return info(&b[body.min(end)..end]);
            }
            _ if in_segment => {
                // An "unknown size" (all ones) element other than Info: nothing to skip by.
                let unknown = size == (1u64 << (7 * size_len)) - 1;
                if unknown {
                    break;
                }
                at = body.saturating_add(size as usize);
            }
            _ => break,
        }
    }
    Duration::Unknown
}

fn info(b: &[u8]) -> Duration {
    let mut scale = 1_000_000.0f64;
    let mut duration = None;
    let mut at = 0usize;
    while at < b.len() {
        let Some((id, id_len)) = vint(b, at, true) else {
            break;
        };
        let Some((size, size_len)) = vint(b, at + id_len, false) else {
            break;
        };
        let body = at + id_len + size_len;
        let Some(value) = b.get(body..body.saturating_add(size as usize)) else {
            break;
        };
        match (id, value.len()) {
            (TIMESTAMP_SCALE, 1..=8) => {
                scale = value.iter().fold(0u64, |v, c| (v << 8) | u64::from(*c)) as f64;
            }
            (DURATION, 4) => {
                duration = value
                    .try_into()
                    .ok()
                    .map(|v| f64::from(f32::from_be_bytes(v)));
            }
            (DURATION, 8) => duration = value.try_into().ok().map(f64::from_be_bytes),
            _ => {}
        }
        at = body + value.len();
    }
    match duration {
        Some(ticks) if scale > 0.0 => checked(ticks * scale / 1e9),
        _ => Duration::Unknown,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{Duration, duration};

    fn all(data: &[u8]) -> impl Fn(u64, usize) -> Option<Vec<u8>> + '_ {
        move |offset, n| {
            let start = (offset as usize).min(data.len());
            Some(data[start..(start + n).min(data.len())].to_vec())
        }
    }

    fn mp4_box(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut b = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        b.extend_from_slice(kind);
        b.extend_from_slice(body);
        b
    }

    /// `ftyp`, `mdat` of `mdat_len`, then `moov` with a version-0 `mvhd`.
    fn mp4_moov_last(timescale: u32, ticks: u32, mdat_len: usize) -> Vec<u8> {
        let mut mvhd = vec![0u8; 4 + 8];
        mvhd.extend_from_slice(&timescale.to_be_bytes());
        mvhd.extend_from_slice(&ticks.to_be_bytes());
        mvhd.extend_from_slice(&[0u8; 80]);
        let mut file = mp4_box(b"ftyp", b"isom\0\0\x02\0isomiso2");
        file.extend(mp4_box(b"mdat", &vec![7u8; mdat_len]));
        file.extend(mp4_box(b"moov", &mp4_box(b"mvhd", &mvhd)));
        file
    }

    #[test]
    fn an_mp4_with_its_moov_at_the_end_is_read_from_box_headers_only() {
        let file = mp4_moov_last(1000, 95_500, 100_000);
        assert_eq!(
            duration(file.len() as u64, &all(&file)),
            Duration::Secs(95.5)
        );
        // Only the headers and the moov are here: still found.
        let moov_at = file.len() - 8 - 8 - 100;
        let sparse = |offset: u64, n: usize| {
            let o = offset as usize;
            (o < 64 || o >= moov_at).then(|| file[o..(o + n).min(file.len())].to_vec())
        };
        assert_eq!(duration(file.len() as u64, &sparse), Duration::Secs(95.5));
        // The moov is not here yet: ask again.
        let no_tail = |offset: u64, n: usize| {
            let o = offset as usize;
            (o < 64).then(|| file[o..(o + n).min(file.len())].to_vec())
        };
        assert_eq!(duration(file.len() as u64, &no_tail), Duration::NotYet);
    }

    #[test]
    fn garbage_and_lies_are_unknown_never_a_panic() {
        assert_eq!(duration(5, &all(b"hello")), Duration::Unknown);
        assert_eq!(duration(0, &all(b"")), Duration::Unknown);
        // A box claiming to be smaller than its header; a zero timescale.
        let mut bad = mp4_box(b"ftyp", b"isom");
        bad.extend_from_slice(&[0, 0, 0, 3, b'm', b'd', b'a', b't']);
        assert_eq!(duration(bad.len() as u64, &all(&bad)), Duration::Unknown);
        let zero = mp4_moov_last(0, 10, 10);
        assert_eq!(duration(zero.len() as u64, &all(&zero)), Duration::Unknown);
        // Matroska magic then nonsense.
        let mkv = [0x1A, 0x45, 0xDF, 0xA3, 0xFF, 0xFF, 0x01];
        assert_eq!(duration(mkv.len() as u64, &all(&mkv)), Duration::Unknown);
        for n in 0..64u8 {
            let noise: Vec<u8> = (0..200u32).map(|i| (i as u8).wrapping_mul(n) ^ n).collect();
            let _ = duration(noise.len() as u64, &all(&noise));
        }
    }

    /// Real files from ffmpeg: MP4 with `moov` at the end and in front, WebM, Matroska.
    #[test]
    fn ffmpeg_files_give_their_length() {
        let dir = tempfile::tempdir().unwrap();
        for (name, extra) in [
            ("end.mp4", &["-c:v", "libx264", "-preset", "ultrafast"][..]),
            (
                "front.mp4",
                &[
                    "-c:v",
                    "libx264",
                    "-preset",
                    "ultrafast",
                    "-movflags",
                    "+faststart",
                ],
            ),
            (
                "clip.webm",
                &["-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8"],
            ),
            ("clip.mkv", &["-c:v", "libx264", "-preset", "ultrafast"]),
        ] {
            let path = dir.path().join(name);
            let status = std::process::Command::new("ffmpeg")
                .args(["-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i"])
                .arg("testsrc2=duration=3:size=160x120:rate=25")
                .args(extra)
                .arg(&path)
                .status()
                .expect("ffmpeg is installed (scripts/deps.sh)");
            assert!(status.success());
            let data = std::fs::read(&path).unwrap();
            let got = duration(data.len() as u64, &all(&data));
            let Duration::Secs(secs) = got else {
                panic!("{name}: {got:?}");
            };
            assert!((secs - 3.0).abs() < 0.1, "{name}: {secs} s");
        }
    }
}
