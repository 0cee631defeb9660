//! `shoal watch` (issue 10): a download played while it arrives, over a real `shoal-signal`,
//! real `shoal` processes and real webrtc on 127.0.0.1. Properties asserted:
//! - a Range request for a partial download returns exactly the file's bytes, while the
//!   `.part` file is still there (the seeder is capped so the download takes seconds);
//! - a range past the end gets 416 with `Content-Range: bytes */<len>`;
//! - a request without a range waits for every piece and returns the whole file; after the
//!   download completes the URL serves on, and Ctrl-C ends `watch` with 0;
//! - a `watch` stopped before the end keeps its `.part` file.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use shoal_e2e::{Proc, SignalServer, http_get, sha256_file, shoal, tree};

fn random_data(len: usize, seed: u64) -> Vec<u8> {
    use rand::{RngCore, SeedableRng};
    let mut data = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut data);
    data
}

/// Seeds `data` as `name` at most `max_upload` MiB/s; returns the seeder and the info hash.
fn capped_seeder(
    url: &str,
    dir: &Path,
    name: &str,
    data: &[u8],
    max_upload: &str,
) -> (Proc, String) {
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap();
    let mut seeder = shoal(
        url,
        &[
            "seed",
            "--max-upload",
            max_upload,
            &path.display().to_string(),
        ],
    );
    let hash = seeder.stdout_lines(1)[0]
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    (seeder, hash)
}

fn watch(url: &str, hash: &str, out: &Path) -> (Proc, String) {
    let mut proc = shoal(url, &["watch", hash, "--out", &out.display().to_string()]);
    let stream_url = proc.stdout_lines(1).remove(0);
    assert!(stream_url.starts_with("http://127.0.0.1:"), "{stream_url}");
    (proc, stream_url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_download_answers_ranges_with_exactly_its_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let len = 8 << 20;
    let data = random_data(len, 30);
    let server = SignalServer::start();
    // 1 MiB/s: the whole file takes about 8 s.
    let (_seeder, hash) = capped_seeder(&server.url, dir.path(), "film.bin", &data, "1");
    let (watcher, url) = watch(&server.url, &hash, out.path());

    // Far from the start: those pieces are fetched first.
    let asked = std::time::Instant::now();
    let r = http_get(&url, Some("bytes=6000000-6999999")).await;
    println!(
        "1 MB at 6 MB of a file arriving at 1 MiB/s: served in {:.2} s",
        asked.elapsed().as_secs_f64()
    );
    assert_eq!(r.status, 206, "{}", r.head);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 6000000-6999999/{len}").as_str())
    );
    assert!(r.body == data[6_000_000..7_000_000], "other bytes served");
    let files = tree(out.path());
    assert!(
        files.iter().any(|f| f.ends_with(".part")),
        "the download finished before the range was served: {files:?}"
    );

    // Past the end.
    let r = http_get(&url, Some(&format!("bytes={}-", len + 1000))).await;
    assert_eq!(r.status, 416, "{}", r.head);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes */{len}").as_str())
    );

    // No range: the whole file, waiting for every piece.
    let r = http_get(&url, None).await;
    assert_eq!(r.status, 200, "{}", r.head);
    assert!(r.body == data, "the whole file differs");

    // Complete: the path on stdout; the URL serves on (now the finished file).
    let (watcher, line) = tokio::task::spawn_blocking(move || {
        let mut watcher = watcher;
        let line = watcher.stdout_lines(1).remove(0);
        (watcher, line)
    })
    .await
    .unwrap();
    let path = PathBuf::from(line);
    assert_eq!(
        sha256_file(&path),
        sha256_file(&dir.path().join("film.bin"))
    );
    let r = http_get(&url, Some("bytes=0-99")).await;
    assert_eq!(r.status, 206, "{}", r.head);
    assert!(r.body == data[..100]);
    watcher.terminate();
    let (ok, _, stderr) = tokio::task::spawn_blocking(move || watcher.finish())
        .await
        .unwrap();
    assert!(ok, "a finished watch ends with 0: {stderr:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_stopped_early_keeps_its_part_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let data = random_data(4 << 20, 31);
    let server = SignalServer::start();
    let (_seeder, hash) = capped_seeder(&server.url, dir.path(), "clip.bin", &data, "0.25");
    let (mut watcher, url) = watch(&server.url, &hash, out.path());
    // One piece through the URL, then stop.
    let r = http_get(&url, Some("bytes=0-1023")).await;
    assert_eq!(r.status, 206, "{}", r.head);
    assert!(r.body == data[..1024]);
    let watcher = tokio::task::spawn_blocking(move || {
        watcher.wait_line(|l| l.starts_with("progress "));
        watcher
    })
    .await
    .unwrap();
    watcher.terminate();
    let (ok, _, stderr) = tokio::task::spawn_blocking(move || watcher.finish())
        .await
        .unwrap();
    assert!(!ok, "stopped before the end is not a success: {stderr:#?}");
    assert!(
        stderr.iter().any(|l| l.contains(".part file is kept")),
        "{stderr:#?}"
    );
    let files = tree(out.path());
    assert!(files.iter().any(|f| f.ends_with(".part")), "{files:?}");
}

/// Runs ffmpeg on `url` (a real player's demuxer and decoder over HTTP Range): decodes one
/// frame from `seek_secs`; returns whether it worked and its stderr.
async fn decode_one_frame(url: &str, seek_secs: f64) -> (bool, String) {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-ss"])
            .arg(format!("{seek_secs}"))
            .args(["-i", &url, "-frames:v", "1", "-f", "null", "-"])
            .output()
            .expect("ffmpeg is installed (scripts/deps.sh)");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_plays_and_seeks_an_mp4_with_its_index_at_the_end_while_it_downloads() {
    let media = shoal_e2e::mp4_moov_at_end();
    let data = std::fs::read(&media).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let server = SignalServer::start();
    // 0.5 MiB/s: the whole file takes about 12 s, as long as it plays.
    let (_seeder, hash) = capped_seeder(&server.url, dir.path(), "film.mp4", &data, "0.5");
    let (_watcher, url) = watch(&server.url, &hash, out.path());
    let asked = std::time::Instant::now();
    let (ok, stderr) = decode_one_frame(&url, 0.0).await;
    assert!(ok, "ffmpeg could not decode the first frame: {stderr}");
    let first = asked.elapsed();
    let asked = std::time::Instant::now();
    let (ok, stderr) = decode_one_frame(&url, 9.6).await;
    assert!(ok, "ffmpeg could not decode a frame at 80 %: {stderr}");
    let seek = asked.elapsed();
    println!(
        "moov at the end, {} bytes arriving at 0.5 MiB/s: first frame decoded after {:.2} s, \
         a frame at 80 % after {:.2} s more",
        data.len(),
        first.as_secs_f64(),
        seek.as_secs_f64()
    );
    let files = tree(out.path());
    assert!(
        files.iter().any(|f| f.ends_with(".part")),
        "the download finished before the seek was decoded: {files:?}"
    );
}

/// Issue 10's figure for the command line: a 1080p H.264 MP4 of about 8 Mbit/s whose only
/// holder sends at most 4 MiB/s; from `shoal watch`'s URL to ffmpeg's first decoded frame,
/// and from a seek to 80 % to a decoded frame there, for `moov` at the front and at the end.
/// Prints figures; run with `cargo test -p shoal-e2e --test watch -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: prints figures"]
async fn watch_figures() {
    let secs = 60;
    for faststart in [true, false] {
        let media = shoal_e2e::mp4_1080p(secs, faststart);
        let data = std::fs::read(&media).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let server = SignalServer::start();
        let (_seeder, hash) = capped_seeder(&server.url, dir.path(), "film.mp4", &data, "4");
        // The CLI figure: from the URL's first request to its first 1 MiB, on a
        // watch of its own (the frames below are timed on another).
        let first_mib = {
            let out = tempfile::tempdir().unwrap();
            let (_watcher, url) = watch(&server.url, &hash, out.path());
            let asked = std::time::Instant::now();
            let r = http_get(&url, Some("bytes=0-1048575")).await;
            assert_eq!(r.status, 206, "{}", r.head);
            assert!(r.body == data[..1 << 20], "other bytes served");
            asked.elapsed()
        };
        let (_watcher, url) = watch(&server.url, &hash, out.path());
        let asked = std::time::Instant::now();
        let (ok, stderr) = decode_one_frame(&url, 0.0).await;
        assert!(ok, "{stderr}");
        let first = asked.elapsed();
        let asked = std::time::Instant::now();
        let (ok, stderr) = decode_one_frame(&url, f64::from(secs) * 0.8).await;
        assert!(ok, "{stderr}");
        let seek = asked.elapsed();
        let partial = tree(out.path()).iter().any(|f| f.ends_with(".part"));
        println!(
            "moov at the {}: {:.1} MB, holder capped at 4 MiB/s: first MiB served {:.2} s; \
             first frame {:.2} s, seek to 80 % {:.2} s{}",
            if faststart { "front" } else { "end" },
            data.len() as f64 / 1e6,
            first_mib.as_secs_f64(),
            first.as_secs_f64(),
            seek.as_secs_f64(),
            if partial {
                " (still downloading)"
            } else {
                " (download had completed)"
            }
        );
    }
}
