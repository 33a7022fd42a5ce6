//! The few things the stop strategy and the journal ask of the engine about
//! a container, behind a narrow interface: the engine implements it, and
//! the tests' in-memory fake does too, so that the order containers stop
//! and start in, and what is started again after a failure or a stop, are
//! checked without Docker.

use std::time::Duration;

use futures_util::future::BoxFuture;

use super::{ContainerStatus, Engine};
use crate::error::Result;

/// Stopping, starting and looking at containers.
pub(crate) trait ContainerControl: Sync {
    /// Which engine this is (`unix:///var/run/docker.sock`): journals are
    /// kept per engine.
    fn host(&self) -> &str;

    fn is_running<'a>(&'a self, container: &'a str) -> BoxFuture<'a, Result<bool>>;

    /// The seconds a stop waits before it kills.
    fn stop_timeout<'a>(&'a self, container: &'a str) -> BoxFuture<'a, Result<i32>>;

    /// Stops a container and waits until it has.
    fn stop<'a>(&'a self, container: &'a str, grace: i32) -> BoxFuture<'a, Result<()>>;

    fn start<'a>(&'a self, container: &'a str) -> BoxFuture<'a, Result<()>>;

    /// `None` when the container is gone.
    fn status<'a>(&'a self, container: &'a str) -> BoxFuture<'a, Result<Option<ContainerStatus>>>;

    /// Waits until a container is not running; fails after `limit`.
    fn wait_stopped<'a>(&'a self, container: &'a str, limit: Duration)
    -> BoxFuture<'a, Result<()>>;

    /// Waits until none of `commands` runs in the container any more.
    fn wait_for_commands<'a>(
        &'a self,
        container: &'a str,
        commands: &'a [Vec<String>],
        limit: Duration,
    ) -> BoxFuture<'a, Result<()>>;

    /// Runs a command in the container; its exit status.
    fn run<'a>(&'a self, container: &'a str, command: &'a [String]) -> BoxFuture<'a, Result<i64>>;
}

impl ContainerControl for Engine {
    fn host(&self) -> &str {
        Engine::host(self)
    }

    fn is_running<'a>(&'a self, container: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(Engine::is_running(self, container))
    }

    fn stop_timeout<'a>(&'a self, container: &'a str) -> BoxFuture<'a, Result<i32>> {
        Box::pin(Engine::stop_timeout(self, container))
    }

    fn stop<'a>(&'a self, container: &'a str, grace: i32) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.stop_container(container, Some(grace)))
    }

    fn start<'a>(&'a self, container: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.start_container(container))
    }

    fn status<'a>(&'a self, container: &'a str) -> BoxFuture<'a, Result<Option<ContainerStatus>>> {
        Box::pin(self.container_status(container))
    }

    fn wait_stopped<'a>(
        &'a self,
        container: &'a str,
        limit: Duration,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(Engine::wait_stopped(self, container, limit))
    }

    fn wait_for_commands<'a>(
        &'a self,
        container: &'a str,
        commands: &'a [Vec<String>],
        limit: Duration,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.wait_for_execs(container, commands, limit))
    }

    fn run<'a>(&'a self, container: &'a str, command: &'a [String]) -> BoxFuture<'a, Result<i64>> {
        Box::pin(async move { Ok(self.exec_collect(container, command, None).await?.exit_code) })
    }
}

/// An engine in memory, for tests: containers with a name, running or
/// not, and a log of what was asked of them.
#[cfg(test)]
pub(crate) mod fake {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Mutex;
    use std::time::Duration;

    use futures_util::future::BoxFuture;

    use super::ContainerControl;
    use crate::engine::ContainerStatus;
    use crate::error::{Error, Result};

    #[derive(Default)]
    pub(crate) struct FakeEngine {
        state: Mutex<State>,
    }

    #[derive(Default)]
    struct State {
        /// By id: running, and when it last started.
        containers: BTreeMap<String, (bool, Option<String>)>,
        /// What was asked, in order: `stop a`, `start b`, `run a: cmd`.
        calls: Vec<String>,
        /// Containers that refuse to start.
        broken: BTreeSet<String>,
    }

    impl FakeEngine {
        /// Containers by id, running or not.
        pub(crate) fn with(containers: &[(&str, bool)]) -> Self {
            let engine = Self::default();
            {
                let mut state = engine.state.lock().expect("fake engine");
                for (id, running) in containers {
                    state.containers.insert((*id).to_string(), (*running, None));
                }
            }
            engine
        }

        pub(crate) fn calls(&self) -> Vec<String> {
            self.state.lock().expect("fake engine").calls.clone()
        }

        pub(crate) fn running(&self, id: &str) -> bool {
            self.state
                .lock()
                .expect("fake engine")
                .containers
                .get(id)
                .is_some_and(|c| c.0)
        }

        /// From now on, starting `id` fails.
        pub(crate) fn break_start(&self, id: &str) {
            self.state
                .lock()
                .expect("fake engine")
                .broken
                .insert(id.to_string());
        }

        /// Someone else starts `id` (a later time than any stop request).
        pub(crate) fn started_by_someone(&self, id: &str) {
            let mut state = self.state.lock().expect("fake engine");
            let later = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(1)).to_string();
            state.containers.insert(id.to_string(), (true, Some(later)));
        }

        fn call<T>(&self, call: String, f: impl FnOnce(&mut State) -> Result<T>) -> Result<T> {
            let mut state = self.state.lock().expect("fake engine");
            state.calls.push(call);
            f(&mut state)
        }
    }

    fn missing(id: &str) -> Error {
        Error::Engine {
            action: format!("container {id}"),
            reason: "no such container".to_string(),
        }
    }

    impl ContainerControl for FakeEngine {
        fn host(&self) -> &str {
            "fake://engine"
        }

        fn is_running<'a>(&'a self, container: &'a str) -> BoxFuture<'a, Result<bool>> {
            let running = self
                .state
                .lock()
                .expect("fake engine")
                .containers
                .get(container)
                .map(|c| c.0)
                .ok_or_else(|| missing(container));
            Box::pin(async move { running })
        }

        fn stop_timeout<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<i32>> {
            Box::pin(async { Ok(10) })
        }

        fn stop<'a>(&'a self, container: &'a str, _: i32) -> BoxFuture<'a, Result<()>> {
            let done = self.call(format!("stop {container}"), |state| {
                let c = state
                    .containers
                    .get_mut(container)
                    .ok_or_else(|| missing(container))?;
                c.0 = false;
                Ok(())
            });
            Box::pin(async move { done })
        }

        fn start<'a>(&'a self, container: &'a str) -> BoxFuture<'a, Result<()>> {
            let done = self.call(format!("start {container}"), |state| {
                if state.broken.contains(container) {
                    return Err(Error::Engine {
                        action: format!("starting container {container}"),
                        reason: "it cannot start".to_string(),
                    });
                }
                let c = state
                    .containers
                    .get_mut(container)
                    .ok_or_else(|| missing(container))?;
                *c = (true, Some(jiff::Timestamp::now().to_string()));
                Ok(())
            });
            Box::pin(async move { done })
        }

        fn status<'a>(
            &'a self,
            container: &'a str,
        ) -> BoxFuture<'a, Result<Option<ContainerStatus>>> {
            let status = self
                .state
                .lock()
                .expect("fake engine")
                .containers
                .get(container)
                .map(|(running, started_at)| ContainerStatus {
                    running: *running,
                    started_at: started_at.clone(),
                    exec_ids: Vec::new(),
                });
            Box::pin(async move { Ok(status) })
        }

        fn wait_stopped<'a>(
            &'a self,
            container: &'a str,
            _: Duration,
        ) -> BoxFuture<'a, Result<()>> {
            let running = self.is_running(container);
            Box::pin(async move {
                if running.await? {
                    return Err(Error::Engine {
                        action: format!("stopping container {container}"),
                        reason: "still running".to_string(),
                    });
                }
                Ok(())
            })
        }

        fn wait_for_commands<'a>(
            &'a self,
            _: &'a str,
            _: &'a [Vec<String>],
            _: Duration,
        ) -> BoxFuture<'a, Result<()>> {
            Box::pin(async { Ok(()) })
        }

        fn run<'a>(
            &'a self,
            container: &'a str,
            command: &'a [String],
        ) -> BoxFuture<'a, Result<i64>> {
            let done = self.call(format!("run {container}: {}", command.join(" ")), |_| Ok(0));
            Box::pin(async move { done })
        }
    }
}
