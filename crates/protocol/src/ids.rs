//! Identifiers that cross the wire: node ids, connection ids and info hashes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseIdError {
    /// An info hash must be exactly 64 hexadecimal characters (SHA-256).
    #[error("an info hash is 64 hexadecimal characters, got {len} characters")]
    InfoHashLength {
        /// Length of the rejected string, in characters.
        len: usize,
    },
    /// An info hash held a character outside `0-9a-fA-F`.
    #[error("an info hash is hexadecimal, found {found:?}")]
    InfoHashDigit {
        /// The first offending character.
        found: char,
    },
    /// Not a UUID in any of the forms the `uuid` crate parses.
    #[error("not a UUID: {0}")]
    Uuid(String),
}

/// An anonymous node id assigned by the signaling server: a random UUID v4 (seed 004,
/// "自动匿名标识").
///
/// On the wire it is the hyphenated lowercase form, `"3f2c7a9e-…"`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(Uuid);

impl NodeId {
    /// A fresh random node id (UUID v4).
    pub fn random() -> Self {
        Self(Uuid::new_v4())
    }

    /// The first 8 hex digits, for logs and the UI (`peer = %id.short()`).
    pub fn short(&self) -> String {
        let mut s = self.0.simple().to_string();
        s.truncate(8);
        s
    }

    /// The UUID inside.
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.short())
    }
}

impl FromStr for NodeId {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s)
            .map(Self)
            .map_err(|e| ParseIdError::Uuid(e.to_string()))
    }
}

/// Names one peer connection between two nodes, chosen by the side that sends the SDP offer
/// (a random UUID). Two nodes may hold more than one peer connection at once, so every
/// `signal` carries the id of the connection it belongs to.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConnectionId(Uuid);

impl ConnectionId {
    /// A fresh random connection id (UUID v4).
    pub fn random() -> Self {
        Self(Uuid::new_v4())
    }

    /// The first 8 hex digits, for logs.
    pub fn short(&self) -> String {
        let mut s = self.0.simple().to_string();
        s.truncate(8);
        s
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl fmt::Debug for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnectionId({})", self.short())
    }
}

/// The content id of a shared file: SHA-256 of the file's canonical manifest (32 bytes).
///
/// The manifest lists the length, the piece length and every piece hash, so the info hash
/// commits to every byte (docs/ARCHITECTURE.md, "Content identity"; the term is BitTorrent's,
/// BEP 3). On the wire it is 64 lowercase hexadecimal characters; parsing also accepts
/// uppercase.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InfoHash([u8; 32]);

impl InfoHash {
    /// Length of an info hash in bytes.
    pub const LEN: usize = 32;

    /// Wraps 32 bytes of SHA-256 output.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The first 8 hex digits, for logs.
    pub fn short(&self) -> String {
        let mut s = self.to_string();
        s.truncate(8);
        s
    }
}

impl fmt::Display for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InfoHash({})", self.short())
    }
}

impl FromStr for InfoHash {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let len = s.chars().count();
        if len != 64 || s.len() != 64 {
            return Err(ParseIdError::InfoHashLength { len });
        }
        let mut out = [0u8; 32];
        let bytes = s.as_bytes();
        for (i, slot) in out.iter_mut().enumerate() {
            let hi = hex_digit(bytes[2 * i])?;
            let lo = hex_digit(bytes[2 * i + 1])?;
            *slot = (hi << 4) | lo;
        }
        Ok(Self(out))
    }
}

fn hex_digit(c: u8) -> Result<u8, ParseIdError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(ParseIdError::InfoHashDigit { found: c as char }),
    }
}

impl Serialize for InfoHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for InfoHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_hash_round_trips_through_hex() {
        let text = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        let hash: InfoHash = text.parse().expect("valid hex");
        assert_eq!(hash.to_string(), text);
        assert_eq!(hash.short(), "9f86d081");
        let upper: InfoHash = text.to_uppercase().parse().expect("uppercase is accepted");
        assert_eq!(upper, hash);
    }

    #[test]
    fn info_hash_rejects_bad_input() {
        assert_eq!(
            "abc".parse::<InfoHash>(),
            Err(ParseIdError::InfoHashLength { len: 3 })
        );
        let bad = format!("{}g", "0".repeat(63));
        assert_eq!(
            bad.parse::<InfoHash>(),
            Err(ParseIdError::InfoHashDigit { found: 'g' })
        );
        // 64 bytes but fewer characters: multi-byte UTF-8 must not slip through.
        let sneaky = format!("{}é", "0".repeat(62));
        assert!(sneaky.parse::<InfoHash>().is_err());
    }

    #[test]
    fn node_id_short_is_eight_hex_digits() {
        let id = NodeId::random();
        assert_eq!(id.short().len(), 8);
        assert!(id.to_string().starts_with(&id.short()));
        assert_eq!(id.to_string().parse::<NodeId>(), Ok(id));
    }
}
