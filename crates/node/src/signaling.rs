//! The signaling client: one WebSocket to the server, hello/welcome, reconnection with
//! backoff (1 s doubling to 30 s). It forwards every server message to the actor and writes
//! what the actor sends.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use shoal_protocol::{ClientToServer, IceServer, NodeId, PROTOCOL_VERSION, ServerToClient};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tracing::{debug, info, warn};

use crate::events::{ConnectionState, NodeEvent};

/// What the signaling task tells the actor.
#[derive(Debug)]
pub(crate) enum SignalingEvent {
    /// `welcome` arrived.
    Connected {
        node_id: NodeId,
        ice_servers: Vec<IceServer>,
    },
    /// Any later message.
    Message(Box<ServerToClient>),
    /// The connection ended; nothing sent since then was delivered.
    Disconnected,
}

const MIN_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A connection that lasted this long resets the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(10);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs until the actor drops its sender.
pub(crate) async fn run(
    url: String,
    agent: String,
    mut outgoing: mpsc::Receiver<ClientToServer>,
    incoming: mpsc::Sender<SignalingEvent>,
    events: mpsc::Sender<NodeEvent>,
) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let _ = events
            .send(NodeEvent::Connection(ConnectionState::Connecting {
                url: url.clone(),
            }))
            .await;
        let started = tokio::time::Instant::now();
        let reason = match session(&url, &agent, &mut outgoing, &incoming).await {
            Ok(()) => return, // the actor is gone
            Err(reason) => reason,
        };
        if incoming.send(SignalingEvent::Disconnected).await.is_err() {
            return;
        }
        if started.elapsed() >= STABLE_AFTER {
            backoff = MIN_BACKOFF;
        }
        warn!(%url, %reason, retry_in = ?backoff, "signaling connection lost");
        let _ = events
            .send(NodeEvent::Connection(ConnectionState::Disconnected {
                url: url.clone(),
                reason,
                retry_in: backoff,
            }))
            .await;
        // Wait out the backoff; whatever the actor sends meanwhile cannot be delivered.
        let wait = tokio::time::sleep(backoff);
        tokio::pin!(wait);
        loop {
            tokio::select! {
                _ = &mut wait => break,
                message = outgoing.recv() => if message.is_none() { return },
            }
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection. `Ok` only when the actor is gone; `Err` carries why it ended, in words.
async fn session(
    url: &str,
    agent: &str,
    outgoing: &mut mpsc::Receiver<ClientToServer>,
    incoming: &mpsc::Sender<SignalingEvent>,
) -> Result<(), String> {
    let connect = tokio_tungstenite::connect_async(url);
    let (mut ws, _) = match tokio::time::timeout(HANDSHAKE_TIMEOUT, connect).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => return Err(describe_connect_error(&e)),
        Err(_) => return Err("the server did not answer within 10 s".into()),
    };
    let hello = ClientToServer::Hello {
        version: PROTOCOL_VERSION,
        agent: Some(agent.to_owned()),
    };
    send(&mut ws, &hello).await?;
    let welcome = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    return serde_json::from_str::<ServerToClient>(&text)
                        .map_err(|e| format!("the server sent something unreadable: {e}"));
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(describe_stream_error(&e)),
                None => return Err("the server closed the connection".into()),
            }
        }
    })
    .await
    .map_err(|_| "the server did not welcome us within 10 s".to_owned())??;
    let (node_id, ice_servers, heartbeat) = match welcome {
        ServerToClient::Welcome {
            node_id,
            ice_servers,
            heartbeat_interval_ms,
            ..
        } => (
            node_id,
            ice_servers,
            Duration::from_millis(heartbeat_interval_ms.clamp(1000, 300_000)),
        ),
        ServerToClient::Error { reason, .. } => {
            return Err(format!("the server refused us: {reason}"));
        }
        other => return Err(format!("expected welcome, got {other:?}")),
    };
    info!(%url, node = %node_id.short(), "connected to signaling server");
    // The actor announces `Connected` to the front end once it can take requests.
    if incoming
        .send(SignalingEvent::Connected {
            node_id,
            ice_servers,
        })
        .await
        .is_err()
    {
        return Ok(());
    }
    // The server pings every heartbeat; silence for three of them (plus slack) means the
    // connection died without a close (suspend, NAT timeout), and the server has dropped us.
    let silence_limit = heartbeat * 3 + Duration::from_secs(5);
    let mut last_frame = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(last_frame + silence_limit) => {
                return Err(format!(
                    "no word from the server for {} s",
                    silence_limit.as_secs()
                ));
            }
            message = outgoing.recv() => {
                let Some(message) = message else {
                    let _ = ws.close(None).await;
                    return Ok(());
                };
                send(&mut ws, &message).await?;
            }
            frame = ws.next() => match frame.inspect(|_| last_frame = tokio::time::Instant::now()) {
                Some(Ok(Message::Text(text))) => match serde_json::from_str::<ServerToClient>(&text) {
                    Ok(message) => {
                        if incoming.send(SignalingEvent::Message(Box::new(message))).await.is_err() {
                            return Ok(());
                        }
                    }
                    Err(e) => debug!(error = %e, "unreadable message from the server; ignored"),
                },
                Some(Ok(Message::Close(frame))) => {
                    let why = frame.map(|f| f.reason.to_string()).unwrap_or_default();
                    return Err(if why.is_empty() {
                        "the server closed the connection".into()
                    } else {
                        format!("the server closed the connection ({why})")
                    });
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(describe_stream_error(&e)),
                None => return Err("the server closed the connection".into()),
            },
        }
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Longest one write to the server may take before the connection counts as dead.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

async fn send(ws: &mut Ws, message: &ClientToServer) -> Result<(), String> {
    let text = serde_json::to_string(message).map_err(|e| e.to_string())?;
    match tokio::time::timeout(WRITE_TIMEOUT, ws.send(Message::text(text))).await {
        Ok(result) => result.map_err(|e| describe_stream_error(&e)),
        Err(_) => Err("the server stopped taking messages".into()),
    }
}

/// Words for an error on an open connection: a server that went away without a close frame
/// (stopped, crashed, or its machine went off the network) says so instead of quoting the
/// WebSocket library ("WebSocket protocol error: Connection reset without closing handshake").
fn describe_stream_error(e: &tokio_tungstenite::tungstenite::Error) -> String {
    use std::io::ErrorKind;
    use tokio_tungstenite::tungstenite::Error;
    use tokio_tungstenite::tungstenite::error::ProtocolError;
    match e {
        Error::ConnectionClosed
        | Error::AlreadyClosed
        | Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            "the server closed the connection without a goodbye (stopped, or unreachable)".into()
        }
        Error::Io(io)
            if matches!(
                io.kind(),
                ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::UnexpectedEof
            ) =>
        {
            "the server closed the connection without a goodbye (stopped, or unreachable)".into()
        }
        other => format!("connection error: {other}"),
    }
}

fn describe_connect_error(e: &tokio_tungstenite::tungstenite::Error) -> String {
    use tokio_tungstenite::tungstenite::Error;
    match e {
        Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            "connection refused: is the signaling server running?".into()
        }
        Error::Url(u) => format!("bad server URL: {u}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use tokio_tungstenite::tungstenite::Error;
    use tokio_tungstenite::tungstenite::error::ProtocolError;

    #[test]
    fn a_server_gone_without_a_goodbye_is_said_in_words() {
        for e in [
            Error::Protocol(ProtocolError::ResetWithoutClosingHandshake),
            Error::ConnectionClosed,
            Error::Io(std::io::ErrorKind::ConnectionReset.into()),
        ] {
            let words = super::describe_stream_error(&e);
            assert!(
                words.starts_with("the server closed the connection"),
                "{words}"
            );
        }
        let other = super::describe_stream_error(&Error::Utf8("bad".into()));
        assert!(other.starts_with("connection error: "), "{other}");
    }
}
