//! The Docker Engine API: the only module that talks to bollard.
//!
//! It reads the inventory (volumes, containers and their mounts), creates
//! volumes, and runs the never-started helper containers through which the
//! engine-archive reader and writer stream a volume's files. It returns plain
//! data; it never decides what to back up and never touches the repository.
//!
//! Its rooms, by area: `volumes`, `containers`, `helpers`, `exec` and
//! `archive` (streams of files); this file connects to the engine and says
//! what it is.

mod archive;
mod containers;
pub(crate) mod control;
mod exec;
mod helpers;
mod volumes;

pub use containers::{ContainerMount, ContainerProcess, EngineContainer, ImageConfig, MountKind};
pub(crate) use containers::{ContainerStatus, stop_limit};
pub(crate) use control::ContainerControl;
pub(crate) use exec::{Exec, ExecChunk};
pub(crate) use helpers::{HELPER_LABEL, HELPER_MOUNT, Helper, HelperSource};
pub use volumes::EngineVolume;
pub(crate) use volumes::check_volume_name;

use std::time::Duration;

use bollard::Docker;

use crate::error::{Error, Result};

/// The socket lifeboat tries when `DOCKER_HOST` is not set.
const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// How long the first contact with the engine may take before it counts as
/// unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Streams of volume content may run for hours; the engine client's default
/// request timeout (two minutes) would cut them off.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

/// A connection to one Docker engine, with the API version negotiated.
#[derive(Clone, Debug)]
pub struct Engine {
    docker: Docker,
    host: String,
}

impl Engine {
    /// Connects to `DOCKER_HOST` (or the local socket) and negotiates the API
    /// version, so that old engines (API 1.41) and new ones both work.
    pub async fn connect() -> Result<Self> {
        let host = std::env::var("DOCKER_HOST")
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| DEFAULT_HOST.to_string());
        let unreachable = |reason: String| Error::EngineUnreachable {
            host: host.clone(),
            reason,
        };
        let docker = Docker::connect_with_host(&host).map_err(|e| unreachable(e.to_string()))?;
        let docker = tokio::time::timeout(CONNECT_TIMEOUT, docker.negotiate_version())
            .await
            .map_err(|_| unreachable(format!("no answer within {CONNECT_TIMEOUT:?}")))?
            .map_err(|e| unreachable(root_cause(&e)))?;
        Ok(Self { docker, host })
    }

    /// An engine behind a file that is no socket: every call fails, as
    /// with an engine that went away. For tests of code that must not
    /// need the engine.
    #[cfg(test)]
    pub(crate) fn unreachable() -> Self {
        let host = "unix:///dev/null".to_string();
        let docker = Docker::connect_with_host(&host).expect("a client without a connection");
        Self { docker, host }
    }

    /// The address lifeboat talks to.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The API version in use after negotiation, e.g. `1.41`.
    pub fn api_version(&self) -> String {
        self.docker.client_version().to_string()
    }

    /// Where the engine keeps its own data (`/var/lib/docker`), when it
    /// says.
    pub(crate) async fn data_root(&self) -> Result<Option<String>> {
        let info = self
            .docker
            .info()
            .await
            .map_err(|e| Error::engine("reading the engine's information", e))?;
        Ok(info.docker_root_dir.filter(|d| !d.is_empty()))
    }

    /// Whether the engine runs on the host lifeboat runs on, so that the
    /// paths it reports (a volume's directory, a bind mount's source) name
    /// this host's files. A remote engine whose paths happen to exist here
    /// too must not have them read, written or emptied in its stead. The
    /// engine's data directory must be here; engines from 23 on write
    /// their id into it, which settles it; for older ones, the engine must
    /// be reached through a local socket and say this host's name.
    pub(crate) async fn runs_here(&self) -> bool {
        let Ok(info) = self.docker.info().await else {
            return false;
        };
        let Some(root) = info
            .docker_root_dir
            .filter(|d| !d.is_empty())
            .map(std::path::PathBuf::from)
            .filter(|d| d.is_dir())
        else {
            return false;
        };
        if let (Ok(written), Some(id)) = (std::fs::read_to_string(root.join("engine-id")), &info.id)
        {
            return written.trim() == id;
        }
        let local_socket = self.host.starts_with("unix://") || self.host.starts_with('/');
        let same_name = info
            .name
            .is_some_and(|n| !n.is_empty() && n == crate::host::hostname());
        local_socket && same_name
    }

    /// How the engine maps its containers' users to the host's, when it
    /// does: `"user namespace remapping"` (`userns-remap`) or `"rootless
    /// mode"`. Then a container's uid 999 is not the host's uid 999.
    pub(crate) async fn user_remapping(&self) -> Result<Option<&'static str>> {
        let info = self
            .docker
            .info()
            .await
            .map_err(|e| Error::engine("reading the engine's information", e))?;
        // Entries read `name=userns` or `name=seccomp,profile=default`.
        let has = |wanted: &str| {
            info.security_options.iter().flatten().any(|o| {
                o.split(',')
                    .any(|part| part.strip_prefix("name=") == Some(wanted))
            })
        };
        Ok(if has("rootless") {
            Some("rootless mode")
        } else if has("userns") {
            Some("user namespace remapping")
        } else {
            None
        })
    }
}

impl Error {
    /// A failed engine call, with the engine client's words for why: the
    /// library's error type names no type of the client's.
    pub(crate) fn engine(action: impl Into<String>, source: bollard::errors::Error) -> Self {
        Self::Engine {
            action: action.into(),
            reason: source.to_string(),
        }
    }
}

/// The innermost message of an engine error: "connection refused" says more
/// than "error trying to connect".
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
