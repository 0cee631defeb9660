//! Downloads in progress: the `.part` file, its resume file, and the move to the final name.
//!
//! # Files in the download folder
//!
//! A download of `movie.mp4` lives in two files next to each other:
//! - `movie.mp4.part`: the content, at its final length (sparse until pieces arrive), each
//!   piece written at its offset;
//! - `movie.mp4.part.resume`: which pieces are verified, so a restart continues (below).
//!
//! Every file is created with `O_CREAT | O_EXCL` and `O_NOFOLLOW`: an existing file or
//! symbolic link is never opened for writing, never followed, never truncated. When
//! `movie.mp4.part` is taken the download becomes `movie (1).mp4.part`, then `(2)`, and so on.
//! When every piece is present, [`PartFile::finish`] hard-links the part file to its final
//! name, which fails rather than overwrite an existing file (then `movie (1).mp4`, …), and
//! removes the `.part` name.
//!
//! # Resume file format
//!
//! All integers big-endian:
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `SHOALRS1` |
//! | 32 | info hash |
//! | 4 | manifest length `m` in bytes (u32) |
//! | `m` | the manifest's canonical bytes ([`Manifest::to_bytes`]) |
//! | `ceil(pieces / 8)` | the verified pieces, a BEP 3 bitfield ([`Bitfield::as_bytes`]) |
//! | 32 | SHA-256 of every byte before it |
//!
//! The trailing SHA-256 detects torn and edited files; the manifest must hash to the info
//! hash. A resume file that fails either check is ignored (with a warning), never trusted.
//! It is written atomically: a temporary file `<resume>.tmp` in the same folder is written
//! and fsynced, renamed over the resume file, and the folder is fsynced. The part file is
//! fdatasynced before, so a resume file never claims pieces that are not durable.
//!
//! On [`PartFile::resume`], every piece the resume file claims is read and hashed again; a
//! piece that does not match (a tampered or torn `.part`) is dropped and downloaded again.
//!
//! One process owns a download folder's downloads: two [`PartFile`]s for the same part file
//! are not supported.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::hash::{read_exact_at, verify_pieces};
use crate::names::{numbered_name, safe_file_name};
use crate::{
    Bitfield, InfoHash, MANIFEST_HEADER_BYTES, MAX_PIECES, Manifest, PIECE_LEN, PieceIndex,
    StorageError,
};

/// First 8 bytes of a resume file.
const RESUME_MAGIC: &[u8; 8] = b"SHOALRS1";

/// Suffix of a download's content file.
const PART_SUFFIX: &str = ".part";

/// Suffix added to the part file's name for its resume file.
const RESUME_SUFFIX: &str = ".resume";

/// Suffix added to the resume file's name for the file it is written to before the rename.
const TMP_SUFFIX: &str = ".tmp";

/// Bytes of a resume file before the manifest: magic, info hash, manifest length.
const RESUME_HEADER_BYTES: usize = 8 + 32 + 4;

/// How many numbered alternatives (`name (1).ext` …) are tried before giving up.
const MAX_NUMBERED: u32 = 9_999;

/// A download in progress: the `<name>.part` file in the download folder, the pieces verified
/// so far, and its resume file (see the module documentation for the files and their format).
///
/// Memory is the manifest and the bitfield; pieces go straight to and from disk.
#[derive(Debug)]
pub struct PartFile {
    dir: PathBuf,
    name: String,
    part_path: PathBuf,
    resume_path: PathBuf,
    file: File,
    manifest: Manifest,
    have: Bitfield,
}

impl PartFile {
    /// Starts a new download of `manifest` in folder `dir`, to be finished as `name`.
    ///
    /// `name` goes through [`safe_file_name`] again (it is idempotent), so whatever a peer
    /// announced, only one file name directly inside `dir` is used. Creates `dir` if missing;
    /// creates `<name>.part` (or `<stem> (1).<ext>.part`, … when taken) at the manifest's
    /// length in bytes, sparse, and writes its resume file at once with no piece.
    ///
    /// # Errors
    /// - [`StorageError::DiskFull`] when `dir`'s file system has fewer bytes available than
    ///   the manifest's length, or runs out while the files are created;
    /// - [`StorageError::UnsupportedPieceLength`] when the manifest's piece length is not
    ///   [`PIECE_LEN`];
    /// - [`StorageError::Io`] when the folder or files cannot be created, or all of
    ///   `name (1)` … `name (9999)` are taken.
    pub fn create(dir: &Path, name: &str, manifest: &Manifest) -> Result<PartFile, StorageError> {
        let name = safe_file_name(name);
        check_piece_len(manifest)?;
        std::fs::create_dir_all(dir).map_err(|e| StorageError::io(dir, e))?;
        let needed_bytes = manifest.layout().len_bytes();
        let available_bytes = fs4::available_space(dir).map_err(|e| StorageError::io(dir, e))?;
        if available_bytes < needed_bytes {
            return Err(StorageError::DiskFull {
                path: dir.to_owned(),
                needed_bytes,
                available_bytes,
            });
        }

        let (final_name, part_path, file) = create_numbered(dir, &name, |final_name| {
            let part_path = dir.join(format!("{final_name}{PART_SUFFIX}"));
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&part_path)?;
            Ok((part_path, file))
        })?;
        let part = PartFile {
            dir: dir.to_owned(),
            name: final_name,
            resume_path: resume_path_of(&part_path),
            part_path,
            file,
            manifest: manifest.clone(),
            have: Bitfield::empty(manifest.layout().piece_count()),
        };
        let setup = part
            .file
            .set_len(needed_bytes)
            .map_err(|e| StorageError::io(&part.part_path, e))
            .and_then(|()| part.write_resume());
        if let Err(error) = setup {
            // Leave nothing behind: the files are ours and empty.
            remove_if_present(&part.part_path);
            remove_if_present(&part.resume_path);
            return Err(error);
        }
        tracing::debug!(
            part = %part.part_path.display(),
            info_hash = %manifest.info_hash().short(),
            len_bytes = needed_bytes,
            "download created"
        );
        Ok(part)
    }

    /// Finds the download of `info_hash` left in `dir` by an earlier run.
    ///
    /// Looks (not recursively) for `*.part.resume` files that record `info_hash`, whose
    /// checksum verifies and whose manifest hashes to `info_hash`, and opens the `.part` file
    /// next to one (with `O_NOFOLLOW`). Every piece of the part file is read and hashed again:
    /// claimed pieces that do not match are dropped, and pieces written after the last resume
    /// save that do match are kept, so [`PartFile::have`] lists exactly the pieces whose bytes
    /// on disk are right. A part file of the wrong length is set to the manifest's
    /// length first.
    ///
    /// Returns `Ok(None)` when `dir` does not exist or holds no usable download of
    /// `info_hash`. Corrupt resume files, and resume files whose part file is missing, is a
    /// symbolic link or is not a regular file, are skipped with a warning. When several
    /// downloads of the same content are present, the first by file name that opens is used.
    ///
    /// # Errors
    /// [`StorageError::Io`] when `dir` cannot be listed, or a part file cannot be opened or
    /// read for a reason other than those above.
    pub fn resume(dir: &Path, info_hash: InfoHash) -> Result<Option<PartFile>, StorageError> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StorageError::io(dir, e)),
        };
        let mut resume_names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| StorageError::io(dir, e))?;
            if let Some(file_name) = entry.file_name().to_str()
                && file_name.ends_with(".part.resume")
            {
                resume_names.push(file_name.to_owned());
            }
        }
        resume_names.sort();

        for resume_name in resume_names {
            let resume_path = dir.join(&resume_name);
            let part_name = &resume_name[..resume_name.len() - RESUME_SUFFIX.len()];
            let name = &part_name[..part_name.len() - PART_SUFFIX.len()];
            if name.is_empty() || safe_file_name(name) != name {
                tracing::warn!(path = %resume_path.display(), "resume file for an unsafe name; ignored");
                continue;
            }
            let (manifest, claimed) = match read_resume(&resume_path, info_hash) {
                Ok(Some(found)) => found,
                Ok(None) => continue,
                Err(error) => {
                    tracing::warn!(%error, "ignoring resume file");
                    continue;
                }
            };
            let part_path = dir.join(part_name);
            let Some(file) = open_part_for_resume(&part_path)? else {
                continue;
            };
            let mut part = PartFile {
                dir: dir.to_owned(),
                name: name.to_owned(),
                resume_path,
                part_path,
                file,
                manifest,
                have: claimed,
            };
            part.reverify()?;
            return Ok(Some(part));
        }
        Ok(None)
    }

    /// Sets the part file to the manifest's length and keeps only the claimed pieces whose
    /// bytes hash right; rewrites the resume file when anything changed.
    fn reverify(&mut self) -> Result<(), StorageError> {
        let len_bytes = self.manifest.layout().len_bytes();
        let on_disk = self
            .file
            .metadata()
            .map_err(|e| StorageError::io(&self.part_path, e))?
            .len();
        if on_disk != len_bytes {
            tracing::warn!(
                part = %self.part_path.display(),
                on_disk,
                len_bytes,
                "part file has the wrong length; resizing it and re-checking its pieces"
            );
            self.file
                .set_len(len_bytes)
                .map_err(|e| StorageError::io(&self.part_path, e))?;
        }
        // Every piece is checked, not only the claimed ones: pieces written after the last
        // resume save (a download killed with SIGKILL) are found again instead of refetched.
        let all = Bitfield::full(self.manifest.layout().piece_count());
        let verified = verify_pieces(&self.file, &self.part_path, &self.manifest, &all)?;
        let dropped = self
            .have
            .iter_set()
            .filter(|p| !verified.has_raw(*p))
            .count();
        let recovered = verified
            .iter_set()
            .filter(|p| !self.have.has_raw(*p))
            .count();
        if dropped > 0 {
            tracing::warn!(
                part = %self.part_path.display(),
                dropped,
                "pieces in the part file do not match their hash; downloading them again"
            );
        }
        if recovered > 0 {
            tracing::debug!(
                recovered,
                "verified pieces written after the last resume save"
            );
        }
        let changed = dropped > 0 || recovered > 0 || on_disk != len_bytes;
        self.have = verified;
        tracing::debug!(
            part = %self.part_path.display(),
            have = self.have.count(),
            total = self.have.piece_count(),
            "download resumed"
        );
        if changed {
            self.save_resume()?;
        }
        Ok(())
    }

    /// The pieces written (and, after [`PartFile::resume`], verified on disk).
    pub fn have(&self) -> &Bitfield {
        &self.have
    }

    /// The content being downloaded.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The part file: `<dir>/<name>.part`.
    pub fn part_path(&self) -> &Path {
        &self.part_path
    }

    /// The final file name, without `.part`; [`PartFile::finish`] numbers it (`name (1).ext`)
    /// if that name is taken by then.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Writes `data`, the whole of `piece` already checked against its hash by the caller, at
    /// the piece's offset, and marks the piece present. Does not write the resume file (see
    /// [`PartFile::save_resume`]).
    ///
    /// # Errors
    /// - [`StorageError::WrongPieceLength`] when `data` is not exactly
    ///   [`crate::Layout::piece_size`] bytes, or the piece is past the end (a caller bug;
    ///   debug builds panic);
    /// - [`StorageError::DiskFull`] when the disk runs out of space;
    /// - [`StorageError::Io`] for other write errors.
    pub fn write_piece(&mut self, piece: PieceIndex, data: &[u8]) -> Result<(), StorageError> {
        let layout = self.manifest.layout();
        let expected_bytes = layout
            .piece_index(piece.get())
            .map_or(0, |piece| layout.piece_size(piece));
        debug_assert_eq!(
            data.len(),
            expected_bytes as usize,
            "write_piece({piece}) takes exactly the piece"
        );
        if expected_bytes == 0 || data.len() != expected_bytes as usize {
            return Err(StorageError::WrongPieceLength {
                piece,
                expected_bytes,
                got_bytes: data.len(),
            });
        }
        self.file
            .write_all_at(data, layout.piece_range(piece).start)
            .map_err(|e| StorageError::io(&self.part_path, e))?;
        self.have.set(piece);
        tracing::trace!(%piece, have = self.have.count(), "piece written");
        Ok(())
    }

    /// Reads `piece` back, to serve it to another peer. The bytes are checked against the
    /// piece's SHA-256 before they are returned.
    ///
    /// # Errors
    /// - [`StorageError::MissingPiece`] when `piece` is not in [`PartFile::have`];
    /// - [`StorageError::PieceMismatch`] when the bytes on disk no longer match;
    /// - [`StorageError::Io`] when reading fails.
    pub fn read_piece(&self, piece: PieceIndex) -> Result<Vec<u8>, StorageError> {
        if !self.have.has(piece) {
            return Err(StorageError::MissingPiece { piece });
        }
        let layout = self.manifest.layout();
        let mut buf = vec![0u8; layout.piece_size(piece) as usize];
        read_exact_at(
            &self.file,
            &self.part_path,
            &mut buf,
            layout.piece_range(piece).start,
        )?;
        if !self.manifest.verify_piece(piece, &buf) {
            return Err(StorageError::PieceMismatch {
                path: self.part_path.clone(),
                piece,
            });
        }
        Ok(buf)
    }

    /// Makes the pieces written so far durable (fdatasync of the part file), then records
    /// them in the resume file, atomically.
    ///
    /// # Errors
    /// [`StorageError::DiskFull`] or [`StorageError::Io`] when syncing or writing fails; the
    /// previous resume file is then left as it was.
    pub fn save_resume(&mut self) -> Result<(), StorageError> {
        self.file
            .sync_data()
            .map_err(|e| StorageError::io(&self.part_path, e))?;
        self.write_resume()
    }

    /// Completes the download: fsyncs the part file and moves it to `<dir>/<name>`, or to
    /// `<stem> (1).<ext>`, `(2)`, … when that is taken (an existing file is never
    /// overwritten), removes the resume file, fsyncs the folder, and returns the final path.
    ///
    /// # Errors
    /// - [`StorageError::Incomplete`] when a piece is missing;
    /// - [`StorageError::Io`] when syncing or renaming fails, or every numbered name is taken.
    pub fn finish(self) -> Result<PathBuf, StorageError> {
        if !self.have.is_full() {
            return Err(StorageError::Incomplete {
                info_hash: self.manifest.info_hash(),
                have: self.have.count(),
                total: self.have.piece_count(),
            });
        }
        self.file
            .sync_all()
            .map_err(|e| StorageError::io(&self.part_path, e))?;
        let (_, final_path, linked) =
            create_numbered(&self.dir, &self.name, |final_name| self.move_to(final_name))?;
        if linked {
            remove_if_present(&self.part_path);
        }
        remove_if_present(&self.resume_path);
        sync_dir(&self.dir)?;
        tracing::debug!(path = %final_path.display(), "download finished");
        Ok(final_path)
    }

    /// Gives the part file the name `final_name` in the folder unless that name exists.
    /// Returns the path and whether the part file's own name still has to be removed.
    fn move_to(&self, final_name: &str) -> io::Result<(PathBuf, bool)> {
        let final_path = self.dir.join(final_name);
        match std::fs::hard_link(&self.part_path, &final_path) {
            Ok(()) => Ok((final_path, true)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e),
            Err(link_error) => {
                // File systems without hard links (FAT, exFAT, some network file systems):
                // claim the name with an empty file of our own, then rename over it.
                tracing::debug!(error = %link_error, "hard link refused; renaming instead");
                drop(
                    OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .custom_flags(libc::O_NOFOLLOW)
                        .open(&final_path)?,
                );
                if let Err(e) = std::fs::rename(&self.part_path, &final_path) {
                    remove_if_present(&final_path);
                    return Err(e);
                }
                Ok((final_path, false))
            }
        }
    }

    /// Abandons the download: removes the part file and its resume file (missing files are
    /// not an error).
    ///
    /// # Errors
    /// [`StorageError::Io`] when a file cannot be removed.
    pub fn discard(self) -> Result<(), StorageError> {
        for path in [&self.part_path, &self.resume_path] {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(StorageError::io(path, e)),
            }
        }
        sync_dir(&self.dir)?;
        tracing::debug!(part = %self.part_path.display(), "download discarded");
        Ok(())
    }

    /// Writes the resume file atomically (temporary file, fsync, rename, fsync of the folder).
    fn write_resume(&self) -> Result<(), StorageError> {
        let mut tmp_name = self.resume_path.clone().into_os_string();
        tmp_name.push(TMP_SUFFIX);
        let tmp_path = PathBuf::from(tmp_name);
        let result = self
            .write_resume_to(&tmp_path)
            .map_err(|e| StorageError::io(&tmp_path, e))
            .and_then(|()| {
                std::fs::rename(&tmp_path, &self.resume_path)
                    .map_err(|e| StorageError::io(&self.resume_path, e))
            });
        if result.is_err() {
            remove_if_present(&tmp_path);
        }
        result?;
        sync_dir(&self.dir)
    }

    fn write_resume_to(&self, tmp_path: &Path) -> io::Result<()> {
        let file = create_replacing_stale(tmp_path)?;
        let mut out = HashingWriter {
            inner: BufWriter::new(file),
            hasher: Sha256::new(),
        };
        let manifest_bytes = self.manifest.to_bytes();
        let manifest_len = u32::try_from(manifest_bytes.len())
            .expect("a manifest is at most 24 + 32 * MAX_PIECES bytes, below 4 GiB");
        out.write_all(RESUME_MAGIC)?;
        out.write_all(self.manifest.info_hash().as_bytes())?;
        out.write_all(&manifest_len.to_be_bytes())?;
        out.write_all(&manifest_bytes)?;
        out.write_all(self.have.as_bytes())?;
        let checksum = out.hasher.finalize();
        let mut inner = out.inner;
        inner.write_all(&checksum)?;
        let file = inner.into_inner().map_err(io::IntoInnerError::into_error)?;
        file.sync_all()
    }
}

/// Tries `name`, then `name (1)`, `name (2)`, … with `make`, which fails with
/// [`io::ErrorKind::AlreadyExists`] when a name is taken. Returns the name used and what
/// `make` gave.
fn create_numbered<T, U>(
    dir: &Path,
    name: &str,
    mut make: impl FnMut(&str) -> io::Result<(T, U)>,
) -> Result<(String, T, U), StorageError> {
    for n in 0..=MAX_NUMBERED {
        let candidate = if n == 0 {
            name.to_owned()
        } else {
            numbered_name(name, n)
        };
        match make(&candidate) {
            Ok((t, u)) => return Ok((candidate, t, u)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(StorageError::io(dir.join(&candidate), e)),
        }
    }
    Err(StorageError::io(
        dir.join(name),
        io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("this name and {MAX_NUMBERED} numbered alternatives are taken"),
        ),
    ))
}

/// `<part file>.resume`.
fn resume_path_of(part_path: &Path) -> PathBuf {
    let mut name = part_path.as_os_str().to_owned();
    name.push(RESUME_SUFFIX);
    PathBuf::from(name)
}

/// Creates `path` new (never following a link); a leftover from an interrupted write (or
/// anything else at that name, which [`std::fs::remove_file`] removes without following) is
/// removed first.
fn create_replacing_stale(path: &Path) -> io::Result<File> {
    let open = || {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
    };
    match open() {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            std::fs::remove_file(path)?;
            open()
        }
        result => result,
    }
}

/// Opens a part file named by a resume file, or says why it cannot be resumed (`Ok(None)`,
/// with a warning).
fn open_part_for_resume(part_path: &Path) -> Result<Option<File>, StorageError> {
    let not_resumable = |why: &str| {
        tracing::warn!(part = %part_path.display(), why, "download cannot be resumed");
        Ok(None)
    };
    match std::fs::symlink_metadata(part_path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return not_resumable("part file missing"),
        Err(e) => return Err(StorageError::io(part_path, e)),
        Ok(meta) if meta.file_type().is_symlink() => {
            let error = StorageError::Symlink {
                path: part_path.to_owned(),
            };
            return not_resumable(&error.to_string());
        }
        Ok(meta) if !meta.is_file() => return not_resumable("part file is not a regular file"),
        Ok(_) => {}
    }
    let opened = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(part_path);
    let file = match opened {
        Ok(file) => file,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            let error = StorageError::Symlink {
                path: part_path.to_owned(),
            };
            return not_resumable(&error.to_string());
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return not_resumable("part file missing"),
        Err(e) => return Err(StorageError::io(part_path, e)),
    };
    let meta = file
        .metadata()
        .map_err(|e| StorageError::io(part_path, e))?;
    if !meta.is_file() {
        return not_resumable("part file is not a regular file");
    }
    Ok(Some(file))
}

/// Reads and checks the resume file at `path`. `Ok(None)` when it records another info hash.
///
/// # Errors
/// [`StorageError::BadResume`] when it is unreadable, not a regular file, too short or long,
/// or fails its checksum, manifest or bitfield checks.
fn read_resume(
    path: &Path,
    info_hash: InfoHash,
) -> Result<Option<(Manifest, Bitfield)>, StorageError> {
    let bad = |reason: String| StorageError::BadResume {
        path: path.to_owned(),
        reason,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| bad(e.to_string()))?;
    let len_bytes = file.metadata().map_err(|e| bad(e.to_string()))?.len();
    let max_pieces = MAX_PIECES as usize;
    let max_bytes =
        RESUME_HEADER_BYTES + MANIFEST_HEADER_BYTES + 32 * max_pieces + max_pieces / 8 + 32;
    let min_bytes = RESUME_HEADER_BYTES + MANIFEST_HEADER_BYTES + 32;
    let len_bytes = usize::try_from(len_bytes).unwrap_or(usize::MAX);
    if !(min_bytes..=max_bytes).contains(&len_bytes) {
        return Err(bad(format!("{len_bytes} bytes is not a possible length")));
    }

    let mut header = [0u8; RESUME_HEADER_BYTES];
    file.read_exact(&mut header)
        .map_err(|e| bad(e.to_string()))?;
    if &header[..8] != RESUME_MAGIC {
        return Err(bad("not a Shoal resume file".to_owned()));
    }
    if header[8..40] != info_hash.as_bytes()[..] {
        return Ok(None);
    }
    let mut bytes = Vec::with_capacity(len_bytes);
    bytes.extend_from_slice(&header);
    file.take((len_bytes - RESUME_HEADER_BYTES) as u64)
        .read_to_end(&mut bytes)
        .map_err(|e| bad(e.to_string()))?;
    if bytes.len() != len_bytes {
        return Err(bad("file changed while being read".to_owned()));
    }

    let (body, checksum) = bytes.split_at(len_bytes - 32);
    if crate::sha256(body)[..] != checksum[..] {
        return Err(bad("checksum does not match (torn or edited)".to_owned()));
    }
    let manifest_len =
        u32::from_be_bytes([header[40], header[41], header[42], header[43]]) as usize;
    let rest = &body[RESUME_HEADER_BYTES..];
    if manifest_len > rest.len() {
        return Err(bad(format!(
            "manifest length {manifest_len} is past the end"
        )));
    }
    let (manifest_bytes, bitfield_bytes) = rest.split_at(manifest_len);
    let manifest =
        Manifest::from_bytes_verified(manifest_bytes, info_hash).map_err(|e| bad(e.to_string()))?;
    check_piece_len(&manifest).map_err(|e| bad(e.to_string()))?;
    let have = Bitfield::from_bytes(bitfield_bytes, manifest.layout().piece_count())
        .map_err(|e| bad(e.to_string()))?;
    Ok(Some((manifest, have)))
}

/// Refuses manifests whose piece length is not [`PIECE_LEN`]: every buffer here is one piece.
fn check_piece_len(manifest: &Manifest) -> Result<(), StorageError> {
    let piece_len_bytes = manifest.layout().piece_len();
    if piece_len_bytes == PIECE_LEN {
        Ok(())
    } else {
        Err(StorageError::UnsupportedPieceLength { piece_len_bytes })
    }
}

/// Removes `path` if it exists; a failure is logged, not returned (used for clean-up after
/// the real work succeeded or failed).
fn remove_if_present(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(error) => tracing::warn!(path = %path.display(), %error, "could not remove"),
    }
}

/// fsyncs a folder, so that files created, renamed or removed in it stay so after a crash.
fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::io(dir, e))
}

/// A writer that hashes what goes through it.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> HashingWriter<W> {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.hasher.update(bytes);
        self.inner.write_all(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Layout, PIECE_LEN};

    fn manifest_of(data: &[u8]) -> Manifest {
        let layout = Layout::standard(data.len() as u64).expect("layout");
        let hashes = data.chunks(PIECE_LEN as usize).map(crate::sha256).collect();
        Manifest::new(layout, hashes).expect("manifest")
    }

    #[test]
    fn resume_file_round_trips_and_rejects_every_flipped_byte_region() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = vec![5u8; PIECE_LEN as usize * 2 + 3];
        let manifest = manifest_of(&data);
        let mut part = PartFile::create(dir.path(), "a.bin", &manifest).expect("create");
        let piece = manifest.layout().piece_index(1).expect("valid");
        part.write_piece(piece, &data[PIECE_LEN as usize..PIECE_LEN as usize * 2])
            .expect("write");
        part.save_resume().expect("save");
        let resume = part.resume_path.clone();
        let (m, have) = read_resume(&resume, manifest.info_hash())
            .expect("reads")
            .expect("same info hash");
        assert_eq!(m, manifest);
        assert_eq!(have.iter_set().collect::<Vec<_>>(), vec![1]);

        let other = manifest_of(b"other");
        assert!(matches!(read_resume(&resume, other.info_hash()), Ok(None)));

        let good = std::fs::read(&resume).expect("read");
        for at in [0, 9, 41, 50, good.len() - 33, good.len() - 1] {
            let mut bad = good.clone();
            bad[at] ^= 0x40;
            std::fs::write(&resume, &bad).expect("write");
            let result = read_resume(&resume, manifest.info_hash());
            // Byte 9 is inside the info hash: that reads as "another download".
            if at == 9 {
                assert!(matches!(result, Ok(None)), "byte {at}");
            } else {
                assert!(
                    matches!(result, Err(StorageError::BadResume { .. })),
                    "byte {at}"
                );
            }
        }
        std::fs::write(&resume, &good[..good.len() - 1]).expect("truncate");
        assert!(matches!(
            read_resume(&resume, manifest.info_hash()),
            Err(StorageError::BadResume { .. })
        ));
    }

    #[test]
    fn wrong_piece_lengths_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = vec![9u8; PIECE_LEN as usize + 1];
        let manifest = manifest_of(&data);
        let mut part = PartFile::create(dir.path(), "a.bin", &manifest).expect("create");
        let first = manifest.layout().piece_index(0).expect("valid");
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            part.write_piece(first, &data[..10])
        }));
        match outcome {
            // Debug builds stop at the debug assertion: a caller bug.
            Err(_) if cfg!(debug_assertions) => {}
            Err(_) => panic!("release builds return an error instead of panicking"),
            Ok(result) => assert!(matches!(
                result,
                Err(StorageError::WrongPieceLength {
                    expected_bytes: PIECE_LEN,
                    got_bytes: 10,
                    ..
                })
            )),
        }
        assert_eq!(part.have().count(), 0);
        assert!(matches!(
            part.read_piece(first),
            Err(StorageError::MissingPiece { .. })
        ));
    }

    #[test]
    fn non_standard_piece_lengths_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = Layout::new(10, u32::MAX).expect("layout");
        let manifest = Manifest::new(layout, vec![[0; 32]]).expect("manifest");
        let err = PartFile::create(dir.path(), "a.bin", &manifest).expect_err("refused");
        assert!(
            matches!(
                err,
                StorageError::UnsupportedPieceLength {
                    piece_len_bytes: u32::MAX
                }
            ),
            "{err}"
        );
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 0);
    }

    #[test]
    fn finish_refuses_an_incomplete_download() {
        let dir = tempfile::tempdir().expect("tempdir");
        let manifest = manifest_of(&[1u8; 100]);
        let part = PartFile::create(dir.path(), "a.bin", &manifest).expect("create");
        let err = part.finish().expect_err("incomplete");
        assert!(
            matches!(
                err,
                StorageError::Incomplete {
                    have: 0,
                    total: 1,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn an_empty_file_finishes_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let manifest = manifest_of(&[]);
        let part = PartFile::create(dir.path(), "empty.txt", &manifest).expect("create");
        let path = part.finish().expect("nothing to wait for");
        assert_eq!(path, dir.path().join("empty.txt"));
        assert_eq!(std::fs::read(&path).expect("read"), b"");
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("empty.txt")]);
    }
}
