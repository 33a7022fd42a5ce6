//! Helper containers: never-started containers of an empty image that
//! mount one volume or bind mount for the archive endpoints, temporary
//! database containers, and the removal of those a process left behind.

use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, ListContainersOptions, RemoveContainerOptions,
};
use bytes::Bytes;
use futures_util::StreamExt;

use super::Engine;
use crate::error::{Error, Result};

/// The image of helper containers, imported from an empty root file system.
pub(crate) const HELPER_IMAGE: &str = "lifeboat-helper:empty";

/// Where a helper container mounts the volume it reads or writes.
pub(crate) const HELPER_MOUNT: &str = "/lifeboat-data";

/// Label that marks helper containers, so stale ones can be found.
pub(crate) const HELPER_LABEL: &str = "lifeboat.helper";

/// Label naming the lifeboat process (`HOST/PID`) that made a helper.
const HELPER_OWNER_LABEL: &str = "lifeboat.helper.owner";

/// The process-id namespace of the owner's process id.
const HELPER_PID_NAMESPACE_LABEL: &str = "lifeboat.helper.pid-namespace";

/// How a helper container mounts the data it streams.
#[derive(Clone, Debug)]
pub(crate) enum HelperSource {
    Volume(String),
    Bind(String),
}

/// A created, never-started container that mounts one volume or bind mount.
#[derive(Debug)]
pub(crate) struct Helper {
    pub(crate) id: String,
}

impl Engine {
    /// Makes sure the helper image exists, importing it from an empty root
    /// file system: no registry is ever contacted.
    pub(crate) async fn ensure_helper_image(&self) -> Result<()> {
        if self.docker.inspect_image(HELPER_IMAGE).await.is_ok() {
            return Ok(());
        }
        let (repo, tag) = HELPER_IMAGE
            .split_once(':')
            .unwrap_or((HELPER_IMAGE, "latest"));
        // Two zero blocks: the end-of-archive marker of an empty tar.
        let empty_tar = Bytes::from(vec![0u8; 1024]);
        let options = CreateImageOptions {
            from_src: Some("-".to_string()),
            repo: Some(repo.to_string()),
            tag: Some(tag.to_string()),
            message: Some("lifeboat helper: an empty root file system".to_string()),
            ..Default::default()
        };
        let mut progress =
            self.docker
                .create_image(Some(options), Some(bollard::body_full(empty_tar)), None);
        while let Some(step) = progress.next().await {
            let step = step.map_err(|e| Error::engine("importing the helper image", e))?;
            if let Some(detail) = step.error_detail.and_then(|d| d.message) {
                return Err(Error::Engine {
                    action: "importing the helper image".to_string(),
                    reason: detail,
                });
            }
        }
        Ok(())
    }

    /// Creates a helper container that mounts `source` at [`HELPER_MOUNT`].
    /// It is never started: the engine serves its files through the archive
    /// endpoints all the same.
    pub(crate) async fn create_helper(
        &self,
        source: &HelperSource,
        read_only: bool,
    ) -> Result<Helper> {
        self.ensure_helper_image().await?;
        let (typ, src) = match source {
            HelperSource::Volume(name) => (MountType::VOLUME, name.clone()),
            HelperSource::Bind(path) => (MountType::BIND, path.clone()),
        };
        // The label names what the helper serves, so a leftover one can be
        // traced to its volume.
        let mut labels = std::collections::HashMap::new();
        labels.insert(HELPER_LABEL.to_string(), source.to_string());
        labels.insert(
            HELPER_OWNER_LABEL.to_string(),
            format!("{}/{}", crate::host::hostname(), std::process::id()),
        );
        if let Some(namespace) = crate::host::pid_namespace() {
            labels.insert(
                HELPER_PID_NAMESPACE_LABEL.to_string(),
                namespace.to_string(),
            );
        }
        let body = ContainerCreateBody {
            image: Some(HELPER_IMAGE.to_string()),
            cmd: Some(vec!["/lifeboat-helper-is-never-started".to_string()]),
            labels: Some(labels),
            network_disabled: Some(true),
            host_config: Some(HostConfig {
                mounts: Some(vec![Mount {
                    target: Some(HELPER_MOUNT.to_string()),
                    source: Some(src),
                    typ: Some(typ),
                    read_only: Some(read_only),
                    ..Default::default()
                }]),
                network_mode: Some("none".to_string()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let name = format!(
            "lifeboat-helper-{}-{}",
            std::process::id(),
            crate::random_hex(4)
        );
        let created = self
            .docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name),
                    ..Default::default()
                }),
                body,
            )
            .await
            .map_err(|e| Error::engine(format!("creating a helper container for {source}"), e))?;
        Ok(Helper { id: created.id })
    }

    /// Starts a temporary container of `image` with `volume` mounted at
    /// `path`, no network, the given environment and arguments. It carries
    /// the helper labels, so a killed lifeboat's leftover is removed like a
    /// helper's.
    pub(crate) async fn start_temporary(
        &self,
        image: &str,
        volume: &str,
        path: &str,
        env: &[String],
        args: &[String],
    ) -> Result<Helper> {
        let mut labels = std::collections::HashMap::new();
        labels.insert(HELPER_LABEL.to_string(), format!("volume {volume}"));
        labels.insert(
            HELPER_OWNER_LABEL.to_string(),
            format!("{}/{}", crate::host::hostname(), std::process::id()),
        );
        if let Some(namespace) = crate::host::pid_namespace() {
            labels.insert(
                HELPER_PID_NAMESPACE_LABEL.to_string(),
                namespace.to_string(),
            );
        }
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            cmd: (!args.is_empty()).then(|| args.to_vec()),
            env: Some(env.to_vec()),
            labels: Some(labels),
            host_config: Some(HostConfig {
                mounts: Some(vec![Mount {
                    target: Some(path.to_string()),
                    source: Some(volume.to_string()),
                    typ: Some(MountType::VOLUME),
                    read_only: Some(false),
                    ..Default::default()
                }]),
                network_mode: Some("none".to_string()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let name = format!(
            "lifeboat-restore-{}-{}",
            std::process::id(),
            crate::random_hex(4)
        );
        let created = self
            .docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name.clone()),
                    ..Default::default()
                }),
                body,
            )
            .await
            .map_err(|e| Error::engine(format!("creating a container of {image}"), e))?;
        let helper = Helper { id: created.id };
        if let Err(e) = self.start_container(&helper.id).await {
            let _ = self.remove_helper(&helper).await;
            return Err(e);
        }
        Ok(helper)
    }

    /// Removes a helper container. Errors are returned, but callers usually
    /// only log them: a leftover helper holds no data and is labelled.
    pub(crate) async fn remove_helper(&self, helper: &Helper) -> Result<()> {
        self.docker
            .remove_container(
                &helper.id,
                Some(RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await
            .map_err(|e| Error::engine(format!("removing helper container {}", helper.id), e))
    }

    /// Removes helper containers that a lifeboat process of this host left
    /// behind when it was killed: they hold no data, but they keep their
    /// volume in use. Returns how many were removed.
    pub async fn remove_stale_helpers(&self) -> Result<usize> {
        self.remove_helpers_where(|host, pid, namespace| {
            host == crate::host::hostname() && crate::host::process_is_gone(pid, namespace)
        })
        .await
    }

    /// Removes the helper containers this process made and has not
    /// removed yet: those of work abandoned on SIGINT or SIGTERM, which
    /// would otherwise keep their volumes in use until the next run.
    pub async fn remove_own_helpers(&self) -> Result<usize> {
        let me = i64::from(std::process::id());
        let mine = crate::host::pid_namespace();
        self.remove_helpers_where(|host, pid, namespace| {
            host == crate::host::hostname()
                && pid == me
                && (namespace.is_none() || namespace == mine)
        })
        .await
    }

    /// Removes the helpers whose owner (host name, process id and its
    /// namespace, when recorded) `pick` chooses.
    async fn remove_helpers_where(
        &self,
        pick: impl Fn(&str, i64, Option<u64>) -> bool,
    ) -> Result<usize> {
        let mut filters = std::collections::HashMap::new();
        filters.insert("label".to_string(), vec![HELPER_OWNER_LABEL.to_string()]);
        let helpers = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(|e| Error::engine("listing helper containers", e))?;
        let mut removed = 0;
        for helper in helpers {
            let owner = helper
                .labels
                .as_ref()
                .and_then(|l| l.get(HELPER_OWNER_LABEL))
                .and_then(|o| o.rsplit_once('/'))
                .and_then(|(host, pid)| Some((host.to_string(), pid.parse::<i64>().ok()?)));
            let namespace = helper
                .labels
                .as_ref()
                .and_then(|l| l.get(HELPER_PID_NAMESPACE_LABEL))
                .and_then(|n| n.parse::<u64>().ok());
            let (Some((host, pid)), Some(id)) = (owner, helper.id) else {
                continue;
            };
            if pick(&host, pid, namespace) {
                // One that cannot be removed must not keep the others.
                match self.remove_helper(&Helper { id }).await {
                    Ok(()) => removed += 1,
                    Err(e) => tracing::warn!("{e}"),
                }
            }
        }
        Ok(removed)
    }
}

impl std::fmt::Display for HelperSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Volume(name) => write!(f, "volume {name}"),
            Self::Bind(path) => write!(f, "bind mount {path}"),
        }
    }
}
