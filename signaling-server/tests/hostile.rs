//! Hostile signaling clients (issue 8, items 2 and 7-12). Properties asserted, each over real
//! WebSockets against a real server on 127.0.0.1:0:
//! - an info hash announced first with a wrong size does not keep the honest holder out, and
//!   `lookup` offers both (item 2);
//! - a query with too many words is refused, and a client's list/search rate is bounded
//!   (item 7);
//! - a flooder filling a node's queue with large signals cannot get that node disconnected by
//!   a server notice that no longer fits (item 8);
//! - index changes are rate-limited per node and `index_changed` notices are coalesced per
//!   receiver (item 9);
//! - a connection without `hello` is closed when its deadline passes; one address cannot
//!   hold more than its share of connections; past the server's limit a monitor still gets
//!   `status` and `hello` gets `server_full` with close code 1013 (item 10);
//! - over all clients, queued signals are bounded in bytes: past it the sender gets
//!   `server_busy` (item 11);
//! - a WebSocket protocol violation closes with 1002 and text that is not UTF-8 with 1007,
//!   each with a close frame (item 12);
//! - a slow reader draining a long backlog is still pinged, answers, and is not dropped as
//!   silent (item 12).

mod common;

use std::time::{Duration, Instant};

use common::{Client, Seen, ServerProcess, WAIT, announce, error_code, hash, serve};
use shoal_protocol::{ErrorCode, ServerToClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn signal_to(to: &str, sdp_bytes: usize) -> serde_json::Value {
    serde_json::json!({"type": "signal", "to": to,
        "connection_id": "c0a8e1f2-3b4d-4c5e-8f6a-7b8c9d0e1f2a",
        "signal": {"kind": "webrtc_offer", "sdp": "s".repeat(sdp_bytes)}})
}

#[tokio::test]
async fn a_squatter_announcing_a_wrong_size_does_not_keep_the_honest_holder_out() {
    let server = ServerProcess::start(&[]);
    let mut squatter = Client::joined(&server.url).await;
    let mut honest = Client::joined(&server.url).await;
    squatter
        .send_json(announce(&hash(7), "squatted.mp4", 5, "video/mp4", "video"))
        .await;
    assert!(matches!(
        squatter.recv().await,
        ServerToClient::Announced { .. }
    ));
    honest
        .send_json(announce(
            &hash(7),
            "real.mp4",
            10_000_000,
            "video/mp4",
            "video",
        ))
        .await;
    match honest.recv().await {
        ServerToClient::Announced { info_hashes, .. } => assert_eq!(info_hashes.len(), 1),
        other => panic!("the honest holder was refused: {other:?}"),
    }
    honest
        .send_json(serde_json::json!({"type": "lookup", "info_hash": hash(7), "request_id": 1}))
        .await;
    match honest.recv().await {
        ServerToClient::LookupResult {
            file: Some(file), ..
        } => assert_eq!(file.holders, vec![squatter.id(), honest.id()]),
        other => panic!("expected the entry, got {other:?}"),
    }
}

#[tokio::test]
async fn queries_are_bounded_in_words_and_rate() {
    let server = ServerProcess::start(&[]);
    let mut searcher = Client::joined(&server.url).await;
    let words: Vec<String> = (0..33).map(|i| format!("w{i}")).collect();
    searcher
        .send_json(serde_json::json!({"type": "search", "query": words.join(" ")}))
        .await;
    assert_eq!(
        error_code(&searcher.recv().await),
        Some(ErrorCode::LimitExceeded)
    );
    // A burst far past the per-connection rate: some answered, the rest refused in words.
    for id in 0..40u64 {
        searcher
            .send_json(serde_json::json!({"type": "search", "query": "a b c", "request_id": id}))
            .await;
    }
    let (mut answered, mut limited) = (0, 0);
    for _ in 0..40 {
        match searcher.next().await {
            Seen::Message(ServerToClient::SearchResult { .. }) => answered += 1,
            Seen::Message(ServerToClient::Error {
                code: ErrorCode::RateLimited,
                ..
            }) => limited += 1,
            Seen::Message(other) => panic!("unexpected {other:?}"),
            // Enough refusals close the connection (the abuse limit); that is fine too.
            Seen::Closed(_) => break,
        }
    }
    assert!(answered >= 10, "a burst is served: {answered}");
    assert!(limited >= 1, "past the rate, refused");
}

/// Before the fix, a server notice that did not fit a queue full of relayed signals closed the
/// victim with 1008.
#[tokio::test]
async fn a_flooder_cannot_get_a_reading_node_disconnected() {
    let (server, url) = serve(shoal_signal::Config::default()).await;
    let mut flooder = Client::joined(&url).await;
    let mut victim = Client::joined(&url).await;
    let victim_id = victim.id().to_string();
    // Fill the victim's queue while it does not read, until the server says it is full.
    let started = Instant::now();
    let mut sent = 0u32;
    'fill: loop {
        flooder.send_json(signal_to(&victim_id, 15 * 1024)).await;
        sent += 1;
        while let Ok(Some(Ok(frame))) = tokio::time::timeout(
            Duration::from_millis(2),
            futures_util::StreamExt::next(&mut flooder.ws),
        )
        .await
        {
            if frame.to_text().is_ok_and(|t| t.contains("peer_busy")) {
                break 'fill;
            }
        }
        assert!(
            started.elapsed() < WAIT,
            "the queue never filled ({sent} sent)"
        );
    }
    // Now an index change by a third node, while the victim's queue is full: once that node
    // has its own notice, the server has told every node.
    let mut third = Client::joined(&url).await;
    third
        .send_json(announce(&hash(1), "other.mp4", 1, "video/mp4", "video"))
        .await;
    third.index_changed().await;
    let (mut signals, mut notices) = (0u32, 0u32);
    while notices == 0 {
        match victim.next().await {
            Seen::Message(ServerToClient::Signal { .. }) => signals += 1,
            Seen::Message(ServerToClient::IndexChanged { .. }) => notices += 1,
            Seen::Message(other) => panic!("unexpected {other:?}"),
            Seen::Closed(frame) => panic!("the victim was disconnected: {frame:?}"),
        }
    }
    assert!(signals > 0, "the flood reached it");
    assert_eq!(server.status().nodes, 3);
    server.shutdown().await;
}

#[tokio::test]
async fn index_changes_are_rate_limited_and_notices_coalesced() {
    let server = ServerProcess::start(&[]);
    let mut observer = Client::joined(&server.url).await;
    let mut toggler = Client::joined(&server.url).await;
    let started = Instant::now();
    let mut limited = 0;
    'toggle: for _ in 0..100 {
        toggler
            .send_json(announce(&hash(9), "toggle.mp4", 1, "video/mp4", "video"))
            .await;
        toggler
            .send_json(serde_json::json!({"type": "unannounce", "info_hashes": [hash(9)]}))
            .await;
        while let Ok(Some(Ok(frame))) = tokio::time::timeout(
            Duration::from_millis(1),
            futures_util::StreamExt::next(&mut toggler.ws),
        )
        .await
        {
            if frame.is_close() {
                break 'toggle;
            }
            if frame.to_text().is_ok_and(|t| t.contains("rate_limited")) {
                limited += 1;
            }
        }
    }
    assert!(limited > 0, "200 changes at once are past the rate");
    // The toggler's changes are over (its later messages were refused); count the notices
    // the observer got until the last one has certainly come (one interval of quiet).
    observer
        .send_json(serde_json::json!({"type": "status", "request_id": 1}))
        .await;
    let mut notices = 0u32;
    loop {
        match tokio::time::timeout(Duration::from_millis(1500), observer.next()).await {
            Ok(Seen::Message(ServerToClient::IndexChanged { .. })) => notices += 1,
            Ok(Seen::Message(_)) => {}
            Ok(Seen::Closed(frame)) => panic!("observer closed: {frame:?}"),
            Err(_) => break,
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    assert!(notices >= 1, "changes are told");
    // At most one at once and one per second after it, whatever the rate of changes.
    assert!(
        f64::from(notices) <= elapsed + 2.0,
        "{notices} notices in {elapsed:.1} s"
    );
}

#[tokio::test]
async fn a_connection_without_hello_is_closed_at_its_deadline() {
    let config = shoal_signal::Config {
        hello_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let (server, url) = serve(config).await;
    let mut idle = Client::connect(&url).await;
    let started = Instant::now();
    assert_eq!(idle.close_code().await, Some(1008));
    assert!(started.elapsed() < WAIT);
    let mut joined = Client::joined(&url).await;
    joined
        .send_json(serde_json::json!({"type": "status"}))
        .await;
    assert!(matches!(joined.recv().await, ServerToClient::Status { .. }));
    server.shutdown().await;
}

async fn refused(url: &str) -> bool {
    let attempt = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url)).await;
    matches!(attempt, Ok(Err(_)))
}

#[tokio::test]
async fn one_address_is_capped() {
    let config = shoal_signal::Config {
        max_connections_per_address: 2,
        ..Default::default()
    };
    let (server, url) = serve(config).await;
    let _a = Client::joined(&url).await;
    let _b = Client::connect(&url).await;
    assert!(
        refused(&url).await,
        "a third from one address is closed at once"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn past_the_node_limit_monitors_keep_a_reserve() {
    let config = shoal_signal::Config {
        max_connections: 2,
        monitor_reserve: 1,
        ..Default::default()
    };
    let (server, url) = serve(config).await;
    let _nodes = [Client::joined(&url).await, Client::joined(&url).await];
    // The third connection is in the monitor reserve: status yes, hello no.
    let mut monitor = Client::connect(&url).await;
    monitor
        .send_json(serde_json::json!({"type": "status", "request_id": 2}))
        .await;
    match monitor.recv().await {
        ServerToClient::Status { status, .. } => assert_eq!(status.nodes, 2),
        other => panic!("expected status, got {other:?}"),
    }
    assert!(refused(&url).await, "past the reserve, closed at once");
    monitor
        .send_json(serde_json::json!({"type": "hello", "version": 1}))
        .await;
    assert_eq!(
        error_code(&monitor.recv().await),
        Some(ErrorCode::ServerFull)
    );
    assert_eq!(monitor.close_code().await, Some(1013));
    server.shutdown().await;
}

#[tokio::test]
async fn queued_signals_are_bounded_over_all_clients() {
    let config = shoal_signal::Config {
        max_queued_bytes_total: 256 * 1024,
        max_refusals: 1_000_000,
        ..Default::default()
    };
    let (server, url) = serve(config).await;
    let mut sender = Client::joined(&url).await;
    let sleepers = [Client::joined(&url).await, Client::joined(&url).await];
    let started = Instant::now();
    let mut server_busy = false;
    'flood: while !server_busy {
        for sleeper in &sleepers {
            sender
                .send_json(signal_to(&sleeper.id().to_string(), 15 * 1024))
                .await;
        }
        while let Ok(Some(Ok(frame))) = tokio::time::timeout(
            Duration::from_millis(2),
            futures_util::StreamExt::next(&mut sender.ws),
        )
        .await
        {
            if frame.to_text().is_ok_and(|t| t.contains("server_busy")) {
                server_busy = true;
                continue 'flood;
            }
        }
        assert!(started.elapsed() < WAIT, "the total bound never applied");
    }
    assert_eq!(server.status().nodes, 3, "nobody was disconnected");
    server.shutdown().await;
}

/// Opens a raw WebSocket (RFC 6455 §4.1) so a test can send frames no library would.
async fn raw_websocket(url: &str) -> tokio::net::TcpStream {
    let addr = url.trim_start_matches("ws://");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    while !response.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        tokio::time::timeout(WAIT, tcp.read_exact(&mut byte))
            .await
            .expect("handshake in time")
            .expect("read");
        response.push(byte[0]);
    }
    assert!(response.starts_with(b"HTTP/1.1 101"), "upgraded");
    tcp
}

/// A masked client frame with the given first byte and payload (RFC 6455 §5.2).
fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x12, 0x34, 0x56, 0x78];
    let len = u8::try_from(payload.len()).expect("short payload");
    let mut frame = vec![first, 0x80 | len];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// Reads server frames until a close frame; returns its code (`None`: TCP closed first).
async fn close_code(tcp: &mut tokio::net::TcpStream) -> Option<u16> {
    loop {
        let mut head = [0u8; 2];
        tokio::time::timeout(WAIT, tcp.read_exact(&mut head))
            .await
            .expect("server answered in time")
            .ok()?;
        let len = match head[1] & 0x7f {
            126 => {
                let mut ext = [0u8; 2];
                tcp.read_exact(&mut ext).await.ok()?;
                usize::from(u16::from_be_bytes(ext))
            }
            127 => return None,
            n => usize::from(n),
        };
        let mut payload = vec![0u8; len];
        tcp.read_exact(&mut payload).await.ok()?;
        if head[0] & 0x0f == 0x8 {
            return payload
                .get(..2)
                .map(|code| u16::from_be_bytes([code[0], code[1]]));
        }
    }
}

#[tokio::test]
async fn protocol_violations_close_with_a_close_frame() {
    let server = ServerProcess::start(&[]);
    // Text that is not UTF-8: 1007 (RFC 6455 §8.1).
    let mut tcp = raw_websocket(&server.url).await;
    tcp.write_all(&client_frame(0x81, &[0xff, 0xfe, 0xfd]))
        .await
        .expect("write");
    assert_eq!(close_code(&mut tcp).await, Some(1007));
    // Reserved bits set without an extension that defines them: 1002 (RFC 6455 §5.2).
    let mut tcp = raw_websocket(&server.url).await;
    tcp.write_all(&client_frame(0xC1, b"{}"))
        .await
        .expect("write");
    assert_eq!(close_code(&mut tcp).await, Some(1002));
}

/// Before the fix the select loop served queued frames before the ping timer, so a client
/// draining a backlog for more than three heartbeats was never pinged, never answered, and was
/// dropped as silent once its queue emptied.
#[tokio::test]
async fn a_slow_reader_draining_a_backlog_is_not_taken_for_silent() {
    // Long enough that the pipe between server and reader (the kernel's buffers on both
    // sides: megabytes on loopback) drains well within three heartbeats at the reader's pace.
    let heartbeat = Duration::from_secs(1);
    let config = shoal_signal::Config {
        heartbeat_interval: heartbeat,
        ..Default::default()
    };
    let (server, url) = serve(config).await;
    let flooder = Client::joined(&url).await;
    let mut reader = Client::joined(&url).await;
    let to = reader.id().to_string();
    // The flooder sends for four heartbeats (more than the three a silent client is allowed),
    // reading its own refusals so it never stalls.
    let flood_for = heartbeat * 4;
    let flood = tokio::spawn(async move {
        use futures_util::{SinkExt, StreamExt};
        let (mut sink, mut stream) = flooder.ws.split();
        tokio::spawn(async move { while let Some(Ok(_)) = stream.next().await {} });
        let started = Instant::now();
        while started.elapsed() < flood_for {
            let text = signal_to(&to, 15 * 1024).to_string();
            if sink
                .send(tokio_tungstenite::tungstenite::Message::text(text))
                .await
                .is_err()
            {
                break;
            }
        }
        sink
    });
    // The reader is slow: a pause per message (it emulates a slow link or a busy client; it
    // synchronises nothing) keeps a backlog queued on the server. It sends nothing itself
    // but the pongs its WebSocket library answers pings with.
    let mut signals = 0u32;
    let quiet_for = heartbeat * 7 / 2;
    loop {
        match tokio::time::timeout(quiet_for, reader.next()).await {
            Ok(Seen::Message(ServerToClient::Signal { .. })) => signals += 1,
            Ok(Seen::Message(_)) => {}
            Ok(Seen::Closed(frame)) => {
                panic!("the slow reader was dropped after {signals} signals: {frame:?}")
            }
            // Three and a half heartbeats without a message: the backlog is drained and the
            // server checked this client's liveness three times meanwhile.
            Err(_) => break,
        }
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let _sink = flood.await.expect("flooder");
    assert!(signals > 0, "the flood reached the reader");
    assert_eq!(server.status().nodes, 2, "both clients are still connected");
    server.shutdown().await;
}
