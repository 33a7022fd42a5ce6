//! The README's first command: a backup on the built-in defaults, with no
//! repository, password or state directory given, creates the default
//! repository and its password file, and what it stored restores. The
//! README backs up `--all`; here one volume is named, since `--all` would
//! take the volumes of every test running beside this one. Both open the
//! repository through the same code.
//!
//! lifeboat runs in a private mount namespace where tmpfs file systems
//! cover its default directories (/var/lib/lifeboat, /etc/lifeboat,
//! /var/cache/lifeboat), so a repository the host may already have there is
//! neither seen nor touched, and everything the test wrote goes with the
//! namespace.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::roundtrip::{Times, listing};
use crate::support::{Run, TestEnv};

const DEFAULT_DIRS: [&str; 3] = ["/var/lib/lifeboat", "/etc/lifeboat", "/var/cache/lifeboat"];

/// A mount namespace whose lifeboat directories are empty tmpfs file
/// systems, held open by a sleeping process; gone when dropped.
struct Namespace {
    holder: Option<Child>,
    /// Mount points this test had to create on the host, removed at the end
    /// when still empty.
    created: Vec<PathBuf>,
}

impl Namespace {
    fn new() -> Self {
        // Made first, so that whatever fails below is undone by drop.
        let mut namespace = Self {
            holder: None,
            created: Vec::new(),
        };
        for dir in DEFAULT_DIRS {
            let dir = PathBuf::from(dir);
            if !dir.exists() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&dir)
                    .expect("mount point");
                namespace.created.push(dir);
            }
        }
        let script = format!(
            "set -e; for d in {}; do mount -t tmpfs -o mode=0755 tmpfs \"$d\"; done; \
             echo ready; exec sleep 600",
            DEFAULT_DIRS.join(" ")
        );
        let holder = namespace.holder.insert(
            Command::new("unshare")
                .args(["--mount", "--propagation", "private", "sh", "-c", &script])
                .stdout(Stdio::piped())
                .spawn()
                .expect("start unshare"),
        );
        let mut ready = String::new();
        if let Some(out) = holder.stdout.take() {
            BufReader::new(out).read_line(&mut ready).expect("read");
        }
        assert_eq!(ready.trim(), "ready", "the namespace was not set up");
        namespace
    }

    /// Runs a command inside the namespace, with none of lifeboat's
    /// settings in its environment.
    fn run(&self, program: &str, args: &[&str]) -> Run {
        let out = Command::new("nsenter")
            .arg(format!("--mount=/proc/{}/ns/mnt", self.holder_pid()))
            .arg("--")
            .arg(program)
            .args(args)
            .env_remove("LIFEBOAT_REPO")
            .env_remove("LIFEBOAT_PASSWORD")
            .env_remove("LIFEBOAT_PASSWORD_FILE")
            .env_remove("LIFEBOAT_STATE_DIR")
            .env_remove("LIFEBOAT_CACHE_DIR")
            .env_remove("LIFEBOAT_CONFIG")
            .output()
            .expect("run nsenter");
        Run::from(out)
    }

    fn holder_pid(&self) -> u32 {
        self.holder.as_ref().map_or(0, Child::id)
    }

    fn lifeboat(&self, args: &[&str]) -> Run {
        self.run(env!("CARGO_BIN_EXE_lifeboat"), args)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        if let Some(holder) = self.holder.as_mut() {
            let _ = holder.kill();
            let _ = holder.wait();
        }
        for dir in &self.created {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

#[test]
fn a_backup_on_the_defaults_creates_the_repository_and_its_password() {
    let env = TestEnv::new("defaults");
    let volume = env.volume("data", &[]);
    env.busybox(
        &[format!("{volume}:/v")],
        "mkdir -p /v/d && echo kept > /v/d/f && ln -s d/f /v/link && ln /v/d/f /v/hard && \
         dd if=/dev/urandom of=/v/random bs=1k count=700 2>/dev/null",
    )
    .ok();
    let before = listing(&env, &volume, Times::Exact);
    let ns = Namespace::new();

    let run = ns.lifeboat(&["backup", &volume]).ok();
    assert!(
        run.stderr
            .contains("created repository /var/lib/lifeboat/repo"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("/etc/lifeboat/password")
            && run.stderr.contains("WITHOUT THIS PASSWORD"),
        "the generated password must be announced:\n{}",
        run.stderr
    );
    let stat = ns
        .run("stat", &["-c", "%a %s", "/etc/lifeboat/password"])
        .ok();
    let (mode, size) = stat.stdout.trim().split_once(' ').expect("stat output");
    assert_eq!(mode, "600", "password file mode");
    assert!(
        size.parse::<u64>().is_ok_and(|s| s >= 32),
        "password file size {size}"
    );

    // The second run finds the repository and creates nothing.
    let run = ns.lifeboat(&["backup", &volume]).ok();
    assert!(!run.stderr.contains("created"), "{}", run.stderr);
    assert!(!run.stderr.contains("WITHOUT"), "{}", run.stderr);

    let snapshots = ns.lifeboat(&["snapshots", &volume, "--json"]).ok().json();
    let count = snapshots.as_array().map_or(0, Vec::len);
    assert_eq!(count, 2, "{snapshots}");

    // restic opens the default repository with the generated password.
    let check = ns
        .run(
            "restic",
            &[
                "--repo",
                "/var/lib/lifeboat/repo",
                "--password-file",
                "/etc/lifeboat/password",
                "--no-cache",
                "check",
                "--read-data",
            ],
        )
        .ok();
    assert!(check.stdout.contains("no errors"), "{}", check.stdout);

    // The repository's cache is in the default cache directory, or in the
    // one named.
    let cached = |dir: &str| {
        let listed = ns.run("ls", &[dir]).ok().stdout;
        listed
            .lines()
            .any(|l| l.len() == 64 && l.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    assert!(
        cached("/var/cache/lifeboat"),
        "no cache in the default place"
    );
    ns.lifeboat(&["snapshots", "--cache-dir", "/var/lib/lifeboat/elsewhere"])
        .ok();
    assert!(cached("/var/lib/lifeboat/elsewhere"), "--cache-dir ignored");

    let copy = env.name("copy");
    ns.lifeboat(&["restore", "latest", "--volume", &volume, "--to", &copy])
        .ok();
    assert_eq!(listing(&env, &copy, Times::Exact), before);
}
