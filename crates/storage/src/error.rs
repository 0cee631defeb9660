//! The storage error type.

use std::path::PathBuf;

use crate::{BitfieldError, InfoHash, ManifestError, PieceIndex};

/// What can go wrong reading, hashing or writing files.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An I/O error on `path`.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The disk (or quota) is full: `ENOSPC`/`EDQUOT`, or fewer free bytes than the file needs.
    #[error("{}", disk_full_message(path, *needed_bytes, *available_bytes))]
    DiskFull {
        /// Where space ran out.
        path: PathBuf,
        /// Bytes that were needed (0 when unknown).
        needed_bytes: u64,
        /// Bytes that were free (0 when unknown).
        available_bytes: u64,
    },
    /// A seeded file's size or modification time changed since it was hashed; it is no longer
    /// the content that was announced.
    #[error("{path} changed since it was shared ({what}); stopped serving it")]
    SourceChanged {
        /// The original file.
        path: PathBuf,
        /// What changed, in words ("size 10 -> 12 bytes", "modification time").
        what: String,
    },
    /// Bytes read for a piece do not match the manifest.
    #[error("piece {piece} of {path} does not match its hash")]
    PieceMismatch {
        /// The file.
        path: PathBuf,
        /// The piece.
        piece: PieceIndex,
    },
    /// A piece was asked for that this file does not have: not downloaded (yet), or past the
    /// end of the file.
    #[error("piece {piece} is not available in this file")]
    MissingPiece {
        /// The piece.
        piece: PieceIndex,
    },
    /// Bytes given for a piece are not that piece's length: a bug in the caller, which must
    /// pass exactly the verified piece.
    #[error("piece {piece} is {expected_bytes} bytes long; {got_bytes} bytes were given")]
    WrongPieceLength {
        /// The piece.
        piece: PieceIndex,
        /// Its length in bytes ([`crate::Layout::piece_size`]; 0 for a piece past the end).
        expected_bytes: u32,
        /// Bytes given.
        got_bytes: usize,
    },
    /// A manifest's piece length is not [`crate::PIECE_LEN`], the only one the wire format
    /// allows (docs/wire.md §2); refused so that a peer's manifest cannot make every piece
    /// buffer gigabytes long.
    #[error(
        "piece length {piece_len_bytes} bytes is not the standard {}",
        crate::PIECE_LEN
    )]
    UnsupportedPieceLength {
        /// The manifest's piece length in bytes.
        piece_len_bytes: u32,
    },
    /// A path is a symbolic link where a regular file is required.
    #[error("{path} is a symbolic link; refusing to follow it")]
    Symlink {
        /// The path.
        path: PathBuf,
    },
    /// A resume file is corrupt or belongs to other content.
    #[error("resume file {path} is unusable: {reason}")]
    BadResume {
        /// The resume file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Not every piece is present; the download cannot be finished yet.
    #[error("download of {info_hash} is incomplete: {have} of {total} pieces")]
    Incomplete {
        /// The content.
        info_hash: InfoHash,
        /// Pieces present.
        have: u32,
        /// Pieces in total.
        total: u32,
    },
    /// Hashing was cancelled by the caller.
    #[error("cancelled")]
    Cancelled,
    /// A manifest could not be used.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A bitfield could not be used.
    #[error(transparent)]
    Bitfield(#[from] BitfieldError),
}

/// "the disk is full" when the sizes are unknown (`ENOSPC` while writing), else the numbers.
fn disk_full_message(path: &std::path::Path, needed_bytes: u64, available_bytes: u64) -> String {
    if needed_bytes == 0 {
        format!("the disk is full: cannot write {}", path.display())
    } else {
        format!(
            "not enough disk space in {}: {needed_bytes} bytes needed, {available_bytes} available",
            path.display()
        )
    }
}

impl StorageError {
    /// Wraps an I/O error on `path`, turning `ENOSPC`/`EDQUOT` into [`StorageError::DiskFull`].
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        const ENOSPC: i32 = 28;
        const EDQUOT: i32 = 122;
        let path = path.into();
        match source.raw_os_error() {
            Some(ENOSPC) | Some(EDQUOT) => Self::DiskFull {
                path,
                needed_bytes: 0,
                available_bytes: 0,
            },
            _ => Self::Io { path, source },
        }
    }
}
