//! Rooms on the signaling server (issue 11, item 1), driven over real WebSockets. Properties
//! asserted:
//! - a host creates a room; members join by its code (typed loosely) or its link and every
//!   member hears of every join and leave;
//! - only the host's playback is relayed: a member's is refused with `not_host` and reaches
//!   nobody; members' own reports and clock pings reach the host, stamped with the sender;
//! - a member that joins later (or reconnects) gets the host's last playback at once;
//! - the host's leaving ends the room for everyone; an unknown code is `unknown_room`;
//! - guessing codes is rate-limited per connection and per address;
//! - the host's connection dropping keeps the room for the grace, the host key takes it back
//!   from a new connection, and a host that does not come back ends it;
//! - a member whose connection drops leaves the room, and rejoining by code (on a new
//!   connection) finds it as the host left it: the host, the members, the last playback.

mod common;

use common::{Client, Seen, ServerProcess, error_code, hash, serve};
use shoal_protocol::{ErrorCode, NodeId, RoomBody, RoomInfo, ServerToClient};

fn playback(position_ms: f64) -> serde_json::Value {
    serde_json::json!({"kind": "playback", "playing": true, "position_ms": position_ms,
                       "rate": 1.0, "at_ms": 5000.0})
}

async fn joined_room(client: &mut Client, request_id: u64) -> RoomInfo {
    match client.recv().await {
        ServerToClient::RoomJoined {
            request_id: Some(id),
            room,
        } if id == request_id => room,
        other => panic!("expected room_joined {request_id}, got {other:?}"),
    }
}

async fn members(client: &mut Client) -> (Option<NodeId>, Vec<NodeId>) {
    match client.recv().await {
        ServerToClient::RoomMembers { host, members, .. } => (host, members),
        other => panic!("expected room_members, got {other:?}"),
    }
}

async fn room_message(client: &mut Client) -> (NodeId, RoomBody) {
    match client.recv().await {
        ServerToClient::RoomMessage { from, body, .. } => (from, body),
        other => panic!("expected room_message, got {other:?}"),
    }
}

#[tokio::test]
async fn only_the_host_drives_playback_and_everyone_hears_of_joins_and_leaves() {
    let server = ServerProcess::start(&[]);
    let mut host = Client::joined(&server.url).await;
    let mut ana = Client::joined(&server.url).await;
    let mut bo = Client::joined(&server.url).await;

    host.send_json(
        serde_json::json!({"type": "create_room", "info_hash": hash(1), "request_id": 1}),
    )
    .await;
    let room = joined_room(&mut host, 1).await;
    assert_eq!(room.code.len(), 9, "{}", room.code);
    assert_eq!(room.link.len(), 32);
    assert!(room.host_key.is_some(), "the host gets its key");
    assert_eq!(room.host, Some(host.id()));
    assert_eq!(room.members, [host.id()]);

    // Ana types the code in lower case without its dash; Bo pastes the link.
    let typed = room.code.replace('-', "").to_lowercase();
    ana.send_json(serde_json::json!({"type": "join_room", "room": typed, "request_id": 2}))
        .await;
    let seen = joined_room(&mut ana, 2).await;
    assert_eq!(seen.host_key, None, "only the host gets the key");
    assert_eq!(seen.members, [host.id(), ana.id()]);
    assert_eq!(members(&mut host).await.1, [host.id(), ana.id()]);
    bo.send_json(serde_json::json!({"type": "join_room", "room": room.link, "request_id": 3}))
        .await;
    joined_room(&mut bo, 3).await;
    let all = vec![host.id(), ana.id(), bo.id()];
    assert_eq!(members(&mut host).await.1, all);
    assert_eq!(members(&mut ana).await.1, all);

    // Ana tries to drive playback: refused, and nobody hears it.
    ana.send_json(
        serde_json::json!({"type": "room_send", "room": room.code, "body": playback(99_000.0)}),
    )
    .await;
    assert_eq!(error_code(&ana.recv().await), Some(ErrorCode::NotHost));
    // A wait and a clock answer are the host's too.
    for body in [
        serde_json::json!({"kind": "waiting"}),
        serde_json::json!({"kind": "clock_pong", "id": 1, "t0": 1.0, "t1": 2.0, "t2": 2.0}),
    ] {
        ana.send_json(serde_json::json!({"type": "room_send", "room": room.code, "body": body}))
            .await;
        assert_eq!(error_code(&ana.recv().await), Some(ErrorCode::NotHost));
    }
    // The host's playback reaches both members, from the host.
    host.send_json(
        serde_json::json!({"type": "room_send", "room": room.code, "body": playback(1000.0)}),
    )
    .await;
    for member in [&mut ana, &mut bo] {
        let (from, body) = room_message(member).await;
        assert_eq!(from, host.id());
        assert!(matches!(body, RoomBody::Playback { position_ms, .. } if position_ms == 1000.0));
    }
    // Ana's state reaches the host and Bo, stamped with Ana (a forged `from` is ignored); her
    // clock ping reaches the host only.
    ana.send_json(
        serde_json::json!({"type": "room_send", "room": room.code, "from": bo.id(),
        "body": {"kind": "member_state", "state": "buffering", "position_ms": 980.0,
                 "progress": 0.42}}),
    )
    .await;
    for member in [&mut host, &mut bo] {
        let (from, body) = room_message(member).await;
        assert_eq!(from, ana.id());
        assert!(matches!(body, RoomBody::MemberState { progress, .. } if progress == 0.42));
    }
    ana.send_json(
        serde_json::json!({"type": "room_send", "room": room.code, "to": host.id(),
        "body": {"kind": "clock_ping", "id": 7, "t0": 123.5}}),
    )
    .await;
    let (from, body) = room_message(&mut host).await;
    assert_eq!(from, ana.id());
    assert_eq!(body, RoomBody::ClockPing { id: 7, t0: 123.5 });

    // Ana leaves; Cy joins later and gets the host's last playback at once.
    ana.send_json(serde_json::json!({"type": "leave_room", "room": room.code}))
        .await;
    assert_eq!(members(&mut host).await.1, [host.id(), bo.id()]);
    assert_eq!(members(&mut bo).await.1, [host.id(), bo.id()]);
    let mut cy = Client::joined(&server.url).await;
    cy.send_json(serde_json::json!({"type": "join_room", "room": room.code, "request_id": 4}))
        .await;
    let seen = joined_room(&mut cy, 4).await;
    assert!(
        matches!(seen.playback, Some(RoomBody::Playback { position_ms, .. }) if position_ms == 1000.0)
    );
    members(&mut host).await;
    members(&mut bo).await;

    // The host leaves: the room ends for everyone, and its code opens nothing.
    host.send_json(serde_json::json!({"type": "leave_room", "room": room.code}))
        .await;
    for member in [&mut bo, &mut cy] {
        assert!(matches!(
            member.recv().await,
            ServerToClient::RoomClosed { .. }
        ));
    }
    cy.send_json(serde_json::json!({"type": "join_room", "room": room.code, "request_id": 5}))
        .await;
    assert_eq!(error_code(&cy.recv().await), Some(ErrorCode::UnknownRoom));
    // Bad numbers are refused before they reach anyone.
    bo.send_json(serde_json::json!({"type": "create_room", "info_hash": hash(2), "request_id": 6}))
        .await;
    let own = joined_room(&mut bo, 6).await;
    bo.send_json(serde_json::json!({"type": "room_send", "room": own.code,
        "body": {"kind": "playback", "playing": true, "position_ms": -1.0, "rate": 1.0, "at_ms": 0.0}}))
        .await;
    assert_eq!(
        error_code(&bo.recv().await),
        Some(ErrorCode::InvalidMessage)
    );
}

#[tokio::test]
async fn guessing_room_codes_is_rate_limited_per_connection_and_per_address() {
    let server = ServerProcess::start(&[]);
    let mut guesser = Client::joined(&server.url).await;
    let refused = six_guesses(&mut guesser, "ZZZZ-ZZZ").await;
    assert_eq!(refused[..5], [Some(ErrorCode::UnknownRoom); 5]);
    assert_eq!(refused[5], Some(ErrorCode::RateLimited));
    // A new connection from the same address has the rest of the address's budget (10).
    let mut again = Client::joined(&server.url).await;
    let refused = six_guesses(&mut again, "YYYY-YYY").await;
    assert_eq!(refused[..5], [Some(ErrorCode::UnknownRoom); 5]);
    assert_eq!(refused[5], Some(ErrorCode::RateLimited));
}

/// Six joins of made-up codes `<prefix>0` to `<prefix>5`: the error code of each answer.
async fn six_guesses(client: &mut Client, prefix: &str) -> Vec<Option<ErrorCode>> {
    let mut refused = Vec::new();
    for i in 0..6u64 {
        let room = format!("{prefix}{i}");
        client
            .send_json(serde_json::json!({"type": "join_room", "room": room, "request_id": i}))
            .await;
        refused.push(error_code(&client.recv().await));
    }
    refused
}

#[tokio::test]
async fn a_host_that_reconnects_keeps_its_room_and_one_that_does_not_ends_it() {
    let (_server, url) = serve(shoal_signal::Config {
        room_host_grace: std::time::Duration::from_millis(500),
        ..shoal_signal::Config::default()
    })
    .await;
    let mut host = Client::joined(&url).await;
    host.send_json(
        serde_json::json!({"type": "create_room", "info_hash": hash(3), "request_id": 1}),
    )
    .await;
    let room = joined_room(&mut host, 1).await;
    let key = room.host_key.clone().expect("the host gets its key");
    host.send_json(
        serde_json::json!({"type": "room_send", "room": room.code, "body": playback(42_000.0)}),
    )
    .await;
    let mut viewer = Client::joined(&url).await;
    viewer
        .send_json(serde_json::json!({"type": "join_room", "room": room.code, "request_id": 2}))
        .await;
    joined_room(&mut viewer, 2).await;
    members(&mut host).await;

    // The host's connection drops: the room waits, host-less.
    drop(host);
    assert_eq!(members(&mut viewer).await, (None, vec![viewer.id()]));
    // A wrong key opens nothing; the right one makes the new connection the host.
    let mut back = Client::joined(&url).await;
    back.send_json(serde_json::json!({"type": "join_room", "room": room.code,
                                      "host_key": "00".repeat(16), "request_id": 3}))
        .await;
    assert_eq!(error_code(&back.recv().await), Some(ErrorCode::NotHost));
    back.send_json(serde_json::json!({"type": "join_room", "room": room.code,
                                      "host_key": key, "request_id": 4}))
        .await;
    let seen = joined_room(&mut back, 4).await;
    assert_eq!(seen.host, Some(back.id()));
    assert!(
        matches!(seen.playback, Some(RoomBody::Playback { position_ms, .. }) if position_ms == 42_000.0)
    );
    assert_eq!(
        members(&mut viewer).await,
        (Some(back.id()), vec![viewer.id(), back.id()])
    );

    // The host goes for good: after the grace the room ends.
    drop(back);
    assert_eq!(members(&mut viewer).await.0, None);
    match viewer.next().await {
        Seen::Message(ServerToClient::RoomClosed { reason, .. }) => {
            assert!(reason.contains("did not come back"), "{reason}");
        }
        other => panic!("expected room_closed, got {other:?}"),
    }
}

#[tokio::test]
async fn a_member_that_reconnects_finds_the_room_as_the_host_left_it() {
    let server = ServerProcess::start(&[]);
    let mut host = Client::joined(&server.url).await;
    host.send_json(
        serde_json::json!({"type": "create_room", "info_hash": hash(4), "request_id": 1}),
    )
    .await;
    let room = joined_room(&mut host, 1).await;
    host.send_json(
        serde_json::json!({"type": "room_send", "room": room.code, "body": playback(5_000.0)}),
    )
    .await;
    let mut member = Client::joined(&server.url).await;
    member
        .send_json(serde_json::json!({"type": "join_room", "room": room.code, "request_id": 2}))
        .await;
    joined_room(&mut member, 2).await;
    assert_eq!(members(&mut host).await.1, [host.id(), member.id()]);

    // The member's connection drops: it is gone from the room, which goes on.
    drop(member);
    assert_eq!(members(&mut host).await, (Some(host.id()), vec![host.id()]));
    // The host seeks while the member is away.
    host.send_json(
        serde_json::json!({"type": "room_send", "room": room.code, "body": playback(60_000.0)}),
    )
    .await;

    // Back on a new connection, by the same code: the room's host, members and the playback
    // the host sent while it was away.
    let mut back = Client::joined(&server.url).await;
    back.send_json(serde_json::json!({"type": "join_room", "room": room.code, "request_id": 3}))
        .await;
    let seen = joined_room(&mut back, 3).await;
    assert_eq!(seen.host, Some(host.id()));
    assert_eq!(seen.members, [host.id(), back.id()]);
    assert!(
        matches!(seen.playback, Some(RoomBody::Playback { position_ms, .. }) if position_ms == 60_000.0),
        "{:?}",
        seen.playback
    );
    assert_eq!(members(&mut host).await.1, [host.id(), back.id()]);
    // Its reports reach the host again, from its new id.
    back.send_json(serde_json::json!({"type": "room_send", "room": room.code,
        "body": {"kind": "member_state", "state": "playing", "position_ms": 60_100.0,
                 "progress": 1.0}}))
        .await;
    let (from, body) = room_message(&mut host).await;
    assert_eq!(from, back.id());
    assert!(matches!(body, RoomBody::MemberState { .. }));
}
