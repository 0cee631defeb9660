//! A webrtc-rs [`Runtime`] that enlarges every UDP socket's kernel buffers.
//!
//! webrtc-rs binds its sockets itself and never touches `SO_RCVBUF`/`SO_SNDBUF`. With the
//! Linux default (about 208 KiB) even loopback overflows the receive buffer at data-channel
//! speeds; SCTP then recovers on its 200 ms delayed-SACK and 1 s minimum RTO timers and a
//! transfer runs at 26-29 MiB/s instead of about 70 (docs/ARCHITECTURE.md "Measured facts").
//! There is no setting for it, so this wraps tokio's runtime and sets both buffers to
//! [`SOCKET_BUFFER_BYTES`] in [`Runtime::wrap_udp_socket`], the hook every UDP socket of a
//! peer connection passes through. Everything else is forwarded unchanged.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, warn};
use webrtc::runtime::{
    AsyncInterval, AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, JoinHandle, Runtime,
    TokioRuntime,
};

use crate::SOCKET_BUFFER_BYTES;

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// `webrtc::runtime::TokioRuntime` with `SO_RCVBUF`/`SO_SNDBUF` set to [`SOCKET_BUFFER_BYTES`]
/// on every UDP socket. Linux caps the value at `net.core.rmem_max`/`wmem_max`; a refusal is
/// logged, not fatal.
#[derive(Debug)]
pub(crate) struct BigBufferRuntime(TokioRuntime);

impl BigBufferRuntime {
    pub(crate) fn new() -> Self {
        Self(TokioRuntime)
    }
}

/// Sets both kernel buffers of `socket` to `bytes`; failures are logged and ignored because a
/// small buffer costs speed, not correctness.
fn enlarge_buffers(socket: &std::net::UdpSocket, bytes: usize) {
    let sock = socket2::SockRef::from(socket);
    if let Err(error) = sock.set_recv_buffer_size(bytes) {
        warn!(%error, bytes, "could not set SO_RCVBUF");
    }
    if let Err(error) = sock.set_send_buffer_size(bytes) {
        warn!(%error, bytes, "could not set SO_SNDBUF");
    }
    // Linux reports twice the value it granted (the kernel's bookkeeping overhead).
    debug!(
        local_addr = ?socket.local_addr().ok(),
        rcvbuf_bytes = sock.recv_buffer_size().ok(),
        sndbuf_bytes = sock.send_buffer_size().ok(),
        "udp socket buffers"
    );
}

impl Runtime for BigBufferRuntime {
    fn spawn(&self, future: BoxFuture<'static, ()>) -> Box<dyn JoinHandle> {
        self.0.spawn(future)
    }

    fn spawn_reactor(
        &self,
        reactor_pool_size: usize,
        future: BoxFuture<'static, ()>,
    ) -> Box<dyn JoinHandle> {
        // Forwarded: the trait's default would silently drop the dedicated reactor pool.
        self.0.spawn_reactor(reactor_pool_size, future)
    }

    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        enlarge_buffers(&socket, SOCKET_BUFFER_BYTES);
        self.0.wrap_udp_socket(socket)
    }

    fn wrap_tcp_listener(
        &self,
        listener: std::net::TcpListener,
    ) -> io::Result<Arc<dyn AsyncTcpListener>> {
        self.0.wrap_tcp_listener(listener)
    }

    fn connect_tcp<'a>(
        &'a self,
        remote_addr: SocketAddr,
    ) -> BoxFuture<'a, io::Result<Arc<dyn AsyncTcpStream>>> {
        self.0.connect_tcp(remote_addr)
    }

    fn resolve_host<'a>(&'a self, host: &'a str) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>> {
        self.0.resolve_host(host)
    }

    fn now(&self) -> Instant {
        self.0.now()
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        self.0.sleep(duration)
    }

    fn interval(&self, period: Duration) -> Box<dyn AsyncInterval> {
        self.0.interval(period)
    }

    fn block_on(&self, future: Pin<Box<dyn Future<Output = ()> + '_>>) {
        self.0.block_on(future)
    }

    fn yield_now(&self) -> BoxFuture<'static, ()> {
        // Forwarded so the driver keeps using tokio's cooperative budget.
        self.0.yield_now()
    }

    fn name(&self) -> &'static str {
        "tokio+big-socket-buffers"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_grow_beyond_the_linux_default() -> io::Result<()> {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
        let before = socket2::SockRef::from(&socket).recv_buffer_size()?;
        enlarge_buffers(&socket, SOCKET_BUFFER_BYTES);
        let after = socket2::SockRef::from(&socket).recv_buffer_size()?;
        // The kernel may cap the request at net.core.rmem_max; it never shrinks the buffer.
        assert!(after >= before, "{after} < {before}");
        Ok(())
    }
}
