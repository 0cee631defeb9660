//! Hashing files into a [`Manifest`]: the SHA-256 of every piece, computed in parallel.
//!
//! Pieces are independent, so each worker thread (one per core, at most
//! [`MAX_HASH_THREADS`]) takes the next piece number from a shared counter, reads that piece
//! with `pread` into its own [`PIECE_LEN`](crate::PIECE_LEN) buffer and hashes it. Memory is
//! one piece buffer per worker plus the piece hashes, whatever the file size; the result keeps
//! piece order because every hash is stored at its piece number. The caller's progress
//! callback runs on the caller's thread, fed by a bounded channel.

use std::fs::File;
use std::io;
use std::num::NonZeroUsize;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError, mpsc};
use std::thread;

use crate::{Bitfield, Layout, Manifest, ManifestError, PieceHash, PieceIndex, StorageError};

/// Most worker threads one hashing run uses: bounds memory (one 256 KiB buffer each) on
/// machines with many cores; storage is the limit long before that.
const MAX_HASH_THREADS: usize = 8;

/// Bytes hashed between two calls of the progress callback: 4 MiB.
const PROGRESS_STEP_BYTES: u64 = 4 << 20;

/// Hashes the file at `path` into its [`Manifest`]: [`Layout::standard`] of its length in bytes
/// and the SHA-256 of each piece, in piece order.
///
/// The file is streamed from disk in pieces, hashed on every core; memory stays at a few MiB
/// plus 32 bytes per piece for the result. `progress` is called on the caller's thread with
/// the bytes hashed so far: every 4 MiB, and once at the end with the file's length (also for
/// an empty file). Returning `false` from it stops the work.
///
/// The length is taken when the file is opened; a file that grows meanwhile is hashed up to
/// that length, one that is rewritten meanwhile gives a manifest of whatever was read.
///
/// # Errors
/// - [`StorageError::Cancelled`] when `progress` returned `false`;
/// - [`StorageError::Io`] when the file cannot be opened or read, is not a regular file, or
///   shrank while it was read (kind [`io::ErrorKind::UnexpectedEof`]);
/// - [`StorageError::Manifest`] for a file over about 122 GiB ([`crate::MAX_PIECES`] pieces).
pub fn hash_file(
    path: &Path,
    progress: &mut dyn FnMut(u64) -> bool,
) -> Result<Manifest, StorageError> {
    let file = open_regular(path)?;
    let len_bytes = file
        .metadata()
        .map_err(|e| StorageError::io(path, e))?
        .len();
    let layout = Layout::standard(len_bytes).map_err(ManifestError::from)?;
    tracing::debug!(path = %path.display(), len_bytes, pieces = layout.piece_count(), "hashing");

    let hashes = Mutex::new(vec![[0u8; 32]; layout.piece_count() as usize]);
    let hashed = hash_pieces(
        &file,
        path,
        &layout,
        &|_| true,
        &|piece, hash| {
            hashes.lock().unwrap_or_else(PoisonError::into_inner)[piece.as_usize()] = hash;
        },
        progress,
    )?;
    debug_assert_eq!(hashed, len_bytes);
    if !progress(len_bytes) {
        return Err(StorageError::Cancelled);
    }
    let hashes = hashes.into_inner().unwrap_or_else(PoisonError::into_inner);
    Ok(Manifest::new(layout, hashes)?)
}

/// Re-reads every piece set in `claimed` from `file` and returns the ones whose SHA-256
/// matches `manifest`: a subset of `claimed`.
///
/// # Errors
/// [`StorageError::Io`] when reading fails (a file shorter than the manifest's length fails
/// with [`io::ErrorKind::UnexpectedEof`]).
pub(crate) fn verify_pieces(
    file: &File,
    path: &Path,
    manifest: &Manifest,
    claimed: &Bitfield,
) -> Result<Bitfield, StorageError> {
    let good = Mutex::new(Bitfield::empty(manifest.layout().piece_count()));
    hash_pieces(
        file,
        path,
        manifest.layout(),
        &|piece| claimed.has(piece),
        &|piece, hash| {
            if &hash == manifest.piece_hash(piece) {
                good.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .set(piece);
            }
        },
        &mut |_| true,
    )?;
    Ok(good.into_inner().unwrap_or_else(PoisonError::into_inner))
}

/// Opens `path` for reading after checking that it is a regular file (so a FIFO never blocks
/// the open).
pub(crate) fn open_regular(path: &Path) -> Result<File, StorageError> {
    let meta = std::fs::metadata(path).map_err(|e| StorageError::io(path, e))?;
    if !meta.is_file() {
        return Err(not_regular(path));
    }
    let file = File::open(path).map_err(|e| StorageError::io(path, e))?;
    let meta = file.metadata().map_err(|e| StorageError::io(path, e))?;
    if !meta.is_file() {
        return Err(not_regular(path));
    }
    Ok(file)
}

/// The error for a path that is a folder, device, FIFO or socket.
pub(crate) fn not_regular(path: &Path) -> StorageError {
    StorageError::io(
        path,
        io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"),
    )
}

/// Reads `buf.len()` bytes at `offset`, naming a short read for what it is.
pub(crate) fn read_exact_at(
    file: &File,
    path: &Path,
    buf: &mut [u8],
    offset: u64,
) -> Result<(), StorageError> {
    file.read_exact_at(buf, offset).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            let end = offset + buf.len() as u64;
            StorageError::io(
                path,
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("file ends before byte {end}: it shrank while being read"),
                ),
            )
        } else {
            StorageError::io(path, e)
        }
    })
}

/// The parallel engine: hashes every piece of `layout` for which `wanted` holds, reading from
/// `file`, and hands each `(piece, hash)` to `on_hash` (called from worker threads, in no
/// particular order). `progress` gets the bytes hashed so far every [`PROGRESS_STEP_BYTES`]
/// and may return `false` to cancel. Returns the bytes hashed.
fn hash_pieces(
    file: &File,
    path: &Path,
    layout: &Layout,
    wanted: &(dyn Fn(PieceIndex) -> bool + Sync),
    on_hash: &(dyn Fn(PieceIndex, PieceHash) + Sync),
    progress: &mut dyn FnMut(u64) -> bool,
) -> Result<u64, StorageError> {
    if layout.piece_count() == 0 {
        return Ok(0);
    }
    let threads = thread::available_parallelism()
        .map_or(1, NonZeroUsize::get)
        .clamp(1, MAX_HASH_THREADS)
        .min(layout.piece_count() as usize);
    let next_piece = AtomicU32::new(0);
    let stop = AtomicBool::new(false);
    let first_error: Mutex<Option<StorageError>> = Mutex::new(None);
    let fail = |error: StorageError| {
        stop.store(true, Ordering::Relaxed);
        first_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(error);
    };
    // Workers report each hashed piece's length; the channel holds a few per worker, so a
    // slow progress callback slows the workers down instead of queueing without bound.
    let (done_tx, done_rx) = mpsc::sync_channel::<u32>(threads * 4);

    let (next_piece, stop, fail) = (&next_piece, &stop, &fail);
    let mut cancelled = false;
    let mut done_bytes = 0u64;
    thread::scope(|scope| {
        let mut spawned = 0;
        for _ in 0..threads {
            let done_tx = done_tx.clone();
            let worker = move || {
                let mut buf = vec![0u8; layout.piece_len() as usize];
                while !stop.load(Ordering::Relaxed) {
                    let Some(piece) =
                        layout.piece_index(next_piece.fetch_add(1, Ordering::Relaxed))
                    else {
                        break;
                    };
                    if !wanted(piece) {
                        continue;
                    }
                    let size = layout.piece_size(piece);
                    let buf = &mut buf[..size as usize];
                    if let Err(error) =
                        read_exact_at(file, path, buf, layout.piece_range(piece).start)
                    {
                        fail(error);
                        break;
                    }
                    on_hash(piece, crate::sha256(buf));
                    if done_tx.send(size).is_err() {
                        break;
                    }
                }
            };
            match thread::Builder::new()
                .name("shoal-hash".into())
                .spawn_scoped(scope, worker)
            {
                Ok(_) => spawned += 1,
                Err(e) if spawned == 0 => fail(StorageError::io(path, e)),
                Err(e) => tracing::debug!(error = %e, spawned, "hashing with fewer threads"),
            }
        }
        drop(done_tx);

        let mut reported = 0u64;
        for size in done_rx {
            done_bytes += u64::from(size);
            if !cancelled && done_bytes - reported >= PROGRESS_STEP_BYTES {
                reported = done_bytes;
                if !progress(done_bytes) {
                    cancelled = true;
                    stop.store(true, Ordering::Relaxed);
                }
            }
        }
    });

    if let Some(error) = first_error
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner)
    {
        return Err(error);
    }
    if cancelled {
        return Err(StorageError::Cancelled);
    }
    Ok(done_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PIECE_LEN;
    use std::io::Write;

    #[test]
    fn folders_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = hash_file(dir.path(), &mut |_| true).expect_err("a folder");
        assert!(
            matches!(&err, StorageError::Io { source, .. } if source.kind() == io::ErrorKind::InvalidInput),
            "{err}"
        );
    }

    #[test]
    fn a_short_file_is_an_error_not_a_panic() {
        // The same situation as a file that shrinks while hashed: the layout says more bytes
        // than the file holds.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let mut file = File::create(&path).expect("create");
        file.write_all(&[7u8; 1000]).expect("write");
        let file = File::open(&path).expect("open");
        let layout = Layout::standard(u64::from(PIECE_LEN) * 3).expect("layout");
        let err = hash_pieces(&file, &path, &layout, &|_| true, &|_, _| {}, &mut |_| true)
            .expect_err("short");
        assert!(
            matches!(&err, StorageError::Io { source, .. } if source.kind() == io::ErrorKind::UnexpectedEof),
            "{err}"
        );
    }

    #[test]
    fn verify_keeps_only_matching_claimed_pieces() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..PIECE_LEN * 3).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).expect("write");
        let manifest = hash_file(&path, &mut |_| true).expect("hash");
        let layout = *manifest.layout();
        let piece = |i| layout.piece_index(i).expect("valid");

        let mut claimed = Bitfield::empty(3);
        claimed.set(piece(0));
        claimed.set(piece(2));
        let file = File::options()
            .read(true)
            .write(true)
            .open(&path)
            .expect("open");
        file.write_all_at(b"tampered", u64::from(PIECE_LEN) * 2 + 5)
            .expect("tamper");
        let good = verify_pieces(&file, &path, &manifest, &claimed).expect("verify");
        assert_eq!(good.iter_set().collect::<Vec<_>>(), vec![0]);
    }
}
