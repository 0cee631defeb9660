//! Shares are announced with the MIME type and category of their content, not of their
//! extension (issue 7, item 14): real files made by ffmpeg, seeded by `shoal seed`, read
//! back from the signaling server's index and from `shoal ls`.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use shoal_e2e::{SignalServer, corpus, ffmpeg_media, index, seed, shoal};

const VIDEO: &[&str] = &[
    "-f",
    "lavfi",
    "-i",
    "testsrc=duration=2:size=160x120:rate=15",
];
const AUDIO: &[&str] = &["-f", "lavfi", "-i", "sine=frequency=440:duration=2"];

fn make(name: &str, inputs: &[&[&str]], codecs: &[&str]) -> PathBuf {
    let mut args: Vec<&str> = inputs.iter().flat_map(|i| i.iter().copied()).collect();
    args.extend(codecs);
    ffmpeg_media(name, &args)
}

/// A copy of `source` under another name, in `dir`.
fn renamed(source: &Path, dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::copy(source, &path).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_decides_the_media_type() {
    let dir = tempfile::tempdir().unwrap();
    let theora = make(
        "theora.ogg",
        &[VIDEO, AUDIO],
        &["-c:v", "libtheora", "-c:a", "libvorbis", "-shortest"],
    );
    let vorbis = make("vorbis.ogg", &[AUDIO], &["-c:a", "libvorbis"]);
    let opus_webm = make("opus-only.webm", &[AUDIO], &["-c:a", "libopus"]);
    let aac_mp4 = make("aac-only.mp4", &[AUDIO], &["-c:a", "aac"]);
    // moov after mdat (no +faststart), and an extension that says nothing.
    let moov_last = make(
        "moov-last.mp4",
        &[VIDEO],
        &["-c:v", "libx264", "-pix_fmt", "yuv420p"],
    );
    let moov_last = renamed(&moov_last, dir.path(), "moov-last.bin");
    let jpeg_dat = renamed(&corpus().jpeg, dir.path(), "picture.dat");
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "plain text\n").unwrap();
    let cases: [(&Path, &str, &str); 8] = [
        (&theora, "video/ogg", "video"),
        (&vorbis, "audio/ogg", "audio"),
        (&opus_webm, "audio/webm", "audio"),
        (&corpus().webm, "video/webm", "video"),
        (&aac_mp4, "audio/mp4", "audio"),
        (&moov_last, "video/mp4", "video"),
        (&jpeg_dat, "image/jpeg", "image"),
        (&text, "text/plain", "other"),
    ];
    let mp4 = std::fs::read(&moov_last).unwrap();
    let at = |tag: &[u8]| mp4.windows(4).position(|w| w == tag).unwrap();
    assert!(at(b"moov") > at(b"mdat"), "the moov box comes last");

    let server = SignalServer::start();
    let paths: Vec<PathBuf> = cases.iter().map(|c| c.0.to_owned()).collect();
    let url = server.url.clone();
    let (seeder, hashes) = tokio::task::spawn_blocking(move || {
        let paths: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
        seed(&url, &paths)
    })
    .await
    .unwrap();
    let files = index(&server.url).await;
    let url = server.url.clone();
    let (ok, listing, stderr) = tokio::task::spawn_blocking(move || shoal(&url, &["ls"]).finish())
        .await
        .unwrap();
    assert!(ok, "{stderr:#?}");
    for ((path, mime, category), hash) in cases.iter().zip(&hashes) {
        let file = files
            .iter()
            .find(|f| f.info_hash.to_string() == *hash)
            .unwrap_or_else(|| panic!("{} is not in the index", path.display()));
        assert_eq!(
            (file.mime.as_str(), file.category.as_str()),
            (*mime, *category),
            "{}",
            path.display()
        );
        let row = listing
            .lines()
            .find(|l| l.starts_with(hash.as_str()))
            .unwrap();
        assert!(row.contains(&format!("  {category:<5}  ")), "{row}");
    }
    drop(seeder);
}
