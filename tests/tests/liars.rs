//! Lying and stalling peers against `shoal get`, over real processes, a real `shoal-signal`
//! and real webrtc on loopback (issue 8, items 1-5). The liar is the scripted peer of
//! `shoal_e2e::peer`, speaking the wire of `docs/wire.md`. Properties asserted:
//! - a peer that serves one good piece and then stalls, one that appends bytes past every
//!   piece, one that sends chunks at wrong offsets, and one that never answers the manifest
//!   request do not stop `shoal get`: the file comes byte-identical from the honest holder
//!   (the two framing liars are banned first, alone);
//! - alone, the peer that appends bytes is banned (its extra bytes arrive as piece data past
//!   the piece, or as a piece starting at a wrong offset) and `get` exits non-zero with a
//!   sentence naming what it did; the stalling peer is given up after a bounded number of tries and
//!   `get` exits non-zero naming the stall (before the fix it reconnected forever);
//! - an info hash squatted with a wrong size does not keep the honest `shoal seed` out, and
//!   `get` completes from it.

use std::path::Path;

use shoal_e2e::peer::{PeerFile, TestPeer};
use shoal_e2e::{SignalServer, corpus, seed, sha256_file, shoal};

fn get(url: &str, hash: &str, out: &Path) -> shoal_e2e::Proc {
    shoal(url, &["get", hash, "--out", &out.display().to_string()])
}

/// The corpus' MPEG-1 file as a liar offers it, with `lie` applied.
fn liar_file(lie: impl FnOnce(&mut PeerFile)) -> PeerFile {
    let mut file = PeerFile {
        name: "cityCC0.mpg".into(),
        data: std::fs::read(&corpus().mpg).expect("corpus file").into(),
        ..PeerFile::default()
    };
    lie(&mut file);
    file
}

/// Waits for `get` to exit; a success must have written the corpus file byte for byte.
fn finish_checked(download: shoal_e2e::Proc) -> (bool, String, Vec<String>) {
    let (ok, stdout, stderr) = download.finish();
    if ok {
        assert_eq!(
            sha256_file(Path::new(stdout.trim())),
            sha256_file(&corpus().mpg),
            "byte-identical"
        );
    }
    (ok, stdout, stderr)
}

/// When the honest `shoal seed` of the liar's file joins.
#[derive(Clone, Copy, PartialEq)]
enum Honest {
    /// Before the download starts (the liar, announced first, is still tried first).
    JoinsFirst,
    /// Once the download has banned the liar, which was the only holder until then.
    JoinsAfterBan,
}

/// Starts the liar, then downloads its file with an honest seeder joining as `honest` says;
/// the download must end byte-identical.
async fn download_despite(lie: impl FnOnce(&mut PeerFile), honest: Honest) {
    let media = corpus();
    let server = SignalServer::start();
    let liar = TestPeer::start(&server.url, vec![liar_file(lie)]).await;
    let hash = liar.info_hashes[0].to_string();
    let url = server.url.clone();
    let (ok, stdout, stderr, _honest) = tokio::task::spawn_blocking(move || {
        let out = tempfile::tempdir().expect("tempdir");
        let seed_honest = || {
            let (seeder, hashes) = seed(&url, &[&media.mpg]);
            assert_eq!(hashes[0], hash, "same bytes, same info hash");
            seeder
        };
        let (download, seeder) = match honest {
            Honest::JoinsFirst => {
                let seeder = seed_honest();
                (get(&url, &hash, out.path()), seeder)
            }
            Honest::JoinsAfterBan => {
                let mut download = get(&url, &hash, out.path());
                download.wait_line(|l| l.contains("banned: protocol violation: piece"));
                (download, seed_honest())
            }
        };
        let (ok, stdout, stderr) = finish_checked(download);
        (ok, stdout, stderr, seeder)
    })
    .await
    .expect("join");
    assert!(ok, "get failed: {stdout} {stderr:#?}");
    drop(liar);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stalls_after_one_piece_does_not_stop_the_download() {
    download_despite(|f| f.stall_after_pieces = Some(1), Honest::JoinsFirst).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_appending_bytes_to_pieces_is_banned_and_the_download_completes() {
    download_despite(|f| f.extra_piece_bytes = 1000, Honest::JoinsAfterBan).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_sending_wrong_offsets_is_banned_and_the_download_completes() {
    download_despite(|f| f.shift_offsets = true, Honest::JoinsAfterBan).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_answers_the_manifest_request_does_not_stop_the_download() {
    download_despite(|f| f.withhold_manifest = true, Honest::JoinsFirst).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_squatted_info_hash_with_a_wrong_size_does_not_keep_the_honest_seeder_out() {
    // Announces the real info hash with a wrong size and serves nothing it is asked for.
    download_despite(
        |f| {
            f.announced_size = Some(5);
            f.stall_after_pieces = Some(0);
            f.withhold_manifest = true;
        },
        Honest::JoinsFirst,
    )
    .await;
}

/// Runs `get` against the liar alone; returns its stderr after a non-zero exit.
async fn fail_against(lie: impl FnOnce(&mut PeerFile)) -> Vec<String> {
    let server = SignalServer::start();
    let liar = TestPeer::start(&server.url, vec![liar_file(lie)]).await;
    let hash = liar.info_hashes[0].to_string();
    let url = server.url.clone();
    let (ok, _stdout, stderr) = tokio::task::spawn_blocking(move || {
        let out = tempfile::tempdir().expect("tempdir");
        get(&url, &hash, out.path()).finish()
    })
    .await
    .expect("join");
    assert!(!ok, "get cannot succeed against a liar alone: {stderr:#?}");
    drop(liar);
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alone_a_peer_appending_bytes_ends_the_download_in_words() {
    let stderr = fail_against(|f| f.extra_piece_bytes = 1000).await;
    let last = stderr.last().cloned().unwrap_or_default();
    assert!(
        last.contains("banned: protocol violation: piece"),
        "the error names the cause: {stderr:#?}"
    );
}

/// Before the fix: 80 reconnections in 120 s, never an exit. `finish` bounds the wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alone_a_peer_that_stalls_after_one_piece_is_given_up_in_words() {
    let stderr = fail_against(|f| f.stall_after_pieces = Some(1)).await;
    let last = stderr.last().cloned().unwrap_or_default();
    assert!(
        last.contains("stalled"),
        "the error names the stall: {stderr:#?}"
    );
    let connects = stderr.iter().filter(|l| l.contains("connected (")).count();
    assert!(
        connects <= 2 * 3,
        "at most three tries of two connections: {connects} in {stderr:#?}"
    );
}
