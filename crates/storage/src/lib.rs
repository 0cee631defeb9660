//! Manifest, piece layout and hashing, .part files, resume state, safe names. Sync, no network.
//!
//! Content identity (docs/wire.md §2): a file is cut into pieces of [`PIECE_LEN`] bytes (the
//! last one shorter), each piece has a SHA-256, and the [`Manifest`] (length, piece length,
//! piece hashes) hashes to the file's [`InfoHash`]. Everything a peer sends is checked against
//! these before it is used.
//!
//! Storage: a download is written into `<name>.part` ([`PartFile`]), its verified pieces are
//! remembered in a resume file written atomically, and the finished file is renamed to a
//! sanitised name that never overwrites ([`safe_file_name`]). A seeder reads from the user's
//! original file ([`SourceFile`]) and refuses to serve it once it changed.

#![deny(missing_docs)]

mod bitfield;
mod error;
mod hash;
mod hash_cache;
mod layout;
mod manifest;
mod names;
mod part;
mod source;

pub use bitfield::{Bitfield, BitfieldError};
pub use error::StorageError;
pub use hash::hash_file;
pub use hash_cache::{FileStamp, HashCache};
pub use layout::{Layout, LayoutError, MAX_PIECES, PIECE_LEN, PieceIndex};
pub use manifest::{
    MANIFEST_HEADER_BYTES, MANIFEST_MAGIC, Manifest, ManifestError, PieceHash, sha256,
};
pub use names::safe_file_name;
pub use part::PartFile;
pub use shoal_protocol::InfoHash;
pub use source::SourceFile;
