//! Two "machines": the host and a Linux network namespace joined by a veth pair, so a
//! transfer crosses a real network with every front end's default sockets (every interface
//! plus loopback). Asserts (issue 7, item 15):
//! - the file arrives byte-identical over the LAN address;
//! - no ERROR line is printed: ICE checks every local socket against every remote candidate,
//!   and the pairs that cannot work (a loopback socket sending to a LAN address: EINVAL;
//!   another network: ENETUNREACH) were each logged by webrtc-rs at ERROR, dozens per
//!   transfer, although the connection worked.
//!
//! Needs root and iproute2 (`ip netns`), as CI has (scripts/deps.sh runs as root).

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use shoal_e2e::{Proc, bin, sha256_file};

/// A network namespace with a veth pair to the host: host side `10.213.<n>.1/24`, namespace
/// side `10.213.<n>.2/24`. Deleted (with its veth pair) on drop.
struct Netns {
    name: String,
    host_ip: String,
}

fn ip(args: &[&str]) {
    let status = Command::new("ip")
        .args(args)
        .status()
        .expect("iproute2 is installed");
    assert!(status.success(), "ip {args:?} failed (root is needed)");
}

impl Netns {
    fn new() -> Self {
        let n = std::process::id() % 250;
        let name = format!("shoal{}", std::process::id());
        let (host_if, ns_if) = (format!("shv{n}a"), format!("shv{n}b"));
        let host_ip = format!("10.213.{n}.1");
        let ns_ip = format!("10.213.{n}.2");
        // A run killed before its clean-up may have left a pair with this name.
        let _ = Command::new("ip")
            .args(["link", "del", &host_if])
            .stderr(std::process::Stdio::null())
            .status();
        ip(&["netns", "add", &name]);
        let ns = Self {
            name: name.clone(),
            host_ip: host_ip.clone(),
        };
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
        ]);
        ip(&["link", "set", &ns_if, "netns", &name]);
        ip(&["addr", "add", &format!("{host_ip}/24"), "dev", &host_if]);
        ip(&["link", "set", &host_if, "up"]);
        for args in [
            vec!["addr", "add", &format!("{ns_ip}/24"), "dev", &ns_if],
            vec!["link", "set", &ns_if, "up"],
            vec!["link", "set", "lo", "up"],
        ] {
            let mut all = vec!["netns", "exec", &name, "ip"];
            all.extend(args.iter().copied());
            ip(&all);
        }
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the veth pair, and so the pair.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn errors(lines: &[String]) -> Vec<&String> {
    lines
        .iter()
        .filter(|l| l.contains("ERROR") || l.contains("Failed to write packet"))
        .collect()
}

#[test]
fn a_transfer_across_a_real_network_prints_no_errors() {
    let ns = Netns::new();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lan.bin");
    let data: Vec<u8> = (0..6_000_000u32).map(|i| (i * 31 + i / 7) as u8).collect();
    std::fs::write(&file, &data).unwrap();

    let mut server = Proc::spawn(&bin("shoal-signal"), &["--listen", "0.0.0.0:0"]);
    let listening = server.stdout_lines(1).remove(0);
    let port = listening.rsplit(':').next().unwrap().to_owned();
    // Default sockets on both sides: no --bind.
    let mut seeder = Proc::spawn(
        &bin("shoal"),
        &[
            "seed",
            &file.display().to_string(),
            "--server",
            &format!("ws://127.0.0.1:{port}"),
        ],
    );
    let hash = seeder.stdout_lines(1)[0]
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let shoal = bin("shoal");
    let (ok, stdout, stderr) = Proc::spawn(
        Path::new("ip"),
        &[
            "netns",
            "exec",
            &ns.name,
            &shoal.display().to_string(),
            "get",
            &hash,
            "--out",
            &out.display().to_string(),
            "--server",
            &format!("ws://{}:{port}", ns.host_ip),
        ],
    )
    .finish();
    assert!(ok, "get across the veth pair failed: {stderr:#?}");
    assert_eq!(sha256_file(Path::new(stdout.trim())), sha256_file(&file));
    assert!(errors(&stderr).is_empty(), "{:#?}", errors(&stderr));
    seeder.terminate();
    let (_, _, seeded) = seeder.finish();
    assert!(errors(&seeded).is_empty(), "{:#?}", errors(&seeded));
    server.kill();
}
