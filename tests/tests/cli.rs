//! `shoal seed` and `shoal get` end to end (issue 3): a real `shoal-signal`, real `shoal`
//! processes and real webrtc on 127.0.0.1, real media. Properties asserted:
//! - real media (MP4, WebM, MPEG-1, JPEG, FLAC, 200 MiB random) downloads byte-identical;
//! - `shoal ls` / `shoal search` show the files with their categories;
//! - two seeders both contribute; a seeder killed mid-transfer is replaced by the other;
//! - `get` killed and rerun resumes without refetching verified pieces;
//! - a peer that sends a corrupted piece is banned and the piece refetched; the file is right;
//! - hostile names from a peer stay inside the output folder;
//! - unknown info hash, unreachable holders and a full disk fail with a clear message;
//! - two connections to one seeder count as one peer, in words ("1 peer");
//! - 120 files seeded at once are all announced, inside the server's rate limit.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use shoal_e2e::peer::{PeerFile, TestPeer};
use shoal_e2e::{SignalServer, corpus, seed, sha256_file, shoal, tree};

fn get(url: &str, hash: &str, out: &Path) -> shoal_e2e::Proc {
    shoal(url, &["get", hash, "--out", &out.display().to_string()])
}

/// Runs a get to the end; returns the downloaded path and stderr.
fn get_ok(url: &str, hash: &str, out: &Path) -> (PathBuf, Vec<String>) {
    let (ok, stdout, stderr) = get(url, hash, out).finish();
    assert!(ok, "shoal get failed: {stderr:#?}");
    let path = PathBuf::from(stdout.trim());
    assert!(
        path.starts_with(out),
        "{} is outside {}",
        path.display(),
        out.display()
    );
    (path, stderr)
}

/// Bytes per peer from get's summary lines ("  from <peer>: <n> bytes").
fn per_peer(stderr: &[String]) -> Vec<u64> {
    stderr
        .iter()
        .filter_map(|l| l.trim().strip_prefix("from "))
        .filter_map(|l| l.split(": ").nth(1)?.strip_suffix(" bytes")?.parse().ok())
        .collect()
}

/// "progress <done> <total> ..." lines of a non-interactive get.
fn progress_done(line: &str) -> Option<u64> {
    line.strip_prefix("progress ")?
        .split(' ')
        .next()?
        .parse()
        .ok()
}

#[test]
fn real_media_round_trips_and_is_listed() {
    let media = corpus();
    let mp4 = std::fs::read(&media.mp4).unwrap();
    let moov = mp4.windows(4).position(|w| w == b"moov").unwrap();
    let mdat = mp4.windows(4).position(|w| w == b"mdat").unwrap();
    assert!(moov < mdat, "the MP4 has its moov atom at the front");

    let server = SignalServer::start();
    let files = [
        &media.mp4,
        &media.webm,
        &media.mpg,
        &media.jpeg,
        &media.flac,
    ];
    let paths: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    let (seeder, hashes) = seed(&server.url, &paths);

    let (ok, listing, _) = shoal(&server.url, &["ls"]).finish();
    assert!(ok);
    for (path, hash) in paths.iter().zip(&hashes) {
        let name = path.file_name().unwrap().to_str().unwrap();
        let line = listing
            .lines()
            .find(|l| l.starts_with(hash.as_str()))
            .unwrap_or_else(|| panic!("{name} not listed:\n{listing}"));
        assert!(line.ends_with(name), "{line}");
    }
    let (ok, videos, _) = shoal(&server.url, &["ls", "--category", "video"]).finish();
    assert!(ok);
    assert_eq!(
        videos.lines().count(),
        3,
        "mp4, webm and mpg are videos:\n{videos}"
    );
    let (ok, found, _) = shoal(&server.url, &["search", "AMBI", "choir"]).finish();
    assert!(ok);
    assert!(
        found.contains("ambi_choir.flac") && found.contains(" audio "),
        "{found}"
    );
    let (ok, found, _) = shoal(&server.url, &["search", "bubbles", "--category", "image"]).finish();
    assert!(ok);
    assert!(found.contains("Bubbles.jpg"), "{found}");

    let out = tempfile::tempdir().unwrap();
    for (path, hash) in paths.iter().zip(&hashes) {
        let (got, _) = get_ok(&server.url, hash, out.path());
        assert_eq!(got.file_name(), path.file_name());
        assert_eq!(sha256_file(&got), sha256_file(path), "{}", path.display());
    }

    // Stopped, the seeder says what it sent: each file once, to one peer (the bytes count
    // the manifest and the messages' headers too).
    seeder.terminate();
    let (ok, _, stderr) = seeder.finish();
    assert!(ok, "{stderr:#?}");
    for (path, hash) in paths.iter().zip(&hashes) {
        let len = std::fs::metadata(path).unwrap().len();
        let line = stderr
            .iter()
            .find(|l| l.starts_with(&format!("served {hash}: ")))
            .unwrap_or_else(|| panic!("nothing said about {hash}: {stderr:#?}"));
        let sent: u64 = line
            .split_whitespace()
            .nth(2)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{line}"));
        assert!(
            sent >= len && sent <= len + len / 20 + 4096,
            "{line} for a file of {len} bytes"
        );
        assert!(line.ends_with("to 1 peer"), "{line}");
    }
}

#[test]
fn two_seeders_both_contribute_to_200_mib() {
    let media = corpus();
    let server = SignalServer::start();
    let (_a, hashes) = seed(&server.url, &[&media.random]);
    let (_b, _) = seed(&server.url, &[&media.random]);
    let out = tempfile::tempdir().unwrap();
    let (got, stderr) = get_ok(&server.url, &hashes[0], out.path());
    assert_eq!(sha256_file(&got), sha256_file(&media.random));
    let contributions = per_peer(&stderr);
    assert_eq!(contributions.len(), 2, "{stderr:#?}");
    assert!(contributions.iter().all(|b| *b > 0), "{contributions:?}");
    assert_eq!(contributions.iter().sum::<u64>(), 200 << 20);
}

#[test]
fn a_seeder_killed_mid_transfer_is_replaced() {
    let media = corpus();
    let server = SignalServer::start();
    let (mut a, hashes) = seed(&server.url, &[&media.random]);
    let (_b, _) = seed(&server.url, &[&media.random]);
    let out = tempfile::tempdir().unwrap();
    let mut download = get(&server.url, &hashes[0], out.path());
    download.wait_line(|l| progress_done(l).is_some_and(|d| d >= 16 << 20));
    a.kill();
    let (ok, stdout, stderr) = download.finish();
    assert!(ok, "{stderr:#?}");
    assert_eq!(
        sha256_file(Path::new(stdout.trim())),
        sha256_file(&media.random)
    );
}

#[test]
fn get_killed_and_rerun_fetches_only_missing_pieces() {
    let media = corpus();
    let server = SignalServer::start();
    let (_seeder, hashes) = seed(&server.url, &[&media.random]);
    let out = tempfile::tempdir().unwrap();
    let mut first = get(&server.url, &hashes[0], out.path());
    let seen = first.wait_line(|l| progress_done(l).is_some_and(|d| d >= 16 << 20));
    let reported = progress_done(&seen).unwrap();
    first.kill();
    assert!(
        tree(out.path()).iter().any(|p| p.ends_with(".part")),
        "a .part file stays: {:?}",
        tree(out.path())
    );

    let (got, stderr) = get_ok(&server.url, &hashes[0], out.path());
    assert_eq!(sha256_file(&got), sha256_file(&media.random));
    let resumed: u64 = stderr
        .iter()
        .find_map(|l| l.strip_prefix("resuming "))
        .and_then(|l| l.split(": ").nth(1)?.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no resume line: {stderr:#?}"));
    assert!(
        resumed >= reported,
        "verified {reported} bytes before the kill but resumed only {resumed}"
    );
    let fetched: u64 = per_peer(&stderr).iter().sum();
    assert_eq!(
        fetched + resumed,
        200 << 20,
        "refetched verified pieces: {stderr:#?}"
    );
    assert_eq!(tree(out.path()), vec!["random-200M.bin".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_piece_is_caught_and_refetched() {
    let media = corpus();
    let server = SignalServer::start();
    let data = std::fs::read(&media.mpg).unwrap();
    // A liar that corrupts every piece it sends is the only holder when the download starts.
    let liar = TestPeer::start(
        &server.url,
        vec![PeerFile {
            name: "cityCC0.mpg".into(),
            data: data.clone().into(),
            corrupt_pieces: (0..64).collect(),
            ..PeerFile::default()
        }],
    )
    .await;
    let out = tempfile::tempdir().unwrap();
    let hash = liar.info_hashes[0].to_string();
    let mut download = get(&server.url, &hash, out.path());
    let url = server.url.clone();
    let (download, _honest) = tokio::task::spawn_blocking(move || {
        download.wait_line(|l| l.contains("connected ("));
        // An honest seeder joins; the download finds it when it looks for holders again.
        let (honest, hashes) = seed(&url, &[&media.mpg]);
        assert_eq!(hashes[0], hash);
        (download, honest)
    })
    .await
    .unwrap();
    let (ok, stdout, stderr) = tokio::task::spawn_blocking(move || download.finish())
        .await
        .unwrap();
    assert!(ok, "{stderr:#?}");
    assert_eq!(
        sha256_file(Path::new(stdout.trim())),
        sha256_file(&media.mpg)
    );
    assert!(
        stderr
            .iter()
            .any(|l| l.contains("banned") && l.contains("failed verification")),
        "the liar was not banned: {stderr:#?}"
    );
    // Every verified byte came from the honest seeder.
    assert_eq!(per_peer(&stderr), vec![data.len() as u64], "{stderr:#?}");
    drop(liar);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_stay_inside_the_output_folder() {
    let server = SignalServer::start();
    let names = [
        "../../escaped.mp4",
        "/etc/shoal-absolute.mp4",
        "con\u{1b}[31mtrol\n\u{202e}chars.mp4",
        "..",
    ];
    let files: Vec<PeerFile> = names
        .iter()
        .enumerate()
        .map(|(i, n)| PeerFile {
            name: n.to_string(),
            data: vec![i as u8 + 1; 300_000].into(),
            corrupt_pieces: Vec::new(),
            ..PeerFile::default()
        })
        .collect();
    let peer = TestPeer::start(&server.url, files.clone()).await;
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("downloads");
    std::fs::create_dir(&out).unwrap();
    for (file, hash) in files.iter().zip(&peer.info_hashes) {
        let url = server.url.clone();
        let hash = hash.to_string();
        let dir = out.clone();
        let (got, _) = tokio::task::spawn_blocking(move || get_ok(&url, &hash, &dir))
            .await
            .unwrap();
        assert_eq!(got.parent(), Some(out.as_path()), "{}", got.display());
        let name = got.file_name().unwrap().to_str().unwrap();
        assert!(!name.starts_with('.'), "{name:?}");
        assert!(!name.chars().any(char::is_control), "{name:?}");
        assert_eq!(std::fs::read(&got).unwrap(), *file.data);
    }
    // Nothing was created anywhere but inside the download folder.
    let all = tree(root.path());
    assert!(all.iter().all(|p| p.starts_with("downloads")), "{all:#?}");
    assert_eq!(all.len(), 1 + names.len(), "{all:#?}");
    assert!(!Path::new("/etc/shoal-absolute.mp4").exists());
}

#[test]
fn a_seeder_stops_serving_a_file_that_changed() {
    let media = corpus();
    let server = SignalServer::start();
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("changing.mp4");
    std::fs::copy(&media.mp4, &copy).unwrap();
    let (mut seeder, hashes) = seed(&server.url, &[&copy]);
    // The user edits the file after sharing it.
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&copy)
        .unwrap();
    std::io::Write::write_all(&mut file, b"edited").unwrap();
    drop(file);
    let out = tempfile::tempdir().unwrap();
    let (ok, _, stderr) = get(&server.url, &hashes[0], out.path()).finish();
    assert!(!ok, "a changed file must not be served: {stderr:#?}");
    let line = seeder.wait_line(|l| l.contains("stopped sharing"));
    assert!(line.contains("changed since it was shared"), "{line}");
    assert!(tree(out.path()).iter().all(|p| !p.ends_with(".mp4")));
}

#[test]
fn clear_errors_for_unknown_content() {
    let server = SignalServer::start();
    let out = tempfile::tempdir().unwrap();
    let (ok, _, stderr) = get(&server.url, &"ab".repeat(32), out.path()).finish();
    assert!(!ok);
    assert!(
        stderr
            .iter()
            .any(|l| l.contains("no one on the signaling server shares")),
        "{stderr:#?}"
    );
    let (ok, _, stderr) = shoal(&server.url, &["get", "not-a-hash"]).finish();
    assert!(!ok);
    assert!(
        stderr.iter().any(|l| l.contains("info hash")),
        "{stderr:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_source_failing_is_an_error() {
    let server = SignalServer::start();
    let mute = TestPeer::start_mute(
        &server.url,
        vec![PeerFile {
            name: "unreachable.mp4".into(),
            data: vec![7u8; 100_000].into(),
            corrupt_pieces: Vec::new(),
            ..PeerFile::default()
        }],
    )
    .await;
    let out = tempfile::tempdir().unwrap();
    let url = server.url.clone();
    let hash = mute.info_hashes[0].to_string();
    let dir = out.path().display().to_string();
    let (ok, _, stderr) = tokio::task::spawn_blocking(move || {
        shoal(
            &url,
            &["get", &hash, "--out", &dir, "--connect-timeout", "2s"],
        )
        .finish()
    })
    .await
    .unwrap();
    assert!(!ok);
    assert!(
        stderr
            .iter()
            .any(|l| l.contains("every source of") && l.contains("failed")),
        "{stderr:#?}"
    );
    drop(mute);
}

/// A tmpfs of `bytes` mounted on a fresh folder, unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn new(bytes: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(
            status.success(),
            "mounting a tmpfs needs root (CI runs as root)"
        );
        Self { dir }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn a_full_disk_is_a_clear_error() {
    let media = corpus();
    let server = SignalServer::start();
    let (_seeder, hashes) = seed(&server.url, &[&media.mpg]);
    let disk = SmallDisk::new(1 << 20); // the video is 4.4 MiB
    let (ok, _, stderr) = get(&server.url, &hashes[0], disk.dir.path()).finish();
    assert!(!ok);
    assert!(
        stderr.iter().any(|l| l.contains("not enough disk space")),
        "{stderr:#?}"
    );
    assert!(
        tree(disk.dir.path()).is_empty(),
        "{:?}",
        tree(disk.dir.path())
    );
}

#[test]
fn unreachable_signaling_server_is_reported() {
    // A port nothing listens on: bind, read the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("ws://127.0.0.1:{port}");
    let (ok, _, stderr) = shoal(&url, &["ls"]).finish();
    assert!(!ok);
    assert!(
        stderr
            .iter()
            .any(|l| l.contains("cannot reach the signaling server")),
        "{stderr:#?}"
    );
}

/// Issue 8, item 6: two connections to one seeder are one peer, in the progress lines and the
/// summary ("fetched ... from 1 peers" before).
#[test]
fn peers_are_counted_as_nodes_in_words() {
    let media = corpus();
    let server = SignalServer::start();
    let (_seeder, hashes) = seed(&server.url, &[&media.mpg]);
    let out = tempfile::tempdir().unwrap();
    let (ok, _, stderr) = shoal(
        &server.url,
        &[
            "get",
            &hashes[0],
            "--out",
            &out.path().display().to_string(),
            "--connections-per-peer",
            "2",
        ],
    )
    .finish();
    assert!(ok, "{stderr:#?}");
    for line in stderr.iter().filter(|l| l.starts_with("progress ")) {
        assert!(
            line.ends_with(" 0 peers") || line.ends_with(" 1 peer"),
            "one seeder is at most one peer: {line}"
        );
    }
    let summary = stderr
        .iter()
        .find(|l| l.starts_with("fetched "))
        .unwrap_or_else(|| panic!("no summary: {stderr:#?}"));
    assert!(summary.contains(" from 1 peer in "), "{summary}");
}

/// A folder of 120 files shared at once stays inside the server's rate of index changes (64
/// at once, 8 per second): before the node paced its announcements, the 65th file was
/// refused with `rate_limited` and `shoal seed` gave up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeding_120_files_at_once_announces_them_all() {
    let server = SignalServer::start();
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<PathBuf> = (0..120u32)
        .map(|i| {
            let path = dir.path().join(format!("note {i:03}.txt"));
            std::fs::write(&path, format!("note {i}\n")).unwrap();
            path
        })
        .collect();
    let paths: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let started = std::time::Instant::now();
    let (seeder, hashes) = seed(&server.url, &paths);
    println!("120 files shared and announced in {:?}", started.elapsed());
    let index = shoal_e2e::index(&server.url).await;
    for hash in &hashes {
        assert!(
            index.iter().any(|f| f.info_hash.to_string() == *hash),
            "{hash} is not in the index"
        );
    }
    assert_eq!(index.len(), 120);
    drop(seeder);
}
