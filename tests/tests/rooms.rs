//! `shoal room` (issue 11): a host and headless members over a real `shoal-signal`, real
//! `shoal` processes and real webrtc on 127.0.0.1, on a real MP4. Properties asserted:
//! - a member that joins by code follows the host's play, seek to 60 %, pause and play: its
//!   headless player (reading the stream over HTTP like a media player) is within 100 ms of
//!   the host's position each time;
//! - a member whose download is capped below the video's bitrate makes the room wait for it
//!   ("waiting for Bob (buffering, N %)") and the room plays on by itself once it has data;
//! - the host's `quit` ends the room; the member says so and exits 0;
//! - a member whose signaling connection drops joins the room again by itself and follows
//!   a seek the host made meanwhile.
//!
//! Prints the member's drift while it follows and the time from the host's seek until the
//! member is within 100 ms.

#![allow(clippy::unwrap_used)]

use std::time::Instant;

use shoal_e2e::{Follow, Proc, SignalServer, parse_follow, shoal};

/// Waits for a follow line satisfying `pred`; returns it.
fn wait_follow(member: &mut Proc, mut pred: impl FnMut(&Follow) -> bool) -> Follow {
    let line = member.wait_line(|l| parse_follow(l).is_some_and(|f| pred(&f)));
    parse_follow(&line).unwrap()
}

fn in_step(f: &Follow) -> bool {
    f.drift_ms.is_some_and(|d| d.abs() <= 100.0)
}

#[test]
fn members_follow_the_hosts_play_seek_and_pause_and_the_room_waits_for_a_slow_member() {
    let media = shoal_e2e::mp4_360p_120s();
    let server = SignalServer::start();
    let media_arg = media.display().to_string();
    let mut host = shoal(
        &server.url,
        &[
            "room",
            "host",
            &media_arg,
            "--name",
            "Host",
            "--wait-timeout",
            "100s",
        ],
    );
    let lines = host.stdout_lines(2);
    let code = lines[0].strip_prefix("room ").unwrap().to_owned();
    assert_eq!(code.len(), 9, "{lines:?}");
    assert!(lines[1].starts_with("link "), "{lines:?}");

    let out = tempfile::tempdir().unwrap();
    let out_arg = out.path().join("ana");
    std::fs::create_dir(&out_arg).unwrap();
    let out_arg = out_arg.display().to_string();
    let mut ana = shoal(
        &server.url,
        &[
            "room", "join", &code, "--follow", "--out", &out_arg, "--name", "Ana",
        ],
    );
    assert_eq!(ana.stdout_lines(1), [format!("room {code}")]);
    // Paused with the host at 0, with data.
    wait_follow(&mut ana, |f| f.state == "paused" && in_step(f));
    host.wait_line(|l| l.starts_with("member Ana paused"));

    host.send_line("play");
    let f = wait_follow(&mut ana, |f| {
        f.state == "playing" && f.position_s >= 1.0 && in_step(f)
    });
    println!("playing: {f:?}");
    // Steady state: the next five seconds stay within 100 ms.
    let mut drifts = Vec::new();
    while drifts.len() < 5 {
        let f = wait_follow(&mut ana, |_| true);
        assert_eq!(f.state, "playing", "{f:?}");
        assert!(in_step(&f), "{f:?}");
        drifts.push(f.drift_ms.unwrap());
    }
    println!("drift while playing, ms: {drifts:?}");

    // Seek to 60 % of 120 s.
    let sought = Instant::now();
    host.send_line("seek 60%");
    let f = wait_follow(&mut ana, |f| {
        f.state == "playing" && f.position_s >= 72.0 && in_step(f)
    });
    println!(
        "after seek to 60 %: {f:?}, in step within {:.1} s (once-a-second lines)",
        sought.elapsed().as_secs_f64()
    );
    assert!(f.position_s < 81.0, "{f:?}");

    host.send_line("pause");
    let paused = wait_follow(&mut ana, |f| f.state == "paused" && in_step(f));
    let still = wait_follow(&mut ana, |_| true);
    assert_eq!(still.state, "paused", "{still:?}");
    assert!(
        (still.position_s - paused.position_s).abs() < 0.001,
        "{paused:?} then {still:?}"
    );
    host.send_line("play");
    wait_follow(&mut ana, |f| {
        f.state == "playing" && f.position_s > still.position_s + 0.5 && in_step(f)
    });

    // Bob's download is capped at 0.1 MiB/s; the video needs about 0.24.
    let bob_out = out.path().join("bob");
    std::fs::create_dir(&bob_out).unwrap();
    let bob_out = bob_out.display().to_string();
    let mut bob = shoal(
        &server.url,
        &[
            "--max-download",
            "0.1",
            "room",
            "join",
            &code,
            "--follow",
            "--out",
            &bob_out,
            "--name",
            "Bob",
        ],
    );
    let waiting = host.wait_line(|l| l.starts_with("waiting for Bob (buffering, "));
    println!("host: {waiting}");
    wait_follow(&mut ana, |f| f.state == "paused");
    // Bob gets the next seconds; the room plays on by itself.
    host.wait_line(|l| l == "waiting for nobody");
    host.wait_line(|l| l.starts_with("playback playing"));
    wait_follow(&mut ana, |f| f.state == "playing");
    wait_follow(&mut bob, |f| f.state == "playing" && in_step(f));

    // The host ends the room: members say so and exit 0.
    host.send_line("quit");
    let (ok, _, _) = host.finish();
    assert!(ok);
    let (ok, _, lines) = ana.finish();
    assert!(ok, "{lines:#?}");
    assert!(
        lines.iter().any(|l| l.starts_with("room ended")),
        "{lines:#?}"
    );
}

/// A member's signaling connection drops while the server stays up (a relay in front of the
/// server cuts it): the member's node reconnects, joins the room again under its new id,
/// and follows a seek the host made meanwhile; the host hears of it again.
#[test]
fn a_member_whose_signaling_connection_drops_joins_again_and_follows_on() {
    let media = shoal_e2e::mp4_360p_120s();
    let server = SignalServer::start();
    let (authority, path) = match server.url.trim_start_matches("ws://").split_once('/') {
        Some((a, p)) => (a.to_owned(), format!("/{p}")),
        None => (
            server.url.trim_start_matches("ws://").to_owned(),
            String::new(),
        ),
    };
    let relay = shoal_e2e::CutProxy::start(&authority);
    let media_arg = media.display().to_string();
    let mut host = shoal(&server.url, &["room", "host", &media_arg, "--name", "Host"]);
    let code = host.stdout_lines(2)[0]
        .strip_prefix("room ")
        .unwrap()
        .to_owned();
    let out = tempfile::tempdir().unwrap();
    let out_arg = out.path().display().to_string();
    let mut ana = shoal(
        &format!("{}{path}", relay.ws_url()),
        &[
            "room", "join", &code, "--follow", "--name", "Ana", "--out", &out_arg,
        ],
    );
    assert_eq!(ana.stdout_lines(1), [format!("room {code}")]);
    host.wait_line(|l| l.starts_with("member Ana paused"));
    host.send_line("play");
    wait_follow(&mut ana, |f| {
        f.state == "playing" && f.position_s >= 1.0 && in_step(f)
    });
    host.wait_line(|l| l.starts_with("member Ana playing"));

    // The relay cuts Ana's connection to the server; her node connects again by itself.
    relay.cut();
    ana.wait_line(|l| l == format!("rejoined room {code} after a reconnect"));
    host.send_line("seek 50%");
    let f = wait_follow(&mut ana, |f| {
        f.state == "playing" && f.position_s >= 60.0 && in_step(f)
    });
    println!("after the reconnect and a seek to 50 %: {f:?}");
    assert!(f.position_s < 75.0, "{f:?}");
    host.wait_line(|l| l.starts_with("member Ana playing"));

    host.send_line("quit");
    assert!(host.finish().0);
    let (ok, _, lines) = ana.finish();
    assert!(ok, "{lines:#?}");
}
