//! `PartFile` on a real download folder. Asserts:
//! - create -> write some pieces -> save_resume -> drop -> resume finds exactly those pieces
//!   -> write the rest -> finish gives the original bytes (same SHA-256) at `name`, and leaves
//!   no `.part` or `.resume` behind;
//! - a second download of the same name finishes as `name (1).ext`; one started while the
//!   first is still running gets `name (1).ext.part`;
//! - an existing `<name>.part` symlink to a file outside the folder (or a dangling one) is
//!   never followed or written through: the target is unchanged, the new part gets `(1)`;
//!   and a part file swapped for a symlink is not resumed;
//! - a tampered piece in the `.part` is dropped on resume; a corrupt resume file is ignored;
//! - hostile names (`../../x`, `/abs/path`, control characters) create nothing outside the
//!   folder, checked by listing the whole temp tree;
//! - resume in a missing folder or for other content is `None`; discard removes both files;
//!   too little free space is `DiskFull` before anything is created.

mod common;

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use common::{manifest_by_hand, names_in, piece_of, random_bytes, tree};
use shoal_storage::{Manifest, PIECE_LEN, PartFile, StorageError, sha256};

/// 5 full pieces and a short one.
fn content(seed: u64) -> (Vec<u8>, Manifest) {
    let data = random_bytes(5 * PIECE_LEN as usize + 1000, seed);
    let manifest = manifest_by_hand(&data);
    (data, manifest)
}

fn write(part: &mut PartFile, data: &[u8], pieces: impl IntoIterator<Item = u32>) {
    for i in pieces {
        let piece = part.manifest().layout().piece_index(i).expect("valid");
        part.write_piece(piece, piece_of(data, i))
            .expect("write piece");
    }
}

fn download_all(dir: &Path, name: &str, data: &[u8], manifest: &Manifest) -> PathBuf {
    let mut part = PartFile::create(dir, name, manifest).expect("create");
    write(&mut part, data, 0..manifest.layout().piece_count());
    part.finish().expect("finish")
}

#[test]
fn create_write_resume_finish_round_trip() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("downloads"); // created by `create`
    let (data, manifest) = content(21);

    let mut part = PartFile::create(&dir, "movie.mp4", &manifest).expect("create");
    assert_eq!(part.name(), "movie.mp4");
    assert_eq!(part.part_path(), dir.join("movie.mp4.part"));
    assert_eq!(names_in(&dir), ["movie.mp4.part", "movie.mp4.part.resume"]);
    assert_eq!(
        std::fs::metadata(part.part_path()).expect("stat").len(),
        data.len() as u64,
        "the part file has its final length from the start"
    );
    write(&mut part, &data, [0, 2, 5]);
    assert_eq!(part.have().iter_set().collect::<Vec<_>>(), [0, 2, 5]);
    let last = manifest.layout().piece_index(5).expect("valid");
    assert_eq!(part.read_piece(last).expect("serve"), piece_of(&data, 5));
    part.save_resume().expect("save");
    write(&mut part, &data, [1]); // written but never recorded (as if killed with SIGKILL)
    drop(part);

    let mut part = PartFile::resume(&dir, manifest.info_hash())
        .expect("resume")
        .expect("found");
    // Resume re-checks every piece: the unrecorded but correct piece 1 is kept too.
    assert_eq!(part.have().iter_set().collect::<Vec<_>>(), [0, 1, 2, 5]);
    assert_eq!(part.manifest(), &manifest);
    assert_eq!(part.name(), "movie.mp4");
    let missing: Vec<u32> = (0..6).filter(|i| !part.have().has_raw(*i)).collect();
    write(&mut part, &data, missing);
    assert!(part.have().is_full());
    let final_path = part.finish().expect("finish");

    assert_eq!(final_path, dir.join("movie.mp4"));
    let got = std::fs::read(&final_path).expect("read");
    assert_eq!(sha256(&got), sha256(&data));
    assert_eq!(names_in(&dir), ["movie.mp4"], "no .part or .resume left");
}

#[test]
fn a_resume_file_written_at_create_is_found_with_no_pieces() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, manifest) = content(22);
    drop(PartFile::create(dir.path(), "a.bin", &manifest).expect("create"));
    let part = PartFile::resume(dir.path(), manifest.info_hash())
        .expect("resume")
        .expect("found");
    assert_eq!(part.have().count(), 0);
    assert_eq!(part.part_path(), dir.path().join("a.bin.part"));
}

#[test]
fn same_name_twice_never_overwrites() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (first, first_manifest) = content(23);
    let (second, second_manifest) = content(24);
    let a = download_all(dir.path(), "clip.mp4", &first, &first_manifest);
    let b = download_all(dir.path(), "clip.mp4", &second, &second_manifest);
    assert_eq!(a, dir.path().join("clip.mp4"));
    assert_eq!(b, dir.path().join("clip (1).mp4"));
    assert_eq!(std::fs::read(&a).expect("a"), first);
    assert_eq!(std::fs::read(&b).expect("b"), second);

    // Two at once: the second part file is numbered, and so is its final name.
    let (third, third_manifest) = content(25);
    let one = PartFile::create(dir.path(), "clip.mp4", &third_manifest).expect("create");
    let mut two = PartFile::create(dir.path(), "clip.mp4", &third_manifest).expect("create");
    assert_eq!(one.part_path(), dir.path().join("clip.mp4.part"));
    assert_eq!(two.part_path(), dir.path().join("clip (1).mp4.part"));
    assert_eq!(two.name(), "clip (1).mp4");
    write(&mut two, &third, 0..6);
    // `clip (1).mp4` is taken by the second download: the next free number is used.
    assert_eq!(
        two.finish().expect("finish"),
        dir.path().join("clip (2).mp4")
    );
    one.discard().expect("discard");
    assert_eq!(
        names_in(dir.path()),
        ["clip (1).mp4", "clip (2).mp4", "clip.mp4"]
    );
    assert_eq!(std::fs::read(&a).expect("a"), first, "first file untouched");
}

#[test]
fn a_symlinked_part_file_is_never_followed() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("downloads");
    let outside = root.path().join("outside");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::create_dir_all(&outside).expect("mkdir");
    let target = outside.join("precious.txt");
    std::fs::write(&target, b"do not touch").expect("write");
    std::os::unix::fs::symlink(&target, dir.join("movie.mp4.part")).expect("symlink");
    let dangling = outside.join("would-be-created");
    std::os::unix::fs::symlink(&dangling, dir.join("movie (1).mp4.part")).expect("symlink");

    let (data, manifest) = content(26);
    let mut part = PartFile::create(&dir, "movie.mp4", &manifest).expect("create");
    assert_eq!(part.part_path(), dir.join("movie (2).mp4.part"));
    write(&mut part, &data, 0..6);
    let final_path = part.finish().expect("finish");
    assert_eq!(final_path, dir.join("movie (2).mp4"));
    assert_eq!(std::fs::read(&final_path).expect("read"), data);

    assert_eq!(std::fs::read(&target).expect("target"), b"do not touch");
    assert!(!dangling.exists(), "a dangling link's target was created");
    assert_eq!(names_in(&outside), ["precious.txt"]);
    assert!(
        std::fs::symlink_metadata(dir.join("movie.mp4.part"))
            .expect("link")
            .file_type()
            .is_symlink()
    );
}

#[test]
fn a_part_file_swapped_for_a_symlink_is_not_resumed() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("downloads");
    let (data, manifest) = content(27);
    let mut part = PartFile::create(&dir, "movie.mp4", &manifest).expect("create");
    write(&mut part, &data, [0, 1]);
    part.save_resume().expect("save");
    let part_path = part.part_path().to_owned();
    drop(part);

    // Someone replaces the part file with a link to a file outside the folder that holds the
    // same bytes: resuming must not open it, let alone write through it.
    let target = root.path().join("elsewhere");
    std::fs::rename(&part_path, &target).expect("move away");
    std::os::unix::fs::symlink(&target, &part_path).expect("symlink");
    let before = std::fs::read(&target).expect("read");
    assert!(
        PartFile::resume(&dir, manifest.info_hash())
            .expect("resume")
            .is_none()
    );
    assert_eq!(std::fs::read(&target).expect("read"), before);
}

#[test]
fn a_tampered_piece_is_dropped_on_resume() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, manifest) = content(28);
    let mut part = PartFile::create(dir.path(), "a.bin", &manifest).expect("create");
    write(&mut part, &data, 0..6);
    part.save_resume().expect("save");
    let part_path = part.part_path().to_owned();
    drop(part);

    let file = std::fs::File::options()
        .write(true)
        .open(&part_path)
        .expect("open");
    file.write_all_at(b"evil", u64::from(PIECE_LEN) * 3 + 100)
        .expect("tamper");
    drop(file);

    let part = PartFile::resume(dir.path(), manifest.info_hash())
        .expect("resume")
        .expect("found");
    assert_eq!(part.have().iter_set().collect::<Vec<_>>(), [0, 1, 2, 4, 5]);
    let tampered = manifest.layout().piece_index(3).expect("valid");
    assert!(matches!(
        part.read_piece(tampered),
        Err(StorageError::MissingPiece { .. })
    ));
    drop(part);
    // The corrected state was saved: resuming again agrees.
    let mut part = PartFile::resume(dir.path(), manifest.info_hash())
        .expect("resume")
        .expect("found");
    assert_eq!(part.have().count(), 5);
    write(&mut part, &data, [3]);
    let done = part.finish().expect("finish");
    assert_eq!(std::fs::read(done).expect("read"), data);
}

#[test]
fn a_corrupt_resume_file_is_ignored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, manifest) = content(29);
    let mut part = PartFile::create(dir.path(), "a.bin", &manifest).expect("create");
    write(&mut part, &data, [0, 1]);
    part.save_resume().expect("save");
    drop(part);
    let resume = dir.path().join("a.bin.part.resume");

    // A stray file of garbage with the right suffix is skipped, not an error.
    std::fs::write(dir.path().join("junk.part.resume"), random_bytes(500, 1)).expect("junk");
    std::fs::write(dir.path().join("junk.part"), b"").expect("junk");
    assert_eq!(
        PartFile::resume(dir.path(), manifest.info_hash())
            .expect("resume")
            .expect("the good one is still found")
            .have()
            .count(),
        2
    );

    // One flipped bit in the bitfield (it would claim a piece more): the checksum catches it.
    let mut bytes = std::fs::read(&resume).expect("read");
    let at = bytes.len() - 32 - 1;
    bytes[at] ^= 0x80;
    std::fs::write(&resume, &bytes).expect("write");
    assert!(
        PartFile::resume(dir.path(), manifest.info_hash())
            .expect("resume")
            .is_none()
    );

    // Torn (truncated) and empty files likewise.
    std::fs::write(&resume, &bytes[..bytes.len() / 2]).expect("write");
    assert!(
        PartFile::resume(dir.path(), manifest.info_hash())
            .expect("resume")
            .is_none()
    );
    std::fs::write(&resume, b"").expect("write");
    assert!(
        PartFile::resume(dir.path(), manifest.info_hash())
            .expect("resume")
            .is_none()
    );
}

#[test]
fn hostile_names_stay_inside_the_folder() {
    let root = tempfile::tempdir().expect("tempdir");
    // Deep enough that `../../x` would still land inside the temp root, where we can see it.
    let dir = root.path().join("a").join("b").join("downloads");
    let (data, manifest) = manifest_small();
    let hostile = [
        "../../x",
        "../../../../../../../../tmp/shoal-escape",
        "/abs/path",
        "..",
        ".",
        "",
        "sub/dir/file.txt",
        "..\\..\\win.txt",
        "evil\u{202E}txt.exe",
        "line\nbreak\r\0nul.txt",
        ".hidden",
        "CON",
    ];
    let mut finished = Vec::new();
    for name in hostile {
        let mut part = PartFile::create(&dir, name, &manifest).expect("create");
        assert_eq!(part.part_path().parent(), Some(dir.as_path()), "{name:?}");
        write(&mut part, &data, [0]);
        let path = part.finish().expect("finish");
        assert_eq!(path.parent(), Some(dir.as_path()), "{name:?}");
        finished.push(path);
    }

    let prefix = Path::new("a/b/downloads");
    for entry in tree(root.path()) {
        let allowed = [Path::new("a"), Path::new("a/b"), prefix].contains(&entry.as_path())
            || (entry.parent() == Some(prefix)
                && std::fs::symlink_metadata(root.path().join(&entry))
                    .expect("stat")
                    .is_file());
        assert!(
            allowed,
            "{} was created outside the folder",
            entry.display()
        );
    }
    let names = names_in(&dir);
    assert_eq!(names.len(), hostile.len(), "{names:?}");
    for name in &names {
        assert!(!name.starts_with('.'), "{name:?}");
        assert!(!name.chars().any(char::is_control), "{name:?}");
        assert!(!name.contains('\u{202E}'), "{name:?}");
    }
    assert!(names.contains(&"x".to_owned()), "{names:?}");
    assert!(names.contains(&"abs_path".to_owned()), "{names:?}");
    assert!(!Path::new("/tmp/shoal-escape").exists());
}

fn manifest_small() -> (Vec<u8>, Manifest) {
    let data = b"tiny".to_vec();
    let manifest = manifest_by_hand(&data);
    (data, manifest)
}

#[test]
fn resume_finds_nothing_where_there_is_nothing() {
    let root = tempfile::tempdir().expect("tempdir");
    let (data, manifest) = content(30);
    assert!(
        PartFile::resume(&root.path().join("missing"), manifest.info_hash())
            .expect("missing folder is fine")
            .is_none()
    );
    let mut part = PartFile::create(root.path(), "a.bin", &manifest).expect("create");
    write(&mut part, &data, [0]);
    part.save_resume().expect("save");
    let (_, other) = content(31);
    assert!(
        PartFile::resume(root.path(), other.info_hash())
            .expect("resume")
            .is_none()
    );
    // The part file vanished: not resumable, not an error.
    std::fs::remove_file(part.part_path()).expect("remove");
    drop(part);
    assert!(
        PartFile::resume(root.path(), manifest.info_hash())
            .expect("resume")
            .is_none()
    );
}

#[test]
fn discard_removes_both_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, manifest) = content(32);
    let mut part = PartFile::create(dir.path(), "a.bin", &manifest).expect("create");
    write(&mut part, &data, [0, 4]);
    part.save_resume().expect("save");
    part.discard().expect("discard");
    assert!(names_in(dir.path()).is_empty());
}

#[test]
fn too_little_free_space_is_disk_full_before_anything_is_created() {
    let dir = tempfile::tempdir().expect("tempdir");
    let available = fs4::available_space(dir.path()).expect("statvfs");
    let len_bytes = available + (1 << 30);
    let Ok(layout) = shoal_storage::Layout::standard(len_bytes) else {
        eprintln!("skipped: {available} bytes free is more than the largest file");
        return;
    };
    let hashes = vec![[0u8; 32]; layout.piece_count() as usize];
    let manifest = Manifest::new(layout, hashes).expect("manifest");
    let err = PartFile::create(dir.path(), "huge.bin", &manifest).expect_err("too big");
    match err {
        StorageError::DiskFull {
            needed_bytes,
            available_bytes,
            ..
        } => {
            assert_eq!(needed_bytes, len_bytes);
            assert!(available_bytes < needed_bytes);
        }
        other => panic!("expected DiskFull, got {other}"),
    }
    assert!(names_in(dir.path()).is_empty());
}

#[test]
fn a_numbered_download_of_a_long_name_resumes_and_finishes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, manifest) = content(33);
    let long = format!("{}.mp4", "long name ".repeat(40));
    let first = PartFile::create(dir.path(), &long, &manifest).expect("create");
    let second = PartFile::create(dir.path(), &long, &manifest).expect("create");
    assert!(first.name().len() <= 200 && second.name().len() <= 200);
    assert!(second.name().ends_with(" (1).mp4"), "{}", second.name());
    let second_part = second.part_path().to_owned();
    first.discard().expect("discard");
    drop(second);

    let mut part = PartFile::resume(dir.path(), manifest.info_hash())
        .expect("resume")
        .expect("the numbered one is found");
    assert_eq!(part.part_path(), second_part);
    write(&mut part, &data, 0..6);
    let done = part.finish().expect("finish");
    assert_eq!(std::fs::read(&done).expect("read"), data);
    assert_eq!(names_in(dir.path()).len(), 1);
}
