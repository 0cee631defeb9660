//! [`PeerLink`]: one peer connection, its offer/answer, trickle ICE and lifecycle.
//!
//! Tasks per link (all end on local close, via the `shutdown` watch):
//! - the webrtc-rs driver (spawned by the library) runs ICE, DTLS and SCTP and calls
//!   [`Handler`], which only forwards: candidates into a bounded queue, the connection state
//!   into a watch, the remote's data channel into a spawned reader task;
//! - the *signal pump* forwards local candidates into the caller's signal channel, started
//!   after the offer or answer was sent so that candidates never overtake it;
//! - the *supervisor* closes the connection when its state turns `Failed`;
//! - one reader task per data channel ([`crate::data::read_channel`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rtc::ice::mdns::MulticastDnsMode;
use rtc::ice::network_type::NetworkType;
use rtc::peer_connection::configuration::setting_engine::SctpMaxMessageSize;
use shoal_protocol::{IceCandidateInit, Signal};
use tokio::sync::{Mutex, mpsc, watch};
use tracing::{debug, warn};
use webrtc::data_channel::{DataChannel, RTCDataChannelInit};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceCandidateInit, RTCIceConnectionState, RTCIceGatheringState, RTCIceServer,
    RTCPeerConnectionIceEvent, RTCPeerConnectionState, RTCSessionDescription, SettingEngineBuilder,
};

use crate::data::{ChannelShared, DataLink, read_channel};
use crate::runtime::BigBufferRuntime;
use crate::{DEFAULT_REMOTE_MESSAGE_BYTES, MAX_MESSAGE_BYTES, OutgoingSignal, RtcConfig, RtcError};

/// [`MAX_MESSAGE_BYTES`] as the `u32` the setting engine takes.
const MAX_MESSAGE_BYTES_U32: u32 = 262_144;
const _: () = assert!(MAX_MESSAGE_BYTES_U32 as usize == MAX_MESSAGE_BYTES);

/// Local candidates waiting for the signal pump. A host has a handful (one per interface and
/// STUN/TURN server); beyond this they are dropped with a warning.
const LOCAL_CANDIDATE_QUEUE: usize = 64;

/// Remote candidates kept while the offerer waits for the answer (trickle ICE lets them
/// arrive first); more is refused with [`RtcError::TooManyEarlyCandidates`].
const MAX_EARLY_CANDIDATES: usize = 64;

/// The longest interval between ICE keepalives (webrtc-rs default).
const MAX_KEEPALIVE: Duration = Duration::from_secs(2);

/// Which side of the offer/answer exchange this link is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Offerer,
    Answerer,
}

/// Where the link's data channel is.
pub(crate) enum LinkStatus {
    /// Not open yet.
    Waiting,
    /// Open; the reader task runs.
    Open(Arc<ChannelShared>),
    /// Closed or failed; no channel will open any more.
    Ended(EndReason),
}

/// Why a link ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EndReason {
    /// ICE or DTLS failed.
    Failed,
    /// Closed by either side.
    Closed,
}

/// State shared by the handler, the tasks and the handles. Holds no peer connection, so the
/// driver (which owns the handler) and this never form a cycle through it.
pub(crate) struct Shared {
    role: Role,
    pub(crate) status: watch::Sender<LinkStatus>,
    pub(crate) shutdown: watch::Sender<bool>,
    connection_state: watch::Sender<RTCPeerConnectionState>,
    /// The answerer takes the first remote channel and ignores any other.
    channel_claimed: AtomicBool,
    pub(crate) high_watermark_bytes: usize,
    pub(crate) low_watermark_bytes: usize,
    /// Held while an offer or answer after the first is made and sent (ICE restart), so the
    /// candidates gathered for it never overtake it.
    signal_gate: Mutex<()>,
    /// Where this link's signals go, once the first offer or answer went: for the offers
    /// and answers of an ICE restart.
    signals: Mutex<Option<mpsc::Sender<OutgoingSignal>>>,
}

impl Shared {
    fn new(config: &RtcConfig, role: Role) -> Self {
        Self {
            role,
            status: watch::Sender::new(LinkStatus::Waiting),
            shutdown: watch::Sender::new(false),
            connection_state: watch::Sender::new(RTCPeerConnectionState::New),
            channel_claimed: AtomicBool::new(false),
            high_watermark_bytes: config.high_watermark_bytes,
            low_watermark_bytes: config.low_watermark_bytes,
            signal_gate: Mutex::new(()),
            signals: Mutex::new(None),
        }
    }

    /// Publishes the open channel, unless the link already ended.
    pub(crate) fn publish_open(&self, channel: Arc<ChannelShared>) {
        self.status.send_if_modified(|status| {
            if matches!(status, LinkStatus::Waiting) {
                *status = LinkStatus::Open(channel);
                true
            } else {
                false
            }
        });
    }

    /// Marks the link ended (keeping an earlier reason). Replacing `Open` also drops the
    /// status's reference to the channel, which would otherwise keep the driver alive in a
    /// cycle (driver → handler → this → channel → driver).
    fn end(&self, reason: EndReason) {
        self.status.send_if_modified(|status| {
            if matches!(status, LinkStatus::Ended(_)) {
                false
            } else {
                *status = LinkStatus::Ended(reason);
                true
            }
        });
    }

    /// Follows the peer connection's state.
    pub(crate) fn connection_state(&self) -> watch::Receiver<RTCPeerConnectionState> {
        self.connection_state.subscribe()
    }

    /// Called by the reader task when the channel ended.
    pub(crate) fn channel_ended(&self) {
        self.end(EndReason::Closed);
    }
}

/// A local candidate for the signal pump.
pub(crate) enum LocalCandidate {
    Candidate(IceCandidateInit),
    EndOfCandidates,
}

/// The webrtc-rs event handler. The driver awaits each callback inline, so every method only
/// forwards (`try_send`, `send_replace`, `spawn`) and returns.
struct Handler {
    shared: Arc<Shared>,
    candidates: mpsc::Sender<LocalCandidate>,
    /// Where a media link's remote tracks go ([`crate::media`]); `None` on a data link.
    tracks: Option<mpsc::Sender<Arc<dyn webrtc::media_stream::track_remote::TrackRemote>>>,
}

impl Handler {
    fn forward(&self, candidate: LocalCandidate) {
        if let Err(error) = self.candidates.try_send(candidate) {
            warn!(%error, "local ICE candidate dropped: the signal pump is behind");
        }
    }
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        match event.candidate.to_json() {
            Ok(init) => {
                debug!(candidate = %init.candidate, "local ICE candidate");
                self.forward(LocalCandidate::Candidate(IceCandidateInit {
                    candidate: init.candidate,
                    sdp_mid: init.sdp_mid,
                    sdp_mline_index: init.sdp_mline_index,
                    username_fragment: init.username_fragment,
                }));
            }
            Err(error) => warn!(%error, "could not encode a local ICE candidate"),
        }
    }

    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        debug!(%state, "ICE gathering state");
        if state == RTCIceGatheringState::Complete {
            self.forward(LocalCandidate::EndOfCandidates);
        }
    }

    async fn on_ice_connection_state_change(&self, state: RTCIceConnectionState) {
        debug!(%state, "ICE connection state");
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        debug!(%state, "peer connection state");
        self.shared.connection_state.send_replace(state);
    }

    async fn on_track(&self, track: Arc<dyn webrtc::media_stream::track_remote::TrackRemote>) {
        match &self.tracks {
            Some(tracks) => {
                if tracks.try_send(track).is_err() {
                    warn!("ignoring a remote track: nobody takes it");
                }
            }
            None => warn!("ignoring a remote media track on a data link"),
        }
    }

    async fn on_data_channel(&self, data_channel: Arc<dyn DataChannel>) {
        if self.shared.role == Role::Answerer
            && !self.shared.channel_claimed.swap(true, Ordering::AcqRel)
        {
            debug!("remote data channel arrived");
            tokio::spawn(read_channel(data_channel, self.shared.clone()));
        } else {
            // Dropping it unregisters its event queue; webrtc-rs then discards its events.
            warn!("ignoring an extra data channel opened by the remote");
        }
    }
}

/// Closes the peer connection when the last [`PeerLink`] or [`DataLink`] handle is dropped.
pub(crate) struct CloseGuard {
    pc: Arc<dyn PeerConnection>,
    shared: Arc<Shared>,
    /// Set once `pc.close()` has completed.
    closed: AtomicBool,
}

impl CloseGuard {
    async fn close(&self) {
        self.shared.shutdown.send_replace(true);
        self.shared.end(EndReason::Closed);
        if let Err(error) = self.pc.close().await {
            debug!(%error, "peer connection close");
        }
        self.closed.store(true, Ordering::Release);
    }
}

impl Drop for CloseGuard {
    fn drop(&mut self) {
        self.shared.shutdown.send_replace(true);
        self.shared.end(EndReason::Closed);
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        // webrtc-rs keeps the driver running after its handle is dropped; close it.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let pc = self.pc.clone();
                runtime.spawn(async move {
                    if let Err(error) = pc.close().await {
                        debug!(%error, "peer connection close on drop");
                    }
                });
            }
            Err(_) => warn!("PeerLink dropped outside a tokio runtime; call close() instead"),
        }
    }
}

/// Remote description and candidates that arrived before it.
struct RemoteState {
    description_set: bool,
    early_candidates: Vec<IceCandidateInit>,
}

/// One WebRTC peer connection (W3C `RTCPeerConnection`) with one ordered, reliable data
/// channel (RFC 8831), SDP offer/answer (RFC 3264, JSEP RFC 8829) and trickle ICE (RFC 8838)
/// carried as Shoal types.
///
/// Must be created and used inside a tokio runtime with IO and time enabled. Call
/// [`PeerLink::close`] when done; dropping the last `PeerLink`/[`DataLink`] handle also
/// closes the connection, from a spawned task.
pub struct PeerLink {
    pub(crate) pc: Arc<dyn PeerConnection>,
    pub(crate) shared: Arc<Shared>,
    guard: Arc<CloseGuard>,
    remote: Mutex<RemoteState>,
    /// A media link's remote tracks, as they arrive ([`crate::media`]).
    pub(crate) tracks:
        Option<Mutex<mpsc::Receiver<Arc<dyn webrtc::media_stream::track_remote::TrackRemote>>>>,
}

impl std::fmt::Debug for PeerLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerLink")
            .field("role", &self.shared.role)
            .field("state", &*self.shared.connection_state.borrow())
            .finish_non_exhaustive()
    }
}

impl PeerLink {
    /// Offerer: creates the peer connection and one ordered, reliable data channel labelled
    /// `label` (before the offer, so the offer carries an `m=application` section), then
    /// sends [`OutgoingSignal::Offer`] and, as they are gathered, the local candidates through
    /// `signals`. Returns once the offer is sent; apply the answer with
    /// [`PeerLink::apply_remote`].
    ///
    /// # Errors
    /// [`RtcError::InvalidConfig`], [`RtcError::SignalingClosed`] when `signals` has no
    /// receiver, [`RtcError::Webrtc`] when binding or SDP generation fails.
    pub async fn offer(
        config: &RtcConfig,
        label: &str,
        signals: mpsc::Sender<OutgoingSignal>,
    ) -> Result<PeerLink, RtcError> {
        let (link, candidates) = Self::build(config, Role::Offerer, None).await?;
        let init = RTCDataChannelInit {
            ordered: true,
            ..RTCDataChannelInit::default()
        };
        let dc = link
            .pc
            .create_data_channel(label, Some(init))
            .await
            .map_err(|error| RtcError::webrtc("create_data_channel", error))?;
        tokio::spawn(read_channel(dc, link.shared.clone()));
        link.send_offer(label, signals, candidates).await?;
        Ok(link)
    }

    /// Creates and sends the offer, then starts the signal pump.
    pub(crate) async fn send_offer(
        &self,
        label: &str,
        signals: mpsc::Sender<OutgoingSignal>,
        candidates: mpsc::Receiver<LocalCandidate>,
    ) -> Result<(), RtcError> {
        let link = self;
        let offer = link
            .pc
            .create_offer(None)
            .await
            .map_err(|error| RtcError::webrtc("create_offer", error))?;
        let sdp = offer.sdp.clone();
        link.pc
            .set_local_description(offer)
            .await
            .map_err(|error| RtcError::webrtc("set_local_description", error))?;
        debug!(%label, "sending offer");
        signals
            .send(OutgoingSignal::Offer(sdp))
            .await
            .map_err(|_| RtcError::SignalingClosed)?;
        *link.shared.signals.lock().await = Some(signals.clone());
        tokio::spawn(pump_signals(candidates, signals, link.shared.clone()));
        Ok(())
    }

    /// Answerer: applies the remote offer, sends [`OutgoingSignal::Answer`] and then the local
    /// candidates through `signals`. The remote's data channel arrives by itself; wait for it
    /// with [`PeerLink::channel`].
    ///
    /// # Errors
    /// [`RtcError::InvalidSdp`] when the offer cannot be parsed or applied (malformed, or no
    /// data channel section), [`RtcError::InvalidConfig`], [`RtcError::SignalingClosed`],
    /// [`RtcError::Webrtc`].
    pub async fn answer(
        config: &RtcConfig,
        offer_sdp: &str,
        signals: mpsc::Sender<OutgoingSignal>,
    ) -> Result<PeerLink, RtcError> {
        Self::answer_with(config, offer_sdp, signals, None).await
    }

    /// [`PeerLink::answer`], with a media engine for a media link.
    pub(crate) async fn answer_with(
        config: &RtcConfig,
        offer_sdp: &str,
        signals: mpsc::Sender<OutgoingSignal>,
        media: Option<crate::media::MediaSetup>,
    ) -> Result<PeerLink, RtcError> {
        let offer = RTCSessionDescription::offer(offer_sdp.to_owned())
            .map_err(|error| RtcError::InvalidSdp(error.to_string()))?;
        let (link, candidates) = Self::build(config, Role::Answerer, media).await?;
        link.pc
            .set_remote_description(offer)
            .await
            .map_err(|error| RtcError::InvalidSdp(error.to_string()))?;
        link.remote.lock().await.description_set = true;
        let answer = link
            .pc
            .create_answer(None)
            .await
            .map_err(|error| RtcError::webrtc("create_answer", error))?;
        let sdp = answer.sdp.clone();
        link.pc
            .set_local_description(answer)
            .await
            .map_err(|error| RtcError::webrtc("set_local_description", error))?;
        debug!("sending answer");
        signals
            .send(OutgoingSignal::Answer(sdp))
            .await
            .map_err(|_| RtcError::SignalingClosed)?;
        *link.shared.signals.lock().await = Some(signals.clone());
        tokio::spawn(pump_signals(candidates, signals, link.shared.clone()));
        Ok(link)
    }

    /// Builds the peer connection with Shoal's settings (and, for a media link, its codecs
    /// and interceptors) and starts the supervisor.
    pub(crate) async fn build(
        config: &RtcConfig,
        role: Role,
        media: Option<crate::media::MediaSetup>,
    ) -> Result<(PeerLink, mpsc::Receiver<LocalCandidate>), RtcError> {
        config.validate()?;
        let shared = Arc::new(Shared::new(config, role));
        let (candidates_tx, candidates_rx) = mpsc::channel(LOCAL_CANDIDATE_QUEUE);
        let (tracks_tx, tracks_rx) = match media {
            Some(_) => {
                let (tx, rx) = mpsc::channel(crate::media::MAX_REMOTE_TRACKS);
                (Some(tx), Some(Mutex::new(rx)))
            }
            None => (None, None),
        };
        let handler = Arc::new(Handler {
            shared: shared.clone(),
            candidates: candidates_tx,
            tracks: tracks_tx,
        });
        let keepalive = (!config.ice_disconnected_timeout.is_zero()).then(|| {
            (config.ice_disconnected_timeout / 3).clamp(Duration::from_millis(100), MAX_KEEPALIVE)
        });
        let settings = SettingEngineBuilder::new()
            .with_sctp_max_message_size(SctpMaxMessageSize::Bounded(MAX_MESSAGE_BYTES_U32))
            .with_network_types(vec![NetworkType::Udp4])
            .with_multicast_dns_mode(MulticastDnsMode::Disabled)
            .with_ice_timeouts(
                Some(config.ice_disconnected_timeout),
                Some(config.ice_failed_timeout),
                keepalive,
            )
            .build();
        let ice_servers = config
            .ice_servers
            .iter()
            .map(|server| RTCIceServer {
                urls: server.urls.clone(),
                username: server.username.clone().unwrap_or_default(),
                credential: server.credential.clone().unwrap_or_default(),
            })
            .collect();
        let configuration = RTCConfigurationBuilder::new()
            .with_ice_servers(ice_servers)
            .build();
        let mut builder = PeerConnectionBuilder::new()
            .with_configuration(configuration)
            .with_setting_engine(settings)
            .with_runtime(Arc::new(BigBufferRuntime::new()))
            .with_handler(handler)
            .with_udp_addrs(config.bind_addrs.clone());
        if let Some(media) = media {
            builder = builder
                .with_media_engine(media.engine)
                .with_interceptor_registry(media.interceptors);
        }
        let pc = builder
            .build()
            .await
            .map_err(|error| RtcError::webrtc("build peer connection", error))?;
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);
        debug!(?role, bind_addrs = ?config.bind_addrs, "peer connection built");
        tokio::spawn(supervise(pc.clone(), shared.clone()));
        let guard = Arc::new(CloseGuard {
            pc: pc.clone(),
            shared: shared.clone(),
            closed: AtomicBool::new(false),
        });
        let link = PeerLink {
            pc,
            shared,
            guard,
            remote: Mutex::new(RemoteState {
                description_set: false,
                early_candidates: Vec::new(),
            }),
            tracks: tracks_rx,
        };
        Ok((link, candidates_rx))
    }

    /// Applies a signal from the remote side:
    /// - `Offer` (answerer only, once connected or after): an ICE restart (RFC 8445 §9, JSEP
    ///   RFC 8829 §5.2.1): applies it and sends the answer, then the new candidates;
    /// - `Answer` (offerer only, once per offer): sets the remote description, then applies
    ///   the candidates that arrived before it;
    /// - `IceCandidate`: applied at once, or kept (up to 64) until the remote description is
    ///   set; an empty `candidate` (end of candidates, RFC 8838 §8.2) is accepted and ignored;
    /// - `Bye`: the remote closed; closes this link.
    ///
    /// # Errors
    /// [`RtcError::UnexpectedSignal`] for an `Offer` on the offering side, an `Answer` on the
    /// answering side or a second `Answer` to one offer; [`RtcError::InvalidSdp`],
    /// [`RtcError::InvalidCandidate`], [`RtcError::TooManyEarlyCandidates`]. An error leaves
    /// the link as it was.
    pub async fn apply_remote(&self, signal: Signal) -> Result<(), RtcError> {
        match signal {
            Signal::Offer { sdp } => self.answer_restart(sdp).await,
            Signal::Answer { sdp } => self.apply_answer(sdp).await,
            Signal::IceCandidate { candidate } => {
                let mut remote = self.remote.lock().await;
                if remote.description_set {
                    drop(remote);
                    self.add_candidate(candidate).await
                } else if remote.early_candidates.len() >= MAX_EARLY_CANDIDATES {
                    Err(RtcError::TooManyEarlyCandidates {
                        limit: MAX_EARLY_CANDIDATES,
                    })
                } else {
                    remote.early_candidates.push(candidate);
                    Ok(())
                }
            }
            Signal::Bye => {
                debug!("remote said bye");
                self.close().await;
                Ok(())
            }
        }
    }

    /// Offerer: restarts ICE (W3C `restartIce()`, RFC 8445 §9): new ICE credentials in a new
    /// offer, sent through the link's signal channel before the candidates gathered for it.
    /// The connection keeps its DTLS session and tracks; once the remote answers
    /// ([`PeerLink::apply_remote`]) and a new candidate pair is checked, media flows again.
    ///
    /// # Errors
    /// [`RtcError::UnexpectedSignal`] on the answering side; [`RtcError::SignalingClosed`];
    /// [`RtcError::Webrtc`].
    pub async fn restart_ice(&self) -> Result<(), RtcError> {
        if self.shared.role != Role::Offerer {
            return Err(RtcError::UnexpectedSignal {
                signal: "offer",
                reason: "only the offering side restarts ICE",
            });
        }
        let signals = self
            .shared
            .signals
            .lock()
            .await
            .clone()
            .ok_or(RtcError::SignalingClosed)?;
        let _gate = self.shared.signal_gate.lock().await;
        self.pc
            .restart_ice()
            .await
            .map_err(|error| RtcError::webrtc("restart_ice", error))?;
        let offer = self
            .pc
            .create_offer(None)
            .await
            .map_err(|error| RtcError::webrtc("create_offer", error))?;
        let sdp = offer.sdp.clone();
        {
            // The new answer is awaited; candidates that come first wait for it.
            let mut remote = self.remote.lock().await;
            remote.description_set = false;
            remote.early_candidates.clear();
        }
        self.pc
            .set_local_description(offer)
            .await
            .map_err(|error| RtcError::webrtc("set_local_description", error))?;
        debug!("sending an ICE restart offer");
        signals
            .send(OutgoingSignal::Offer(sdp))
            .await
            .map_err(|_| RtcError::SignalingClosed)
    }

    /// Answerer: a new offer on a link already answered (an ICE restart).
    async fn answer_restart(&self, sdp: String) -> Result<(), RtcError> {
        if self.shared.role != Role::Answerer {
            return Err(RtcError::UnexpectedSignal {
                signal: "offer",
                reason: "this side made the offer",
            });
        }
        let signals = self
            .shared
            .signals
            .lock()
            .await
            .clone()
            .ok_or(RtcError::SignalingClosed)?;
        let offer = RTCSessionDescription::offer(sdp)
            .map_err(|error| RtcError::InvalidSdp(error.to_string()))?;
        let _gate = self.shared.signal_gate.lock().await;
        self.pc
            .set_remote_description(offer)
            .await
            .map_err(|error| RtcError::InvalidSdp(error.to_string()))?;
        let answer = self
            .pc
            .create_answer(None)
            .await
            .map_err(|error| RtcError::webrtc("create_answer", error))?;
        let sdp = answer.sdp.clone();
        self.pc
            .set_local_description(answer)
            .await
            .map_err(|error| RtcError::webrtc("set_local_description", error))?;
        debug!("answering an ICE restart");
        signals
            .send(OutgoingSignal::Answer(sdp))
            .await
            .map_err(|_| RtcError::SignalingClosed)
    }

    async fn apply_answer(&self, sdp: String) -> Result<(), RtcError> {
        if self.shared.role != Role::Offerer {
            return Err(RtcError::UnexpectedSignal {
                signal: "answer",
                reason: "this side answered; only the offerer takes an answer",
            });
        }
        let mut remote = self.remote.lock().await;
        if remote.description_set {
            return Err(RtcError::UnexpectedSignal {
                signal: "answer",
                reason: "the answer was already applied",
            });
        }
        let answer = RTCSessionDescription::answer(sdp)
            .map_err(|error| RtcError::InvalidSdp(error.to_string()))?;
        self.pc
            .set_remote_description(answer)
            .await
            .map_err(|error| RtcError::InvalidSdp(error.to_string()))?;
        remote.description_set = true;
        debug!(
            early_candidates = remote.early_candidates.len(),
            "answer applied"
        );
        for candidate in std::mem::take(&mut remote.early_candidates) {
            if let Err(error) = self.add_candidate(candidate).await {
                warn!(%error, "dropping an early remote candidate");
            }
        }
        Ok(())
    }

    async fn add_candidate(&self, candidate: IceCandidateInit) -> Result<(), RtcError> {
        debug!(candidate = %candidate.candidate, "remote ICE candidate");
        self.pc
            .add_ice_candidate(RTCIceCandidateInit {
                candidate: candidate.candidate,
                sdp_mid: candidate.sdp_mid,
                sdp_mline_index: candidate.sdp_mline_index,
                username_fragment: candidate.username_fragment,
                url: None,
            })
            .await
            .map_err(|error| RtcError::InvalidCandidate(error.to_string()))
    }

    /// Waits until the data channel is open and returns it: on the offerer when its own
    /// channel opens, on the answerer when the remote's channel arrives (webrtc-rs reports it
    /// already open). May be called again; every call returns a handle to the same channel.
    ///
    /// # Errors
    /// [`RtcError::Timeout`] after `timeout`; [`RtcError::ConnectionFailed`] when ICE or DTLS
    /// failed first; [`RtcError::Closed`] when either side closed.
    pub async fn channel(&self, timeout: Duration) -> Result<DataLink, RtcError> {
        let channel = {
            let mut status = self.shared.status.subscribe();
            let waited = tokio::time::timeout(
                timeout,
                status.wait_for(|status| !matches!(status, LinkStatus::Waiting)),
            )
            .await;
            // The watch guard must be gone before the next await: it is not Send, so it lives
            // only in this block.
            match waited {
                Err(_) => Err(RtcError::Timeout {
                    timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                }),
                Ok(Err(_)) => Err(RtcError::Closed),
                Ok(Ok(status)) => match &*status {
                    LinkStatus::Open(channel) => Ok(channel.clone()),
                    LinkStatus::Ended(EndReason::Failed) => Err(RtcError::ConnectionFailed),
                    LinkStatus::Ended(EndReason::Closed) | LinkStatus::Waiting => {
                        Err(RtcError::Closed)
                    }
                },
            }
        }?;
        let max_message_bytes = self.negotiated_max_message_size().await;
        Ok(DataLink::new(
            channel,
            self.pc.clone(),
            self.guard.clone(),
            max_message_bytes,
            &self.shared,
        ))
    }

    /// The SCTP transport's max message size (RFC 8841), at most [`MAX_MESSAGE_BYTES`].
    async fn negotiated_max_message_size(&self) -> usize {
        let negotiated = match self.pc.sctp().await {
            Some(sctp) => match sctp.max_message_size().await {
                Ok(bytes) => usize::try_from(bytes).unwrap_or(MAX_MESSAGE_BYTES),
                Err(error) => {
                    warn!(%error, "max message size unknown; assuming the RFC 8841 default");
                    DEFAULT_REMOTE_MESSAGE_BYTES
                }
            },
            None => DEFAULT_REMOTE_MESSAGE_BYTES,
        };
        debug!(
            max_message_bytes = negotiated,
            "negotiated max message size"
        );
        negotiated.min(MAX_MESSAGE_BYTES)
    }

    /// Closes the peer connection: sends an SCTP ABORT and a DTLS close_notify, stops the
    /// webrtc-rs driver, ends every [`DataLink::recv`] with `None` (after messages already
    /// queued) and fails later sends with [`RtcError::Closed`]. Idempotent. Waits at most
    /// about 100 ms for the driver.
    pub async fn close(&self) {
        debug!("closing peer connection");
        self.guard.close().await;
    }
}

/// Forwards local candidates to the caller's signal channel until shutdown, the end of the
/// queue or the receiver's drop.
async fn pump_signals(
    mut candidates: mpsc::Receiver<LocalCandidate>,
    signals: mpsc::Sender<OutgoingSignal>,
    shared: Arc<Shared>,
) {
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        let candidate = tokio::select! {
            biased;
            _ = shutdown.wait_for(|closed| *closed) => return,
            candidate = candidates.recv() => candidate,
        };
        let signal = match candidate {
            Some(LocalCandidate::Candidate(candidate)) => OutgoingSignal::IceCandidate(candidate),
            Some(LocalCandidate::EndOfCandidates) => {
                OutgoingSignal::IceCandidate(IceCandidateInit {
                    candidate: String::new(),
                    sdp_mid: None,
                    sdp_mline_index: None,
                    username_fragment: None,
                })
            }
            None => return,
        };
        // An ICE restart's offer or answer goes before the candidates gathered for it.
        let _gate = shared.signal_gate.lock().await;
        tokio::select! {
            biased;
            _ = shutdown.wait_for(|closed| *closed) => return,
            sent = signals.send(signal) => {
                if sent.is_err() {
                    debug!("signal receiver dropped; no more local candidates are sent");
                    return;
                }
            }
        }
    }
}

/// Ends the link when the connection fails, and closes the connection so that webrtc-rs
/// ends the data channel's event stream (it does not do so on `Failed` by itself).
async fn supervise(pc: Arc<dyn PeerConnection>, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut state = shared.connection_state.subscribe();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.wait_for(|closed| *closed) => return,
            changed = state.changed() => if changed.is_err() { return },
        }
        let current = *state.borrow_and_update();
        match current {
            RTCPeerConnectionState::Failed => {
                debug!("peer connection failed; closing it");
                shared.end(EndReason::Failed);
                shared.shutdown.send_replace(true);
                if let Err(error) = pc.close().await {
                    debug!(%error, "peer connection close after failure");
                }
                return;
            }
            RTCPeerConnectionState::Closed => {
                shared.end(EndReason::Closed);
                return;
            }
            _ => {}
        }
    }
}
