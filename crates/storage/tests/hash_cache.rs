//! `HashCache`: a remembered manifest is used only for the very file version it was made of.
//! Asserts:
//! - put then get with the same stamp gives the same manifest (same info hash);
//! - a file that was touched, appended to, or replaced by another file (same size and time)
//!   is a miss;
//! - a damaged entry (any byte flipped, truncated, emptied) is a miss, never an error or a
//!   wrong manifest;
//! - another path is a miss; remove forgets.

mod common;

use std::time::{Duration, SystemTime};

use common::random_bytes;
use shoal_storage::{FileStamp, HashCache, PIECE_LEN, hash_file};

fn stamp(path: &std::path::Path) -> FileStamp {
    FileStamp::of(&std::fs::metadata(path).expect("metadata"))
}

#[test]
fn a_remembered_manifest_is_used_only_for_the_same_file_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = HashCache::new(dir.path().join("cache"));
    let path = dir.path().join("film.mkv");
    std::fs::write(&path, random_bytes(2 * PIECE_LEN as usize + 77, 3)).expect("write");
    let before = stamp(&path);
    assert!(cache.get(&path, before).is_none(), "empty cache");
    let manifest = hash_file(&path, &mut |_| true).expect("hash");
    cache.put(&path, before, &manifest).expect("put");
    let hit = cache.get(&path, stamp(&path)).expect("hit");
    assert_eq!(hit.info_hash(), manifest.info_hash());
    assert!(
        cache.get(&dir.path().join("other.mkv"), before).is_none(),
        "another path"
    );

    // Touched: same bytes, new modification time.
    let file = std::fs::File::options()
        .write(true)
        .open(&path)
        .expect("open");
    file.set_modified(SystemTime::now() + Duration::from_secs(5))
        .expect("touch");
    drop(file);
    assert!(cache.get(&path, stamp(&path)).is_none(), "touched");

    // Replaced by another file with the same size and time.
    let touched = stamp(&path);
    cache.put(&path, touched, &manifest).expect("put");
    assert!(cache.get(&path, touched).is_some());
    let modified = std::fs::metadata(&path)
        .expect("metadata")
        .modified()
        .expect("mtime");
    let other = dir.path().join("other");
    std::fs::write(&other, random_bytes(2 * PIECE_LEN as usize + 77, 4)).expect("write");
    std::fs::File::options()
        .write(true)
        .open(&other)
        .expect("open")
        .set_modified(modified)
        .expect("set time");
    std::fs::rename(&other, &path).expect("replace");
    assert!(cache.get(&path, stamp(&path)).is_none(), "replaced");

    // Appended to.
    let now = stamp(&path);
    cache.put(&path, now, &manifest).expect("put");
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"more"))
        .expect("append");
    assert!(cache.get(&path, stamp(&path)).is_none(), "appended");

    cache.remove(&path);
    assert!(cache.get(&path, now).is_none(), "removed");
}

#[test]
fn a_damaged_entry_is_a_miss() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache_dir = dir.path().join("cache");
    let cache = HashCache::new(&cache_dir);
    let path = dir.path().join("song.flac");
    std::fs::write(&path, random_bytes(PIECE_LEN as usize + 5, 9)).expect("write");
    let now = stamp(&path);
    let manifest = hash_file(&path, &mut |_| true).expect("hash");
    cache.put(&path, now, &manifest).expect("put");
    let entries: Vec<_> = std::fs::read_dir(&cache_dir)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(
        entries.len(),
        1,
        "one entry, no temporary file: {entries:?}"
    );
    let entry = &entries[0];
    let good = std::fs::read(entry).expect("read");
    for at in [0, 9, 40, 47, 48, good.len() / 2, good.len() - 1] {
        let mut bad = good.clone();
        bad[at] ^= 0x20;
        std::fs::write(entry, &bad).expect("write");
        assert!(cache.get(&path, now).is_none(), "byte {at} flipped");
    }
    for len in [0, 10, good.len() - 1] {
        std::fs::write(entry, &good[..len]).expect("write");
        assert!(cache.get(&path, now).is_none(), "cut to {len} bytes");
    }
    std::fs::write(entry, &good).expect("write");
    assert!(cache.get(&path, now).is_some(), "restored");
}
