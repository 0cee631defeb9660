//! Content identity: the manifest (length, piece length, piece hashes) and the info hash, the
//! SHA-256 of the manifest's canonical bytes (docs/wire.md §2).

use sha2::{Digest, Sha256};
use shoal_protocol::InfoHash;

use crate::layout::{Layout, LayoutError, PieceIndex};

/// First 8 bytes of a canonical manifest.
pub const MANIFEST_MAGIC: &[u8; 8] = b"SHOALMF1";

/// Bytes before the piece hashes: magic, length (u64), piece length (u32), piece count (u32).
pub const MANIFEST_HEADER_BYTES: usize = 8 + 8 + 4 + 4;

/// A SHA-256 digest of one piece.
pub type PieceHash = [u8; 32];

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Why bytes are not a manifest, or not the one asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Shorter than the header, or not starting with [`MANIFEST_MAGIC`].
    #[error("not a Shoal manifest")]
    NotAManifest,
    /// The header's length and piece length are unusable.
    #[error("manifest layout is invalid: {0}")]
    Layout(#[from] LayoutError),
    /// The piece count or byte length disagrees with the header.
    #[error("manifest holds {got} bytes; its header implies {expected}")]
    Length {
        /// Bytes the header implies.
        expected: usize,
        /// Bytes present.
        got: usize,
    },
    /// The bytes do not hash to the info hash they were fetched for.
    #[error("manifest does not match info hash {expected}")]
    InfoHashMismatch {
        /// The info hash asked for.
        expected: InfoHash,
    },
}

/// What identifies a file's content: its layout and the SHA-256 of every piece.
#[derive(Clone, PartialEq, Eq)]
pub struct Manifest {
    layout: Layout,
    piece_hashes: Vec<PieceHash>,
    info_hash: InfoHash,
}

impl std::fmt::Debug for Manifest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manifest")
            .field("info_hash", &self.info_hash)
            .field("len_bytes", &self.layout.len_bytes())
            .field("pieces", &self.piece_hashes.len())
            .finish()
    }
}

impl Manifest {
    /// Builds a manifest from a layout and one hash per piece.
    ///
    /// # Errors
    /// [`ManifestError::Length`] when the hash count is not the layout's piece count.
    pub fn new(layout: Layout, piece_hashes: Vec<PieceHash>) -> Result<Self, ManifestError> {
        if piece_hashes.len() != layout.piece_count() as usize {
            return Err(ManifestError::Length {
                expected: Self::encoded_len(&layout),
                got: MANIFEST_HEADER_BYTES + piece_hashes.len() * 32,
            });
        }
        let mut manifest = Self {
            layout,
            piece_hashes,
            info_hash: InfoHash::from_bytes([0; 32]),
        };
        manifest.info_hash = InfoHash::from_bytes(sha256(&manifest.to_bytes()));
        Ok(manifest)
    }

    /// Length of the canonical bytes of a manifest with this layout.
    pub fn encoded_len(layout: &Layout) -> usize {
        MANIFEST_HEADER_BYTES + layout.piece_count() as usize * 32
    }

    /// The canonical bytes: `"SHOALMF1"`, length (u64 BE), piece length (u32 BE), piece count
    /// (u32 BE), then 32 bytes per piece hash.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::encoded_len(&self.layout));
        out.extend_from_slice(MANIFEST_MAGIC);
        out.extend_from_slice(&self.layout.len_bytes().to_be_bytes());
        out.extend_from_slice(&self.layout.piece_len().to_be_bytes());
        out.extend_from_slice(&self.layout.piece_count().to_be_bytes());
        for hash in &self.piece_hashes {
            out.extend_from_slice(hash);
        }
        out
    }

    /// Parses canonical bytes and checks that they hash to `expected`.
    ///
    /// # Errors
    /// [`ManifestError`] for malformed bytes or another info hash.
    pub fn from_bytes_verified(bytes: &[u8], expected: InfoHash) -> Result<Self, ManifestError> {
        if InfoHash::from_bytes(sha256(bytes)) != expected {
            return Err(ManifestError::InfoHashMismatch { expected });
        }
        let manifest = Self::from_bytes(bytes)?;
        debug_assert_eq!(manifest.info_hash, expected);
        Ok(manifest)
    }

    /// Parses canonical bytes without an expected info hash (for resume files, which
    /// re-verify by [`Manifest::info_hash`]).
    ///
    /// # Errors
    /// [`ManifestError`] for malformed bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ManifestError> {
        if bytes.len() < MANIFEST_HEADER_BYTES || &bytes[..8] != MANIFEST_MAGIC {
            return Err(ManifestError::NotAManifest);
        }
        let len_bytes = u64::from_be_bytes(
            bytes[8..16]
                .try_into()
                .map_err(|_| ManifestError::NotAManifest)?,
        );
        let piece_len = u32::from_be_bytes(
            bytes[16..20]
                .try_into()
                .map_err(|_| ManifestError::NotAManifest)?,
        );
        let count = u32::from_be_bytes(
            bytes[20..24]
                .try_into()
                .map_err(|_| ManifestError::NotAManifest)?,
        );
        let layout = Layout::new(len_bytes, piece_len)?;
        let expected = Self::encoded_len(&layout);
        if count != layout.piece_count() || bytes.len() != expected {
            return Err(ManifestError::Length {
                expected,
                got: bytes.len(),
            });
        }
        let piece_hashes = bytes[MANIFEST_HEADER_BYTES..]
            .chunks_exact(32)
            .map(|c| {
                let mut h = [0u8; 32];
                h.copy_from_slice(c);
                h
            })
            .collect();
        Ok(Self {
            layout,
            piece_hashes,
            info_hash: InfoHash::from_bytes(sha256(bytes)),
        })
    }

    /// The content id.
    pub fn info_hash(&self) -> InfoHash {
        self.info_hash
    }

    /// The piece layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The expected SHA-256 of `piece`.
    pub fn piece_hash(&self, piece: PieceIndex) -> &PieceHash {
        &self.piece_hashes[piece.as_usize()]
    }

    /// Whether `data` is exactly the content of `piece` (length and SHA-256).
    pub fn verify_piece(&self, piece: PieceIndex, data: &[u8]) -> bool {
        data.len() == self.layout.piece_size(piece) as usize
            && &sha256(data) == self.piece_hash(piece)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PIECE_LEN;

    fn manifest_of(data: &[u8]) -> Manifest {
        let layout = Layout::standard(data.len() as u64).expect("layout");
        let hashes = data.chunks(PIECE_LEN as usize).map(sha256).collect();
        Manifest::new(layout, hashes).expect("manifest")
    }

    #[test]
    fn round_trips_and_verifies() {
        let data: Vec<u8> = (0..(PIECE_LEN as usize * 2 + 5)).map(|i| i as u8).collect();
        let manifest = manifest_of(&data);
        let bytes = manifest.to_bytes();
        assert_eq!(bytes.len(), MANIFEST_HEADER_BYTES + 3 * 32);
        let again = Manifest::from_bytes_verified(&bytes, manifest.info_hash()).expect("verifies");
        assert_eq!(again, manifest);
        let last = manifest.layout().piece_index(2).expect("valid");
        assert!(manifest.verify_piece(last, &data[PIECE_LEN as usize * 2..]));
        // Same length, other bytes. (`data[..5]` would not do: PIECE_LEN is a multiple of 256,
        // so the last piece of this `i as u8` pattern equals the first five bytes.)
        assert!(!manifest.verify_piece(last, &data[1..6]));
        assert!(!manifest.verify_piece(last, &data[PIECE_LEN as usize * 2..][..4]));
    }

    #[test]
    fn same_bytes_same_info_hash_and_any_change_differs() {
        let a = manifest_of(b"hello world");
        let b = manifest_of(b"hello world");
        assert_eq!(a.info_hash(), b.info_hash());
        assert_ne!(a.info_hash(), manifest_of(b"hello worle").info_hash());
        // The known answer pins the canonical encoding: changing it changes every info hash.
        assert_eq!(
            manifest_of(b"").info_hash().to_string(),
            InfoHash::from_bytes(sha256(b"SHOALMF1\0\0\0\0\0\0\0\0\0\x04\0\0\0\0\0\0")).to_string()
        );
    }

    #[test]
    fn rejects_tampering() {
        let manifest = manifest_of(b"some content");
        let mut bytes = manifest.to_bytes();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(
            Manifest::from_bytes_verified(&bytes, manifest.info_hash()),
            Err(ManifestError::InfoHashMismatch {
                expected: manifest.info_hash()
            })
        );
        assert_eq!(
            Manifest::from_bytes(b"nope"),
            Err(ManifestError::NotAManifest)
        );
        let mut short = manifest.to_bytes();
        short.pop();
        assert!(matches!(
            Manifest::from_bytes(&short),
            Err(ManifestError::Length { .. })
        ));
    }
}
