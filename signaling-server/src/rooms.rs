//! Rooms (docs/protocol.md §8; issue 11): a host opens a room on a piece of media, members
//! join by a short code or a long link, and the server relays what they say to each other,
//! stamping the sender and refusing host-only messages from anyone but the host.
//!
//! The host's leaving (`leave_room`) ends the room. The host's connection dropping does not
//! at once: the room waits [`crate::Config::room_host_grace`] for the host to come back with
//! its host key (node ids are per connection), so a crash or a network change does not end
//! a watch party. The host's last playback state is kept and handed to every member that
//! joins, so a member that reconnects is in step at once.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use rand::Rng;
use shoal_protocol::{ErrorCode, InfoHash, NodeId, RoomBody, RoomInfo};

/// Members of one room, the host included.
pub(crate) const MAX_MEMBERS: usize = 64;
/// Rooms one node may be in (hosting or not).
pub(crate) const MAX_ROOMS_PER_NODE: usize = 8;

/// Crockford's base 32 (no I, L, O, U): what a code is made of.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Characters of a code: 40 bits.
const CODE_CHARS: usize = 8;

/// A code as people may type it, in its canonical `XXXX-XXXX` form: case, dashes and spaces
/// do not matter, and O, I and L read as 0, 1 and 1 (Crockford). `None` if it is not one.
pub(crate) fn normalise_code(text: &str) -> Option<String> {
    let chars: Vec<u8> = text
        .bytes()
        .filter(|c| !matches!(c, b'-' | b' '))
        .map(|c| match c.to_ascii_uppercase() {
            b'O' => b'0',
            b'I' | b'L' => b'1',
            other => other,
        })
        .collect();
    if chars.len() != CODE_CHARS || !chars.iter().all(|c| ALPHABET.contains(c)) {
        return None;
    }
    let text = String::from_utf8(chars).ok()?;
    Some(format!("{}-{}", &text[..4], &text[4..]))
}

fn random_code(rng: &mut impl Rng) -> String {
    let chars: String = (0..CODE_CHARS)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect();
    format!("{}-{}", &chars[..4], &chars[4..])
}

fn random_hex128(rng: &mut impl Rng) -> String {
    format!("{:032x}", rng.random::<u128>())
}

struct Room {
    link: String,
    host_key: String,
    info_hash: InfoHash,
    host: Option<NodeId>,
    members: Vec<NodeId>,
    playback: Option<RoomBody>,
    /// The host's connection dropped at this time; the room waits for it.
    orphaned_at: Option<Instant>,
}

/// What members must be told after a change.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Change {
    /// The member list of `code` is now this; tell `notify`.
    Members {
        code: String,
        host: Option<NodeId>,
        members: Vec<NodeId>,
        notify: Vec<NodeId>,
    },
    /// `code` ended; tell `notify`.
    Closed {
        code: String,
        reason: String,
        notify: Vec<NodeId>,
    },
}

type Refusal = (ErrorCode, String);

/// Every room of the server.
#[derive(Default)]
pub(crate) struct Rooms {
    by_code: HashMap<String, Room>,
    by_link: HashMap<String, String>,
    of_node: HashMap<NodeId, BTreeSet<String>>,
}

impl Rooms {
    #[cfg(test)]
    pub(crate) fn count(&self) -> usize {
        self.by_code.len()
    }

    fn info(&self, code: &str, for_host: bool) -> Option<RoomInfo> {
        let room = self.by_code.get(code)?;
        Some(RoomInfo {
            code: code.to_owned(),
            link: room.link.clone(),
            info_hash: room.info_hash,
            host: room.host,
            members: room.members.clone(),
            host_key: for_host.then(|| room.host_key.clone()),
            playback: room.playback.clone(),
        })
    }

    fn room_count_of(&self, node: NodeId) -> usize {
        self.of_node.get(&node).map_or(0, BTreeSet::len)
    }

    /// A new room with `host` as its host.
    pub(crate) fn create(
        &mut self,
        host: NodeId,
        info_hash: InfoHash,
    ) -> Result<RoomInfo, Refusal> {
        if self.room_count_of(host) >= MAX_ROOMS_PER_NODE {
            return Err((
                ErrorCode::LimitExceeded,
                format!("a node may be in at most {MAX_ROOMS_PER_NODE} rooms"),
            ));
        }
        let mut rng = rand::rng();
        let code = loop {
            let code = random_code(&mut rng);
            if !self.by_code.contains_key(&code) {
                break code;
            }
        };
        let link = random_hex128(&mut rng);
        self.by_link.insert(link.clone(), code.clone());
        self.by_code.insert(
            code.clone(),
            Room {
                link,
                host_key: random_hex128(&mut rng),
                info_hash,
                host: Some(host),
                members: vec![host],
                playback: None,
                orphaned_at: None,
            },
        );
        self.of_node.entry(host).or_default().insert(code.clone());
        self.info(&code, true)
            .ok_or((ErrorCode::UnknownRoom, "the room vanished".into()))
    }

    /// The code a code or link names, if the room exists.
    fn find(&self, text: &str) -> Option<String> {
        let text = text.trim();
        if let Some(code) = self.by_link.get(&text.to_ascii_lowercase()) {
            return Some(code.clone());
        }
        normalise_code(text).filter(|c| self.by_code.contains_key(c))
    }

    /// `node` joins the room `text` names (with `host_key`: as its host). Answers the room
    /// as `node` sees it and the change to tell the others.
    pub(crate) fn join(
        &mut self,
        node: NodeId,
        text: &str,
        host_key: Option<&str>,
    ) -> Result<(RoomInfo, Option<Change>), Refusal> {
        let unknown = || {
            (
                ErrorCode::UnknownRoom,
                "no room has this code or link".to_owned(),
            )
        };
        let code = self.find(text).ok_or_else(unknown)?;
        let in_rooms = self.room_count_of(node);
        let room = self.by_code.get_mut(&code).ok_or_else(unknown)?;
        let already = room.members.contains(&node);
        if !already {
            if room.members.len() >= MAX_MEMBERS {
                return Err((
                    ErrorCode::LimitExceeded,
                    format!("the room is full ({MAX_MEMBERS} members)"),
                ));
            }
            if in_rooms >= MAX_ROOMS_PER_NODE {
                return Err((
                    ErrorCode::LimitExceeded,
                    format!("a node may be in at most {MAX_ROOMS_PER_NODE} rooms"),
                ));
            }
        }
        let as_host = match host_key {
            None => false,
            Some(key) if key == room.host_key => true,
            Some(_) => {
                return Err((
                    ErrorCode::NotHost,
                    "the host key does not open this room".into(),
                ));
            }
        };
        if !already {
            room.members.push(node);
        }
        if as_host {
            room.host = Some(node);
            room.orphaned_at = None;
        }
        self.of_node.entry(node).or_default().insert(code.clone());
        let change = self.members_change(&code, Some(node));
        let info = self.info(&code, as_host).ok_or_else(unknown)?;
        Ok((info, change))
    }

    /// The member list of `code`, to tell everyone but `except`.
    fn members_change(&self, code: &str, except: Option<NodeId>) -> Option<Change> {
        let room = self.by_code.get(code)?;
        Some(Change::Members {
            code: code.to_owned(),
            host: room.host,
            members: room.members.clone(),
            notify: room
                .members
                .iter()
                .copied()
                .filter(|m| Some(*m) != except)
                .collect(),
        })
    }

    fn close(&mut self, code: &str, reason: &str) -> Option<Change> {
        let room = self.by_code.remove(code)?;
        self.by_link.remove(&room.link);
        for member in &room.members {
            if let Some(rooms) = self.of_node.get_mut(member) {
                rooms.remove(code);
                if rooms.is_empty() {
                    self.of_node.remove(member);
                }
            }
        }
        Some(Change::Closed {
            code: code.to_owned(),
            reason: reason.to_owned(),
            notify: room.members,
        })
    }

    fn remove_member(&mut self, node: NodeId, code: &str) {
        if let Some(room) = self.by_code.get_mut(code) {
            room.members.retain(|m| *m != node);
        }
        if let Some(rooms) = self.of_node.get_mut(&node) {
            rooms.remove(code);
            if rooms.is_empty() {
                self.of_node.remove(&node);
            }
        }
    }

    /// `node` leaves `code` on purpose: the host's leaving ends the room.
    pub(crate) fn leave(&mut self, node: NodeId, code: &str) -> Result<Option<Change>, Refusal> {
        let code = normalise_code(code).unwrap_or_else(|| code.to_owned());
        let Some(room) = self.by_code.get(&code) else {
            return Err((ErrorCode::UnknownRoom, "no room has this code".into()));
        };
        if !room.members.contains(&node) {
            return Err((ErrorCode::UnknownRoom, "not a member of this room".into()));
        }
        if room.host == Some(node) {
            return Ok(self.close(&code, "the host ended the room"));
        }
        self.remove_member(node, &code);
        Ok(self.members_change(&code, None))
    }

    /// `node`'s connection is gone: it leaves every room; a room it hosts waits for the
    /// host to come back (or ends now if nobody else is in it).
    pub(crate) fn node_gone(&mut self, node: NodeId, now: Instant) -> Vec<Change> {
        let codes: Vec<String> = self
            .of_node
            .get(&node)
            .map(|c| c.iter().cloned().collect())
            .unwrap_or_default();
        let mut changes = Vec::new();
        for code in codes {
            self.remove_member(node, &code);
            let Some(room) = self.by_code.get_mut(&code) else {
                continue;
            };
            if room.host == Some(node) {
                room.host = None;
                room.orphaned_at = Some(now);
            }
            if room.members.is_empty() {
                // Nobody left to tell or to wait with.
                self.close(&code, "everyone left");
            } else {
                changes.extend(self.members_change(&code, None));
            }
        }
        changes
    }

    /// Ends the rooms whose host has been gone for `grace` or longer.
    pub(crate) fn expire(&mut self, now: Instant, grace: std::time::Duration) -> Vec<Change> {
        let due: Vec<String> = self
            .by_code
            .iter()
            .filter(|(_, r)| {
                r.orphaned_at
                    .is_some_and(|t| now.duration_since(t) >= grace)
            })
            .map(|(c, _)| c.clone())
            .collect();
        due.iter()
            .filter_map(|code| self.close(code, "the host did not come back"))
            .collect()
    }

    /// Who gets what `node` says to `code`: everyone else, or `to`. Keeps the host's last
    /// playback for members that join later.
    pub(crate) fn send(
        &mut self,
        node: NodeId,
        code: &str,
        to: Option<NodeId>,
        body: &RoomBody,
    ) -> Result<(String, Vec<NodeId>), Refusal> {
        let code = normalise_code(code).unwrap_or_else(|| code.to_owned());
        let Some(room) = self.by_code.get_mut(&code) else {
            return Err((ErrorCode::UnknownRoom, "no room has this code".into()));
        };
        if !room.members.contains(&node) {
            return Err((ErrorCode::UnknownRoom, "not a member of this room".into()));
        }
        if body.host_only() && room.host != Some(node) {
            return Err((
                ErrorCode::NotHost,
                "only the room's host may change its playback".into(),
            ));
        }
        if matches!(body, RoomBody::Playback { .. }) {
            room.playback = Some(body.clone());
        }
        let recipients = match to {
            Some(member) if room.members.contains(&member) && member != node => vec![member],
            Some(_) => {
                return Err((ErrorCode::UnknownRoom, "no such member in this room".into()));
            }
            None => room
                .members
                .iter()
                .copied()
                .filter(|m| *m != node)
                .collect(),
        };
        Ok((code, recipients))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{Change, Rooms, normalise_code};
    use shoal_protocol::{ErrorCode, InfoHash, NodeId, RoomBody};
    use std::time::{Duration, Instant};

    fn playback() -> RoomBody {
        RoomBody::Playback {
            playing: true,
            position_ms: 1000.0,
            rate: 1.0,
            at_ms: 5.0,
        }
    }

    #[test]
    fn codes_are_read_as_people_type_them() {
        assert_eq!(normalise_code("k7m3-xq9p").as_deref(), Some("K7M3-XQ9P"));
        assert_eq!(normalise_code(" K7M3 XQ9P ").as_deref(), Some("K7M3-XQ9P"));
        assert_eq!(normalise_code("OIL0-0000").as_deref(), Some("0110-0000"));
        assert_eq!(normalise_code("K7M3-XQ9"), None);
        assert_eq!(
            normalise_code("K7M3-XQ9U"),
            None,
            "U is not in the alphabet"
        );
        assert_eq!(normalise_code("ÅÅÅÅ-ÅÅÅÅ"), None);
    }

    #[test]
    fn only_the_host_changes_playback_and_a_returning_host_takes_the_room_back() {
        let mut rooms = Rooms::default();
        let (host, viewer) = (NodeId::random(), NodeId::random());
        let info = rooms.create(host, InfoHash::from_bytes([1; 32])).unwrap();
        let key = info.host_key.clone().unwrap();
        let (seen, change) = rooms.join(viewer, &info.link, None).unwrap();
        assert_eq!(seen.host_key, None, "only the host gets the key");
        assert!(matches!(change, Some(Change::Members { ref notify, .. }) if notify == &[host]));
        let refused = rooms
            .send(viewer, &info.code, None, &playback())
            .unwrap_err();
        assert_eq!(refused.0, ErrorCode::NotHost);
        let (_, to) = rooms.send(host, &info.code, None, &playback()).unwrap();
        assert_eq!(to, [viewer]);
        // The host's connection drops; a new one comes back with the key.
        let t0 = Instant::now();
        rooms.node_gone(host, t0);
        assert!(
            rooms
                .expire(t0 + Duration::from_secs(1), Duration::from_secs(30))
                .is_empty()
        );
        let again = NodeId::random();
        assert_eq!(
            rooms.join(again, &info.code, Some("nope")).unwrap_err().0,
            ErrorCode::NotHost
        );
        let (back, _) = rooms.join(again, &info.code, Some(&key)).unwrap();
        assert_eq!(back.host, Some(again));
        assert_eq!(back.playback, Some(playback()), "the last state is kept");
        // Gone for good: the room ends after the grace.
        rooms.node_gone(again, t0);
        let closed = rooms.expire(t0 + Duration::from_secs(30), Duration::from_secs(30));
        assert!(matches!(&closed[..], [Change::Closed { notify, .. }] if notify == &[viewer]));
        assert_eq!(rooms.count(), 0);
    }
}
