//! Piece arithmetic: how a file of `len_bytes` splits into pieces of [`PIECE_LEN`] bytes.
//!
//! All piece arithmetic lives here, in one type ([`Layout`]); a [`PieceIndex`] can only be
//! made by a layout that checked it (rqbit's `Lengths` / `ValidPieceIndex`).

use std::ops::Range;

/// Length of every piece but the last, in bytes: 262,144 (256 KiB). The chunk size of seed 003
/// ("文件分块传输（默认 256KB）").
pub const PIECE_LEN: u32 = 262_144;

/// Most pieces a file may have: 500,000, i.e. files up to about 122 GiB with [`PIECE_LEN`].
/// Chosen so a bitfield (62,500 bytes) always fits one data-channel message even to a peer that
/// negotiates the RFC 8841 default of 65,536 bytes, and a manifest is at most 16 MB.
pub const MAX_PIECES: u32 = 500_000;

/// A piece number checked against a [`Layout`]: always `< layout.piece_count()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PieceIndex(u32);

impl PieceIndex {
    /// The number.
    pub const fn get(self) -> u32 {
        self.0
    }

    /// The number as a `usize`, for indexing.
    pub const fn as_usize(self) -> usize {
        self.0 as usize
    }
}

impl std::fmt::Display for PieceIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Why a length and piece length do not make a layout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// The piece length is zero.
    #[error("piece length must not be zero")]
    ZeroPieceLength,
    /// The file would have more than [`MAX_PIECES`] pieces.
    #[error("{len_bytes} bytes make {pieces} pieces; at most {MAX_PIECES} are supported")]
    TooManyPieces {
        /// File length in bytes.
        len_bytes: u64,
        /// Pieces it would take.
        pieces: u64,
    },
}

/// The piece layout of one file: its length and piece length, both in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Layout {
    len_bytes: u64,
    piece_len: u32,
    piece_count: u32,
}

impl Layout {
    /// The layout of a file of `len_bytes` with pieces of `piece_len` bytes.
    ///
    /// # Errors
    /// [`LayoutError`] for a zero piece length or more than [`MAX_PIECES`] pieces.
    pub fn new(len_bytes: u64, piece_len: u32) -> Result<Self, LayoutError> {
        if piece_len == 0 {
            return Err(LayoutError::ZeroPieceLength);
        }
        let pieces = len_bytes.div_ceil(u64::from(piece_len));
        if pieces > u64::from(MAX_PIECES) {
            return Err(LayoutError::TooManyPieces { len_bytes, pieces });
        }
        Ok(Self {
            len_bytes,
            piece_len,
            piece_count: pieces as u32,
        })
    }

    /// The layout with the standard [`PIECE_LEN`].
    ///
    /// # Errors
    /// [`LayoutError::TooManyPieces`] past about 122 GiB ([`MAX_PIECES`]).
    pub fn standard(len_bytes: u64) -> Result<Self, LayoutError> {
        Self::new(len_bytes, PIECE_LEN)
    }

    /// File length in bytes.
    pub const fn len_bytes(&self) -> u64 {
        self.len_bytes
    }

    /// Piece length in bytes (the last piece may be shorter).
    pub const fn piece_len(&self) -> u32 {
        self.piece_len
    }

    /// Number of pieces; 0 for an empty file.
    pub const fn piece_count(&self) -> u32 {
        self.piece_count
    }

    /// Checks a piece number from the network or a file.
    pub fn piece_index(&self, index: u32) -> Option<PieceIndex> {
        (index < self.piece_count).then_some(PieceIndex(index))
    }

    /// Every piece, in order.
    pub fn pieces(&self) -> impl DoubleEndedIterator<Item = PieceIndex> + ExactSizeIterator {
        (0..self.piece_count).map(PieceIndex)
    }

    /// Length of `piece` in bytes: [`Layout::piece_len`], or less for the last piece.
    pub fn piece_size(&self, piece: PieceIndex) -> u32 {
        let start = u64::from(piece.0) * u64::from(self.piece_len);
        (self.len_bytes - start).min(u64::from(self.piece_len)) as u32
    }

    /// Byte range of `piece` within the file.
    pub fn piece_range(&self, piece: PieceIndex) -> Range<u64> {
        let start = u64::from(piece.0) * u64::from(self.piece_len);
        start..start + u64::from(self.piece_size(piece))
    }

    /// Bytes covered by the pieces set in `have` (a bitfield of this layout).
    pub fn bytes_in(&self, have: &crate::Bitfield) -> u64 {
        let mut bytes = u64::from(have.count()) * u64::from(self.piece_len);
        if let Some(last) = self.piece_count.checked_sub(1)
            && have.has_raw(last)
        {
            bytes -= u64::from(self.piece_len) - u64::from(self.piece_size(PieceIndex(last)));
        }
        bytes
    }

    /// The piece holding byte `offset`, if `offset < len_bytes`.
    pub fn piece_at(&self, offset: u64) -> Option<PieceIndex> {
        (offset < self.len_bytes).then(|| PieceIndex((offset / u64::from(self.piece_len)) as u32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_piece_is_shorter() {
        let layout = Layout::standard(2 * u64::from(PIECE_LEN) + 10).expect("layout");
        assert_eq!(layout.piece_count(), 3);
        let last = layout.piece_index(2).expect("valid");
        assert_eq!(layout.piece_size(last), 10);
        assert_eq!(
            layout.piece_range(last),
            2 * u64::from(PIECE_LEN)..2 * u64::from(PIECE_LEN) + 10
        );
        assert_eq!(layout.piece_index(3), None);
        assert_eq!(layout.piece_at(u64::from(PIECE_LEN)), layout.piece_index(1));
        assert_eq!(layout.piece_at(layout.len_bytes()), None);
    }

    #[test]
    fn bytes_in_counts_the_short_last_piece() {
        let layout = Layout::standard(2 * u64::from(PIECE_LEN) + 10).expect("layout");
        let mut have = crate::Bitfield::empty(3);
        assert_eq!(layout.bytes_in(&have), 0);
        have.set(layout.piece_index(2).expect("valid"));
        assert_eq!(layout.bytes_in(&have), 10);
        have.set(layout.piece_index(0).expect("valid"));
        assert_eq!(layout.bytes_in(&have), u64::from(PIECE_LEN) + 10);
    }

    #[test]
    fn exact_multiple_and_empty() {
        let layout = Layout::standard(u64::from(PIECE_LEN) * 4).expect("layout");
        assert_eq!(layout.piece_count(), 4);
        assert_eq!(
            layout.piece_size(layout.piece_index(3).expect("valid")),
            PIECE_LEN
        );
        let empty = Layout::standard(0).expect("layout");
        assert_eq!(empty.piece_count(), 0);
        assert_eq!(empty.pieces().count(), 0);
    }

    #[test]
    fn refuses_absurd_sizes() {
        assert_eq!(Layout::new(10, 0), Err(LayoutError::ZeroPieceLength));
        assert!(matches!(
            Layout::standard(u64::MAX),
            Err(LayoutError::TooManyPieces { .. })
        ));
    }
}
