//! The stop strategy's containers: which ones stop, in which order, and
//! the guarantee that they start again.
//!
//! A target's writers are the running containers that mount it read-write;
//! the containers that depend on them (compose `depends_on`, `network_mode:
//! service:X` or `container:X`, `volumes_from`, links) stop too, before the
//! containers they depend on, and start again after them, in reverse order.
//! Only what was running is stopped, so only that starts again.
//!
//! Before a container is stopped it is written to a journal, one file per
//! lifeboat process. The containers are started again on every path out of
//! the stop window; should the process be killed, the next lifeboat
//! command on this host reads the journals of dead processes first and
//! starts what they had stopped.
//! The journal (see [`crate::journal`]) keeps what the window stopped.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use crate::engine::{ContainerControl, EngineContainer, MountKind};
use crate::error::Result;
use crate::inventory::Target;
use crate::journal::{Journal, start_stopped};

/// A container to stop, and why.
#[derive(Clone, Debug, Serialize)]
pub struct StopEntry {
    pub id: String,
    pub name: String,
    pub why: String,
    /// Started with `--rm`: stopping it would remove it.
    pub auto_remove: bool,
}

/// How long one container was stopped.
#[derive(Clone, Debug, Serialize)]
pub struct StopWindowReport {
    pub container: String,
    pub seconds: f64,
}

/// The running containers to stop for a target, dependents first.
pub fn stop_order(target: &Target, containers: &[EngineContainer]) -> Vec<StopEntry> {
    let running: Vec<&EngineContainer> = containers.iter().filter(|c| c.running).collect();
    let deps = dependencies(&running);
    let mut why: BTreeMap<String, String> = BTreeMap::new();
    for c in &running {
        let writes = c.mounts.iter().any(|m| {
            m.read_write
                && m.kind == target.kind
                && match m.kind {
                    MountKind::Volume => m.name.as_deref() == Some(target.name.as_str()),
                    _ => m.source.as_deref() == Some(target.name.as_str()),
                }
        });
        if writes {
            why.insert(c.id.clone(), format!("mounts {} read-write", target.name));
        }
    }
    // Everything that depends, directly or not, on a container that stops.
    loop {
        let mut added = false;
        for c in &running {
            if why.contains_key(&c.id) {
                continue;
            }
            if let Some((dep, how)) = deps
                .get(&c.id)
                .into_iter()
                .flatten()
                .find(|(dep, _)| why.contains_key(dep))
            {
                let dep_name = running
                    .iter()
                    .find(|x| &x.id == dep)
                    .map_or(dep.as_str(), |x| x.name.as_str());
                why.insert(c.id.clone(), format!("depends on {dep_name} ({how})"));
                added = true;
            }
        }
        if !added {
            break;
        }
    }
    // Dependents first: a container stops once nothing still running in
    // the set depends on it. A cycle is broken by name.
    let mut left: BTreeSet<String> = why.keys().cloned().collect();
    let mut order = Vec::new();
    while !left.is_empty() {
        let needed_by_left = |id: &String| {
            left.iter().any(|other| {
                other != id
                    && deps
                        .get(other)
                        .is_some_and(|d| d.iter().any(|(x, _)| x == id))
            })
        };
        let next = left
            .iter()
            .filter(|id| !needed_by_left(id))
            .min_by_key(|id| name_of(&running, id))
            .or_else(|| left.iter().min_by_key(|id| name_of(&running, id)))
            .cloned();
        let Some(id) = next else { break };
        left.remove(&id);
        order.push(StopEntry {
            name: name_of(&running, &id),
            why: why.remove(&id).unwrap_or_default(),
            auto_remove: running.iter().any(|c| c.id == id && c.auto_remove),
            id,
        });
    }
    order
}

fn name_of(containers: &[&EngineContainer], id: &str) -> String {
    containers
        .iter()
        .find(|c| c.id == id)
        .map_or_else(|| id.to_string(), |c| c.name.clone())
}

/// For each container, the containers it depends on, by id, with how.
fn dependencies(containers: &[&EngineContainer]) -> HashMap<String, Vec<(String, String)>> {
    let find = |reference: &str| {
        containers
            .iter()
            .find(|c| c.name == reference || (reference.len() >= 12 && c.id.starts_with(reference)))
            .map(|c| c.id.clone())
    };
    let by_service = |project: &str, service: &str| -> Vec<String> {
        containers
            .iter()
            .filter(|c| {
                c.labels.get(COMPOSE_PROJECT).map(String::as_str) == Some(project)
                    && c.labels.get(COMPOSE_SERVICE).map(String::as_str) == Some(service)
            })
            .map(|c| c.id.clone())
            .collect()
    };
    let mut compose_files: HashMap<String, ComposeDeps> = HashMap::new();
    let mut deps: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for c in containers {
        let mut mine = Vec::new();
        for reference in &c.needs {
            if let Some(id) = find(reference) {
                mine.push((id, "shares its network, volumes or link".to_string()));
            }
        }
        if let (Some(project), Some(service)) =
            (c.labels.get(COMPOSE_PROJECT), c.labels.get(COMPOSE_SERVICE))
        {
            // Compose v2 records depends_on on the container itself.
            for dep in c
                .labels
                .get(COMPOSE_DEPENDS_ON)
                .into_iter()
                .flat_map(|v| v.split(','))
            {
                let dep = dep.split(':').next().unwrap_or(dep).trim();
                for id in by_service(project, dep) {
                    mine.push((id, "compose depends_on".to_string()));
                }
            }
            // Compose v1 does not: read the project's compose files, when
            // they can be read here.
            let file_deps = compose_files
                .entry(project.clone())
                .or_insert_with(|| ComposeDeps::of_container(c));
            for (dep, how) in file_deps.of(service) {
                for id in by_service(project, &dep) {
                    mine.push((id, how.clone()));
                }
            }
        }
        mine.retain(|(id, _)| id != &c.id);
        deps.insert(c.id.clone(), mine);
    }
    deps
}

const COMPOSE_PROJECT: &str = "com.docker.compose.project";
const COMPOSE_SERVICE: &str = "com.docker.compose.service";
const COMPOSE_DEPENDS_ON: &str = "com.docker.compose.depends_on";
const COMPOSE_FILES: &str = "com.docker.compose.project.config_files";
const COMPOSE_DIR: &str = "com.docker.compose.project.working_dir";

/// The service dependencies a project's compose files declare.
#[derive(Default)]
struct ComposeDeps(HashMap<String, Vec<(String, String)>>);

impl ComposeDeps {
    fn of_container(c: &EngineContainer) -> Self {
        let dir = c
            .labels
            .get(COMPOSE_DIR)
            .map(PathBuf::from)
            .unwrap_or_default();
        let mut deps = Self::default();
        for file in c
            .labels
            .get(COMPOSE_FILES)
            .into_iter()
            .flat_map(|f| f.split(','))
        {
            let path = dir.join(file.trim());
            match std::fs::read_to_string(&path) {
                Ok(text) => deps.add_file(&text),
                Err(e) => tracing::debug!("compose file {}: {e}", path.display()),
            }
        }
        deps
    }

    fn add_file(&mut self, text: &str) {
        let Ok(doc) = serde_norway::from_str::<serde_norway::Value>(text) else {
            return;
        };
        let Some(services) = doc.get("services").and_then(|s| s.as_mapping()) else {
            return;
        };
        for (name, service) in services {
            let Some(name) = name.as_str() else { continue };
            let entry = self.0.entry(name.to_string()).or_default();
            match service.get("depends_on") {
                Some(serde_norway::Value::Sequence(list)) => {
                    for dep in list.iter().filter_map(|d| d.as_str()) {
                        entry.push((dep.to_string(), "compose depends_on".to_string()));
                    }
                }
                Some(serde_norway::Value::Mapping(map)) => {
                    for dep in map.keys().filter_map(|d| d.as_str()) {
                        entry.push((dep.to_string(), "compose depends_on".to_string()));
                    }
                }
                _ => {}
            }
            if let Some(other) = service
                .get("network_mode")
                .and_then(|m| m.as_str())
                .and_then(|m| m.strip_prefix("service:"))
            {
                entry.push((
                    other.to_string(),
                    "compose network_mode: service".to_string(),
                ));
            }
            for from in service
                .get("volumes_from")
                .and_then(|v| v.as_sequence())
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str())
            {
                if !from.starts_with("container:") {
                    let svc = from.split(':').next().unwrap_or(from);
                    entry.push((svc.to_string(), "compose volumes_from".to_string()));
                }
            }
        }
    }

    fn of(&self, service: &str) -> Vec<(String, String)> {
        self.0.get(service).cloned().unwrap_or_default()
    }
}

/// The containers a stop window stopped, started again on the way out.
pub(crate) struct StopWindow<'a> {
    engine: &'a dyn ContainerControl,
    journal: &'a mut Journal,
    stopped: Vec<(StopEntry, Instant)>,
}

impl<'a> StopWindow<'a> {
    pub(crate) fn new(engine: &'a dyn ContainerControl, journal: &'a mut Journal) -> Self {
        Self {
            engine,
            journal,
            stopped: Vec::new(),
        }
    }

    /// Stops the containers in the given order, each written to the journal
    /// before it is stopped. A container that is no longer running (it
    /// stopped since the plan was made) is left alone, and will not be
    /// started either.
    pub(crate) async fn stop(&mut self, order: &[StopEntry]) -> Result<()> {
        for entry in order {
            if !self.engine.is_running(&entry.id).await? {
                continue;
            }
            let grace = self.engine.stop_timeout(&entry.id).await?;
            self.journal.stopping(&entry.id, &entry.name, grace)?;
            self.stopped.push((entry.clone(), Instant::now()));
            self.engine.stop(&entry.id, grace).await?;
        }
        Ok(())
    }

    /// Starts again, in reverse order, everything this window stopped, and
    /// says how long each was stopped. Every container is tried, whatever
    /// happens to the others; one that cannot start stays in the journal,
    /// for the next lifeboat command to try again.
    pub(crate) async fn restart(mut self) -> (Vec<StopWindowReport>, Vec<String>) {
        let mut windows = Vec::new();
        let mut errors = Vec::new();
        while let Some((entry, since)) = self.stopped.pop() {
            let Some(stopped) = self.journal.stopped(&entry.id) else {
                continue;
            };
            match start_stopped(self.engine, &stopped).await {
                Ok(_) => {
                    windows.push(StopWindowReport {
                        container: entry.name.clone(),
                        seconds: since.elapsed().as_secs_f64(),
                    });
                    if let Err(e) = self.journal.started(&entry.id) {
                        errors.push(e.to_string());
                    }
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        windows.reverse();
        (windows, errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ContainerMount;
    use crate::inventory::assemble;

    fn container(
        name: &str,
        running: bool,
        mount: Option<bool>,
        labels: &[(&str, &str)],
        needs: &[&str],
    ) -> EngineContainer {
        EngineContainer {
            id: format!("{name:0<16}"),
            name: name.into(),
            image: "img".into(),
            running,
            state: String::new(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            mounts: mount
                .map(|rw| ContainerMount {
                    kind: MountKind::Volume,
                    name: Some("data".into()),
                    source: None,
                    destination: "/data".into(),
                    read_write: rw,
                    tmpfs_size: None,
                })
                .into_iter()
                .collect(),
            needs: needs.iter().map(|n| n.to_string()).collect(),
            auto_remove: false,
        }
    }

    fn order(containers: &[EngineContainer]) -> Vec<String> {
        let volume = crate::engine::EngineVolume {
            name: "data".into(),
            driver: "local".into(),
            ..Default::default()
        };
        let targets = assemble(&[volume], containers);
        stop_order(&targets[0], containers)
            .into_iter()
            .map(|e| e.name)
            .collect()
    }

    #[test]
    fn writers_and_their_dependents_stop_dependents_first() {
        let project = [("com.docker.compose.project", "shop")];
        let containers = vec![
            container(
                "db",
                true,
                Some(true),
                &[project[0], ("com.docker.compose.service", "db")],
                &[],
            ),
            container("reader", true, Some(false), &[], &[]),
            container("stopped-writer", false, Some(true), &[], &[]),
            container(
                "app",
                true,
                None,
                &[
                    project[0],
                    ("com.docker.compose.service", "app"),
                    ("com.docker.compose.depends_on", "db:service_started:false"),
                ],
                &[],
            ),
            container("sidecar", true, None, &[], &["app"]),
            container("unrelated", true, None, &[], &[]),
        ];
        assert_eq!(order(&containers), ["sidecar", "app", "db"]);
    }

    #[test]
    fn compose_files_give_the_dependencies_compose_v1_does_not_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("compose.yaml"),
            "services:\n  db:\n    image: x\n  app:\n    image: y\n    depends_on:\n      db:\n        condition: service_healthy\n  proxy:\n    image: z\n    network_mode: service:app\n",
        )
        .expect("write");
        let labels = |service: &'static str| {
            vec![
                ("com.docker.compose.project", "shop"),
                ("com.docker.compose.service", service),
                ("com.docker.compose.project.config_files", "compose.yaml"),
            ]
        };
        let dir_label = dir.path().display().to_string();
        let with_dir = |mut l: Vec<(&'static str, &'static str)>| {
            let mut c = l
                .drain(..)
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>();
            c.insert(
                "com.docker.compose.project.working_dir".into(),
                dir_label.clone(),
            );
            c
        };
        let mut db = container("db", true, Some(true), &[], &[]);
        db.labels = with_dir(labels("db"));
        let mut app = container("app", true, None, &[], &[]);
        app.labels = with_dir(labels("app"));
        let mut proxy = container("proxy", true, None, &[], &[]);
        proxy.labels = with_dir(labels("proxy"));
        assert_eq!(order(&[db, app, proxy]), ["proxy", "app", "db"]);
    }

    #[test]
    fn cycles_do_not_hang() {
        let containers = vec![
            container("a", true, Some(true), &[], &["b"]),
            container("b", true, None, &[], &["a"]),
        ];
        assert_eq!(order(&containers).len(), 2);
    }

    /// The stop window and the journal, against the in-memory engine.
    mod window {
        use super::*;
        use crate::engine::control::fake::FakeEngine;
        use crate::journal::{Pending, recover_with};

        fn entry(id: &str) -> StopEntry {
            StopEntry {
                id: id.to_string(),
                name: id.to_string(),
                why: "test".to_string(),
                auto_remove: false,
            }
        }

        fn entries(ids: &[&str]) -> Vec<StopEntry> {
            ids.iter().map(|id| entry(id)).collect()
        }

        #[tokio::test]
        async fn containers_stop_in_order_and_start_again_in_reverse() -> Result<()> {
            let state = tempfile::tempdir().expect("tempdir");
            let engine = FakeEngine::with(&[("web", true), ("worker", true), ("db", true)]);
            let mut journal = Journal::new(&engine, state.path());
            let mut window = StopWindow::new(&engine, &mut journal);
            window.stop(&entries(&["web", "worker", "db"])).await?;
            assert!(!engine.running("web") && !engine.running("db"));
            let (windows, errors) = window.restart().await;
            assert!(errors.is_empty(), "{errors:?}");
            assert_eq!(
                engine.calls(),
                [
                    "stop web",
                    "stop worker",
                    "stop db",
                    "start db",
                    "start worker",
                    "start web"
                ]
            );
            let reported: Vec<_> = windows.iter().map(|w| w.container.as_str()).collect();
            assert_eq!(reported, ["web", "worker", "db"]);
            assert!(["web", "worker", "db"].iter().all(|c| engine.running(c)));
            Ok(())
        }

        #[tokio::test]
        async fn only_what_was_running_is_stopped_and_started_again() -> Result<()> {
            let state = tempfile::tempdir().expect("tempdir");
            // The worker stopped on its own since the plan was made.
            let engine = FakeEngine::with(&[("web", true), ("worker", false), ("db", true)]);
            let mut journal = Journal::new(&engine, state.path());
            let mut window = StopWindow::new(&engine, &mut journal);
            window.stop(&entries(&["web", "worker", "db"])).await?;
            let (windows, errors) = window.restart().await;
            assert!(errors.is_empty(), "{errors:?}");
            assert_eq!(
                engine.calls(),
                ["stop web", "stop db", "start db", "start web"]
            );
            assert_eq!(windows.len(), 2);
            assert!(!engine.running("worker"), "started what was not running");
            Ok(())
        }

        #[tokio::test]
        async fn one_container_that_will_not_start_keeps_no_other_stopped() -> Result<()> {
            let state = tempfile::tempdir().expect("tempdir");
            let engine = FakeEngine::with(&[("web", true), ("worker", true), ("db", true)]);
            let mut journal = Journal::new(&engine, state.path());
            let mut window = StopWindow::new(&engine, &mut journal);
            window.stop(&entries(&["web", "worker", "db"])).await?;
            engine.break_start("worker");
            let (windows, errors) = window.restart().await;
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(errors[0].contains("worker"), "{errors:?}");
            assert!(engine.running("web") && engine.running("db"));
            assert_eq!(windows.len(), 2);
            // The journal keeps it, for the next command to try again.
            assert!(journal.stopped("worker").is_some());
            assert!(journal.stopped("web").is_none());
            Ok(())
        }

        #[tokio::test]
        async fn a_window_given_up_is_undone_by_the_recovery_in_reverse() -> Result<()> {
            let state = tempfile::tempdir().expect("tempdir");
            let engine = FakeEngine::with(&[("web", true), ("worker", true), ("db", true)]);
            let mut journal = Journal::new(&engine, state.path());
            journal.owe(&[Pending::new(
                "db",
                vec!["post-hook".to_string()],
                "the post hook".to_string(),
            )])?;
            {
                let mut window = StopWindow::new(&engine, &mut journal);
                window.stop(&entries(&["web", "worker", "db"])).await?;
                // Cancelled here: the backup's future is dropped with the
                // window, which starts nothing itself.
            }
            // Someone started the worker meanwhile: not lifeboat's to
            // start any more.
            engine.started_by_someone("worker");
            let done = recover_with(&engine, state.path(), true).await?;
            assert_eq!(
                engine.calls()[3..],
                ["start db", "start web", "run db: post-hook"]
            );
            assert_eq!(
                done,
                ["started db", "started web", "ran the post hook in db"]
            );
            assert!(["web", "worker", "db"].iter().all(|c| engine.running(c)));
            // Nothing is left to undo.
            assert!(recover_with(&engine, state.path(), true).await?.is_empty());
            Ok(())
        }
    }
}
