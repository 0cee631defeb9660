//! `hash_file` on real files. Asserts:
//! - the manifest equals one computed by hand (SHA-256 of each 256 KiB slice) for files of 0
//!   bytes, 1 byte, exactly one piece, one piece + 1 byte, and ~3 MiB of random bytes;
//! - progress only grows, comes at least every 4 MiB, and ends at the file's length;
//! - returning `false` from progress cancels with `StorageError::Cancelled`;
//! - a missing file is an I/O error naming the path.

mod common;

use std::path::Path;

use common::{manifest_by_hand, random_bytes};
use shoal_storage::{PIECE_LEN, StorageError, hash_file};

fn write(dir: &Path, name: &str, data: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, data).expect("write");
    path
}

#[test]
fn manifest_matches_hand_computed_for_edge_sizes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let piece = PIECE_LEN as usize;
    for (len, seed) in [
        (0, 1),
        (1, 2),
        (piece, 3),
        (piece + 1, 4),
        (3 * 1024 * 1024 + 12_345, 5),
    ] {
        let data = random_bytes(len, seed);
        let path = write(dir.path(), &format!("f{len}"), &data);
        let manifest = hash_file(&path, &mut |_| true).expect("hash");
        let expected = manifest_by_hand(&data);
        assert_eq!(manifest, expected, "{len} bytes");
        assert_eq!(manifest.info_hash(), expected.info_hash(), "{len} bytes");
        assert_eq!(manifest.layout().len_bytes(), len as u64);
        assert_eq!(
            manifest.layout().piece_count() as usize,
            len.div_ceil(piece),
            "{len} bytes"
        );
    }
}

#[test]
fn progress_grows_steadily_and_reaches_the_length() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = random_bytes(9 * 1024 * 1024 + 7, 6);
    let path = write(dir.path(), "f", &data);
    let mut seen = Vec::new();
    hash_file(&path, &mut |bytes| {
        seen.push(bytes);
        true
    })
    .expect("hash");
    assert_eq!(seen.last(), Some(&(data.len() as u64)));
    let mut previous = 0;
    for &bytes in &seen {
        assert!(bytes >= previous, "progress went back: {seen:?}");
        assert!(
            bytes - previous <= 4 * 1024 * 1024,
            "a gap over 4 MiB: {seen:?}"
        );
        previous = bytes;
    }

    let empty = write(dir.path(), "empty", b"");
    let mut calls = Vec::new();
    hash_file(&empty, &mut |bytes| {
        calls.push(bytes);
        true
    })
    .expect("hash");
    assert_eq!(calls, vec![0], "an empty file reports once, at the end");
}

#[test]
fn returning_false_cancels() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = random_bytes(12 * 1024 * 1024, 7);
    let path = write(dir.path(), "f", &data);

    let mut calls = 0;
    let err = hash_file(&path, &mut |_| {
        calls += 1;
        false
    })
    .expect_err("cancelled");
    assert!(matches!(err, StorageError::Cancelled), "{err}");
    assert_eq!(calls, 1, "no progress after cancelling");

    // Cancelling later on works too.
    let err = hash_file(&path, &mut |bytes| bytes < 5 * 1024 * 1024).expect_err("cancelled");
    assert!(matches!(err, StorageError::Cancelled), "{err}");

    // Even a small file (a single report, at the end) can be cancelled.
    let small = write(dir.path(), "small", b"abc");
    let err = hash_file(&small, &mut |_| false).expect_err("cancelled");
    assert!(matches!(err, StorageError::Cancelled), "{err}");
}

#[test]
fn a_missing_file_is_an_io_error_with_its_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nope");
    let err = hash_file(&path, &mut |_| true).expect_err("missing");
    assert!(
        matches!(&err, StorageError::Io { path: p, source } if p == &path && source.kind() == std::io::ErrorKind::NotFound),
        "{err}"
    );
}
