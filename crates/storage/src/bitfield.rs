//! Which pieces a node has: one bit per piece, high bit of the first byte is piece 0
//! (BitTorrent BEP 3 `bitfield`).

use crate::layout::PieceIndex;

/// Why bytes are not a bitfield for a given piece count.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BitfieldError {
    /// The byte length is not `ceil(piece_count / 8)`.
    #[error("a bitfield of {piece_count} pieces is {expected} bytes, got {got}")]
    Length {
        /// Pieces the bitfield must describe.
        piece_count: u32,
        /// Bytes expected.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
    /// A bit past the last piece is set.
    #[error("bits past the last piece are set")]
    SpareBits,
}

/// A set of pieces, stored as BEP 3 bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Bitfield {
    bytes: Vec<u8>,
    piece_count: u32,
    ones: u32,
}

impl std::fmt::Debug for Bitfield {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bitfield({}/{})", self.ones, self.piece_count)
    }
}

impl Bitfield {
    /// No piece set.
    pub fn empty(piece_count: u32) -> Self {
        Self {
            bytes: vec![0; (piece_count as usize).div_ceil(8)],
            piece_count,
            ones: 0,
        }
    }

    /// Every piece set.
    pub fn full(piece_count: u32) -> Self {
        let mut field = Self::empty(piece_count);
        for i in 0..piece_count {
            field.set_raw(i);
        }
        field
    }

    /// Parses BEP 3 bytes for `piece_count` pieces.
    ///
    /// # Errors
    /// [`BitfieldError`] for a wrong length or spare bits set.
    pub fn from_bytes(bytes: &[u8], piece_count: u32) -> Result<Self, BitfieldError> {
        let expected = (piece_count as usize).div_ceil(8);
        if bytes.len() != expected {
            return Err(BitfieldError::Length {
                piece_count,
                expected,
                got: bytes.len(),
            });
        }
        let spare = expected * 8 - piece_count as usize;
        if spare > 0 && bytes[expected - 1] & ((1u8 << spare) - 1) != 0 {
            return Err(BitfieldError::SpareBits);
        }
        let ones = bytes.iter().map(|b| b.count_ones()).sum();
        Ok(Self {
            bytes: bytes.to_vec(),
            piece_count,
            ones,
        })
    }

    /// The BEP 3 bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Pieces described.
    pub fn piece_count(&self) -> u32 {
        self.piece_count
    }

    /// Pieces set.
    pub fn count(&self) -> u32 {
        self.ones
    }

    /// Whether every piece is set.
    pub fn is_full(&self) -> bool {
        self.ones == self.piece_count
    }

    /// Whether `piece` is set.
    pub fn has(&self, piece: PieceIndex) -> bool {
        self.has_raw(piece.get())
    }

    /// Whether piece number `i` is set; false past the end.
    pub fn has_raw(&self, i: u32) -> bool {
        i < self.piece_count && self.bytes[(i / 8) as usize] & (0x80 >> (i % 8)) != 0
    }

    /// Sets `piece`; returns whether it was newly set.
    pub fn set(&mut self, piece: PieceIndex) -> bool {
        self.set_raw(piece.get())
    }

    fn set_raw(&mut self, i: u32) -> bool {
        if i >= self.piece_count || self.has_raw(i) {
            return false;
        }
        self.bytes[(i / 8) as usize] |= 0x80 >> (i % 8);
        self.ones += 1;
        true
    }

    /// Clears piece number `i`; returns whether it was set.
    pub fn clear_raw(&mut self, i: u32) -> bool {
        if !self.has_raw(i) {
            return false;
        }
        self.bytes[(i / 8) as usize] &= !(0x80 >> (i % 8));
        self.ones -= 1;
        true
    }

    /// Numbers of the pieces set, ascending.
    pub fn iter_set(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.piece_count).filter(|i| self.has_raw(*i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Layout;

    #[test]
    fn bit_order_is_bep3() {
        let layout = Layout::new(10 * 16, 16).expect("layout");
        let mut field = Bitfield::empty(10);
        assert!(field.set(layout.piece_index(0).expect("valid")));
        assert!(field.set(layout.piece_index(9).expect("valid")));
        assert!(
            !field.set(layout.piece_index(9).expect("valid")),
            "already set"
        );
        assert_eq!(field.as_bytes(), &[0b1000_0000, 0b0100_0000]);
        assert_eq!(field.count(), 2);
        let parsed = Bitfield::from_bytes(field.as_bytes(), 10).expect("round trip");
        assert_eq!(parsed, field);
        assert_eq!(field.iter_set().collect::<Vec<_>>(), vec![0, 9]);
    }

    #[test]
    fn rejects_wrong_length_and_spare_bits() {
        assert!(matches!(
            Bitfield::from_bytes(&[0xff], 10),
            Err(BitfieldError::Length { .. })
        ));
        assert_eq!(
            Bitfield::from_bytes(&[0xff, 0xff], 10),
            Err(BitfieldError::SpareBits)
        );
        assert!(Bitfield::from_bytes(&[0xff, 0xc0], 10).is_ok_and(|f| f.is_full()));
        assert!(Bitfield::full(10).is_full());
        assert_eq!(Bitfield::full(0).count(), 0);
    }
}
