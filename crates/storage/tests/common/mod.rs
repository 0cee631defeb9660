//! Helpers shared by the integration tests: deterministic random bytes, a manifest computed
//! by hand (without the crate's hashing code), and a listing of a folder tree.

#![allow(dead_code)] // each test file uses a subset

use std::path::{Path, PathBuf};

use shoal_storage::{Layout, Manifest, PIECE_LEN, sha256};

/// `len` pseudo-random bytes from `seed` (splitmix64): reproducible, incompressible enough.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The manifest of `data`, computed directly: one SHA-256 per 256 KiB slice.
pub fn manifest_by_hand(data: &[u8]) -> Manifest {
    let layout = Layout::standard(data.len() as u64).expect("layout");
    let hashes = data.chunks(PIECE_LEN as usize).map(sha256).collect();
    Manifest::new(layout, hashes).expect("manifest")
}

/// The bytes of piece `i` of `data`.
pub fn piece_of(data: &[u8], i: u32) -> &[u8] {
    let start = i as usize * PIECE_LEN as usize;
    &data[start..(start + PIECE_LEN as usize).min(data.len())]
}

/// Every path under `root` (not following links), relative to it, sorted.
pub fn tree(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("list") {
            let entry = entry.expect("entry");
            let path = entry.path();
            out.push(path.strip_prefix(root).expect("under root").to_owned());
            if entry.file_type().expect("type").is_dir() {
                stack.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The names of the entries directly in `dir`, sorted.
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
