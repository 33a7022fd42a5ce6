//! The Docker Engine API: the only module that talks to bollard.
//!
//! It reads the inventory (volumes, containers and their mounts), creates
//! volumes, and runs the never-started helper containers through which the
//! engine-archive reader and writer stream a volume's files. It returns plain
//! data; it never decides what to back up and never touches the repository.

use std::collections::BTreeMap;
use std::time::Duration;

use std::pin::Pin;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, ExecConfig, HostConfig, Mount, MountType, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, DownloadFromContainerOptions,
    ListContainersOptions, RemoveContainerOptions, UploadToContainerOptions,
};
use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::tmpfs::TmpfsSize;

/// The socket lifeboat tries when `DOCKER_HOST` is not set.
const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// How long the first contact with the engine may take before it counts as
/// unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Streams of volume content may run for hours; the engine client's default
/// request timeout (two minutes) would cut them off.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

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

/// A connection to one Docker engine, with the API version negotiated.
#[derive(Clone, Debug)]
pub struct Engine {
    docker: Docker,
    host: String,
}

/// A named volume as the engine describes it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct EngineVolume {
    pub name: String,
    pub driver: String,
    pub mountpoint: String,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
    pub created_at: Option<String>,
}

/// What kind of mount a container has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MountKind {
    Volume,
    Bind,
    Tmpfs,
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

/// A piece of a command's output.
#[derive(Debug)]
pub(crate) enum ExecChunk {
    Stdout(Bytes),
    Stderr(Bytes),
}

/// A command started inside a container.
pub(crate) struct Exec {
    pub(crate) id: String,
    pub(crate) output: Pin<Box<dyn Stream<Item = Result<ExecChunk>> + Send>>,
    /// The command's standard input, when it was asked for.
    pub(crate) input: Option<Pin<Box<dyn tokio::io::AsyncWrite + Send>>>,
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

/// Everything a short command printed, and how it ended.
#[derive(Debug)]
pub(crate) struct ExecOutput {
    pub(crate) exit_code: i64,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: String,
}

/// How much of a short command's output is kept; the rest is dropped.
const EXEC_OUTPUT_LIMIT: usize = 16 << 20;

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

    /// Every named volume of the engine.
    pub async fn volumes(&self) -> Result<Vec<EngineVolume>> {
        let list = self
            .docker
            .list_volumes(None::<bollard::query_parameters::ListVolumesOptions>)
            .await
            .map_err(|e| Error::engine("listing volumes", e))?;
        let mut volumes: Vec<_> = list
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(volume_from_model)
            .collect();
        volumes.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(volumes)
    }

    /// One volume, or `None` when the engine has no volume of that name.
    pub async fn volume(&self, name: &str) -> Result<Option<EngineVolume>> {
        match self.docker.inspect_volume(name).await {
            Ok(v) => Ok(Some(volume_from_model(v))),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(Error::engine(format!("inspecting volume {name}"), e)),
        }
    }

    /// Creates a volume with the given driver, driver options and labels.
    pub async fn create_volume(
        &self,
        name: &str,
        driver: &str,
        options: &BTreeMap<String, String>,
        labels: &BTreeMap<String, String>,
    ) -> Result<EngineVolume> {
        // An empty name would make the engine invent one: a volume nobody
        // asked for, and a restore into it that nobody finds.
        check_volume_name(name)?;
        let request = VolumeCreateRequest {
            name: Some(name.to_string()),
            driver: Some(driver.to_string()),
            driver_opts: Some(options.clone().into_iter().collect()),
            labels: Some(labels.clone().into_iter().collect()),
            ..Default::default()
        };
        let v = self
            .docker
            .create_volume(request)
            .await
            .map_err(|e| Error::engine(format!("creating volume {name}"), e))?;
        Ok(volume_from_model(v))
    }

    /// Removes a volume (one lifeboat created and must undo, or one
    /// pruned); the engine refuses one a container uses.
    pub async fn remove_volume(&self, name: &str) -> Result<()> {
        self.docker
            .remove_volume(name, None::<bollard::query_parameters::RemoveVolumeOptions>)
            .await
            .map_err(|e| Error::engine(format!("removing volume {name}"), e))
    }

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
                return Err(Error::Other(format!(
                    "Docker engine: importing the helper image: {detail}"
                )));
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

    /// Waits until no command given in `commands` runs in the container
    /// (started by a lifeboat that was interrupted), for at most `limit`.
    pub(crate) async fn wait_for_execs(
        &self,
        container: &str,
        commands: &[Vec<String>],
        limit: Duration,
    ) -> Result<()> {
        if commands.is_empty() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        loop {
            let Some(status) = self.container_status(container).await? else {
                return Ok(());
            };
            let mut busy = false;
            for id in &status.exec_ids {
                let Ok(exec) = self.docker.inspect_exec(id).await else {
                    continue;
                };
                let command: Vec<String> = exec
                    .process_config
                    .map(|p| {
                        p.entrypoint
                            .into_iter()
                            .chain(p.arguments.unwrap_or_default())
                            .collect()
                    })
                    .unwrap_or_default();
                if exec.running == Some(true) && commands.contains(&command) {
                    busy = true;
                }
            }
            if !busy {
                return Ok(());
            }
            if started.elapsed() > limit {
                return Err(Error::Other(format!(
                    "a command lifeboat started in container {container} is still running after {}s",
                    limit.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
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

    /// Starts `cmd` inside a running container, as its default user and
    /// with its environment (which is where database credentials live:
    /// they never pass through lifeboat).
    pub(crate) async fn exec(&self, container: &str, cmd: &[String], stdin: bool) -> Result<Exec> {
        let what = || {
            format!(
                "running {} in container {container}",
                cmd.first().map_or("", |c| c)
            )
        };
        let created = self
            .docker
            .create_exec(
                container,
                ExecConfig {
                    attach_stdin: Some(stdin),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    tty: Some(false),
                    cmd: Some(cmd.to_vec()),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| Error::engine(what(), e))?;
        let started = self
            .docker
            .clone()
            .with_timeout(TRANSFER_TIMEOUT)
            .start_exec(
                &created.id,
                Some(StartExecOptions {
                    detach: false,
                    ..Default::default()
                }),
            )
            .await
            .map_err(|e| Error::engine(what(), e))?;
        let StartExecResults::Attached { output, input } = started else {
            return Err(Error::Other(format!(
                "{}: the engine did not attach",
                what()
            )));
        };
        let output = output.filter_map(|item| async move {
            match item {
                Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => {
                    Some(Ok(ExecChunk::Stdout(message)))
                }
                Ok(LogOutput::StdErr { message }) => Some(Ok(ExecChunk::Stderr(message))),
                Ok(LogOutput::StdIn { .. }) => None,
                Err(e) => Some(Err(Error::engine("reading a command's output", e))),
            }
        });
        Ok(Exec {
            id: created.id,
            output: Box::pin(output),
            input: stdin.then_some(input),
        })
    }

    /// The exit code of a finished command, waiting briefly for the engine
    /// to notice the end.
    pub(crate) async fn exec_exit_code(&self, exec_id: &str) -> Result<i64> {
        for _ in 0..200 {
            let inspected = self
                .docker
                .inspect_exec(exec_id)
                .await
                .map_err(|e| Error::engine("inspecting a command", e))?;
            if inspected.running != Some(true) {
                return Ok(inspected.exit_code.unwrap_or(-1));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Err(Error::Other(format!(
            "command {exec_id} still running after its output ended"
        )))
    }

    /// Runs a short command to the end, feeding it `stdin`, and collects
    /// what it printed.
    pub(crate) async fn exec_collect(
        &self,
        container: &str,
        cmd: &[String],
        stdin: Option<&[u8]>,
    ) -> Result<ExecOutput> {
        let mut exec = self.exec(container, cmd, stdin.is_some()).await?;
        if let (Some(data), Some(mut input)) = (stdin, exec.input.take()) {
            use tokio::io::AsyncWriteExt;
            input
                .write_all(data)
                .await
                .and(input.shutdown().await)
                .map_err(|e| Error::Other(format!("writing to a command in {container}: {e}")))?;
        }
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        while let Some(chunk) = exec.output.next().await {
            let (buffer, bytes) = match chunk? {
                ExecChunk::Stdout(b) => (&mut stdout, b),
                ExecChunk::Stderr(b) => (&mut stderr, b),
            };
            let room = EXEC_OUTPUT_LIMIT.saturating_sub(buffer.len());
            buffer.extend_from_slice(&bytes[..bytes.len().min(room)]);
        }
        Ok(ExecOutput {
            exit_code: self.exec_exit_code(&exec.id).await?,
            stdout,
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        })
    }

    /// Streams `path` inside the helper as a tar archive.
    pub(crate) fn download(
        &self,
        helper: &Helper,
        path: &str,
    ) -> impl Stream<Item = Result<Bytes>> + Send + 'static {
        // The returned stream owns its request: it does not borrow the client.
        self.docker
            .clone()
            .with_timeout(TRANSFER_TIMEOUT)
            .download_from_container(
                &helper.id,
                Some(DownloadFromContainerOptions {
                    path: path.to_string(),
                }),
            )
            .map_err(|e| Error::engine("reading the volume through the engine", e))
    }

    /// Extracts a tar stream into `path` inside the helper, keeping the
    /// archive's owners (`copyUIDGID`).
    pub(crate) async fn upload(
        &self,
        helper: &Helper,
        path: &str,
        tar: impl Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    ) -> Result<()> {
        self.upload_into(&helper.id, path, tar).await
    }

    /// Extracts a tar stream into `path` inside any container, running or
    /// not, keeping the archive's owners.
    pub(crate) async fn upload_into(
        &self,
        container: &str,
        path: &str,
        tar: impl Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    ) -> Result<()> {
        let docker = self.docker.clone().with_timeout(TRANSFER_TIMEOUT);
        docker
            .upload_to_container(
                container,
                Some(UploadToContainerOptions {
                    path: path.to_string(),
                    copy_uidgid: Some("1".to_string()),
                    ..Default::default()
                }),
                bollard::body_try_stream(tar),
            )
            .await
            .map_err(|e| {
                Error::engine(
                    format!("writing into {path} of {container} through the engine"),
                    e,
                )
            })
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
                return Err(Error::Other(format!(
                    "container {container} is still running {}s after it was asked to stop",
                    limit.as_secs()
                )));
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

impl std::fmt::Display for HelperSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Volume(name) => write!(f, "volume {name}"),
            Self::Bind(path) => write!(f, "bind mount {path}"),
        }
    }
}

fn volume_from_model(v: bollard::models::Volume) -> EngineVolume {
    EngineVolume {
        name: v.name,
        driver: v.driver,
        mountpoint: v.mountpoint,
        labels: v.labels.into_iter().collect(),
        options: v.options.into_iter().collect(),
        created_at: v.created_at.map(|d| d.to_string()),
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

/// The innermost message of an engine error: "connection refused" says more
/// than "error trying to connect".
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// Refuses a name the engine would not take as a volume's, the way the
/// engine's own rule reads (a letter or digit, then letters, digits, `_`,
/// `.` or `-`; two characters at least), before anything is done.
pub(crate) fn check_volume_name(name: &str) -> Result<()> {
    let bytes = name.as_bytes();
    let ok = bytes.len() >= 2
        && bytes[0].is_ascii_alphanumeric()
        && bytes[1..]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        return Ok(());
    }
    Err(Error::BadRequest(format!(
        "{name:?} is not a volume name: a volume name is a letter or digit followed by letters, digits, '_', '.' or '-' (a directory is given by its absolute path)"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_names_follow_the_engine_rule() {
        for good in ["db", "pg-data_1.old", "0x"] {
            assert!(check_volume_name(good).is_ok(), "{good}");
        }
        for bad in ["", "a", "-db", ".db", "a/b", "/srv/data", "db data", "db\n"] {
            let err = check_volume_name(bad).expect_err(bad);
            assert_eq!(err.class(), crate::ErrorClass::BadRequest, "{bad}");
        }
    }
}
