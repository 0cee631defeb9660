//! Server settings: defaults, the optional TOML config file, and their merge with flags.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use shoal_protocol::IceServer;

/// Settings of a running server. `Config::default()` is what `shoal-signal` runs with when
/// given no flags.
#[derive(Debug, Clone)]
pub struct Config {
    /// STUN/TURN servers announced to nodes in `welcome`. Default: none (LAN and loopback
    /// work without; hosts add their own).
    pub ice_servers: Vec<IceServer>,
    /// How often the server pings each client. A client silent for three intervals is dropped
    /// (seed 004, heartbeat). Default 15 s.
    pub heartbeat_interval: Duration,
    /// How often the figures are sampled for the status line and `relayed_per_sec`.
    /// Default 10 s.
    pub status_interval: Duration,
    /// Most files one node may have in the index. Default 1,000.
    pub max_files_per_node: usize,
    /// Relayed signals queued for one client; a signal past it is refused to its sender
    /// with `peer_busy`. Default 256.
    pub send_queue_depth: usize,
    /// Bytes of relayed signals queued for one client; past it, `peer_busy`. Default 1 MiB.
    pub max_queued_bytes_per_client: usize,
    /// Bytes of relayed signals queued over all clients; past it, `server_busy`. This bounds
    /// the server's queue memory whatever the number of slow readers. Default 64 MiB.
    pub max_queued_bytes_total: usize,
    /// Connections served as nodes. Default 16,384; [`serve`](crate::serve) lowers it to fit
    /// the open-file limit of the process it runs in.
    pub max_connections: usize,
    /// Connections accepted past [`Config::max_connections`] that may only ask `status`
    /// (their `hello` gets `server_full` and close code 1013), so monitors still get in when
    /// the server is full. Default 64.
    pub monitor_reserve: usize,
    /// Open connections from one IP address; more are closed at once. Default 64.
    pub max_connections_per_address: usize,
    /// Longest a client may stay connected without `hello`; then it is closed with 1008.
    /// Default 10 s.
    pub hello_timeout: Duration,
    /// Refused messages tolerated on one connection before it is closed with 1008.
    /// Default 16.
    pub max_refusals: u32,
    /// Longest a client may take to finish the WebSocket handshake. Default 10 s.
    pub handshake_timeout: Duration,
    /// Longest one write to a client may block before the client is dropped. Default 10 s.
    pub write_timeout: Duration,
    /// How long a room waits for its host's connection to come back (with the host key)
    /// before it ends. Default 30 s.
    pub room_host_grace: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            ice_servers: Vec::new(),
            heartbeat_interval: Duration::from_secs(15),
            status_interval: Duration::from_secs(10),
            max_files_per_node: 1000,
            send_queue_depth: 256,
            max_queued_bytes_per_client: 1 << 20,
            max_queued_bytes_total: 64 << 20,
            max_connections: 16_384,
            monitor_reserve: 64,
            max_connections_per_address: 64,
            hello_timeout: Duration::from_secs(10),
            max_refusals: 16,
            handshake_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            room_host_grace: Duration::from_secs(30),
        }
    }
}

/// Why a config file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML of the expected shape.
    #[error("config file {path} is invalid: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the TOML parser said.
        message: String,
    },
}

/// Settings that override [`Config::default`] where they are set: the TOML config file
/// (`shoal-signal --config server.toml`), and the command-line flags, applied in that order
/// with [`ConfigOverlay::apply`], so a flag wins over the file. Every field is optional.
///
/// ```toml
/// listen = "0.0.0.0:7878"
/// heartbeat = "15s"
/// status_interval = "10s"
/// max_files_per_node = 1000
/// max_connections_per_address = 64
///
/// [[ice_servers]]
/// urls = ["stun:stun.l.google.com:19302"]
///
/// [[ice_servers]]
/// urls = ["turn:turn.example.org:3478"]
/// username = "shoal"
/// credential = "secret"
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigOverlay {
    /// Address and port to listen on (`0.0.0.0:7878`).
    pub listen: Option<std::net::SocketAddr>,
    /// Ping interval, in humantime form (`15s`, `500ms`).
    #[serde(default, with = "humantime_serde_opt")]
    pub heartbeat: Option<Duration>,
    /// Status interval, in humantime form.
    #[serde(default, with = "humantime_serde_opt")]
    pub status_interval: Option<Duration>,
    /// Most files per node.
    pub max_files_per_node: Option<usize>,
    /// Most open connections from one IP address.
    pub max_connections_per_address: Option<usize>,
    /// STUN/TURN servers for `welcome`.
    #[serde(default)]
    pub ice_servers: Vec<IceServer>,
}

impl ConfigOverlay {
    /// Reads and parses a TOML config file.
    ///
    /// # Errors
    /// [`ConfigError::Read`] or [`ConfigError::Parse`].
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// Applies the values set here on top of `config` (ICE servers are added to its list).
    /// `listen` is not part of [`Config`]: read it from the last overlay that sets it.
    pub fn apply(&self, config: &mut Config) {
        if let Some(d) = self.heartbeat {
            config.heartbeat_interval = d;
        }
        if let Some(d) = self.status_interval {
            config.status_interval = d;
        }
        if let Some(n) = self.max_files_per_node {
            config.max_files_per_node = n;
        }
        if let Some(n) = self.max_connections_per_address {
            config.max_connections_per_address = n;
        }
        config.ice_servers.extend(self.ice_servers.iter().cloned());
    }
}

mod humantime_serde_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        text.map(|t| humantime::parse_duration(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_config_parses_the_documented_example() {
        let text = r#"
            listen = "0.0.0.0:7878"
            heartbeat = "15s"
            status_interval = "10s"
            max_files_per_node = 1000
            max_connections_per_address = 64

            [[ice_servers]]
            urls = ["stun:stun.l.google.com:19302"]

            [[ice_servers]]
            urls = ["turn:turn.example.org:3478"]
            username = "shoal"
            credential = "secret"
        "#;
        let file: ConfigOverlay = toml::from_str(text).expect("documented example parses");
        let mut config = Config::default();
        file.apply(&mut config);
        assert_eq!(config.heartbeat_interval, Duration::from_secs(15));
        assert_eq!(config.ice_servers.len(), 2);
        assert_eq!(config.ice_servers[1].username.as_deref(), Some("shoal"));
    }

    #[test]
    fn a_later_overlay_wins_and_ice_servers_add_up() {
        let file: ConfigOverlay =
            toml::from_str("heartbeat = \"20s\"\nmax_files_per_node = 5\n[[ice_servers]]\nurls = [\"stun:a:3478\"]")
                .expect("an overlay parses");
        let flags = ConfigOverlay {
            heartbeat: Some(Duration::from_secs(2)),
            ice_servers: IceServer::from_flags(&["stun:b:3478".into()], &[], None, None),
            ..ConfigOverlay::default()
        };
        let mut config = Config::default();
        for overlay in [&file, &flags] {
            overlay.apply(&mut config);
        }
        assert_eq!(config.heartbeat_interval, Duration::from_secs(2));
        assert_eq!(config.max_files_per_node, 5);
        assert_eq!(config.ice_servers.len(), 2);
        let bad =
            toml::from_str::<ConfigOverlay>("listen = \"nowhere\"").expect_err("not an address");
        assert!(bad.to_string().contains("listen"), "{bad}");
    }

    #[test]
    fn file_config_refuses_unknown_keys() {
        assert!(toml::from_str::<ConfigOverlay>("listne = \"x\"").is_err());
    }
}
