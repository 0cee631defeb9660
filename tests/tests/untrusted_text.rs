//! Names from the network never drive the terminal, and logs are plain text in files and
//! pipes (issue 7, items 12 and 15). A scripted peer announces hostile names over the real
//! signaling protocol; `shoal ls` and `shoal search` run as processes and their bytes are
//! checked.

#![allow(clippy::unwrap_used)]

use shoal_e2e::peer::{PeerFile, TestPeer};
use shoal_e2e::{SignalServer, dangerous_chars, shoal, shoal_env};

/// A believable info hash a forged row would show.
const FAKE_HASH: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn hostile_names() -> Vec<String> {
    vec![
        "evil clear\u{1b}[2J\u{1b}[H.mp4".into(),
        "evil title\u{1b}]0;pwned\u{7}.mp4".into(),
        "evil clipboard\u{1b}]52;c;cm0gLXJmIH4K\u{7}.mp4".into(),
        format!("evil cr.mp4\r{FAKE_HASH}     1.0 MiB  video   1 holder   forged.mp4"),
        format!("evil nl.mp4\n{FAKE_HASH}     1.0 MiB  video   1 holder   forged.mp4"),
        "evil csi\u{9b}31m.mp4".into(),
        "evil bidi\u{202e}4pm.exe.mp4".into(),
        "evil zero\u{200b}width\u{2066}.mp4".into(),
        format!("evil long {}.mp4", "a".repeat(240)),
    ]
}

fn assert_inert(what: &str, text: &str) {
    let bad = dangerous_chars(text, true);
    assert!(
        bad.is_empty(),
        "{what} printed {bad:?} from the network:\n{text:?}"
    );
}

/// One row per file, each starting with a real info hash, none forged, names capped.
fn assert_rows(what: &str, listing: &str, peer: &TestPeer) {
    assert_inert(what, listing);
    let rows: Vec<&str> = listing.lines().collect();
    assert_eq!(rows.len(), peer.info_hashes.len(), "{what}:\n{listing}");
    for row in &rows {
        let hash = row.split_whitespace().next().unwrap();
        assert!(
            peer.info_hashes.iter().any(|h| h.to_string() == hash),
            "{what} drew a row that is no file: {row:?}"
        );
        assert!(!row.starts_with(FAKE_HASH), "{row:?}");
        // 64 hex, the columns, and a name of at most 120 characters.
        assert!(row.chars().count() <= 64 + 40 + 120, "{row:?}");
    }
    assert!(
        listing.contains("evil clear\\x1b[2J\\x1b[H.mp4"),
        "{listing}"
    );
    assert!(
        listing.contains("evil bidi<U+202E>4pm.exe.mp4"),
        "{listing}"
    );
    assert!(
        listing.contains(&format!("evil cr.mp4\\r{FAKE_HASH}")),
        "{listing}"
    );
    assert!(listing.contains('…'), "the long name is cut: {listing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_are_printed_inert_by_ls_and_search() {
    let server = SignalServer::start();
    let files: Vec<PeerFile> = hostile_names()
        .into_iter()
        .enumerate()
        .map(|(i, name)| PeerFile {
            name,
            data: vec![i as u8; 1000].into(),
            ..PeerFile::default()
        })
        .collect();
    let peer = TestPeer::start(&server.url, files).await;
    let url = server.url.clone();
    let (ls, search) = tokio::task::spawn_blocking(move || {
        (
            shoal(&url, &["ls"]).finish(),
            shoal(&url, &["search", "evil"]).finish(),
        )
    })
    .await
    .unwrap();
    for (what, (ok, stdout, stderr)) in [("ls", ls), ("search", search)] {
        assert!(ok, "{what}: {stderr:#?}");
        assert_rows(what, &stdout, &peer);
        assert_inert(what, &stderr.join("\n"));
    }
}

#[test]
fn logs_written_to_a_pipe_have_no_colour_codes() {
    let mut server = SignalServer::start();
    // Debug logs of the CLI, to a pipe.
    let (ok, _, stderr) = shoal_env(&server.url, &["ls"], &[("RUST_LOG", "debug")]).finish();
    assert!(ok, "{stderr:#?}");
    assert!(
        stderr
            .iter()
            .any(|l| l.contains("INFO") && l.contains("connected to signaling server")),
        "RUST_LOG=debug writes log lines: {stderr:#?}"
    );
    assert!(
        stderr.iter().all(|l| !l.contains('\u{1b}')),
        "colour codes in a pipe: {stderr:#?}"
    );
    // The server logged the node joining (info, its default level), to a pipe.
    let joined = server.proc.wait_line(|l| l.contains("joined"));
    assert!(!joined.contains('\u{1b}'), "{joined:?}");
}
