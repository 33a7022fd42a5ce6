//! Containers: what they mount and how they run, listed and inspected;
//! stopped and started for the stop strategy.

use std::collections::BTreeMap;
use std::time::Duration;

use bollard::models::MountType;
use bollard::query_parameters::ListContainersOptions;
use futures_util::{StreamExt, TryStreamExt};
use serde::Serialize;

use super::{Engine, HELPER_LABEL};
use crate::error::{Error, Result};
use crate::tmpfs::TmpfsSize;

/// What kind of mount a container has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MountKind {
    Volume,
    Bind,
    Tmpfs,
}

impl MountKind {
    /// The word for it in messages and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Volume => "volume",
            Self::Bind => "bind",
            Self::Tmpfs => "tmpfs",
        }
    }
}

/// One mount of one container.
#[derive(Clone, Debug, Serialize)]
pub struct ContainerMount {
    pub kind: MountKind,
    /// The volume name, for volumes.
    pub name: Option<String>,
    /// The host path, for bind mounts and volumes.
    pub source: Option<String>,
    /// Where the container sees it.
    pub destination: String,
    pub read_write: bool,
    /// The size limit of a tmpfs mount, when one is set.
    pub tmpfs_size: Option<TmpfsSize>,
}

/// A container, running or not, with what it mounts.
#[derive(Clone, Debug, Serialize)]
pub struct EngineContainer {
    pub id: String,
    pub name: String,
    pub image: String,
    pub running: bool,
    pub state: String,
    pub labels: BTreeMap<String, String>,
    pub mounts: Vec<ContainerMount>,
    /// Containers this one cannot run without: `--network container:X`,
    /// `--volumes-from X`, `--link X` (names or ids as the engine gives
    /// them).
    pub needs: Vec<String>,
    /// Started with `--rm`: stopping it removes it.
    pub auto_remove: bool,
}

/// How a container's process runs: what `audit` needs beyond its mounts.
/// The engine merges the image's configuration into the container's when
/// it creates it, so the environment includes the image's (`PG_MAJOR`,
/// `PGDATA`), and so do the entrypoint and command.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ContainerProcess {
    /// The user as written (`999`, `999:999`, `postgres`); empty for root.
    pub user: String,
    /// Supplementary groups (`--group-add`).
    pub group_add: Vec<String>,
    /// `KEY=VALUE` entries.
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// The id of the image the container was created from (its tag may
    /// have moved on since).
    pub image_id: String,
}

/// What an image declares for the containers made from it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ImageConfig {
    /// The image's `USER`; empty for root.
    pub user: String,
    /// The paths declared with `VOLUME`, sorted.
    pub volumes: Vec<String>,
}

/// How a container is, for the journal's recovery.
#[derive(Debug)]
pub(crate) struct ContainerStatus {
    pub(crate) running: bool,
    /// When it last started; `None` when it never did.
    pub(crate) started_at: Option<String>,
    /// The commands exec'd in it that the engine still knows.
    pub(crate) exec_ids: Vec<String>,
}

/// How long to wait for a stop given `grace` seconds: the grace and a
/// minute, or a day when the grace has no limit.
pub(crate) fn stop_limit(grace: i32) -> Duration {
    u64::try_from(grace).map_or(Duration::from_secs(86_400), |g| Duration::from_secs(g + 60))
}

impl Engine {
    /// Every container, running or not, with its mounts (including tmpfs
    /// mounts, which only the full inspection reports).
    pub async fn containers(&self) -> Result<Vec<EngineContainer>> {
        let list = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                ..Default::default()
            }))
            .await
            .map_err(|e| Error::engine("listing containers", e))?;
        let ids: Vec<String> = list.into_iter().filter_map(|c| c.id).collect();
        let inspections = futures_util::stream::iter(ids)
            .map(|id| async move {
                match self.docker.inspect_container(&id, None).await {
                    Ok(c) => Ok(Some(container_from_model(c))),
                    // Removed between listing and inspection: not ours to report.
                    Err(bollard::errors::Error::DockerResponseServerError {
                        status_code: 404,
                        ..
                    }) => Ok(None),
                    Err(e) => Err(Error::engine(format!("inspecting container {id}"), e)),
                }
            })
            .buffer_unordered(8)
            .try_collect::<Vec<_>>()
            .await?;
        let mut containers: Vec<_> = inspections
            .into_iter()
            .flatten()
            .filter(|c| !c.labels.contains_key(HELPER_LABEL))
            .collect();
        containers.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(containers)
    }

    /// How a container's process runs; `None` when the container is gone.
    pub async fn container_process(&self, container: &str) -> Result<Option<ContainerProcess>> {
        let c = match self.docker.inspect_container(container, None).await {
            Ok(c) => c,
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => return Ok(None),
            Err(e) => {
                return Err(Error::engine(
                    format!("inspecting container {container}"),
                    e,
                ));
            }
        };
        let config = c.config.unwrap_or_default();
        Ok(Some(ContainerProcess {
            user: config.user.unwrap_or_default(),
            group_add: c.host_config.and_then(|h| h.group_add).unwrap_or_default(),
            env: config.env.unwrap_or_default(),
            entrypoint: config.entrypoint.unwrap_or_default(),
            cmd: config.cmd.unwrap_or_default(),
            image_id: c.image.unwrap_or_default(),
        }))
    }

    /// What an image declares; `None` when the engine has no such image.
    pub async fn image_config(&self, image: &str) -> Result<Option<ImageConfig>> {
        let inspected = match self.docker.inspect_image(image).await {
            Ok(i) => i,
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => return Ok(None),
            Err(e) => return Err(Error::engine(format!("inspecting image {image}"), e)),
        };
        let config = inspected.config.unwrap_or_default();
        let mut volumes: Vec<String> = config.volumes.unwrap_or_default().into_iter().collect();
        volumes.sort();
        Ok(Some(ImageConfig {
            user: config.user.unwrap_or_default(),
            volumes,
        }))
    }

    /// Whether a container runs, and when it last started (RFC 3339, as
    /// the engine says it); `None` when there is no such container.
    pub(crate) async fn container_status(
        &self,
        container: &str,
    ) -> Result<Option<ContainerStatus>> {
        match self.docker.inspect_container(container, None).await {
            Ok(c) => {
                let state = c.state.unwrap_or_default();
                Ok(Some(ContainerStatus {
                    running: state.running.unwrap_or(false),
                    started_at: state.started_at.filter(|s| !s.starts_with("0001-")),
                    exec_ids: c.exec_ids.unwrap_or_default(),
                }))
            }
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(Error::engine(
                format!("inspecting container {container}"),
                e,
            )),
        }
    }

    /// Whether a container is running.
    pub(crate) async fn is_running(&self, container: &str) -> Result<bool> {
        let c = self
            .docker
            .inspect_container(container, None)
            .await
            .map_err(|e| Error::engine(format!("inspecting container {container}"), e))?;
        Ok(c.state.and_then(|s| s.running).unwrap_or(false))
    }

    /// Stops a container, giving it `grace` seconds (its own stop timeout
    /// when `None`; a negative one waits as long as it takes) before it is
    /// killed, and returns once it has stopped.
    pub async fn stop_container(&self, container: &str, grace: Option<i32>) -> Result<()> {
        let grace = match grace {
            Some(g) => g,
            None => self.stop_timeout(container).await?,
        };
        let limit = stop_limit(grace);
        // The engine answers a container that is stopping, or stopped, as
        // stopped; the wait below is what tells.
        self.docker
            .clone()
            .with_timeout(limit)
            .stop_container(
                container,
                Some(bollard::query_parameters::StopContainerOptions {
                    t: Some(grace),
                    ..Default::default()
                }),
            )
            .await
            .map_err(|e| Error::engine(format!("stopping container {container}"), e))?;
        self.wait_stopped(container, limit).await
    }

    /// The seconds a container is given to stop before it is killed
    /// (negative: no limit), as the engine would give it.
    pub(crate) async fn stop_timeout(&self, container: &str) -> Result<i32> {
        let c = self
            .docker
            .inspect_container(container, None)
            .await
            .map_err(|e| Error::engine(format!("inspecting container {container}"), e))?;
        let seconds = c.config.and_then(|c| c.stop_timeout).unwrap_or(10);
        Ok(i32::try_from(seconds).unwrap_or(i32::MAX))
    }

    /// Waits until a container is not running (a stop in progress ends).
    pub(crate) async fn wait_stopped(&self, container: &str, limit: Duration) -> Result<()> {
        let started = std::time::Instant::now();
        while self.is_running(container).await? {
            if started.elapsed() > limit {
                return Err(Error::Engine {
                    action: format!("stopping container {container}"),
                    reason: format!(
                        "still running {}s after it was asked to stop",
                        limit.as_secs()
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    }

    /// Starts a container.
    pub async fn start_container(&self, container: &str) -> Result<()> {
        self.docker
            .start_container(container, None)
            .await
            .map_err(|e| Error::engine(format!("starting container {container}"), e))
    }
}

fn container_from_model(c: bollard::models::ContainerInspectResponse) -> EngineContainer {
    let state = c.state.as_ref();
    let running = state.and_then(|s| s.running).unwrap_or(false);
    let state_name = state
        .and_then(|s| s.status.as_ref())
        .map(|s| s.to_string())
        .unwrap_or_default();
    let config = c.config.unwrap_or_default();
    let host_config = c.host_config.unwrap_or_default();

    let mut mounts: Vec<ContainerMount> = c
        .mounts
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| {
            let kind = match m.typ.as_deref() {
                Some("volume") => MountKind::Volume,
                Some("bind") => MountKind::Bind,
                Some("tmpfs") => MountKind::Tmpfs,
                _ => return None,
            };
            Some(ContainerMount {
                kind,
                name: m.name.filter(|n| !n.is_empty()),
                source: m.source.filter(|s| !s.is_empty()),
                destination: m.destination.unwrap_or_default(),
                read_write: m.rw.unwrap_or(true),
                tmpfs_size: None,
            })
        })
        .collect();

    // Sizes of tmpfs mounts made with `--mount type=tmpfs`.
    for m in host_config.mounts.iter().flatten() {
        if m.typ == Some(MountType::TMPFS) {
            let size = m
                .tmpfs_options
                .as_ref()
                .and_then(|o| o.size_bytes)
                .and_then(|bytes| u64::try_from(bytes).ok())
                .filter(|&bytes| bytes > 0)
                .map(TmpfsSize::Bytes);
            let target = m.target.clone().unwrap_or_default();
            match mounts.iter_mut().find(|x| x.destination == target) {
                Some(existing) => existing.tmpfs_size = size,
                None => mounts.push(ContainerMount {
                    kind: MountKind::Tmpfs,
                    name: None,
                    source: None,
                    destination: target,
                    read_write: !m.read_only.unwrap_or(false),
                    tmpfs_size: size,
                }),
            }
        }
    }
    // `--tmpfs PATH:OPTIONS` mounts appear only here.
    for (path, options) in host_config.tmpfs.iter().flatten() {
        if mounts.iter().any(|m| &m.destination == path) {
            continue;
        }
        mounts.push(ContainerMount {
            kind: MountKind::Tmpfs,
            name: None,
            source: None,
            destination: path.clone(),
            read_write: !options.split(',').any(|o| o == "ro"),
            // The kernel also takes forms read here as no size (hex, say).
            tmpfs_size: TmpfsSize::from_options(options).unwrap_or_else(|e| {
                tracing::debug!("the tmpfs at {path}: {e}");
                None
            }),
        });
    }
    mounts.sort_by(|a, b| a.destination.cmp(&b.destination));

    let mut needs = Vec::new();
    if let Some(other) = host_config
        .network_mode
        .as_deref()
        .and_then(|m| m.strip_prefix("container:"))
    {
        needs.push(other.to_string());
    }
    for from in host_config.volumes_from.iter().flatten() {
        needs.push(from.split(':').next().unwrap_or(from).to_string());
    }
    for link in host_config.links.iter().flatten() {
        // `/db:/app/db`: the linked container is the first part.
        let linked = link.split(':').next().unwrap_or(link);
        needs.push(linked.trim_start_matches('/').to_string());
    }

    EngineContainer {
        id: c.id.unwrap_or_default(),
        name: c
            .name
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string(),
        image: config.image.unwrap_or_default(),
        running,
        state: state_name,
        labels: config.labels.unwrap_or_default().into_iter().collect(),
        mounts,
        needs,
        auto_remove: host_config.auto_remove.unwrap_or(false),
    }
}
