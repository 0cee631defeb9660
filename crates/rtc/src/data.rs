//! The open data channel: one reader task per channel, [`DataLink`] for sending and receiving.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::{Mutex, Notify, mpsc};
use tracing::{debug, trace, warn};
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::error::Error as WebrtcError;
use webrtc::peer_connection::{PeerConnection, RTCIceCandidateType};

use crate::link::{CloseGuard, Shared};
use crate::{CandidateType, RtcError};

/// Received messages a channel holds for its consumer. When the consumer falls behind, the
/// reader task stops polling; webrtc-rs then keeps up to 256 more events in its own queue and
/// stops pulling from SCTP, whose receive window (1 MiB) closes and stalls the remote sender.
/// Worst case a slow consumer holds (16 + 256) messages plus the window: about 69 MiB at
/// 256 KiB per message.
pub(crate) const RECV_QUEUE_MESSAGES: usize = 16;

/// How often a paused sender re-reads `outstanding_bytes` when no `OnBufferedAmountLow`
/// event arrives. Those events follow SCTP's post-packetisation buffered amount, not
/// `outstanding_bytes`, so one may fire while outstanding is still above the low watermark
/// and none follows.
const BACKPRESSURE_POLL: Duration = Duration::from_millis(10);

/// State of one open data channel, shared by its reader task and every [`DataLink`] clone.
pub(crate) struct ChannelShared {
    dc: Arc<dyn DataChannel>,
    label: String,
    messages: Mutex<mpsc::Receiver<Bytes>>,
    /// Woken by `OnBufferedAmountLow` and when the reader task ends.
    buffered_amount_low: Notify,
    /// Set when the reader task has ended: no more messages, sends will fail.
    ended: AtomicBool,
}

/// Polls `dc` until it closes: publishes it to `shared` on `OnOpen`, forwards binary messages
/// into a bounded queue (waiting when it is full, which is the backpressure towards the
/// remote), wakes paused senders on `OnBufferedAmountLow`. Ends on `OnClose`, when webrtc-rs
/// ends the event stream (peer connection closed) or on local shutdown; then the queue's
/// sender is dropped so [`DataLink::recv`] returns `None` after the last queued message.
pub(crate) async fn read_channel(dc: Arc<dyn DataChannel>, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    let (tx, rx) = mpsc::channel::<Bytes>(RECV_QUEUE_MESSAGES);
    let mut rx = Some(rx);
    let mut channel: Option<Arc<ChannelShared>> = None;
    loop {
        let event = tokio::select! {
            biased;
            _ = shutdown.wait_for(|closed| *closed) => break,
            event = dc.poll() => event,
        };
        let Some(event) = event else {
            debug!("data channel event stream ended");
            break;
        };
        match event {
            DataChannelEvent::OnOpen => {
                let Some(rx) = rx.take() else {
                    continue;
                };
                let label = dc.label().await.unwrap_or_default();
                let low = u32::try_from(shared.low_watermark_bytes).unwrap_or(u32::MAX);
                if let Err(error) = dc.set_buffered_amount_low_threshold(low).await {
                    warn!(%error, "could not set bufferedAmountLowThreshold");
                }
                debug!(%label, "data channel open");
                let opened = Arc::new(ChannelShared {
                    dc: dc.clone(),
                    label,
                    messages: Mutex::new(rx),
                    buffered_amount_low: Notify::new(),
                    ended: AtomicBool::new(false),
                });
                shared.publish_open(opened.clone());
                channel = Some(opened);
            }
            DataChannelEvent::OnMessage(message) => {
                if message.is_string {
                    warn!(
                        len_bytes = message.data.len(),
                        "dropping a text message: Shoal data channels carry binary messages"
                    );
                    continue;
                }
                trace!(len_bytes = message.data.len(), "data channel message");
                tokio::select! {
                    biased;
                    _ = shutdown.wait_for(|closed| *closed) => break,
                    sent = tx.send(message.data.freeze()) => {
                        if sent.is_err() {
                            // Unreachable while `ChannelShared` lives; keep draining.
                            debug!("receiver gone; dropping message");
                        }
                    }
                }
            }
            DataChannelEvent::OnBufferedAmountLow => {
                if let Some(channel) = &channel {
                    channel.buffered_amount_low.notify_waiters();
                }
            }
            DataChannelEvent::OnClose => {
                debug!("data channel closed");
                break;
            }
            DataChannelEvent::OnClosing => debug!("data channel closing"),
            DataChannelEvent::OnError => debug!("data channel error event"),
            _ => {}
        }
    }
    // Marked ended before the queue closes: once `recv` has returned `None`, `send` answers
    // `Closed` (it raced to webrtc-rs's own send before, which may still take the message).
    if let Some(channel) = &channel {
        channel.ended.store(true, Ordering::Release);
        channel.buffered_amount_low.notify_waiters();
    }
    drop(tx);
    shared.channel_ended();
}

/// The open data channel of a [`crate::PeerLink`]: ordered and reliable (RFC 8831 §6.1),
/// binary messages of at most [`DataLink::max_message_size`] bytes.
///
/// A cheap `Clone` handle: every clone sends on and receives from the same channel (receivers
/// take turns; each message goes to one of them). The peer connection stays up while its
/// `PeerLink` or any `DataLink` exists; dropping the last one closes it.
#[derive(Clone)]
pub struct DataLink {
    channel: Arc<ChannelShared>,
    pc: Arc<dyn PeerConnection>,
    _guard: Arc<CloseGuard>,
    max_message_bytes: usize,
    high_watermark_bytes: usize,
    low_watermark_bytes: usize,
}

impl std::fmt::Debug for DataLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataLink")
            .field("label", &self.channel.label)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("ended", &self.channel.ended.load(Ordering::Acquire))
            .finish_non_exhaustive()
    }
}

impl DataLink {
    pub(crate) fn new(
        channel: Arc<ChannelShared>,
        pc: Arc<dyn PeerConnection>,
        guard: Arc<CloseGuard>,
        max_message_bytes: usize,
        shared: &Shared,
    ) -> Self {
        Self {
            channel,
            pc,
            _guard: guard,
            max_message_bytes,
            high_watermark_bytes: shared.high_watermark_bytes,
            low_watermark_bytes: shared.low_watermark_bytes,
        }
    }

    /// The channel's label: the one given to [`crate::PeerLink::offer`] on both sides.
    pub fn label(&self) -> &str {
        &self.channel.label
    }

    /// The negotiated max message size in bytes (RFC 8841): the smaller of both sides'
    /// `a=max-message-size`, 65 536 when the remote did not say, never above
    /// [`crate::MAX_MESSAGE_BYTES`]. Two Shoal peers get 262 144.
    pub fn max_message_size(&self) -> usize {
        self.max_message_bytes
    }

    /// The type of the selected ICE candidate pair (see [`CandidateType`]);
    /// [`CandidateType::Unknown`] before ICE selects a pair or after the connection ended.
    pub async fn candidate_type(&self) -> CandidateType {
        let Some(sctp) = self.pc.sctp().await else {
            return CandidateType::Unknown;
        };
        let ice = sctp.transport().ice_transport();
        match ice.get_selected_candidate_pair().await {
            Ok(Some(pair)) => path_type(pair.local().typ, pair.remote().typ),
            Ok(None) => CandidateType::Unknown,
            Err(error) => {
                debug!(%error, "no selected candidate pair");
                CandidateType::Unknown
            }
        }
    }

    /// Sends one binary message (RFC 8831 §6.6, PPID "WebRTC Binary").
    ///
    /// Backpressure (W3C `RTCDataChannel.bufferedAmount` flow control): when more than
    /// `high_watermark_bytes` sent earlier are still unacknowledged, this waits until at most
    /// `low_watermark_bytes` are, then queues the message. A task that loops on `send` thus
    /// never has more than the high watermark plus one message outstanding (concurrent
    /// senders on clones may each add one message). Returns once the message is queued, not
    /// when it is delivered.
    ///
    /// # Errors
    /// [`RtcError::MessageTooLarge`] when `message` is longer than
    /// [`DataLink::max_message_size`] (nothing is sent); [`RtcError::Closed`] when the channel
    /// or connection is closed, including while waiting.
    pub async fn send(&self, message: Bytes) -> Result<(), RtcError> {
        let len_bytes = message.len();
        if len_bytes > self.max_message_bytes {
            return Err(RtcError::MessageTooLarge {
                len_bytes,
                max_bytes: self.max_message_bytes,
            });
        }
        if self.channel.ended.load(Ordering::Acquire) {
            return Err(RtcError::Closed);
        }
        self.wait_for_send_capacity().await?;
        trace!(len_bytes, "send");
        self.channel
            .dc
            .send(BytesMut::from(message))
            .await
            .map_err(|error| channel_error("send", error))
    }

    /// Waits while outstanding bytes are above the high watermark, until they are at or below
    /// the low one. Woken by `OnBufferedAmountLow` (threshold = low watermark), with a
    /// [`BACKPRESSURE_POLL`] timer as fallback since that event counts a different number.
    async fn wait_for_send_capacity(&self) -> Result<(), RtcError> {
        if self.outstanding_checked().await? > self.high_watermark_bytes {
            trace!(high = self.high_watermark_bytes, "send paused");
            loop {
                let woken = self.channel.buffered_amount_low.notified();
                tokio::pin!(woken);
                woken.as_mut().enable();
                if self.channel.ended.load(Ordering::Acquire) {
                    return Err(RtcError::Closed);
                }
                if self.outstanding_checked().await? <= self.low_watermark_bytes {
                    trace!(low = self.low_watermark_bytes, "send resumed");
                    break;
                }
                tokio::select! {
                    _ = &mut woken => {}
                    _ = tokio::time::sleep(BACKPRESSURE_POLL) => {}
                }
            }
        }
        Ok(())
    }

    /// The next received binary message, in order. `None` once the channel has ended and
    /// every queued message was taken: the peer closed, ICE failed (after
    /// `ice_disconnected_timeout + ice_failed_timeout` of silence), or this side closed.
    /// Cancel-safe.
    pub async fn recv(&self) -> Option<Bytes> {
        self.channel.messages.lock().await.recv().await
    }

    /// Bytes handed to [`DataLink::send`] that SCTP has not yet seen acknowledged, including
    /// those not yet packetised; 0 once the channel is closed. This is what the watermarks
    /// compare against (webrtc-rs 0.21 has no `bufferedAmount`).
    pub async fn outstanding_bytes(&self) -> usize {
        self.outstanding_checked().await.unwrap_or(0)
    }

    async fn outstanding_checked(&self) -> Result<usize, RtcError> {
        self.channel
            .dc
            .outstanding_bytes()
            .await
            .map_err(|error| channel_error("outstanding_bytes", error))
    }
}

/// Maps a data-channel error: the closed family becomes [`RtcError::Closed`].
fn channel_error(operation: &'static str, error: WebrtcError) -> RtcError {
    match error {
        WebrtcError::ErrDataChannelClosed
        | WebrtcError::ErrDataChannelNotOpen
        | WebrtcError::ErrConnectionClosed
        | WebrtcError::ErrClosedPipe
        | WebrtcError::ErrStreamClosed => RtcError::Closed,
        other => RtcError::webrtc(operation, other),
    }
}

/// The path type of a selected pair: relay if either end is relayed, else the local type.
fn path_type(local: RTCIceCandidateType, remote: RTCIceCandidateType) -> CandidateType {
    if local == RTCIceCandidateType::Relay || remote == RTCIceCandidateType::Relay {
        return CandidateType::Relay;
    }
    match local {
        RTCIceCandidateType::Host => CandidateType::Host,
        RTCIceCandidateType::Srflx => CandidateType::Srflx,
        RTCIceCandidateType::Prflx => CandidateType::Prflx,
        _ => CandidateType::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_type_is_relay_when_either_end_is() {
        use RTCIceCandidateType as T;
        assert_eq!(path_type(T::Host, T::Host), CandidateType::Host);
        assert_eq!(path_type(T::Host, T::Prflx), CandidateType::Host);
        assert_eq!(path_type(T::Srflx, T::Host), CandidateType::Srflx);
        assert_eq!(path_type(T::Prflx, T::Srflx), CandidateType::Prflx);
        assert_eq!(path_type(T::Host, T::Relay), CandidateType::Relay);
        assert_eq!(path_type(T::Relay, T::Host), CandidateType::Relay);
        assert_eq!(path_type(T::Unspecified, T::Host), CandidateType::Unknown);
    }
}
