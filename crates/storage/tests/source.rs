//! `SourceFile`: serving pieces from the user's own file. Asserts:
//! - every piece read is the right slice of the file (including the short last piece);
//! - after the file is appended to, its modification time changes (`File::set_modified`), it
//!   is replaced by another file of the same size, or it is removed, `read_piece` returns
//!   `StorageError::SourceChanged` saying what changed, and keeps doing so;
//! - opening with a manifest of another length is `SourceChanged`.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use common::{manifest_by_hand, piece_of, random_bytes};
use shoal_storage::{Manifest, PIECE_LEN, PieceIndex, SourceFile, StorageError, hash_file};

/// A shared file of 3 pieces and a bit, hashed, and opened as a source.
fn shared(dir: &Path) -> (PathBuf, Vec<u8>, Manifest, SourceFile) {
    let data = random_bytes(3 * PIECE_LEN as usize + 999, 11);
    let path = dir.join("shared.mkv");
    std::fs::write(&path, &data).expect("write");
    let manifest = hash_file(&path, &mut |_| true).expect("hash");
    let source = SourceFile::open(&path, &manifest).expect("open");
    (path, data, manifest, source)
}

fn piece(manifest: &Manifest, i: u32) -> PieceIndex {
    manifest.layout().piece_index(i).expect("valid piece")
}

fn assert_changed(source: &SourceFile, manifest: &Manifest, needle: &str) {
    for i in 0..manifest.layout().piece_count() {
        match source.read_piece(piece(manifest, i)) {
            Err(StorageError::SourceChanged { path, what }) => {
                assert_eq!(path, source.path());
                assert!(what.contains(needle), "{what:?} should mention {needle:?}");
            }
            other => panic!("piece {i}: expected SourceChanged, got {other:?}"),
        }
    }
}

#[test]
fn serves_every_piece_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, data, manifest, source) = shared(dir.path());
    assert_eq!(source.path(), path);
    assert_eq!(source.manifest(), &manifest);
    assert_eq!(manifest, manifest_by_hand(&data));
    for i in (0..4).rev() {
        let bytes = source.read_piece(piece(&manifest, i)).expect("read");
        assert_eq!(bytes, piece_of(&data, i), "piece {i}");
    }
    assert_eq!(
        source.read_piece(piece(&manifest, 3)).expect("last").len(),
        999
    );
}

#[test]
fn appending_is_a_change_of_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, data, manifest, source) = shared(dir.path());
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("open");
    file.write_all(b"more").expect("append");
    let expected = format!("size {} -> {} bytes", data.len(), data.len() + 4);
    assert_changed(&source, &manifest, &expected);
}

#[test]
fn a_new_modification_time_is_a_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, _, manifest, source) = shared(dir.path());
    let file = std::fs::File::options()
        .write(true)
        .open(&path)
        .expect("open");
    file.set_modified(SystemTime::now() + Duration::from_secs(60))
        .expect("set mtime");
    assert_changed(&source, &manifest, "modification time");
}

#[test]
fn a_replaced_file_is_a_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, data, manifest, source) = shared(dir.path());
    // Same size, same modification time, other content: only its identity differs.
    let other = dir.path().join("other");
    std::fs::write(&other, random_bytes(data.len(), 12)).expect("write");
    let mtime = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .expect("mtime");
    std::fs::File::options()
        .write(true)
        .open(&other)
        .and_then(|f| f.set_modified(mtime))
        .expect("copy mtime");
    std::fs::rename(&other, &path).expect("replace");
    assert_changed(&source, &manifest, "replaced");
}

#[test]
fn a_removed_file_is_a_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, _, manifest, source) = shared(dir.path());
    std::fs::remove_file(&path).expect("remove");
    assert_changed(&source, &manifest, "removed");
}

#[test]
fn open_checks_the_length() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("f");
    std::fs::write(&path, b"0123456789").expect("write");
    let err = SourceFile::open(&path, &manifest_by_hand(b"012345678")).expect_err("wrong size");
    assert!(matches!(err, StorageError::SourceChanged { .. }), "{err}");
    let err = SourceFile::open(dir.path(), &manifest_by_hand(b"")).expect_err("a folder");
    assert!(matches!(err, StorageError::Io { .. }), "{err}");
}
