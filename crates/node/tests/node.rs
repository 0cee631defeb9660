//! Two nodes in one process over a real signaling server (`serve` on 127.0.0.1:0) and real
//! webrtc on loopback. Properties asserted:
//! - a shared file appears in the other node's list and search, with its category;
//! - a download completes with identical bytes, reports the connection type (host), progress
//!   and a summary, and leaves no `.part` or resume file behind;
//! - downloading an unknown info hash fails with `UnknownInfoHash`; a second download of the
//!   same content while the first starts is refused (`AlreadyDownloading`);
//! - the media server serves a finished download with HTTP Range (206 and the right bytes),
//!   refuses a wrong token, and serves nothing that is neither shared nor downloaded;
//! - unsharing removes the file from the index and revokes its media URL (issue 7, item 11);
//! - a failed download says its cause: `SourcesFailed` naming its only holder and why when
//!   it never answers, `Cancelled` when cancelled (issue 7, item 4; issue 9, item 1).

use std::time::Duration;

use shoal_node::{
    CandidateType, Category, ConnectionState, FailureCause, Node, NodeConfig, NodeError, NodeEvent,
    NodeHandle, PeerFault, RtcConfig, TransferPhase,
};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(60);

/// A minimal HTTP/1.1 GET over a raw socket: (status line, body).
async fn http_get(url: &str, range: Option<&str>) -> (String, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest.split_at(rest.find('/').expect("path"));
    let mut stream = tokio::net::TcpStream::connect(host).await.expect("connect");
    let range = range.map(|r| format!("Range: {r}\r\n")).unwrap_or_default();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{range}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read");
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("headers end");
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status = head.lines().next().unwrap_or_default().to_owned();
    (status, response[split + 4..].to_vec())
}

async fn node(url: &str, dir: &std::path::Path) -> (NodeHandle, mpsc::Receiver<NodeEvent>) {
    connected_node(NodeConfig {
        server_url: url.to_owned(),
        rtc: RtcConfig::loopback(),
        download_dir: dir.to_owned(),
        ..NodeConfig::default()
    })
    .await
}

/// A node started with `config`, once it is connected.
async fn connected_node(config: NodeConfig) -> (NodeHandle, mpsc::Receiver<NodeEvent>) {
    let (handle, mut events) = Node::spawn(config);
    next(&mut events, |e| {
        matches!(e, NodeEvent::Connection(ConnectionState::Connected { .. }))
    })
    .await;
    (handle, events)
}

/// The first event matching `pred`, skipping others; panics after [`WAIT`].
async fn next(
    events: &mut mpsc::Receiver<NodeEvent>,
    mut pred: impl FnMut(&NodeEvent) -> bool,
) -> NodeEvent {
    tokio::time::timeout(WAIT, async {
        loop {
            let e = events.recv().await.expect("node running");
            if pred(&e) {
                return e;
            }
        }
    })
    .await
    .expect("event in time")
}

/// A signaling server in this process on a free loopback port.
async fn signal_server() -> shoal_signal::ServerHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    shoal_signal::serve(listener, shoal_signal::Config::default()).expect("serve")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_list_download_unshare() {
    let server = signal_server().await;
    let url = server.url();
    let dir = tempfile::tempdir().expect("tempdir");
    let source = dir.path().join("holiday clip.mp4");
    let data: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i * 7 + i / 1000) as u8)
        .collect();
    std::fs::write(&source, &data).expect("write source");

    let (seeder, mut seeder_events) = node(&url, dir.path()).await;
    let downloads = dir.path().join("downloads");
    let (viewer, mut viewer_events) = node(&url, &downloads).await;

    let shared = seeder.share(source.clone()).await.expect("share");
    assert_eq!(shared.name, "holiday clip.mp4");
    assert_eq!(shared.category, Category::Video);
    assert_eq!(shared.size, data.len() as u64);
    next(&mut seeder_events, |e| matches!(e, NodeEvent::Shared(_))).await;

    let listed = viewer.list(Some(Category::Video)).await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].info_hash, shared.info_hash);
    let found = viewer.search("HOLIDAY", None).await.expect("search");
    assert_eq!(found.len(), 1);

    // Two clicks on Download in a row: one download, one clear refusal.
    let (first, second) = tokio::join!(
        viewer.download(shared.info_hash, None),
        viewer.download(shared.info_hash, None)
    );
    let started = match (first, second) {
        (Ok(t), Err(NodeError::AlreadyDownloading { .. }))
        | (Err(NodeError::AlreadyDownloading { .. }), Ok(t)) => t,
        other => panic!("expected one download and one refusal, got {other:?}"),
    };
    // `download` answers the status at once (issue 9, item 2).
    let transfer = started.transfer();
    assert_eq!(started.phase, TransferPhase::Running);
    assert_eq!(started.progress.info_hash, shared.info_hash);
    assert_eq!(started.progress.name, "holiday clip.mp4");
    assert_eq!(started.progress.len_bytes, data.len() as u64);
    assert_eq!(started.out_dir, downloads);
    let mut watched = viewer.watch_transfer(transfer).expect("watch");
    let connected = next(&mut viewer_events, |e| {
        matches!(e, NodeEvent::PeerConnected { .. })
    })
    .await;
    if let NodeEvent::PeerConnected {
        candidate_type,
        transfer: t,
        ..
    } = connected
    {
        assert_eq!(candidate_type, CandidateType::Host);
        assert_eq!(t, Some(transfer));
    }
    // The engine can be asked what runs, and the peer the event named is in it.
    let running = viewer.transfers();
    assert_eq!(running.len(), 1, "{running:?}");
    assert_eq!(running[0].transfer(), transfer);
    assert_eq!(running[0].progress.info_hash, shared.info_hash);
    assert_eq!(running[0].progress.len_bytes, data.len() as u64);
    if running[0].is_running() {
        assert_eq!(
            running[0]
                .peers
                .iter()
                .map(|p| p.candidate_type)
                .collect::<Vec<_>>(),
            [CandidateType::Host],
            "{running:?}"
        );
    }
    let done = next(&mut viewer_events, |e| {
        matches!(e, NodeEvent::Completed { .. } | NodeEvent::Failed { .. })
    })
    .await;
    let NodeEvent::Completed { path, summary, .. } = done else {
        panic!("download failed: {done:?}");
    };
    // The outcome is in the status before it is told, and the watcher sees it.
    let ended = viewer.transfer(transfer).expect("status");
    assert_eq!(
        ended.phase,
        TransferPhase::Completed {
            path: path.clone(),
            summary: summary.clone()
        }
    );
    assert_eq!(ended.progress.bytes_done, data.len() as u64);
    assert!(ended.peers.is_empty() && ended.progress.rate_bytes_per_sec == 0.0);
    assert_eq!(viewer.transfers(), vec![ended.clone()]);
    assert_eq!(*watched.borrow_and_update(), ended);
    assert!(viewer.forget_transfer(transfer));
    assert!(matches!(
        viewer.transfer(transfer),
        Err(NodeError::UnknownTransfer(_))
    ));
    assert_eq!(std::fs::read(&path).expect("read download"), data);
    assert_eq!(path, downloads.join("holiday clip.mp4"));
    assert_eq!(summary.fetched_bytes, data.len() as u64);
    let leftovers: Vec<_> = std::fs::read_dir(&downloads)
        .expect("list downloads")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");

    let url = viewer.media_url(path.clone()).await.expect("media url");
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let (status, body) = http_get(&url, Some("bytes=1000-1999")).await;
    assert!(status.contains("206"), "{status}");
    assert_eq!(body, &data[1000..2000]);
    let (status, body) = http_get(&url, None).await;
    assert!(status.contains("200"), "{status}");
    assert_eq!(body.len(), data.len());
    let mut parts: Vec<&str> = url.splitn(5, '/').collect();
    parts[3] = "00000000000000000000000000000000";
    let (status, _) = http_get(&parts.join("/"), None).await;
    assert!(
        status.contains("404"),
        "wrong token must not serve: {status}"
    );
    let refused = viewer.media_url(dir.path().join("elsewhere.mp4")).await;
    assert!(
        matches!(refused, Err(NodeError::NotPlayable { .. })),
        "{refused:?}"
    );

    let unknown = viewer
        .download("00".repeat(32).parse().expect("hash"), None)
        .await;
    assert!(
        matches!(unknown, Err(NodeError::UnknownInfoHash { .. })),
        "{unknown:?}"
    );

    let shared_url = seeder.media_url(source.clone()).await.expect("media url");
    let (status, _) = http_get(&shared_url, Some("bytes=0-99")).await;
    assert!(status.contains("206"), "{status}");

    // The finished download stays served (NodeConfig::share_completed, on by default): it is
    // one of the viewer's shares and outlives the seeder's share in the index.
    let reshared = next(&mut viewer_events, |e| matches!(e, NodeEvent::Shared(_))).await;
    let NodeEvent::Shared(reshared) = reshared else {
        unreachable!()
    };
    assert_eq!(reshared.path, path);
    assert_eq!(reshared.info_hash, shared.info_hash);
    assert_eq!(reshared.size, data.len() as u64);
    assert_eq!(viewer.shares().await.expect("shares"), vec![reshared]);
    seeder.unshare(shared.info_hash).await.expect("unshare");
    let me = viewer.node_id().await.expect("id").expect("connected");
    loop {
        let files = viewer.list(None).await.expect("list");
        if files.len() == 1 && files[0].holders == vec![me] && files[0].partial_holders.is_empty() {
            break;
        }
        next(&mut viewer_events, |e| matches!(e, NodeEvent::IndexChanged)).await;
    }
    viewer.unshare(shared.info_hash).await.expect("unshare");
    next(&mut viewer_events, |e| matches!(e, NodeEvent::IndexChanged)).await;
    assert!(viewer.list(None).await.expect("list").is_empty());
    let (status, _) = http_get(&shared_url, Some("bytes=0-99")).await;
    assert!(
        status.contains("404"),
        "a removed share's URL must stop answering: {status}"
    );
    let refused = seeder.media_url(source.clone()).await;
    assert!(
        matches!(refused, Err(NodeError::NotPlayable { .. })),
        "{refused:?}"
    );

    seeder.shutdown().await;
    viewer.shutdown().await;
    server.shutdown().await;
}

/// Progress events of one share, until it is shared.
async fn share_counting_progress(
    node: &NodeHandle,
    events: &mut mpsc::Receiver<NodeEvent>,
    path: &std::path::Path,
) -> (shoal_node::SharedFile, usize) {
    let share = node.share(path.to_owned());
    tokio::pin!(share);
    let mut progress = 0;
    let shared = loop {
        tokio::select! {
            result = &mut share => break result.expect("share"),
            Some(event) = events.recv() => {
                if matches!(event, NodeEvent::HashingProgress { .. }) {
                    progress += 1;
                }
            }
        }
    };
    // Events sent before the answer are queued: count them too.
    while let Ok(event) = events.try_recv() {
        if matches!(event, NodeEvent::HashingProgress { .. }) {
            progress += 1;
        }
    }
    (shared, progress)
}

/// Issue 7, item 1: sharing again after a restart reads nothing when the file is unchanged
/// (one progress event instead of one per 16 MiB), and hashes again when it changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remembered_file_is_shared_again_without_hashing() {
    let server = signal_server().await;
    let url = server.url();
    let dir = tempfile::tempdir().expect("tempdir");
    let source = dir.path().join("film.mkv");
    let data: Vec<u8> = (0..40u32 << 20).map(|i| (i ^ (i >> 11)) as u8).collect();
    std::fs::write(&source, &data).expect("write");
    let start = || {
        connected_node(NodeConfig {
            server_url: url.clone(),
            rtc: RtcConfig::loopback(),
            download_dir: dir.path().to_owned(),
            hash_cache: Some(dir.path().join("hash-cache")),
            ..NodeConfig::default()
        })
    };

    let (node, mut events) = start().await;
    let (first, progress) = share_counting_progress(&node, &mut events, &source).await;
    assert!(
        progress >= 3,
        "40 MiB hashed in 16 MiB steps: {progress} events"
    );
    node.shutdown().await;

    let (node, mut events) = start().await;
    let (again, progress) = share_counting_progress(&node, &mut events, &source).await;
    assert_eq!(again.info_hash, first.info_hash);
    assert_eq!(progress, 1, "remembered: nothing hashed");
    node.shutdown().await;

    // Changed content (same length): hashed again, another info hash.
    let mut changed = data.clone();
    changed[5] ^= 1;
    std::fs::write(&source, &changed).expect("write");
    let (node, mut events) = start().await;
    let (third, progress) = share_counting_progress(&node, &mut events, &source).await;
    assert_ne!(third.info_hash, first.info_hash);
    assert!(progress >= 3, "changed: hashed again ({progress} events)");
    node.shutdown().await;
    server.shutdown().await;
}

/// Issue 7, item 4: front ends choose their words (and whether to wait for the sharer) from a
/// typed cause, not from the text of a reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_download_says_its_cause() {
    use shoal_e2e::peer::{PeerFile, TestPeer};
    let server = signal_server().await;
    let url = server.url();
    let mute = TestPeer::start_mute(
        &url,
        vec![PeerFile {
            name: "unreachable.mp4".into(),
            data: vec![7u8; 100_000].into(),
            ..PeerFile::default()
        }],
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (viewer, mut events) = connected_node(NodeConfig {
        server_url: url.clone(),
        rtc: RtcConfig::loopback(),
        download_dir: dir.path().to_owned(),
        connect_timeout: Duration::from_secs(2),
        ..NodeConfig::default()
    })
    .await;
    let hash = mute.info_hashes[0];
    let transfer = viewer
        .download(hash, None)
        .await
        .expect("download")
        .transfer();
    let failed = next(&mut events, |e| matches!(e, NodeEvent::Failed { .. })).await;
    assert!(
        matches!(&failed, NodeEvent::Failed { transfer: t, cause: FailureCause::SourcesFailed { peers }, .. }
            if *t == transfer && peers.len() == 1 && matches!(peers[0].1, PeerFault::Connect(_))),
        "{failed:?}"
    );
    let NodeEvent::Failed { cause, reason, .. } = failed else {
        unreachable!()
    };
    assert_eq!(
        viewer.transfer(transfer).expect("status").phase,
        TransferPhase::Failed { cause, reason }
    );

    let transfer = viewer
        .download(hash, None)
        .await
        .expect("download")
        .transfer();
    viewer.cancel(transfer).await.expect("cancel");
    let failed = next(&mut events, |e| matches!(e, NodeEvent::Failed { .. })).await;
    assert!(
        matches!(failed, NodeEvent::Failed { transfer: t, cause: FailureCause::Cancelled, .. } if t == transfer),
        "{failed:?}"
    );
    viewer.shutdown().await;
    server.shutdown().await;
}

/// Rooms through the node (issue 11): a host opens a room, a member joins by its code; the
/// host's node answers the member's clock pings itself, so the member's estimate of the host's
/// clock (shoal-sync's `ClockSync`) matches the real difference of the two node clocks; the
/// host's playback reaches the member; a member's playback is refused and said as an event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_follows_the_hosts_clock_and_playback_through_a_room() {
    use shoal_node::{InfoHash, RoomBody, RoomEvent};
    let server = signal_server().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (host, mut host_events) = node(&server.url(), dir.path()).await;
    let (member, mut member_events) = node(&server.url(), dir.path()).await;

    let room = host
        .create_room(InfoHash::from_bytes([7; 32]))
        .await
        .expect("room created");
    let joined = member.join_room(&room.code, None).await.expect("joined");
    assert_eq!(joined.members.len(), 2);
    assert!(matches!(
        next(&mut host_events, |e| matches!(e, NodeEvent::Room(RoomEvent::Members { .. }))).await,
        NodeEvent::Room(RoomEvent::Members { members, .. }) if members.len() == 2
    ));
    let host_id = joined.host.expect("a host");

    // Eight clock exchanges through the server, answered by the host's node.
    // Back to back (no pause between exchanges while the window fills).
    let config = shoal_sync::ClockConfig {
        warmup_interval_ms: 0.0,
        ..shoal_sync::ClockConfig::default()
    };
    let mut clock = shoal_sync::ClockSync::new(config, member.clock_ms());
    while !clock.is_settled() {
        let ping = clock
            .poll_ping(member.clock_ms())
            .expect("due at once while the window fills");
        member
            .room_send(
                &room.code,
                Some(host_id),
                RoomBody::ClockPing {
                    id: ping.id,
                    t0: ping.t0,
                },
            )
            .await
            .expect("sent");
        let NodeEvent::Room(RoomEvent::Message {
            body: RoomBody::ClockPong { id, t0, t1, t2 },
            ..
        }) = next(&mut member_events, |e| {
            matches!(e, NodeEvent::Room(RoomEvent::Message { .. }))
        })
        .await
        else {
            unreachable!()
        };
        let now = member.clock_ms();
        assert!(
            clock.on_pong(&shoal_sync::Pong { id, t0, t1, t2 }, now),
            "pong {id} {t0} {t1} {t2} at {now} for ping {ping:?}"
        );
    }
    // Both clocks are read in this process: the truth is at hand.
    let truth = host.clock_ms() - member.clock_ms();
    let estimate = clock.offset_ms().expect("settled");
    println!(
        "clock offset through the room: estimated {estimate:.2} ms, true {truth:.2} ms, round trip {:.2} ms",
        clock.rtt_ms().expect("settled")
    );
    assert!((estimate - truth).abs() < 5.0, "{estimate} vs {truth}");

    // The host's playback reaches the member; the member's own is refused.
    let playback = RoomBody::Playback {
        playing: true,
        position_ms: 0.0,
        rate: 1.0,
        at_ms: host.clock_ms() + 300.0,
    };
    host.room_send(&room.code, None, playback.clone())
        .await
        .expect("sent");
    let got = next(&mut member_events, |e| {
        matches!(e, NodeEvent::Room(RoomEvent::Message { .. }))
    })
    .await;
    assert_eq!(
        got,
        NodeEvent::Room(RoomEvent::Message {
            room: room.code.clone(),
            from: host_id,
            body: playback.clone(),
        })
    );
    member
        .room_send(&room.code, None, playback)
        .await
        .expect("sent");
    assert!(matches!(
        next(&mut member_events, |e| matches!(e, NodeEvent::Room(RoomEvent::Refused { .. }))).await,
        NodeEvent::Room(RoomEvent::Refused { reason }) if reason.contains("host")
    ));
    // The host ends the room.
    host.leave_room(&room.code).await.expect("left");
    assert!(matches!(
        next(&mut member_events, |e| matches!(
            e,
            NodeEvent::Room(RoomEvent::Closed { .. })
        ))
        .await,
        NodeEvent::Room(RoomEvent::Closed { .. })
    ));
}
