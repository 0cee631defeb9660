//! The bundled signaling server, run in the app's process when the host switch is on.

use std::net::{IpAddr, SocketAddr};

use shoal_signal::ServerHandle;

/// A running embedded server.
pub struct Hosting {
    server: ServerHandle,
}

impl Hosting {
    /// Listens on every interface at `port` (0 picks a free port).
    ///
    /// # Errors
    /// The port is taken or cannot be bound.
    pub async fn start(port: u16) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
        let server = shoal_signal::serve(listener, shoal_signal::Config::default())?;
        tracing::info!(addr = %server.local_addr(), "hosting the signaling server");
        Ok(Self { server })
    }

    /// The address the server listens on.
    pub fn listening(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// What this app's own node connects to.
    pub fn local_url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.listening().port())
    }

    /// What others should enter: `ws://<LAN address>:<port>` for each non-loopback IPv4
    /// interface, or the loopback address when there is none.
    pub fn share_urls(&self) -> Vec<String> {
        let port = self.listening().port();
        let mut urls: Vec<String> = if_addrs::get_if_addrs()
            .unwrap_or_default()
            .into_iter()
            .filter(|i| !i.is_loopback())
            .filter_map(|i| match i.ip() {
                IpAddr::V4(v4) if !v4.is_link_local() => Some(format!("ws://{v4}:{port}")),
                _ => None,
            })
            .collect();
        urls.sort();
        urls.dedup();
        if urls.is_empty() {
            urls.push(self.local_url());
        }
        urls
    }

    /// Stops the server: clients get close code 1001.
    pub async fn stop(self) {
        self.server.shutdown().await;
    }
}
