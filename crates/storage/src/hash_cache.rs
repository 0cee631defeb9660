//! Manifests of files already hashed, so that sharing a file again (after a restart, or when
//! the app reconnects with new settings) reads nothing when the file did not change.
//!
//! One entry per path in the cache folder, named by the SHA-256 of the path: `"SHOALHC1"`,
//! the file's stamp when hashing began (length u64, modification time as seconds i64 and
//! nanoseconds u32, device u64, inode u64, all big-endian), the manifest's length (u32) and
//! canonical bytes, then the SHA-256 of everything before it. An entry is used only when the
//! file's stamp now is the recorded one; a damaged, stale or foreign entry is a miss (the file
//! is hashed again), never an error. A stale entry cannot serve wrong bytes either: every
//! piece a seeder reads is checked against its hash ([`crate::SourceFile`]).

use std::fs::Metadata;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use sha2::{Digest, Sha256};

use crate::{Manifest, StorageError};

const MAGIC: &[u8; 8] = b"SHOALHC1";
/// Magic, length, seconds, nanoseconds, device, inode, manifest length.
const HEADER_BYTES: usize = 8 + 8 + 8 + 4 + 8 + 8 + 4;

/// A folder of remembered manifests, keyed by file path.
#[derive(Debug, Clone)]
pub struct HashCache {
    dir: PathBuf,
}

/// What identifies one version of a file: length in bytes, modification time, device, inode.
/// Taken before hashing, so a file written meanwhile never matches its entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    len_bytes: u64,
    modified_secs: i64,
    modified_nanos: u32,
    dev: u64,
    ino: u64,
}

impl FileStamp {
    /// The stamp of a file's metadata (from `std::fs::metadata`, which follows symlinks).
    pub fn of(meta: &Metadata) -> Self {
        let (modified_secs, modified_nanos) =
            match meta.modified().map(|t| t.duration_since(UNIX_EPOCH)) {
                Ok(Ok(d)) => (
                    i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                    d.subsec_nanos(),
                ),
                // Before 1970, or no modification time: the raw fields.
                _ => (meta.mtime(), u32::try_from(meta.mtime_nsec()).unwrap_or(0)),
            };
        Self {
            len_bytes: meta.len(),
            modified_secs,
            modified_nanos,
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }

    fn to_bytes(self) -> [u8; 36] {
        let mut out = [0u8; 36];
        out[..8].copy_from_slice(&self.len_bytes.to_be_bytes());
        out[8..16].copy_from_slice(&self.modified_secs.to_be_bytes());
        out[16..20].copy_from_slice(&self.modified_nanos.to_be_bytes());
        out[20..28].copy_from_slice(&self.dev.to_be_bytes());
        out[28..36].copy_from_slice(&self.ino.to_be_bytes());
        out
    }
}

impl HashCache {
    /// A cache in `dir` (created on the first [`HashCache::put`]).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn entry(&self, path: &Path) -> PathBuf {
        let key: String = Sha256::digest(path.as_os_str().as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.dir.join(format!("{key}.hash"))
    }

    /// The manifest remembered for `path`, if its stamp is `now`. `None` for a miss: no entry,
    /// another version of the file, or a damaged entry.
    pub fn get(&self, path: &Path, now: FileStamp) -> Option<Manifest> {
        let bytes = std::fs::read(self.entry(path)).ok()?;
        let (body, checksum) = bytes.split_at_checked(bytes.len().checked_sub(32)?)?;
        if Sha256::digest(body).as_slice() != checksum
            || body.len() < HEADER_BYTES
            || &body[..8] != MAGIC
            || body[8..44] != now.to_bytes()
        {
            return None;
        }
        let manifest_len = u32::from_be_bytes(body[44..48].try_into().ok()?) as usize;
        let manifest = body.get(HEADER_BYTES..)?;
        if manifest.len() != manifest_len {
            return None;
        }
        let manifest = Manifest::from_bytes(manifest).ok()?;
        (manifest.layout().len_bytes() == now.len_bytes).then_some(manifest)
    }

    /// Remembers `manifest` for `path` as it was at `stamp` (taken before hashing). Written
    /// atomically: a temporary file, fsync, rename.
    ///
    /// # Errors
    /// [`StorageError::Io`] when the folder or the entry cannot be written.
    pub fn put(
        &self,
        path: &Path,
        stamp: FileStamp,
        manifest: &Manifest,
    ) -> Result<(), StorageError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| StorageError::io(&self.dir, e))?;
        let manifest_bytes = manifest.to_bytes();
        let manifest_len = u32::try_from(manifest_bytes.len())
            .expect("a manifest is at most 24 + 32 * MAX_PIECES bytes, below 4 GiB");
        let mut body = Vec::with_capacity(HEADER_BYTES + manifest_bytes.len() + 32);
        body.extend_from_slice(MAGIC);
        body.extend_from_slice(&stamp.to_bytes());
        body.extend_from_slice(&manifest_len.to_be_bytes());
        body.extend_from_slice(&manifest_bytes);
        let checksum = Sha256::digest(&body);
        body.extend_from_slice(&checksum);
        let entry = self.entry(path);
        let fail = |e: std::io::Error| StorageError::io(&entry, e);
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir).map_err(fail)?;
        tmp.write_all(&body).map_err(fail)?;
        tmp.as_file().sync_all().map_err(fail)?;
        tmp.persist(&entry).map_err(|e| fail(e.error))?;
        Ok(())
    }

    /// Forgets `path` (nothing happens when it was not remembered).
    pub fn remove(&self, path: &Path) {
        let _ = std::fs::remove_file(self.entry(path));
    }
}
