//! The signaling server, driven over real WebSockets (issue 2). Properties asserted:
//! - two nodes exchange offer, answer and ICE candidates in both directions, with `from`
//!   stamped by the server even when a client forges it;
//! - a third node sees announcements through `index_changed`, `list` (with category),
//!   `search` and `lookup`;
//! - files leave the index when their node's connection drops, and when a node falls silent
//!   for three heartbeats;
//! - bad input (malformed JSON, 70 KiB messages, deep nesting, binary frames, wrong version,
//!   messages before hello, repeated abuse) gets an error or a close code, never a crash,
//!   and other clients keep being served;
//! - a client that stops reading is dropped (and signals to it are refused with `peer_busy`
//!   meanwhile, without punishing it for what others send);
//! - SIGTERM closes every client with 1001 and the process exits 0 within 2 s.

mod common;

use std::time::{Duration, Instant};

use common::{Client, Seen, ServerProcess, WAIT, announce, error_code, hash, serve};
use shoal_protocol::{Category, ErrorCode, ServerToClient, Signal};

#[tokio::test]
async fn two_nodes_exchange_signals_in_both_directions() {
    let server = ServerProcess::start(&[]);
    let mut a = Client::joined(&server.url).await;
    let mut b = Client::joined(&server.url).await;
    assert_ne!(a.id(), b.id(), "each connection gets its own node id");
    let connection_id = "c0a8e1f2-3b4d-4c5e-8f6a-7b8c9d0e1f2a";

    a.send_json(
        serde_json::json!({"type": "signal", "to": b.id().to_string(),
        "connection_id": connection_id,
        "signal": {"kind": "webrtc_offer", "sdp": "v=0 offer"}}),
    )
    .await;
    match b.recv().await {
        ServerToClient::Signal {
            from,
            connection_id: c,
            signal,
        } => {
            assert_eq!(from, a.id());
            assert_eq!(c.to_string(), connection_id);
            assert_eq!(
                signal,
                Signal::Offer {
                    sdp: "v=0 offer".into()
                }
            );
        }
        other => panic!("expected a signal, got {other:?}"),
    }

    b.send_json(
        serde_json::json!({"type": "signal", "to": a.id().to_string(),
        "connection_id": connection_id,
        "signal": {"kind": "webrtc_answer", "sdp": "v=0 answer"}}),
    )
    .await;
    b.send_json(
        serde_json::json!({"type": "signal", "to": a.id().to_string(),
        "connection_id": connection_id,
        "signal": {"kind": "webrtc_ice_candidate", "candidate": {
            "candidate": "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host",
            "sdpMid": "0", "sdpMLineIndex": 0}}}),
    )
    .await;
    match a.recv().await {
        ServerToClient::Signal { from, signal, .. } => {
            assert_eq!(from, b.id());
            assert_eq!(
                signal,
                Signal::Answer {
                    sdp: "v=0 answer".into()
                }
            );
        }
        other => panic!("expected an answer, got {other:?}"),
    }
    match a.recv().await {
        ServerToClient::Signal {
            from,
            signal: Signal::IceCandidate { candidate },
            ..
        } => {
            assert_eq!(from, b.id());
            assert_eq!(candidate.sdp_mline_index, Some(0));
            assert!(candidate.candidate.contains("typ host"));
        }
        other => panic!("expected an ICE candidate, got {other:?}"),
    }
}

#[tokio::test]
async fn a_forged_sender_is_replaced_by_the_real_one() {
    let server = ServerProcess::start(&[]);
    let mut a = Client::joined(&server.url).await;
    let mut b = Client::joined(&server.url).await;
    let mallory = "11111111-2222-4333-8444-555555555555";
    a.send_json(
        serde_json::json!({"type": "signal", "from": mallory, "to": b.id().to_string(),
        "connection_id": "c0a8e1f2-3b4d-4c5e-8f6a-7b8c9d0e1f2a",
        "signal": {"kind": "bye", "from": mallory}}),
    )
    .await;
    match b.recv().await {
        ServerToClient::Signal { from, .. } => assert_eq!(from, a.id()),
        other => panic!("expected a signal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_third_node_finds_announcements_by_list_search_and_category() {
    let server = ServerProcess::start(&[]);
    let mut a = Client::joined(&server.url).await;
    let mut b = Client::joined(&server.url).await;
    let mut c = Client::joined(&server.url).await;

    a.send_json(announce(
        &hash(1),
        "Summer Holiday.mp4",
        1000,
        "video/mp4",
        "video",
    ))
    .await;
    assert!(
        matches!(a.recv().await, ServerToClient::Announced { info_hashes, .. } if info_hashes.len() == 1)
    );
    b.send_json(announce(
        &hash(2),
        "holiday song.flac",
        2000,
        "audio/flac",
        "audio",
    ))
    .await;
    assert!(matches!(b.recv().await, ServerToClient::Announced { .. }));
    // The same content from a second holder.
    b.send_json(announce(&hash(1), "copy.mp4", 1000, "video/mp4", "video"))
        .await;
    assert!(matches!(b.recv().await, ServerToClient::Announced { .. }));

    c.index_changed().await;
    c.send_json(serde_json::json!({"type": "list", "request_id": 1}))
        .await;
    match c.recv().await {
        ServerToClient::ListResult {
            request_id,
            files,
            total,
        } => {
            assert_eq!(request_id, Some(1));
            assert_eq!(total, 2);
            let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
            assert_eq!(names, ["holiday song.flac", "Summer Holiday.mp4"]);
            let video = &files[1];
            assert_eq!(video.holders, vec![a.id(), b.id()]);
            assert_eq!(video.size, 1000);
            assert_eq!(video.category, Category::Video);
        }
        other => panic!("expected list_result, got {other:?}"),
    }

    c.send_json(serde_json::json!({"type": "list", "category": "audio"}))
        .await;
    match c.recv().await {
        ServerToClient::ListResult { files, .. } => {
            assert_eq!(files.len(), 1);
            assert_eq!(files[0].holders, vec![b.id()]);
        }
        other => panic!("expected list_result, got {other:?}"),
    }

    c.send_json(serde_json::json!({"type": "search", "query": "HOLIDAY mp4", "request_id": 2}))
        .await;
    match c.recv().await {
        ServerToClient::SearchResult { files, total, .. } => {
            assert_eq!(total, 1);
            assert_eq!(files[0].name, "Summer Holiday.mp4");
        }
        other => panic!("expected search_result, got {other:?}"),
    }

    c.send_json(serde_json::json!({"type": "search", "query": "holiday", "category": "audio"}))
        .await;
    match c.recv().await {
        ServerToClient::SearchResult { files, .. } => {
            assert_eq!(files.len(), 1);
            assert_eq!(files[0].name, "holiday song.flac");
        }
        other => panic!("expected search_result, got {other:?}"),
    }

    // Unannounce removes only that holder.
    a.send_json(serde_json::json!({"type": "unannounce", "info_hashes": [hash(1)]}))
        .await;
    c.index_changed().await;
    c.send_json(serde_json::json!({"type": "lookup", "info_hash": hash(1)}))
        .await;
    match c.recv().await {
        ServerToClient::LookupResult { file, .. } => {
            assert_eq!(file.expect("still held by b").holders, vec![b.id()]);
        }
        other => panic!("expected lookup_result, got {other:?}"),
    }
}

/// Polls `lookup` until the file has no holder; returns how long that took.
async fn wait_until_gone(observer: &mut Client, info_hash: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        observer
            .send_json(serde_json::json!({"type": "lookup", "info_hash": info_hash}))
            .await;
        match observer.recv().await {
            ServerToClient::LookupResult { file: None, .. } => return started.elapsed(),
            ServerToClient::LookupResult { file: Some(_), .. } => {}
            other => panic!("expected lookup_result, got {other:?}"),
        }
        assert!(
            started.elapsed() < limit,
            "file still indexed after {limit:?}"
        );
        // Wait for the next index change rather than spinning.
        let _ = tokio::time::timeout(Duration::from_millis(500), observer.index_changed()).await;
    }
}

#[tokio::test]
async fn a_dropped_connection_leaves_the_index_at_once() {
    let server = ServerProcess::start(&[]);
    let mut observer = Client::joined(&server.url).await;
    let mut victim = Client::joined(&server.url).await;
    victim
        .send_json(announce(&hash(7), "gone.mp4", 10, "video/mp4", "video"))
        .await;
    assert!(matches!(
        victim.recv().await,
        ServerToClient::Announced { .. }
    ));
    // Like a killed process: the socket goes away without a WebSocket close frame.
    drop(victim);
    // The default heartbeat is 15 s; leaving must not wait for it.
    let took = wait_until_gone(&mut observer, &hash(7), Duration::from_secs(5)).await;
    println!("dropped connection left the index after {took:?}");
}

#[tokio::test]
async fn a_silent_client_is_dropped_within_three_heartbeats() {
    let server = ServerProcess::start(&["--heartbeat", "300ms"]);
    let mut observer = Client::joined(&server.url).await;
    let mut silent = Client::joined(&server.url).await;
    silent
        .send_json(announce(&hash(8), "silent.mp4", 10, "video/mp4", "video"))
        .await;
    assert!(matches!(
        silent.recv().await,
        ServerToClient::Announced { .. }
    ));
    // From here `silent` is never polled again: it answers no ping, like a frozen process.
    let took = wait_until_gone(&mut observer, &hash(8), Duration::from_secs(5)).await;
    println!("silent client left the index after {took:?}");
    assert!(
        took >= Duration::from_millis(600),
        "dropped too early ({took:?}): a client has three heartbeats"
    );
    drop(silent);
}

#[tokio::test]
async fn bad_input_gets_errors_and_others_keep_being_served() {
    let server = ServerProcess::start(&[]);
    let mut bystander = Client::joined(&server.url).await;
    let mut bad = Client::joined(&server.url).await;

    bad.send_text("{this is not json".into()).await;
    assert_eq!(
        error_code(&bad.recv().await),
        Some(ErrorCode::MalformedJson)
    );

    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    bad.send_text(deep).await;
    assert_eq!(
        error_code(&bad.recv().await),
        Some(ErrorCode::MalformedJson)
    );

    bad.send_json(serde_json::json!({"type": "teleport"})).await;
    assert_eq!(error_code(&bad.recv().await), Some(ErrorCode::UnknownType));

    bad.send_json(serde_json::json!({"type": "announce", "files": "all of them"}))
        .await;
    assert_eq!(
        error_code(&bad.recv().await),
        Some(ErrorCode::InvalidMessage)
    );

    bad.send_json(
        serde_json::json!({"type": "signal", "to": "8d1e0b7c-2a4f-4e6b-b3c9-1f5a7d9e2c40",
        "connection_id": "c0a8e1f2-3b4d-4c5e-8f6a-7b8c9d0e1f2a", "signal": {"kind": "bye"}}),
    )
    .await;
    match bad.recv().await {
        ServerToClient::Error { code, reason, .. } => {
            assert_eq!(code, ErrorCode::UnknownPeer);
            assert!(
                reason.contains("8d1e0b7c-2a4f-4e6b-b3c9-1f5a7d9e2c40"),
                "{reason}"
            );
        }
        other => panic!("expected an error, got {other:?}"),
    }

    futures_util::SinkExt::send(
        &mut bad.ws,
        tokio_tungstenite::tungstenite::Message::binary(vec![1, 2, 3]),
    )
    .await
    .expect("send binary");
    assert_eq!(
        error_code(&bad.recv().await),
        Some(ErrorCode::MalformedJson)
    );

    // 70 KiB in one message: over the 64 KiB message limit (and the 16 KiB frame limit).
    let huge = serde_json::json!({"type": "search", "query": "x".repeat(70 * 1024)});
    bad.send_json(huge).await;
    assert_eq!(bad.close_code().await, Some(1009));

    // The server still serves everyone else.
    bystander
        .send_json(serde_json::json!({"type": "status", "request_id": 5}))
        .await;
    match bystander.recv().await {
        ServerToClient::Status { request_id, status } => {
            assert_eq!(request_id, Some(5));
            assert_eq!(status.nodes, 1, "the closed client left");
        }
        other => panic!("expected status, got {other:?}"),
    }
}

#[tokio::test]
async fn protocol_order_and_version_are_enforced() {
    let server = ServerProcess::start(&[]);

    let mut early = Client::connect(&server.url).await;
    early.send_json(serde_json::json!({"type": "list"})).await;
    assert_eq!(
        error_code(&early.recv().await),
        Some(ErrorCode::HelloRequired)
    );
    // status is allowed before hello, for monitoring.
    early.send_json(serde_json::json!({"type": "status"})).await;
    assert!(matches!(early.recv().await, ServerToClient::Status { .. }));

    let mut old = Client::connect(&server.url).await;
    old.send_json(serde_json::json!({"type": "hello", "version": 99}))
        .await;
    assert_eq!(
        error_code(&old.recv().await),
        Some(ErrorCode::UnsupportedVersion)
    );
    assert_eq!(old.close_code().await, Some(1002));

    let mut twice = Client::joined(&server.url).await;
    twice
        .send_json(serde_json::json!({"type": "hello", "version": 1}))
        .await;
    assert_eq!(
        error_code(&twice.recv().await),
        Some(ErrorCode::DuplicateHello)
    );
}

#[tokio::test]
async fn repeated_abuse_closes_with_policy_violation() {
    let server = ServerProcess::start(&[]);
    let mut abuser = Client::joined(&server.url).await;
    let mut errors = 0;
    for _ in 0..100 {
        abuser.send_text("nope".into()).await;
        match abuser.next().await {
            Seen::Message(ServerToClient::Error { .. }) => errors += 1,
            Seen::Message(other) => panic!("unexpected {other:?}"),
            Seen::Closed(frame) => {
                assert_eq!(frame.map(|f| u16::from(f.code)), Some(1008));
                assert_eq!(errors, 16, "closed after the 16th refusal");
                return;
            }
        }
    }
    panic!("never closed");
}

#[tokio::test]
async fn limits_on_names_and_files_per_node() {
    let server = ServerProcess::start(&["--max-files-per-node", "2"]);
    let mut a = Client::joined(&server.url).await;
    a.send_json(announce(
        &hash(1),
        &"n".repeat(256),
        1,
        "video/mp4",
        "video",
    ))
    .await;
    assert_eq!(error_code(&a.recv().await), Some(ErrorCode::LimitExceeded));
    for n in 1..=2 {
        a.send_json(announce(&hash(n), "ok.mp4", 1, "video/mp4", "video"))
            .await;
        assert!(matches!(a.recv().await, ServerToClient::Announced { .. }));
    }
    a.send_json(announce(&hash(3), "three.mp4", 1, "video/mp4", "video"))
        .await;
    assert_eq!(error_code(&a.recv().await), Some(ErrorCode::LimitExceeded));
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped() {
    let config = shoal_signal::Config {
        send_queue_depth: 8,
        write_timeout: Duration::from_millis(500),
        // The flooding sender collects peer_busy refusals; keep it connected for this test.
        max_refusals: 1_000_000,
        ..Default::default()
    };
    let (server, url) = serve(config).await;
    let mut sender = Client::joined(&url).await;
    let sleeper = Client::joined(&url).await;
    let sleeper_id = sleeper.id();
    // 15 KiB signals, far more than the kernel's socket buffers hold, to a client that never
    // reads. The server must drop it instead of queueing without bound.
    let sdp = "s".repeat(15 * 1024);
    let started = Instant::now();
    let mut busy = 0;
    loop {
        sender
            .send_json(
                serde_json::json!({"type": "signal", "to": sleeper_id.to_string(),
                "connection_id": "c0a8e1f2-3b4d-4c5e-8f6a-7b8c9d0e1f2a",
                "signal": {"kind": "webrtc_offer", "sdp": sdp}}),
            )
            .await;
        if server.status().nodes == 1 {
            break;
        }
        assert!(
            started.elapsed() < WAIT,
            "the stalled client was never dropped"
        );
        // Errors (peer_busy while its queue is full, unknown_peer once it is gone) are
        // expected; drain whatever arrived.
        while let Ok(Some(Ok(frame))) = tokio::time::timeout(
            Duration::from_millis(1),
            futures_util::StreamExt::next(&mut sender.ws),
        )
        .await
        {
            if frame.to_text().is_ok_and(|t| t.contains("peer_busy")) {
                busy += 1;
            }
        }
    }
    assert!(
        busy > 0,
        "signals to a full queue are refused to the sender"
    );
    println!(
        "stalled client dropped after {:?}, server rss {} MiB",
        started.elapsed(),
        server.status().rss_bytes >> 20
    );
    drop(sleeper);
    server.shutdown().await;
}

#[test]
fn sigterm_closes_clients_with_going_away_and_exits_zero() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut server = ServerProcess::start(&[]);
    let url = server.url.clone();
    let (mut a, mut b) = runtime.block_on(async {
        let mut a = Client::joined(&url).await;
        let b = Client::joined(&url).await;
        a.send_json(announce(&hash(1), "x.mp4", 1, "video/mp4", "video"))
            .await;
        assert!(matches!(a.recv().await, ServerToClient::Announced { .. }));
        (a, b)
    });
    let pid = server.child.id();
    let started = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    runtime.block_on(async {
        assert_eq!(a.close_code().await, Some(1001));
        assert_eq!(b.close_code().await, Some(1001));
    });
    let deadline = Duration::from_secs(2).saturating_sub(started.elapsed());
    let exit = wait_timeout::ChildExt::wait_timeout(&mut server.child, deadline)
        .expect("wait")
        .expect("exited within 2 s of SIGTERM");
    println!("exited {exit} after {:?}", started.elapsed());
    assert!(exit.success(), "exit status {exit}");
}

#[test]
fn help_explains_every_flag() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_shoal-signal"))
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--listen",
        "--config",
        "--stun",
        "--turn",
        "--turn-username",
        "--turn-credential",
        "--heartbeat",
        "--status-interval",
        "--max-files-per-node",
    ] {
        assert!(
            help.contains(flag),
            "--help does not mention {flag}:\n{help}"
        );
    }
}

#[tokio::test]
async fn welcome_carries_ice_servers_and_heartbeat() {
    let server = ServerProcess::start(&[
        "--stun",
        "stun:stun.example.org:3478",
        "--turn",
        "turn:turn.example.org:3478",
        "--turn-username",
        "u",
        "--turn-credential",
        "p",
        "--heartbeat",
        "20s",
    ]);
    let mut client = Client::connect(&server.url).await;
    client
        .send_json(serde_json::json!({"type": "hello", "version": 1}))
        .await;
    match client.recv().await {
        ServerToClient::Welcome {
            ice_servers,
            heartbeat_interval_ms,
            ..
        } => {
            assert_eq!(heartbeat_interval_ms, 20_000);
            assert_eq!(ice_servers.len(), 2);
            assert_eq!(ice_servers[0].urls, ["stun:stun.example.org:3478"]);
            assert_eq!(ice_servers[1].username.as_deref(), Some("u"));
            assert_eq!(ice_servers[1].credential.as_deref(), Some("p"));
        }
        other => panic!("expected welcome, got {other:?}"),
    }
}
