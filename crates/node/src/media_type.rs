//! The MIME type a share is announced with, from its content first and its extension second.
//!
//! Magic numbers (the `infer` crate) name the container; the container's own track list then
//! says whether it carries video or only audio, since a container's extension does not: a
//! Theora video in `.ogg` is video (`audio/ogg` by extension), a Matroska file with only audio
//! tracks is audio, and an MP4 with only a sound track is `audio/mp4`. Formats read:
//! - Ogg (RFC 3533): the codec of each beginning-of-stream page (Theora, Dirac, OGM video;
//!   Vorbis, Opus, FLAC, Speex);
//! - Matroska/WebM (RFC 9559): the `CodecID` elements (`V_...`, `A_...`) in the first 64 KiB;
//! - ISO BMFF (ISO/IEC 14496-12, MP4, QuickTime, M4A): the `hdlr` handler types (`vide`,
//!   `soun`) inside the top-level `moov` box, wherever it is in the file.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// Bytes read from the start of a file for magic numbers and early track headers.
const HEAD_BYTES: usize = 64 * 1024;

/// Largest `moov` box read to find its track handlers, in bytes.
const MAX_MOOV_BYTES: u64 = 32 << 20;

/// The MIME type to announce `path` with: sniffed video, audio and image types win; other
/// files take the extension's type; `application/octet-stream` when neither knows.
pub(crate) fn media_type(path: &Path) -> String {
    let sniffed = sniff(path);
    if let Some(mime) = &sniffed
        && ["video/", "audio/", "image/"]
            .iter()
            .any(|p| mime.starts_with(p))
    {
        return mime.clone();
    }
    mime_guess::from_path(path)
        .first_raw()
        .map(str::to_owned)
        .or(sniffed)
        .unwrap_or_else(|| "application/octet-stream".into())
}

fn sniff(path: &Path) -> Option<String> {
    let mut file = File::open(path).ok()?;
    let mut head = Vec::with_capacity(HEAD_BYTES);
    (&mut file)
        .take(HEAD_BYTES as u64)
        .read_to_end(&mut head)
        .ok()?;
    let kind = infer::get(&head)?;
    let mime = kind.mime_type();
    Some(match mime {
        "audio/ogg" | "audio/opus" | "video/ogg" => ogg_type(&head).unwrap_or(mime).to_owned(),
        "video/webm" | "video/x-matroska" => matroska_type(&head, mime),
        "video/mp4" | "video/quicktime" | "audio/m4a" | "audio/x-m4a" | "video/x-m4v" => {
            bmff_type(&mut file, mime)
        }
        other => other.to_owned(),
    })
}

/// `video/ogg` when a beginning-of-stream page starts a video codec, `audio/ogg` when they
/// are all audio codecs, `None` when no codec is recognised.
fn ogg_type(head: &[u8]) -> Option<&'static str> {
    let mut at = 0usize;
    let mut audio = false;
    // Every logical stream's first page comes before any other page (RFC 3533 §4).
    while let Some(page) = head.get(at..) {
        if page.len() < 27 || &page[..4] != b"OggS" || page[5] & 0x02 == 0 {
            break;
        }
        let segments = usize::from(page[26]);
        let table = page.get(27..27 + segments)?;
        let body_len: usize = table.iter().map(|s| usize::from(*s)).sum();
        let body = page.get(27 + segments..)?;
        let starts = |magic: &[u8]| body.starts_with(magic);
        if starts(b"\x80theora") || starts(b"BBCD\0") || starts(b"\x01video\0\0\0") {
            return Some("video/ogg");
        }
        if starts(b"\x01vorbis")
            || starts(b"OpusHead")
            || starts(b"\x7fFLAC")
            || starts(b"Speex   ")
        {
            audio = true;
        }
        at += 27 + segments + body_len;
    }
    audio.then_some("audio/ogg")
}

/// Keeps `mime` when a `V_` codec is declared; `audio/webm` or `audio/x-matroska` when only
/// `A_` codecs are.
fn matroska_type(head: &[u8], mime: &str) -> String {
    let (mut video, mut audio) = (false, false);
    // CodecID: element id 0x86, a one-byte size (0x80 | length), then ASCII.
    for w in head.windows(4) {
        if w[0] == 0x86 && w[1] & 0x80 != 0 {
            match &w[2..4] {
                b"V_" => video = true,
                b"A_" => audio = true,
                _ => {}
            }
        }
    }
    if audio && !video {
        if mime == "video/webm" {
            "audio/webm".into()
        } else {
            "audio/x-matroska".into()
        }
    } else {
        mime.into()
    }
}

/// `video/mp4` (or `video/quicktime`) when a track's handler is `vide`, `audio/mp4` when the
/// handlers are only `soun`; `mime` when `moov` cannot be read.
fn bmff_type(file: &mut File, mime: &str) -> String {
    let Some(moov) = read_moov(file) else {
        return mime.into();
    };
    let (mut video, mut audio) = (false, false);
    // hdlr box: "hdlr", version and flags (4), pre_defined (4), handler_type (4).
    for (i, w) in moov.windows(4).enumerate() {
        if w == b"hdlr" {
            match moov.get(i + 12..i + 16) {
                Some(b"vide") => video = true,
                Some(b"soun") => audio = true,
                _ => {}
            }
        }
    }
    match (video, audio) {
        (true, _) if mime.starts_with("audio/") => "video/mp4".into(),
        (false, true) => "audio/mp4".into(),
        _ => mime.into(),
    }
}

/// The payload of the top-level `moov` box, walking box headers from the start.
fn read_moov(file: &mut File) -> Option<Vec<u8>> {
    let len = file.metadata().ok()?.len();
    let mut at = 0u64;
    while at + 8 <= len {
        file.seek(SeekFrom::Start(at)).ok()?;
        let mut header = [0u8; 16];
        file.read_exact(&mut header[..8]).ok()?;
        let size32 = u32::from_be_bytes(header[..4].try_into().ok()?);
        let (size, header_len) = match size32 {
            0 => (len - at, 8),
            1 => {
                file.read_exact(&mut header[8..16]).ok()?;
                (u64::from_be_bytes(header[8..16].try_into().ok()?), 16)
            }
            n => (u64::from(n), 8),
        };
        if size < header_len {
            return None;
        }
        if &header[4..8] == b"moov" {
            let payload = (size - header_len).min(MAX_MOOV_BYTES);
            let mut moov = Vec::new();
            Read::take(&mut *file, payload)
                .read_to_end(&mut moov)
                .ok()?;
            return Some(moov);
        }
        at = at.checked_add(size)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ogg_page(bos: bool, packet: &[u8]) -> Vec<u8> {
        let mut page = b"OggS\0".to_vec();
        page.push(if bos { 0x02 } else { 0 });
        page.extend([0u8; 20]); // granule, serial, sequence, checksum
        page.push(1);
        page.push(packet.len() as u8);
        page.extend(packet);
        page
    }

    #[test]
    fn ogg_streams_are_video_when_any_starts_a_video_codec() {
        let mut theora_vorbis = ogg_page(true, b"\x80theora...");
        theora_vorbis.extend(ogg_page(true, b"\x01vorbis..."));
        theora_vorbis.extend(ogg_page(false, b"data"));
        assert_eq!(ogg_type(&theora_vorbis), Some("video/ogg"));

        let mut vorbis_then_theora = ogg_page(true, b"\x01vorbis...");
        vorbis_then_theora.extend(ogg_page(true, b"\x80theora..."));
        assert_eq!(ogg_type(&vorbis_then_theora), Some("video/ogg"));

        assert_eq!(ogg_type(&ogg_page(true, b"OpusHead...")), Some("audio/ogg"));
        assert_eq!(ogg_type(&ogg_page(true, b"unknown")), None);
        // Truncated and lying pages end the walk without a panic.
        let mut lying = ogg_page(true, b"\x01vorbis");
        lying[26] = 255;
        assert_eq!(ogg_type(&lying), None);
        assert_eq!(ogg_type(b"OggS"), None);
    }

    #[test]
    fn matroska_with_only_audio_codecs_is_audio() {
        let audio = [b"\x1aE\xdf\xa3....\x86\x86A_OPUS".as_slice()].concat();
        assert_eq!(matroska_type(&audio, "video/webm"), "audio/webm");
        let both = [b"\x86\x83V_VP8...\x86\x86A_OPUS".as_slice()].concat();
        assert_eq!(matroska_type(&both, "video/webm"), "video/webm");
        assert_eq!(
            matroska_type(b"no tracks here", "video/x-matroska"),
            "video/x-matroska"
        );
    }
}
