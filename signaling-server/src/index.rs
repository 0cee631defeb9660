//! The in-memory file index (seed 004: `files`, `node_files`), with a word index for search.
//!
//! Architecture invariant: nothing here touches a connection. The index sits behind its own
//! `RwLock`, apart from the relay path, so a search never holds up a relayed signal; every
//! query does bounded work (at most [`MAX_QUERY_WORDS`] words, candidates taken from the
//! rarest word's postings, results chosen with a linear selection before sorting).
//!
//! Nobody owns an info hash: each holder's claimed size is kept with it, the entry shows the
//! size most holders claim, and downloaders take the real size from the manifest, which the
//! info hash commits to (`docs/wire.md`). A squatter announcing a hash first with a wrong size
//! cannot keep an honest holder out.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use shoal_protocol::{
    Category, ErrorCode, FileAnnouncement, IndexedFile, InfoHash, MAX_LIST_RESULTS,
    MAX_SEARCH_RESULTS, NodeId,
};

/// Most distinct words a `search` query may have (docs/protocol.md §5).
pub(crate) const MAX_QUERY_WORDS: usize = 32;

/// Query results sorted by name (at most the protocol's limit) and the number that matched.
pub(crate) type Found = (Vec<IndexedFile>, u64);

struct Entry {
    name: String,
    /// `name` in lowercase, for ordering and the adjacency check of CJK query words.
    name_lower: String,
    /// The distinct words of `name_lower` ([`words`]), sorted, for prefix checks.
    words: Vec<Box<str>>,
    /// The size most holders claim, in bytes ([`Entry::update_size`]).
    size: u64,
    mime: String,
    category: Category,
    /// Each holder with what it claims; oldest announcement first.
    holders: Vec<Holder>,
}

/// One node holding an entry, with its claims.
struct Holder {
    node: NodeId,
    /// The size it claims, in bytes.
    size: u64,
    /// It holds only part of the file (a viewer still downloading).
    partial: bool,
}

impl Entry {
    /// Recomputes [`Entry::size`]: the size most holders claim; on a tie, the earliest
    /// holder's.
    fn update_size(&mut self) {
        let mut votes: HashMap<u64, usize> = HashMap::new();
        for h in &self.holders {
            *votes.entry(h.size).or_default() += 1;
        }
        let mut best: Option<(usize, u64)> = None;
        for h in &self.holders {
            let count = votes.get(&h.size).copied().unwrap_or(0);
            if best.is_none_or(|(most, _)| count > most) {
                best = Some((count, h.size));
            }
        }
        self.size = best.map_or(0, |(_, size)| size);
    }

    fn has_word_starting(&self, prefix: &str) -> bool {
        let at = self.words.partition_point(|w| &**w < prefix);
        self.words.get(at).is_some_and(|w| w.starts_with(prefix))
    }

    fn to_indexed(&self, info_hash: InfoHash) -> IndexedFile {
        IndexedFile {
            info_hash,
            name: self.name.clone(),
            size: self.size,
            mime: self.mime.clone(),
            category: self.category,
            holders: self
                .holders
                .iter()
                .filter(|h| !h.partial)
                .map(|h| h.node)
                .collect(),
            partial_holders: self
                .holders
                .iter()
                .filter(|h| h.partial)
                .map(|h| h.node)
                .collect(),
        }
    }
}

/// Characters searched one by one: scripts written without spaces between words (CJK
/// ideographs, kana, hangul), so a query word of two ideographs finds a longer name.
fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xAC00..=0xD7AF
        | 0xF900..=0xFAFF | 0x20000..=0x2FFFF)
}

/// The words of lowercase `text`: runs of letters and digits; each CJK character is a word of
/// its own. Everything else separates words.
pub(crate) fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for c in text.chars() {
        if is_cjk(c) {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            out.push(c.to_string());
        } else if c.is_alphanumeric() {
            current.push(c);
        } else if !current.is_empty() {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// The file index: entries, their holders, and the orders and postings queries use.
#[derive(Default)]
pub(crate) struct Index {
    files: HashMap<InfoHash, Entry>,
    /// Every entry in name order, for `list`.
    by_name: BTreeSet<(String, InfoHash)>,
    /// Entries per category in name order, for `list` with a category.
    by_category: HashMap<Category, BTreeSet<(String, InfoHash)>>,
    /// Word to the entries whose name has it.
    postings: BTreeMap<Box<str>, HashSet<InfoHash>>,
    /// What each node announced.
    node_files: HashMap<NodeId, HashSet<InfoHash>>,
    holders: u64,
    revision: u64,
}

impl Index {
    pub(crate) fn file_count(&self) -> usize {
        self.files.len()
    }

    pub(crate) fn holder_count(&self) -> u64 {
        self.holders
    }

    /// Increases with every change (the `revision` of `index_changed`).
    pub(crate) fn revision(&self) -> u64 {
        self.revision
    }

    /// Adds `files` under `node`, all or nothing. A known info hash gains `node` as a holder
    /// with the size it claims; the first announcement's name, MIME type and category stay.
    /// A file `node` already holds takes its new claims (a partial holder that completed
    /// announces again without `partial`).
    ///
    /// # Errors
    /// `limit_exceeded` past `max_files_per_node` for this node.
    pub(crate) fn announce(
        &mut self,
        node: NodeId,
        files: Vec<FileAnnouncement>,
        max_files_per_node: usize,
    ) -> Result<Vec<InfoHash>, (ErrorCode, String)> {
        let held = self.node_files.entry(node).or_default();
        let new: HashSet<InfoHash> = files
            .iter()
            .map(|f| f.info_hash)
            .filter(|h| !held.contains(h))
            .collect();
        if held.len() + new.len() > max_files_per_node {
            return Err((
                ErrorCode::LimitExceeded,
                format!(
                    "a node may hold at most {max_files_per_node} files in the index; this one has {} and announced {} more",
                    held.len(),
                    new.len()
                ),
            ));
        }
        held.extend(new.iter().copied());
        let mut accepted = Vec::with_capacity(files.len());
        let mut changed = !new.is_empty();
        for file in files {
            accepted.push(file.info_hash);
            if new.contains(&file.info_hash) {
                self.add_holder(node, file);
            } else {
                changed |= self.update_holder(node, &file);
            }
        }
        if changed {
            self.revision += 1;
        }
        Ok(accepted)
    }

    /// Takes a holder's new claims about a file it already holds; whether anything changed.
    fn update_holder(&mut self, node: NodeId, file: &FileAnnouncement) -> bool {
        let Some(entry) = self.files.get_mut(&file.info_hash) else {
            return false;
        };
        let Some(holder) = entry.holders.iter_mut().find(|h| h.node == node) else {
            return false;
        };
        if holder.size == file.size && holder.partial == file.partial {
            return false;
        }
        holder.size = file.size;
        holder.partial = file.partial;
        entry.update_size();
        true
    }

    fn add_holder(&mut self, node: NodeId, file: FileAnnouncement) {
        let info_hash = file.info_hash;
        let holder = Holder {
            node,
            size: file.size,
            partial: file.partial,
        };
        if let Some(entry) = self.files.get_mut(&info_hash) {
            if !entry.holders.iter().any(|h| h.node == node) {
                entry.holders.push(holder);
                entry.update_size();
                self.holders += 1;
            }
            return;
        }
        let name_lower = file.name.to_lowercase();
        let mut entry_words: Vec<Box<str>> =
            words(&name_lower).into_iter().map(Into::into).collect();
        entry_words.sort();
        entry_words.dedup();
        for word in &entry_words {
            self.postings
                .entry(word.clone())
                .or_default()
                .insert(info_hash);
        }
        self.by_name.insert((name_lower.clone(), info_hash));
        self.by_category
            .entry(file.category)
            .or_default()
            .insert((name_lower.clone(), info_hash));
        self.files.insert(
            info_hash,
            Entry {
                name: file.name,
                name_lower,
                words: entry_words,
                size: file.size,
                mime: file.mime,
                category: file.category,
                holders: vec![holder],
            },
        );
        self.holders += 1;
    }

    /// Removes `info_hashes` from `node`'s files. Returns whether the index changed.
    pub(crate) fn unannounce(&mut self, node: NodeId, info_hashes: &[InfoHash]) -> bool {
        let Some(held) = self.node_files.get_mut(&node) else {
            return false;
        };
        let removed: Vec<InfoHash> = info_hashes
            .iter()
            .filter(|h| held.remove(h))
            .copied()
            .collect();
        for info_hash in &removed {
            self.drop_holder(*info_hash, node);
        }
        if !removed.is_empty() {
            self.revision += 1;
        }
        !removed.is_empty()
    }

    /// Removes every file of `node` (it left). Returns whether the index changed.
    pub(crate) fn remove_node(&mut self, node: NodeId) -> bool {
        let Some(held) = self.node_files.remove(&node) else {
            return false;
        };
        let changed = !held.is_empty();
        for info_hash in held {
            self.drop_holder(info_hash, node);
        }
        if changed {
            self.revision += 1;
        }
        changed
    }

    fn drop_holder(&mut self, info_hash: InfoHash, node: NodeId) {
        let Some(entry) = self.files.get_mut(&info_hash) else {
            return;
        };
        if let Some(pos) = entry.holders.iter().position(|h| h.node == node) {
            entry.holders.remove(pos);
            entry.update_size();
            self.holders -= 1;
        }
        if !entry.holders.is_empty() {
            return;
        }
        let Some(entry) = self.files.remove(&info_hash) else {
            return;
        };
        let key = (entry.name_lower, info_hash);
        self.by_name.remove(&key);
        if let Some(set) = self.by_category.get_mut(&entry.category) {
            set.remove(&key);
        }
        for word in entry.words {
            if let Some(set) = self.postings.get_mut(&word) {
                set.remove(&info_hash);
                if set.is_empty() {
                    self.postings.remove(&word);
                }
            }
        }
    }

    /// Entries of `category` (or all) in name order: at most [`MAX_LIST_RESULTS`], and the
    /// number that matched.
    pub(crate) fn list(&self, category: Option<Category>) -> Found {
        let (ordered, total) = match category {
            None => (Some(&self.by_name), self.by_name.len()),
            Some(c) => {
                let set = self.by_category.get(&c);
                (set, set.map_or(0, BTreeSet::len))
            }
        };
        let files = ordered
            .into_iter()
            .flatten()
            .take(MAX_LIST_RESULTS)
            .filter_map(|(_, h)| self.files.get(h).map(|e| e.to_indexed(*h)))
            .collect();
        (files, total as u64)
    }

    /// Entries of `category` (or all) of which every word of `query` begins a word of the
    /// name, ignoring case; a query word with CJK characters must also occur as written. In
    /// name order: at most [`MAX_SEARCH_RESULTS`], and the number that matched.
    ///
    /// # Errors
    /// `limit_exceeded` for more than [`MAX_QUERY_WORDS`] distinct words.
    pub(crate) fn search(
        &self,
        query: &str,
        category: Option<Category>,
    ) -> Result<Found, (ErrorCode, String)> {
        let query_lower = query.to_lowercase();
        let mut query_words = words(&query_lower);
        query_words.sort();
        query_words.dedup();
        if query_words.len() > MAX_QUERY_WORDS {
            return Err((
                ErrorCode::LimitExceeded,
                format!(
                    "search query has {} distinct words; at most {MAX_QUERY_WORDS}",
                    query_words.len()
                ),
            ));
        }
        if query_words.is_empty() {
            let (mut files, total) = self.list(category);
            files.truncate(MAX_SEARCH_RESULTS);
            return Ok((files, total));
        }
        // White-space separated pieces with CJK characters must occur as written.
        let adjacent: Vec<&str> = query_lower
            .split_whitespace()
            .filter(|w| w.chars().any(is_cjk))
            .collect();
        // Candidates come from the word with the fewest postings; the others filter them.
        let mut rarest: Option<(usize, &str)> = None;
        for word in &query_words {
            let bound = rarest.map_or(usize::MAX, |(n, _)| n);
            let mut count = 0usize;
            for (_, set) in self.prefix_range(word) {
                count += set.len();
                if count >= bound {
                    break;
                }
            }
            if count < bound {
                rarest = Some((count, word));
            }
        }
        let Some((_, rarest)) = rarest else {
            return Ok((Vec::new(), 0));
        };
        let mut matched: Vec<(&str, InfoHash)> = Vec::new();
        let mut seen = HashSet::new();
        for (_, set) in self.prefix_range(rarest) {
            for info_hash in set {
                if !seen.insert(*info_hash) {
                    continue;
                }
                let Some(entry) = self.files.get(info_hash) else {
                    continue;
                };
                if category.is_some_and(|c| c != entry.category) {
                    continue;
                }
                if !query_words.iter().all(|w| entry.has_word_starting(w)) {
                    continue;
                }
                if !adjacent.iter().all(|w| entry.name_lower.contains(w)) {
                    continue;
                }
                matched.push((entry.name_lower.as_str(), *info_hash));
            }
        }
        let total = matched.len() as u64;
        if matched.len() > MAX_SEARCH_RESULTS {
            matched.select_nth_unstable(MAX_SEARCH_RESULTS);
            matched.truncate(MAX_SEARCH_RESULTS);
        }
        matched.sort_unstable();
        let files = matched
            .into_iter()
            .filter_map(|(_, h)| self.files.get(&h).map(|e| e.to_indexed(h)))
            .collect();
        Ok((files, total))
    }

    /// Postings of every word that begins with `prefix`.
    fn prefix_range<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a Box<str>, &'a HashSet<InfoHash>)> + 'a {
        self.postings
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(move |(word, _)| word.starts_with(prefix))
    }

    /// One entry, with every holder whatever size it claims.
    pub(crate) fn lookup(&self, info_hash: InfoHash) -> Option<IndexedFile> {
        self.files.get(&info_hash).map(|e| e.to_indexed(info_hash))
    }

    /// Forgets everything (server shutdown: seed 004, "服务器关闭时自动清空").
    pub(crate) fn clear(&mut self) {
        *self = Self {
            revision: self.revision,
            ..Self::default()
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(n: u8, name: &str, category: Category) -> FileAnnouncement {
        FileAnnouncement {
            info_hash: InfoHash::from_bytes([n; 32]),
            name: name.into(),
            size: 100 + u64::from(n),
            mime: "video/mp4".into(),
            category,
            partial: false,
        }
    }

    fn names(found: Found) -> Vec<String> {
        found.0.into_iter().map(|f| f.name).collect()
    }

    fn search(index: &Index, query: &str, category: Option<Category>) -> Vec<String> {
        names(
            index
                .search(query, category)
                .map_err(|e| e.1)
                .expect("search"),
        )
    }

    #[test]
    fn holders_come_and_go_with_their_nodes() {
        let mut index = Index::default();
        let (a, b) = (NodeId::random(), NodeId::random());
        index
            .announce(a, vec![file(1, "Holiday.mp4", Category::Video)], 10)
            .map_err(|e| e.1)
            .expect("announce");
        index
            .announce(b, vec![file(1, "other name.mp4", Category::Video)], 10)
            .map_err(|e| e.1)
            .expect("announce");
        let found = index
            .lookup(InfoHash::from_bytes([1; 32]))
            .expect("indexed");
        assert_eq!(found.holders, vec![a, b]);
        assert_eq!(found.name, "Holiday.mp4", "first name is kept");
        assert_eq!(index.holder_count(), 2);
        assert!(index.remove_node(a));
        assert_eq!(
            index
                .lookup(InfoHash::from_bytes([1; 32]))
                .map(|f| f.holders),
            Some(vec![b])
        );
        assert!(index.unannounce(b, &[InfoHash::from_bytes([1; 32])]));
        assert_eq!(index.file_count(), 0);
        assert_eq!(index.holder_count(), 0);
        assert!(index.list(None).0.is_empty());
        assert!(index.postings.is_empty(), "no word outlives its entries");
        assert!(index.by_category.values().all(BTreeSet::is_empty));
    }

    #[test]
    fn a_partial_holder_is_listed_apart_and_moves_when_it_completes() {
        let mut index = Index::default();
        let (seeder, viewer) = (NodeId::random(), NodeId::random());
        let hash = InfoHash::from_bytes([1; 32]);
        index
            .announce(seeder, vec![file(1, "film.mp4", Category::Video)], 10)
            .map_err(|e| e.1)
            .expect("announce");
        let partial = FileAnnouncement {
            partial: true,
            ..file(1, "film.mp4", Category::Video)
        };
        index
            .announce(viewer, vec![partial], 10)
            .map_err(|e| e.1)
            .expect("announce");
        let found = index.lookup(hash).expect("indexed");
        assert_eq!(found.holders, vec![seeder]);
        assert_eq!(found.partial_holders, vec![viewer]);
        assert_eq!(index.holder_count(), 2, "a partial holder is a holder");
        let revision = index.revision();
        // The viewer completes and announces again: it becomes a complete holder.
        index
            .announce(viewer, vec![file(1, "film.mp4", Category::Video)], 10)
            .map_err(|e| e.1)
            .expect("announce");
        assert!(index.revision() > revision, "the change is noticed");
        let found = index.lookup(hash).expect("indexed");
        assert_eq!(found.holders, vec![seeder, viewer]);
        assert!(found.partial_holders.is_empty());
        assert_eq!(index.holder_count(), 2);
        // The same claims again change nothing.
        let revision = index.revision();
        index
            .announce(viewer, vec![file(1, "film.mp4", Category::Video)], 10)
            .map_err(|e| e.1)
            .expect("announce");
        assert_eq!(index.revision(), revision);
        // The entry outlives its seeder while a partial holder stays.
        index.remove_node(seeder);
        index.remove_node(viewer);
        let partial = FileAnnouncement {
            partial: true,
            ..file(1, "film.mp4", Category::Video)
        };
        index
            .announce(viewer, vec![partial], 10)
            .map_err(|e| e.1)
            .expect("announce");
        let found = index.lookup(hash).expect("a file held in part is listed");
        assert!(found.holders.is_empty());
        assert_eq!(found.partial_holders, vec![viewer]);
    }

    #[test]
    fn search_needs_every_word_at_a_word_start_and_ignores_case() {
        let mut index = Index::default();
        let a = NodeId::random();
        index
            .announce(
                a,
                vec![
                    file(1, "Summer Holiday.MP4", Category::Video),
                    file(2, "holiday song.flac", Category::Audio),
                    file(3, "winter.jpg", Category::Image),
                    file(4, "假期视频.mp4", Category::Video),
                ],
                10,
            )
            .map_err(|e| e.1)
            .expect("announce");
        assert_eq!(
            search(&index, "HOLIDAY", None),
            vec!["holiday song.flac", "Summer Holiday.MP4"]
        );
        assert_eq!(search(&index, "holi mp4", None), vec!["Summer Holiday.MP4"]);
        assert_eq!(
            search(&index, "holiday", Some(Category::Audio)),
            vec!["holiday song.flac"]
        );
        assert!(
            search(&index, "oliday", None).is_empty(),
            "word starts only"
        );
        assert_eq!(search(&index, "视频", None), vec!["假期视频.mp4"]);
        assert!(
            search(&index, "频视", None).is_empty(),
            "CJK words must occur as written"
        );
        assert_eq!(names(index.list(Some(Category::Image))), vec!["winter.jpg"]);
        assert_eq!(index.list(Some(Category::Video)).1, 2);
    }

    #[test]
    fn a_query_with_too_many_words_is_refused_and_repeats_count_once() {
        let index = Index::default();
        let many: Vec<String> = (0..=MAX_QUERY_WORDS).map(|i| format!("w{i}")).collect();
        assert_eq!(
            index.search(&many.join(" "), None).map_err(|e| e.0),
            Err(ErrorCode::LimitExceeded)
        );
        let repeated = vec!["a"; 128].join(" ");
        assert!(index.search(&repeated, None).is_ok());
    }

    #[test]
    fn search_counts_every_match_but_returns_the_first_by_name() {
        let mut index = Index::default();
        for n in 0..150u8 {
            let node = NodeId::random();
            index
                .announce(
                    node,
                    vec![file(n, &format!("clip {n:03}.mp4"), Category::Video)],
                    10,
                )
                .map_err(|e| e.1)
                .expect("announce");
        }
        let (files, total) = index.search("clip", None).map_err(|e| e.1).expect("search");
        assert_eq!(total, 150);
        assert_eq!(files.len(), MAX_SEARCH_RESULTS);
        let shown: Vec<String> = files.into_iter().map(|f| f.name).collect();
        let expected: Vec<String> = (0..MAX_SEARCH_RESULTS)
            .map(|n| format!("clip {n:03}.mp4"))
            .collect();
        assert_eq!(shown, expected);
    }

    /// Issue 8, item 2: the first announcer does not own an info hash.
    #[test]
    fn a_squatter_with_a_wrong_size_cannot_keep_an_honest_holder_out() {
        let mut index = Index::default();
        let (squatter, honest, second) = (NodeId::random(), NodeId::random(), NodeId::random());
        let mut lie = file(1, "squatted", Category::Other);
        lie.size = 5;
        index
            .announce(squatter, vec![lie], 10)
            .map_err(|e| e.1)
            .expect("squatter announces");
        index
            .announce(honest, vec![file(1, "real.mp4", Category::Video)], 10)
            .map_err(|e| e.1)
            .expect("an honest holder is never refused");
        let found = index
            .lookup(InfoHash::from_bytes([1; 32]))
            .expect("indexed");
        assert_eq!(found.holders, vec![squatter, honest], "both are offered");
        assert_eq!(found.size, 5, "a tie shows the earliest claim");
        index
            .announce(second, vec![file(1, "real.mp4", Category::Video)], 10)
            .map_err(|e| e.1)
            .expect("announce");
        let found = index
            .lookup(InfoHash::from_bytes([1; 32]))
            .expect("indexed");
        assert_eq!(found.size, 101, "the size most holders claim");
        assert!(index.remove_node(squatter));
        assert_eq!(
            index
                .lookup(InfoHash::from_bytes([1; 32]))
                .map(|f| f.holders),
            Some(vec![honest, second])
        );
    }

    #[test]
    fn the_files_per_node_limit_refuses_the_whole_message() {
        let mut index = Index::default();
        let a = NodeId::random();
        let three = vec![
            file(1, "a", Category::Other),
            file(2, "b", Category::Other),
            file(3, "c", Category::Other),
        ];
        assert_eq!(
            index.announce(a, three, 2).map_err(|e| e.0),
            Err(ErrorCode::LimitExceeded)
        );
        assert_eq!(index.file_count(), 0);
        assert_eq!(index.revision(), 0);
    }

    #[test]
    fn words_split_on_punctuation_and_cjk() {
        assert_eq!(
            words("summer_holiday-2024.mp4"),
            vec!["summer", "holiday", "2024", "mp4"]
        );
        assert_eq!(words("假期ab视频"), vec!["假", "期", "ab", "视", "频"]);
        assert!(words(" .-_ ").is_empty());
    }
}
