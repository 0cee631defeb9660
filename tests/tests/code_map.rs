//! `docs/ARCHITECTURE.md`'s code map names, for each crate, the Shoal crates it depends on
//! (issue 9, item 6): this test reads the manifests through `cargo metadata` and checks that
//! the table says the same, so the map cannot drift from the code.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

/// The word the code map uses for a Shoal package.
fn word(package: &str) -> &str {
    match package {
        "shoal-signal" => "signaling-server",
        "shoal-app" => "src-tauri",
        other => other.trim_start_matches("shoal-"),
    }
}

#[test]
fn the_code_map_names_each_crates_shoal_dependencies() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Package -> the Shoal packages it needs to build (normal dependencies, not dev).
    let mut manifests: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for package in metadata["packages"].as_array().unwrap() {
        let name = package["name"].as_str().unwrap().to_owned();
        let deps = package["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["kind"].is_null())
            .filter_map(|d| d["name"].as_str())
            .filter(|d| d.starts_with("shoal-"))
            .map(|d| word(d).to_owned())
            .collect();
        manifests.insert(name, deps);
    }

    let map = std::fs::read_to_string(root.join("docs/ARCHITECTURE.md")).unwrap();
    let mut rows = 0;
    for line in map.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split(" | ").collect();
        let Some(package) = cells[0].split('(').nth(1).and_then(|c| c.split('`').nth(1)) else {
            continue; // `ui`: not a crate
        };
        let Some(deps) = manifests.get(package) else {
            panic!("the code map names {package}, which is not a workspace package");
        };
        let said: BTreeSet<String> = cells[2]
            .split([',', ';', '(', ')', ' ', '|'])
            .filter(|w| manifests.keys().any(|p| word(p) == *w))
            .map(str::to_owned)
            .collect();
        assert_eq!(
            &said, deps,
            "docs/ARCHITECTURE.md's code map row for {package} says {said:?}; its Cargo.toml has {deps:?}"
        );
        rows += 1;
    }
    assert_eq!(rows, manifests.len(), "every workspace crate has a row");
}
