//! What the app remembers between runs, beside `settings.json` in the config folder:
//! `shares.json` (the files the user shares) and `transfers.json` (downloads: unfinished ones
//! resume at start, finished ones stay listed until cleared). Both are written atomically
//! (temporary file, fsync, rename) whenever they change, so a crash or SIGKILL loses nothing
//! that was on screen before it. An unreadable file is kept aside as `<name>.bad` and the app
//! starts with an empty list.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use shoal_node::Category;

use crate::dto::{Problem, Share, Transfer, TransferState};

/// One share as remembered: enough to share it again and to show it when its file is gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RememberedShare {
    /// The file.
    pub path: PathBuf,
    /// Its content id when it was last shared, hex.
    pub info_hash: String,
    /// Display name.
    pub name: String,
    /// Length in bytes.
    pub size: u64,
    /// MIME type.
    pub mime: String,
    /// Category.
    pub category: Category,
}

impl From<&Share> for RememberedShare {
    fn from(s: &Share) -> Self {
        Self {
            path: s.path.clone(),
            info_hash: s.info_hash.clone(),
            name: s.name.clone(),
            size: s.size,
            mime: s.mime.clone(),
            category: s.category,
        }
    }
}

/// One download as remembered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RememberedTransfer {
    /// The app's id of the transfer (stable across runs).
    pub id: u64,
    /// Content id, hex.
    pub info_hash: String,
    /// File name.
    pub name: String,
    /// Folder it downloads into.
    pub out_dir: PathBuf,
    /// State when last saved; `running` means "resume at start".
    pub state: TransferState,
    /// File length in bytes.
    pub len_bytes: u64,
    /// Bytes verified when last saved.
    pub bytes_done: u64,
    /// The finished file.
    pub path: Option<PathBuf>,
    /// Why it waits or stopped.
    #[serde(default)]
    pub problem: Option<Problem>,
    /// The sentence files written before `problem` existed carry; read, never written.
    #[serde(default, skip_serializing)]
    pub error: Option<String>,
    /// Category.
    pub category: Category,
    /// MIME type.
    pub mime: String,
}

impl RememberedTransfer {
    /// From what the UI shows, and the folder it goes to.
    pub fn new(t: &Transfer, out_dir: PathBuf) -> Self {
        Self {
            id: t.id,
            info_hash: t.info_hash.clone(),
            name: t.name.clone(),
            out_dir,
            state: t.state,
            len_bytes: t.len_bytes,
            bytes_done: t.bytes_done,
            path: t.path.clone(),
            problem: t.problem.clone(),
            error: None,
            category: t.category,
            mime: t.mime.clone(),
        }
    }
}

/// The remembered lists and where they live.
#[derive(Debug)]
pub struct Library {
    dir: PathBuf,
}

const SHARES_FILE: &str = "shares.json";
const TRANSFERS_FILE: &str = "transfers.json";

impl Library {
    /// The library in the config folder `dir`.
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
        }
    }

    /// Remembered shares (empty when none, or the file is unreadable).
    pub fn shares(&self) -> Vec<RememberedShare> {
        load(&self.dir.join(SHARES_FILE))
    }

    /// Remembered transfers.
    pub fn transfers(&self) -> Vec<RememberedTransfer> {
        load(&self.dir.join(TRANSFERS_FILE))
    }

    /// Saves the shares.
    ///
    /// # Errors
    /// The file cannot be written; the sentence names it.
    pub fn save_shares(&self, shares: &[RememberedShare]) -> Result<(), String> {
        save(&self.dir, SHARES_FILE, &shares)
    }

    /// Saves the transfers.
    ///
    /// # Errors
    /// The file cannot be written; the sentence names it.
    pub fn save_transfers(&self, transfers: &[RememberedTransfer]) -> Result<(), String> {
        save(&self.dir, TRANSFERS_FILE, &transfers)
    }
}

fn load<T: DeserializeOwned>(path: &Path) -> Vec<T> {
    match std::fs::read(path) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(list) => list,
            Err(e) => {
                tracing::warn!(error = %e, path = %path.display(), "unreadable; starting empty and keeping it as .bad");
                let _ = std::fs::rename(path, path.with_extension("json.bad"));
                Vec::new()
            }
        },
        Err(_) => Vec::new(),
    }
}

/// Writes `value` as JSON to `<dir>/<name>` atomically: a temporary file in the same folder,
/// fsync, rename.
///
/// # Errors
/// The folder or the file cannot be written.
pub(crate) fn save_json(dir: &Path, name: &str, value: &impl Serialize) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_vec_pretty(value)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, &json)?;
    tmp.as_file().sync_all()?;
    tmp.persist(dir.join(name)).map_err(|e| e.error)?;
    Ok(())
}

fn save(dir: &Path, name: &str, value: &impl Serialize) -> Result<(), String> {
    save_json(dir, name, value)
        .map_err(|e| format!("cannot save {}: {e}", dir.join(name).display()))
}

/// Whether a remembered transfer should resume at start.
pub fn resumable(t: &RememberedTransfer) -> bool {
    matches!(t.state, TransferState::Running | TransferState::Waiting)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_and_transfers_round_trip_and_a_bad_file_is_kept_aside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let library = Library::new(dir.path());
        assert!(library.shares().is_empty());
        let share = RememberedShare {
            path: "/media/film.mkv".into(),
            info_hash: "ab".repeat(32),
            name: "film.mkv".into(),
            size: 10,
            mime: "video/x-matroska".into(),
            category: Category::Video,
        };
        library
            .save_shares(std::slice::from_ref(&share))
            .expect("save");
        assert_eq!(library.shares(), vec![share]);
        std::fs::write(dir.path().join(TRANSFERS_FILE), b"[{oops").expect("write");
        assert!(library.transfers().is_empty());
        assert!(dir.path().join("transfers.json.bad").exists());
    }
}
