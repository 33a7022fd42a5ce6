//! The test environment: unique names, a private repository, helpers to run
//! lifeboat, docker, busybox and restic, and cleanup on drop.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

pub const BUSYBOX: &str = "lifeboat-test/busybox:1";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Tests share the engine; one that works on all of it (`backup --all`)
/// must run alone: it takes this lock exclusively, the others shared.
static ENGINE: RwLock<()> = RwLock::new(());

/// The lock a test holds while it lives.
enum EngineUse {
    Shared {
        _guard: RwLockReadGuard<'static, ()>,
    },
    Exclusive {
        _guard: RwLockWriteGuard<'static, ()>,
    },
}

/// One test's world.
pub struct TestEnv {
    pub prefix: String,
    pub dir: tempfile::TempDir,
    pub password: String,
    volumes: RefCell<Vec<String>>,
    containers: RefCell<Vec<String>>,
    unmount: RefCell<Vec<PathBuf>>,
    // Last: released after the cleanup in drop.
    _engine: EngineUse,
}

/// What a command printed and how it ended.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// What a finished process printed and how it ended.
    pub fn from(out: Output) -> Self {
        Self {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Fails the test unless the command succeeded.
    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "command failed\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", self.stdout))
    }
}

impl TestEnv {
    pub fn new(name: &str) -> Self {
        let shared = ENGINE.read().unwrap_or_else(PoisonError::into_inner);
        Self::with(name, EngineUse::Shared { _guard: shared })
    }

    /// A test that must have the engine to itself.
    pub fn exclusive(name: &str) -> Self {
        let exclusive = ENGINE.write().unwrap_or_else(PoisonError::into_inner);
        Self::with(name, EngineUse::Exclusive { _guard: exclusive })
    }

    fn with(name: &str, engine: EngineUse) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        Self {
            prefix: format!("lbt-{}-{n}-{name}", std::process::id()),
            dir: tempfile::tempdir().expect("temporary directory"),
            password: format!("test-password-{n}"),
            volumes: RefCell::default(),
            containers: RefCell::default(),
            unmount: RefCell::default(),
            _engine: engine,
        }
    }

    /// A unique name for a volume or container of this test; it is removed
    /// at the end of the test.
    pub fn name(&self, what: &str) -> String {
        let name = format!("{}-{what}", self.prefix);
        self.volumes.borrow_mut().push(name.clone());
        name
    }

    pub fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    /// This test's own journal of stopped containers.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// This test's own repository cache.
    pub fn cache_dir(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    /// Runs lifeboat against this test's repository.
    pub fn lifeboat(&self, args: &[&str]) -> Run {
        self.lifeboat_with(args, &[])
    }

    /// Starts lifeboat against this environment's repository without
    /// waiting for it; what it prints is piped: read it with
    /// `wait_with_output`.
    pub fn start_lifeboat(&self, args: &[&str]) -> std::process::Child {
        Command::new(env!("CARGO_BIN_EXE_lifeboat"))
            .args(args)
            .env("LIFEBOAT_REPO", self.repo())
            .env("LIFEBOAT_PASSWORD", &self.password)
            .env("LIFEBOAT_STATE_DIR", self.state_dir())
            .env("LIFEBOAT_CACHE_DIR", self.cache_dir())
            .env_remove("LIFEBOAT_PASSWORD_FILE")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start lifeboat")
    }

    pub fn lifeboat_with(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lifeboat"));
        cmd.args(args)
            .env("LIFEBOAT_REPO", self.repo())
            .env("LIFEBOAT_PASSWORD", &self.password)
            .env("LIFEBOAT_STATE_DIR", self.state_dir())
            .env("LIFEBOAT_CACHE_DIR", self.cache_dir())
            .env_remove("LIFEBOAT_PASSWORD_FILE");
        for (k, v) in env {
            cmd.env(k, v);
        }
        Run::from(cmd.output().expect("run lifeboat"))
    }

    /// Creates the test's repository.
    pub fn init(&self) {
        self.lifeboat(&["init"]).ok();
    }

    /// Creates a volume (labels as `key=value`).
    pub fn volume(&self, what: &str, labels: &[&str]) -> String {
        let name = self.name(what);
        let mut args = vec!["volume", "create"];
        for l in labels {
            args.push("--label");
            args.push(l);
        }
        args.push(&name);
        docker(&args).ok();
        name
    }

    /// Creates a volume holding one file, `/big`, of `megabytes` of
    /// incompressible data: long enough work to interrupt or watch.
    pub fn random_volume(&self, what: &str, megabytes: u32) -> String {
        let volume = self.volume(what, &[]);
        self.busybox(
            &[format!("{volume}:/v")],
            &format!("dd if=/dev/urandom of=/v/big bs=1M count={megabytes} 2>/dev/null"),
        )
        .ok();
        volume
    }

    /// Starts `restic key passwd` on this test's repository: it holds an
    /// exclusive lock while it waits for the new password on its standard
    /// input (write the password twice there to let it finish).
    pub fn hold_exclusive_restic_lock(&self) -> std::process::Child {
        let holder = Command::new("restic")
            .arg("--repo")
            .arg(self.repo())
            .args(["--no-cache", "key", "passwd"])
            .env("RESTIC_PASSWORD", &self.password)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start restic");
        let locks = self.repo().join("locks");
        wait_until("restic holds its lock", Duration::from_secs(30), || {
            std::fs::read_dir(&locks).is_ok_and(|mut d| d.next().is_some())
        });
        holder
    }

    /// Marks a volume lifeboat created (for example by a restore) for
    /// removal at the end of the test.
    pub fn adopt_volume(&self, name: &str) {
        self.volumes.borrow_mut().push(name.to_string());
    }

    /// Runs a busybox shell script in a throwaway container with the given
    /// mounts (`docker run -v` syntax).
    pub fn busybox(&self, mounts: &[String], script: &str) -> Run {
        let mut args = vec![
            "run".to_string(),
            "--rm".into(),
            "--network".into(),
            "none".into(),
        ];
        for m in mounts {
            args.push("-v".into());
            args.push(m.clone());
        }
        args.extend([
            BUSYBOX.to_string(),
            "sh".into(),
            "-c".into(),
            script.to_string(),
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        docker(&args)
    }

    /// Creates (without starting) or starts a named container; it is removed
    /// at the end of the test.
    pub fn container(&self, what: &str, args: &[&str], start: bool) -> String {
        let name = format!("{}-{what}", self.prefix);
        self.containers.borrow_mut().push(name.clone());
        let mut all = vec![if start { "run" } else { "create" }];
        if start {
            all.push("-d");
        }
        all.extend(["--name", &name]);
        if !args.contains(&"--network") {
            all.extend(["--network", "none"]);
        }
        all.extend(args);
        docker(&all).ok();
        name
    }

    /// Mounts a tmpfs of the given size at a fresh directory; unmounted at
    /// the end of the test.
    pub fn tmpfs(&self, what: &str, options: &str) -> PathBuf {
        let dir = self.dir.path().join(what);
        std::fs::create_dir_all(&dir).expect("mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(&dir)
            .status()
            .expect("mount");
        assert!(status.success(), "mount tmpfs at {}", dir.display());
        self.unmount.borrow_mut().push(dir.clone());
        dir
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        for c in self.containers.borrow().iter() {
            let _ = Command::new("docker").args(["rm", "-f", "-v", c]).output();
        }
        // Volumes last: a container still using one would keep it.
        for v in self.volumes.borrow().iter() {
            let _ = Command::new("docker")
                .args(["volume", "rm", "-f", v])
                .output();
        }
        for dir in self.unmount.borrow().iter() {
            let _ = Command::new("umount").arg(dir).output();
        }
    }
}

/// A database container of one of the test images, with its data in a
/// named volume of this test; returns (container, volume) once it accepts
/// connections.
impl TestEnv {
    pub fn database(
        &self,
        what: &str,
        image: &str,
        data_path: &str,
        env: &[&str],
        args: &[&str],
    ) -> (String, String) {
        let volume = self.volume(&format!("{what}-data"), &[]);
        let container = self.database_on(what, image, &volume, data_path, env, args);
        (container, volume)
    }

    /// A database container on an existing volume, once it accepts
    /// connections.
    pub fn database_on(
        &self,
        what: &str,
        image: &str,
        volume: &str,
        data_path: &str,
        env: &[&str],
        args: &[&str],
    ) -> String {
        let mut all: Vec<String> = vec!["-v".into(), format!("{volume}:{data_path}")];
        for e in env {
            all.push("-e".into());
            all.push((*e).to_string());
        }
        all.push(image.into());
        all.extend(args.iter().map(|a| (*a).to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let container = self.container(what, &all, true);
        let ready = match image {
            i if i.contains("postgres") => "pg_isready -q",
            i if i.contains("mariadb") => "mariadb-admin ping --silent",
            _ => "redis-cli ping | grep -q PONG",
        };
        let start = std::time::Instant::now();
        while docker(&["exec", &container, "sh", "-c", ready]).code != 0 {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(90),
                "{container} did not come up: {}",
                docker(&["logs", &container]).stderr
            );
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
        container
    }
}

/// Runs the docker CLI with `input` on its standard input.
pub fn docker_with_input(args: &[&str], input: &str) -> Run {
    use std::io::Write;
    let mut child = Command::new("docker")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run docker");
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes()).expect("write to docker");
    }
    Run::from(child.wait_with_output().expect("docker ends"))
}

/// Waits until `done` holds, failing the test after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs the docker CLI.
pub fn docker(args: &[&str]) -> Run {
    Run::from(
        Command::new("docker")
            .args(args)
            .output()
            .expect("run docker"),
    )
}

/// The host directory of a volume.
pub fn mountpoint(volume: &str) -> PathBuf {
    let run = docker(&["volume", "inspect", "-f", "{{.Mountpoint}}", volume]).ok();
    PathBuf::from(run.stdout.trim())
}

/// Runs restic against a repository.
pub fn restic(repo: &Path, password: &str, args: &[&str]) -> Run {
    restic_program(Path::new("restic"), repo, password, args)
}

fn restic_program(program: &Path, repo: &Path, password: &str, args: &[&str]) -> Run {
    Run::from(
        Command::new(program)
            .arg("--repo")
            .arg(repo)
            .args(["--no-cache"])
            .args(args)
            .env("RESTIC_PASSWORD", password)
            .output()
            .expect("run restic"),
    )
}

/// Runs the restic of Debian's next release (0.18, fetched by
/// `testing/build-images.sh`): retention as current restic decides it,
/// which bookworm's 0.14 does not yet.
pub fn restic_current(repo: &Path, password: &str, args: &[&str]) -> Run {
    let program = Path::new("/var/cache/lifeboat-test/restic-current/restic");
    assert!(
        program.exists(),
        "{} is missing: run testing/build-images.sh",
        program.display()
    );
    restic_program(program, repo, password, args)
}
