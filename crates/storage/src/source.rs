//! Seeding from the user's own file: [`SourceFile`] reads pieces from the original and
//! refuses to serve it once it changed: a seeder reads the user's original file and stops with a
//! clear error if that file changed (docs/ARCHITECTURE.md, "Storage").

use std::fs::{File, Metadata};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::hash::{open_regular, read_exact_at};
use crate::{Manifest, PieceIndex, StorageError};

/// A file the user shares, open read-only for serving its pieces to peers.
///
/// Opening records the file's size, modification time and identity (device and inode). Every
/// [`SourceFile::read_piece`] checks them again, on the open handle and on the path, so a file
/// that was appended to, edited, touched, or replaced by another file under the same name is
/// reported as [`StorageError::SourceChanged`] instead of being served. Each piece read is also
/// checked against its SHA-256, so even an edit that kept size and time is never served.
#[derive(Debug)]
pub struct SourceFile {
    path: PathBuf,
    file: File,
    manifest: Manifest,
    recorded: Stamp,
}

/// What is compared to detect a changed file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len_bytes: u64,
    modified: Option<SystemTime>,
    dev: u64,
    ino: u64,
}

impl Stamp {
    fn of(meta: &Metadata) -> Self {
        Self {
            len_bytes: meta.len(),
            modified: meta.modified().ok(),
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }

    /// How `now` differs from `self`, in words, if it does.
    fn change_to(&self, now: &Stamp) -> Option<String> {
        if (now.dev, now.ino) != (self.dev, self.ino) {
            Some("replaced by another file".to_owned())
        } else if now.len_bytes != self.len_bytes {
            Some(format!(
                "size {} -> {} bytes",
                self.len_bytes, now.len_bytes
            ))
        } else if now.modified != self.modified {
            Some("modification time".to_owned())
        } else {
            None
        }
    }
}

impl SourceFile {
    /// Opens the shared file at `path` read-only for serving the pieces of `manifest` (which
    /// is copied; hash the file first with [`crate::hash_file`]).
    ///
    /// # Errors
    /// - [`StorageError::SourceChanged`] when the file's size in bytes is not the manifest's
    ///   length;
    /// - [`StorageError::Io`] when it cannot be opened or is not a regular file.
    pub fn open(path: &Path, manifest: &Manifest) -> Result<SourceFile, StorageError> {
        let file = open_regular(path)?;
        let meta = file.metadata().map_err(|e| StorageError::io(path, e))?;
        let recorded = Stamp::of(&meta);
        let expected = manifest.layout().len_bytes();
        if recorded.len_bytes != expected {
            return Err(StorageError::SourceChanged {
                path: path.to_owned(),
                what: format!(
                    "size {} bytes, but it was hashed at {expected} bytes",
                    recorded.len_bytes
                ),
            });
        }
        Ok(SourceFile {
            path: path.to_owned(),
            file,
            manifest: manifest.clone(),
            recorded,
        })
    }

    /// The shared file's path, as given to [`SourceFile::open`].
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The manifest being served.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Reads `piece`: exactly [`crate::Layout::piece_size`] bytes from its offset, after
    /// checking that the file has not changed since it was opened.
    ///
    /// # Errors
    /// - [`StorageError::SourceChanged`] when the open file's or the path's size, modification
    ///   time or identity differ from what [`SourceFile::open`] recorded, when the path is
    ///   gone, or when the file shrank during the read; `what` says which;
    /// - [`StorageError::PieceMismatch`] when the bytes read do not match the piece's SHA-256
    ///   (the content was edited in place);
    /// - [`StorageError::MissingPiece`] for a piece past the end of this manifest;
    /// - [`StorageError::Io`] when reading fails.
    pub fn read_piece(&self, piece: PieceIndex) -> Result<Vec<u8>, StorageError> {
        let layout = self.manifest.layout();
        if layout.piece_index(piece.get()).is_none() {
            return Err(StorageError::MissingPiece { piece });
        }
        self.check_unchanged()?;
        let range = layout.piece_range(piece);
        let mut buf = vec![0u8; layout.piece_size(piece) as usize];
        read_exact_at(&self.file, &self.path, &mut buf, range.start).map_err(|e| match e {
            StorageError::Io { source, .. }
                if source.kind() == std::io::ErrorKind::UnexpectedEof =>
            {
                self.changed("shrank while being read".to_owned())
            }
            e => e,
        })?;
        if !self.manifest.verify_piece(piece, &buf) {
            return Err(StorageError::PieceMismatch {
                path: self.path.clone(),
                piece,
            });
        }
        Ok(buf)
    }

    /// Compares the open handle (`fstat`) and the path (`stat`) with what was recorded.
    fn check_unchanged(&self) -> Result<(), StorageError> {
        let handle = self
            .file
            .metadata()
            .map_err(|e| StorageError::io(&self.path, e))?;
        if let Some(what) = self.recorded.change_to(&Stamp::of(&handle)) {
            return Err(self.changed(what));
        }
        let at_path = match std::fs::metadata(&self.path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(self.changed("removed or renamed".to_owned()));
            }
            Err(e) => return Err(StorageError::io(&self.path, e)),
        };
        if let Some(what) = self.recorded.change_to(&Stamp::of(&at_path)) {
            return Err(self.changed(what));
        }
        Ok(())
    }

    fn changed(&self, what: String) -> StorageError {
        tracing::warn!(path = %self.path.display(), %what, "shared file changed; not serving it");
        StorageError::SourceChanged {
            path: self.path.clone(),
            what,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PIECE_LEN;

    #[test]
    fn open_refuses_a_file_of_another_size() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        std::fs::write(&path, vec![1u8; 10]).expect("write");
        let manifest = crate::hash_file(&path, &mut |_| true).expect("hash");
        std::fs::write(&path, vec![1u8; 11]).expect("rewrite");
        let err = SourceFile::open(&path, &manifest).expect_err("size differs");
        assert!(matches!(err, StorageError::SourceChanged { .. }), "{err}");
    }

    #[test]
    fn an_edit_in_place_that_keeps_size_and_time_is_not_served() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        std::fs::write(&path, vec![1u8; PIECE_LEN as usize + 10]).expect("write");
        let manifest = crate::hash_file(&path, &mut |_| true).expect("hash");
        let source = SourceFile::open(&path, &manifest).expect("open");
        let modified = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .expect("mtime");
        let file = File::options().write(true).open(&path).expect("open rw");
        std::os::unix::fs::FileExt::write_all_at(&file, b"x", 3).expect("edit");
        file.set_modified(modified).expect("restore mtime");
        let piece = manifest.layout().piece_index(0).expect("valid");
        let err = source.read_piece(piece).expect_err("edited");
        assert!(
            matches!(err, StorageError::PieceMismatch { piece: p, .. } if p == piece),
            "{err}"
        );
        let last = manifest.layout().piece_index(1).expect("valid");
        assert_eq!(
            source.read_piece(last).expect("untouched piece"),
            vec![1u8; 10]
        );
    }
}
