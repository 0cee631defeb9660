//! The peer wire: binary messages on one ordered, reliable data channel (docs/wire.md §3).
//!
//! Every message is one data-channel message: a type byte, then a body with big-endian
//! integers. No message is ever larger than the channel's negotiated max message size
//! (RFC 8841): piece data and manifest bytes travel as chunks sized by [`chunk_len`].

use bytes::{BufMut, Bytes, BytesMut};
use shoal_protocol::InfoHash;

/// The four bytes that open a handshake.
pub const WIRE_MAGIC: &[u8; 4] = b"SHOL";

/// The peer wire version in the handshake.
pub const WIRE_VERSION: u8 = 1;

/// Bytes of a `piece` message before its data: type, piece (u32), offset (u32).
pub const PIECE_HEADER_BYTES: usize = 9;

/// Bytes of a `manifest_data` message before its data: type, total length (u32), offset (u32).
pub const MANIFEST_HEADER_BYTES: usize = 9;

/// Largest chunk of piece data per message: 128 KiB, so a 256 KiB piece is two messages when
/// the peer accepts 256 KiB messages.
pub const MAX_CHUNK_BYTES: usize = 128 * 1024;

/// Smallest max message size a peer may negotiate; below it a link is refused.
pub const MIN_MESSAGE_BYTES: usize = 1024;

/// Length of the data chunks sent on a link whose negotiated max message size is
/// `max_message_bytes`: the largest power of two that fits with the header, at most
/// [`MAX_CHUNK_BYTES`]. 262,144 gives 131,072; 65,536 (a peer that says nothing) gives 32,768.
pub fn chunk_len(max_message_bytes: usize) -> usize {
    let room = max_message_bytes.saturating_sub(PIECE_HEADER_BYTES.max(MANIFEST_HEADER_BYTES));
    if room == 0 {
        return 0;
    }
    let pow = 1usize << (usize::BITS - 1 - room.leading_zeros());
    pow.min(MAX_CHUNK_BYTES)
}

/// Why a piece request is refused (`reject` message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// The sender does not have the piece.
    NotHave,
    /// Too many requests are queued already; ask someone else or later.
    Busy,
    /// The sender cannot read the piece any more (its file changed).
    Unavailable,
    /// The sender does not have the manifest.
    NoManifest,
}

impl RejectReason {
    fn code(self) -> u8 {
        match self {
            Self::NotHave => 1,
            Self::Busy => 2,
            Self::Unavailable => 3,
            Self::NoManifest => 4,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => Self::NotHave,
            2 => Self::Busy,
            3 => Self::Unavailable,
            4 => Self::NoManifest,
            _ => return None,
        })
    }
}

/// Piece number used in a `reject` of a manifest request.
pub const MANIFEST_REJECT_PIECE: u32 = u32::MAX;

/// One peer wire message. Borrowed data points into the received buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireMessage<'a> {
    /// Type 0: first message on a channel, both ways.
    Handshake {
        /// Peer wire version.
        version: u8,
        /// The content this channel is about.
        info_hash: InfoHash,
    },
    /// Type 1: the pieces the sender has (BEP 3 bit order); empty when it has none or does
    /// not know the piece count yet.
    Bitfield(&'a [u8]),
    /// Type 2: the sender now has this piece.
    Have(u32),
    /// Type 3: please send this whole piece.
    Request(u32),
    /// Type 4: a chunk of a piece.
    Piece {
        /// Piece number.
        piece: u32,
        /// Offset of `data` within the piece, in bytes.
        offset: u32,
        /// The bytes.
        data: &'a [u8],
    },
    /// Type 5: forget my request for this piece.
    Cancel(u32),
    /// Type 6: I will not send this piece ([`MANIFEST_REJECT_PIECE`] for the manifest).
    Reject {
        /// Piece number.
        piece: u32,
        /// Why.
        reason: RejectReason,
    },
    /// Type 7: please send the manifest.
    ManifestRequest,
    /// Type 8: a chunk of the manifest's canonical bytes.
    ManifestData {
        /// Length of the whole manifest in bytes.
        total_len: u32,
        /// Offset of `data`, in bytes.
        offset: u32,
        /// The bytes.
        data: &'a [u8],
    },
}

/// Why bytes are not a peer wire message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Empty message.
    #[error("empty message")]
    Empty,
    /// Unknown type byte.
    #[error("unknown message type {0}")]
    UnknownType(u8),
    /// The body is shorter or longer than the type requires.
    #[error("message type {kind} has a body of {len} bytes")]
    BadLength {
        /// Type byte.
        kind: u8,
        /// Body length in bytes.
        len: usize,
    },
    /// The handshake magic is wrong.
    #[error("not a Shoal peer (bad handshake magic)")]
    BadMagic,
    /// Unknown reject reason code.
    #[error("unknown reject reason {0}")]
    BadReason(u8),
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl<'a> WireMessage<'a> {
    /// Parses one data-channel message.
    ///
    /// # Errors
    /// [`WireError`] for anything malformed; never panics.
    pub fn decode(message: &'a [u8]) -> Result<Self, WireError> {
        let (&kind, body) = message.split_first().ok_or(WireError::Empty)?;
        let need = |ok: bool| {
            if ok {
                Ok(())
            } else {
                Err(WireError::BadLength {
                    kind,
                    len: body.len(),
                })
            }
        };
        Ok(match kind {
            0 => {
                need(body.len() == 4 + 1 + 32)?;
                if &body[..4] != WIRE_MAGIC {
                    return Err(WireError::BadMagic);
                }
                let mut hash = [0u8; 32];
                hash.copy_from_slice(&body[5..37]);
                Self::Handshake {
                    version: body[4],
                    info_hash: InfoHash::from_bytes(hash),
                }
            }
            1 => Self::Bitfield(body),
            2 | 3 | 5 => {
                need(body.len() == 4)?;
                let piece = u32_at(body, 0);
                match kind {
                    2 => Self::Have(piece),
                    3 => Self::Request(piece),
                    _ => Self::Cancel(piece),
                }
            }
            4 => {
                need(body.len() >= 8)?;
                Self::Piece {
                    piece: u32_at(body, 0),
                    offset: u32_at(body, 4),
                    data: &body[8..],
                }
            }
            6 => {
                need(body.len() == 5)?;
                Self::Reject {
                    piece: u32_at(body, 0),
                    reason: RejectReason::from_code(body[4])
                        .ok_or(WireError::BadReason(body[4]))?,
                }
            }
            7 => {
                need(body.is_empty())?;
                Self::ManifestRequest
            }
            8 => {
                need(body.len() >= 8)?;
                Self::ManifestData {
                    total_len: u32_at(body, 0),
                    offset: u32_at(body, 4),
                    data: &body[8..],
                }
            }
            other => return Err(WireError::UnknownType(other)),
        })
    }

    /// Serialises the message.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.encoded_len());
        match self {
            Self::Handshake { version, info_hash } => {
                out.put_u8(0);
                out.put_slice(WIRE_MAGIC);
                out.put_u8(*version);
                out.put_slice(info_hash.as_bytes());
            }
            Self::Bitfield(bytes) => {
                out.put_u8(1);
                out.put_slice(bytes);
            }
            Self::Have(p) => {
                out.put_u8(2);
                out.put_u32(*p);
            }
            Self::Request(p) => {
                out.put_u8(3);
                out.put_u32(*p);
            }
            Self::Piece {
                piece,
                offset,
                data,
            } => {
                out.put_u8(4);
                out.put_u32(*piece);
                out.put_u32(*offset);
                out.put_slice(data);
            }
            Self::Cancel(p) => {
                out.put_u8(5);
                out.put_u32(*p);
            }
            Self::Reject { piece, reason } => {
                out.put_u8(6);
                out.put_u32(*piece);
                out.put_u8(reason.code());
            }
            Self::ManifestRequest => out.put_u8(7),
            Self::ManifestData {
                total_len,
                offset,
                data,
            } => {
                out.put_u8(8);
                out.put_u32(*total_len);
                out.put_u32(*offset);
                out.put_slice(data);
            }
        }
        out.freeze()
    }

    /// Length of [`WireMessage::encode`]'s output, in bytes.
    pub fn encoded_len(&self) -> usize {
        1 + match self {
            Self::Handshake { .. } => 37,
            Self::Bitfield(b) => b.len(),
            Self::Have(_) | Self::Request(_) | Self::Cancel(_) => 4,
            Self::Piece { data, .. } | Self::ManifestData { data, .. } => 8 + data.len(),
            Self::Reject { .. } => 5,
            Self::ManifestRequest => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_round_trips() {
        let hash = InfoHash::from_bytes([7; 32]);
        let data = [1u8, 2, 3];
        let messages = [
            WireMessage::Handshake {
                version: WIRE_VERSION,
                info_hash: hash,
            },
            WireMessage::Bitfield(&[0xff, 0x80]),
            WireMessage::Bitfield(&[]),
            WireMessage::Have(5),
            WireMessage::Request(6),
            WireMessage::Piece {
                piece: 7,
                offset: 131_072,
                data: &data,
            },
            WireMessage::Cancel(8),
            WireMessage::Reject {
                piece: 9,
                reason: RejectReason::Busy,
            },
            WireMessage::ManifestRequest,
            WireMessage::ManifestData {
                total_len: 100,
                offset: 3,
                data: &data,
            },
        ];
        for m in messages {
            let bytes = m.encode();
            assert_eq!(bytes.len(), m.encoded_len());
            assert_eq!(WireMessage::decode(&bytes), Ok(m));
        }
    }

    #[test]
    fn documented_bytes() {
        // docs/wire.md §3 examples.
        assert_eq!(WireMessage::Have(258).encode().as_ref(), &[2, 0, 0, 1, 2]);
        assert_eq!(
            WireMessage::Reject {
                piece: 1,
                reason: RejectReason::NotHave
            }
            .encode()
            .as_ref(),
            &[6, 0, 0, 0, 1, 1]
        );
        let handshake = WireMessage::Handshake {
            version: 1,
            info_hash: InfoHash::from_bytes([0xab; 32]),
        }
        .encode();
        assert_eq!(&handshake[..6], &[0, b'S', b'H', b'O', b'L', 1]);
        assert_eq!(handshake.len(), 38);
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        assert_eq!(WireMessage::decode(&[]), Err(WireError::Empty));
        assert_eq!(WireMessage::decode(&[99]), Err(WireError::UnknownType(99)));
        assert!(WireMessage::decode(&[2, 0, 0]).is_err());
        assert!(WireMessage::decode(&[4, 0, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(WireMessage::decode(&[6, 0, 0, 0, 1, 77]).is_err());
        let mut bad_magic = vec![0u8; 38];
        bad_magic[1] = b'X';
        assert_eq!(WireMessage::decode(&bad_magic), Err(WireError::BadMagic));
        // Every prefix of every valid message decodes or errors without panicking.
        let full = WireMessage::Piece {
            piece: 1,
            offset: 2,
            data: &[9; 20],
        }
        .encode();
        for n in 0..full.len() {
            let _ = WireMessage::decode(&full[..n]);
        }
    }

    #[test]
    fn chunk_len_fits_the_negotiated_size() {
        assert_eq!(chunk_len(262_144), 131_072);
        assert_eq!(chunk_len(65_536), 32_768);
        assert_eq!(chunk_len(1024), 512);
        assert_eq!(chunk_len(5), 0);
        for mms in [1024usize, 5000, 65_536, 100_000, 262_144] {
            assert!(chunk_len(mms) + PIECE_HEADER_BYTES <= mms);
        }
    }
}
