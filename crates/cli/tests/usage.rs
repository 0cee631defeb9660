//! The `shoal` binary's usage: every subcommand and network flag is documented in `--help`,
//! and bad arguments exit with code 2 and a message (never a panic).

use std::process::Command;

fn shoal(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(args)
        .output()
        .expect("run shoal")
}

#[test]
fn help_lists_every_command_and_flag() {
    let out = shoal(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for word in [
        "seed",
        "ls",
        "search",
        "get",
        "bench",
        "--server",
        "--stun",
        "--turn",
        "--bind",
        "--connections-per-peer",
    ] {
        assert!(help.contains(word), "--help lacks {word}:\n{help}");
    }
}

#[test]
fn a_malformed_info_hash_is_a_usage_error() {
    let out = shoal(&["get", "xyz"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("info hash"), "{err}");
}

#[test]
fn an_unknown_category_is_a_usage_error() {
    let out = shoal(&["ls", "--category", "podcasts"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("audio, video, image or other"), "{err}");
}
