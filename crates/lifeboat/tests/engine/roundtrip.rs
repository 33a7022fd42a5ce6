//! Round trips of a volume holding every kind of entry, through each
//! reader and writer, judged by busybox inside containers and by restic.

use std::path::Path;
use std::process::Command;

use crate::support::{TestEnv, docker, mountpoint, restic};

/// Builds the tricky tree in the volume mounted at /v.
const TRICKY_TREE: &str = r#"
set -eu
cd /v
mkdir -p nested/deeper/deepest empty-dir setgid-dir
printf 'hello\n' > nested/deeper/deepest/file.txt
: > zero-bytes
dd if=/dev/urandom of=large.bin bs=1M count=24 2>/dev/null
ln large.bin hardlink-to-large
ln -s nested/deeper/deepest/file.txt relative-link
ln -s /etc/passwd absolute-link
ln -s missing-target dangling-link
truncate -s 64M sparse.img
printf 'tail' | dd of=sparse.img bs=1 seek=33554432 conv=notrunc 2>/dev/null
printf 'odd' > odd-perms
chmod 4751 odd-perms
chmod 2750 setgid-dir
chmod 1777 empty-dir
chown 1234:5678 nested/deeper/deepest/file.txt
chown -h 4321:8765 relative-link
touch "$(printf 'new\nline')"
touch "$(printf 'latin1-\351')"
mkfifo a-fifo
mknod char-dev c 1 3
touch -d '2001-02-03 04:05:06' nested/deeper/deepest/file.txt odd-perms
chown 70:70 /v
chmod 0700 /v
"#;

/// Lists everything under /v: names, types and modes, owners, sizes, link
/// counts, device numbers, times, content checksums and link targets.
const LISTING: &str = r#"
cd /v || exit 1
find . ! -type d -print0 | sort -z | xargs -0 stat -c '%n|%f|%u|%g|%s|%h|%t:%T|TIME'
find . -type d -print0 | sort -z | xargs -0 stat -c '%n|%f|%u|%g|%h|TIME'
find . -type f -print0 | sort -z | xargs -0 md5sum
find . -type l -print0 | sort -z | xargs -0 -n1 readlink
"#;

/// How exactly times must match.
#[derive(Clone, Copy)]
pub enum Times {
    /// To the nanosecond.
    Exact,
    /// To the second: the engine's archive truncates mtimes to seconds.
    Seconds,
}

/// The listing of a volume (`NAME`) or host directory (`/path`), taken
/// inside a busybox container that mounts it read-only.
pub fn listing(env: &TestEnv, source: &str, times: Times) -> String {
    let script = LISTING.replace(
        "TIME",
        match times {
            Times::Exact => "%y",
            Times::Seconds => "%Y",
        },
    );
    let run = env.busybox(&[format!("{source}:/v:ro")], &script).ok();
    assert!(
        run.stdout.lines().count() > 2,
        "empty listing:\n{}",
        run.stdout
    );
    run.stdout
}

/// Extended attributes below a host directory, read on the host (busybox
/// has no tool for them).
pub fn xattrs(dir: &Path) -> String {
    let out = Command::new("getfattr")
        .args(["-R", "-h", "-d", "-m", "-", "."])
        .current_dir(dir)
        .output()
        .expect("getfattr");
    assert!(
        out.status.success(),
        "getfattr in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Creates a volume with the tricky tree and some extended attributes.
pub fn tricky_volume(env: &TestEnv, what: &str) -> String {
    let volume = env.volume(what, &["app=shop", "tier=db"]);
    env.busybox(&[format!("{volume}:/v")], TRICKY_TREE).ok();
    let dir = mountpoint(&volume);
    for (file, name, value) in [
        ("large.bin", "user.color", "blue"),
        ("nested", "user.binary", "0x0102ff"),
        ("nested/deeper/deepest/file.txt", "user.empty", ""),
    ] {
        let status = Command::new("setfattr")
            .args(["-n", name, "-v", value])
            .arg(dir.join(file))
            .status()
            .expect("setfattr");
        assert!(status.success(), "setfattr {name} on {file}");
    }
    volume
}

fn labels(volume: &str) -> String {
    docker(&["volume", "inspect", "-f", "{{json .Labels}}", volume])
        .ok()
        .stdout
}

/// Blocks (512 bytes) the sparse file takes in a volume.
fn sparse_blocks(env: &TestEnv, volume: &str) -> u64 {
    let run = env
        .busybox(&[format!("{volume}:/v:ro")], "stat -c %b /v/sparse.img")
        .ok();
    run.stdout.trim().parse().expect("block count")
}

fn snapshot_id(backup: &serde_json::Value) -> String {
    backup["targets"][0]["snapshot"]["id"]
        .as_str()
        .expect("a snapshot id")
        .to_string()
}

#[test]
fn host_reader_round_trip_is_exact_and_restic_agrees() {
    let env = TestEnv::new("rt-host");
    env.init();
    let source = tricky_volume(&env, "src");
    let original = listing(&env, &source, Times::Exact);

    let backup = env
        .lifeboat(&["backup", &source, "--via", "host", "--json"])
        .ok()
        .json();
    assert_eq!(backup["targets"][0]["reader"], "host");
    let id = snapshot_id(&backup);

    let restored = format!("{source}-restored");
    env.adopt_volume(&restored);
    env.lifeboat(&["restore", "latest", "--volume", &source, "--to", &restored])
        .ok();
    assert_eq!(listing(&env, &restored, Times::Exact), original);
    assert_eq!(xattrs(&mountpoint(&restored)), xattrs(&mountpoint(&source)));
    assert!(xattrs(&mountpoint(&restored)).contains("user.color=\"blue\""));
    assert_eq!(labels(&restored), labels(&source));
    // 64 MiB apparent, four bytes of data: the holes come back as holes.
    assert!(
        sparse_blocks(&env, &restored) < 2048,
        "sparse file was filled"
    );

    // restic, knowing nothing of lifeboat, sees, checks and restores it.
    let snaps = restic(&env.repo(), &env.password, &["snapshots", "--json"]).ok();
    assert!(snaps.stdout.contains(&id), "restic does not list {id}");
    restic(&env.repo(), &env.password, &["check", "--read-data"]).ok();
    let target = env.dir.path().join("restic-restore");
    restic(
        &env.repo(),
        &env.password,
        &["restore", &id, "--target", &target.to_string_lossy()],
    )
    .ok();
    let by_restic = target.join("volumes").join(&source);
    assert_eq!(
        listing(&env, &by_restic.to_string_lossy(), Times::Exact),
        original
    );
    assert_eq!(xattrs(&by_restic), xattrs(&mountpoint(&source)));
}

#[test]
fn engine_reader_round_trip_keeps_what_the_archive_carries() {
    let env = TestEnv::new("rt-engine");
    env.init();
    let source = tricky_volume(&env, "src");
    let original = listing(&env, &source, Times::Seconds);

    let backup = env
        .lifeboat(&["backup", &source, "--via", "engine", "--json"])
        .ok()
        .json();
    assert_eq!(backup["targets"][0]["reader"], "engine");
    let label = format!("label=lifeboat.helper=volume {source}");
    let helpers = docker(&["ps", "-a", "--filter", &label, "-q"]).ok();
    assert_eq!(helpers.stdout.trim(), "", "helper containers left behind");

    let restored = format!("{source}-restored");
    env.adopt_volume(&restored);
    env.lifeboat(&["restore", "latest", "--volume", &source, "--to", &restored])
        .ok();
    // The engine's archive truncates mtimes to seconds and carries no user
    // extended attributes: everything else must be identical.
    assert_eq!(listing(&env, &restored, Times::Seconds), original);
    assert!(
        sparse_blocks(&env, &restored) < 2048,
        "sparse file was filled"
    );
    restic(&env.repo(), &env.password, &["check", "--read-data"]).ok();
}

#[test]
fn engine_writer_restores_exactly() {
    let env = TestEnv::new("rt-writer");
    env.init();
    let source = tricky_volume(&env, "src");
    let original = listing(&env, &source, Times::Exact);
    env.lifeboat(&["backup", &source, "--via", "host"]).ok();

    let restored = format!("{source}-restored");
    env.adopt_volume(&restored);
    let report = env
        .lifeboat(&[
            "restore", "latest", "--volume", &source, "--to", &restored, "--via", "engine",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(report["writer"], "engine");
    assert_eq!(report["created_volume"], true);
    assert_eq!(listing(&env, &restored, Times::Exact), original);
    // In the archive format an empty value deletes a record, so the engine
    // cannot carry an extended attribute whose value is empty.
    let expected = xattrs(&mountpoint(&source)).replace(
        "# file: nested/deeper/deepest/file.txt\nuser.empty=\"\"\n\n",
        "",
    );
    assert_ne!(
        expected,
        xattrs(&mountpoint(&source)),
        "the fixture lost its empty xattr"
    );
    assert_eq!(xattrs(&mountpoint(&restored)), expected);
    assert_eq!(labels(&restored), labels(&source));
}

#[test]
fn restore_refuses_a_non_empty_volume_unless_forced_and_can_be_undone() {
    let env = TestEnv::new("rt-force");
    env.init();
    let volume = env.volume("data", &[]);
    env.busybox(&[format!("{volume}:/v")], "echo first > /v/state")
        .ok();
    env.lifeboat(&["backup", &volume]).ok();
    env.busybox(
        &[format!("{volume}:/v")],
        "echo second > /v/state; echo new > /v/extra",
    )
    .ok();
    let read = |env: &TestEnv| {
        env.busybox(&[format!("{volume}:/v:ro")], "cat /v/state; ls /v")
            .ok()
            .stdout
    };
    let before = read(&env);

    let refused = env.lifeboat(&["restore", "latest", "--volume", &volume]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(refused.stderr.contains("not empty"), "{}", refused.stderr);
    assert_eq!(read(&env), before, "a refused restore changed the volume");

    let forced = env
        .lifeboat(&[
            "restore", "latest", "--volume", &volume, "--force", "--json",
        ])
        .ok()
        .json();
    assert_eq!(read(&env), "first\nstate\n");
    let previous = forced["previous_content"]["id"]
        .as_str()
        .expect("the overwritten content was snapshotted")
        .to_string();

    // Undo: the snapshot of the overwritten content brings it back.
    env.lifeboat(&["restore", &previous, "--volume", &volume, "--force"])
        .ok();
    assert_eq!(read(&env), before);
}

#[test]
fn forced_restore_through_the_engine_recreates_the_volume() {
    let env = TestEnv::new("rt-force-engine");
    env.init();
    let volume = env.volume("data", &["keep=me"]);
    env.busybox(&[format!("{volume}:/v")], "echo first > /v/state")
        .ok();
    env.lifeboat(&["backup", &volume]).ok();
    env.busybox(
        &[format!("{volume}:/v")],
        "echo second > /v/state; echo new > /v/extra",
    )
    .ok();

    let refused = env.lifeboat(&["restore", "latest", "--volume", &volume, "--via", "engine"]);
    assert_eq!(
        refused.code, 2,
        "the engine saw an empty volume: {}",
        refused.stderr
    );

    let report = env
        .lifeboat(&[
            "restore", "latest", "--volume", &volume, "--via", "engine", "--force", "--json",
        ])
        .ok()
        .json();
    assert_eq!(report["writer"], "engine");
    assert!(report["previous_content"]["id"].is_string());
    let content = env
        .busybox(&[format!("{volume}:/v:ro")], "cat /v/state; ls /v")
        .ok()
        .stdout;
    assert_eq!(content, "first\nstate\n");
    assert_eq!(labels(&volume), "{\"keep\":\"me\"}\n");
}

/// lifeboat cuts files into the same chunks as restic, so the two share
/// a repository without storing anything twice: restic backing up the same
/// files finds every chunk there already.
#[test]
fn restic_finds_every_chunk_lifeboat_stored() {
    let env = TestEnv::new("chunks");
    env.init();
    let volume = env.volume("data", &[]);
    env.busybox(
        &[format!("{volume}:/v")],
        "head -c 24000000 /dev/urandom > /v/big \
         && head -c 700000 /dev/urandom > /v/middle \
         && head -c 3000 /dev/urandom > /v/small",
    )
    .ok();
    // Regression: a chunk that ends within 64 bytes of the minimum was cut
    // elsewhere than restic cuts it (about one in 16,000, so random files
    // rarely showed it): this file has one, 10 bytes past the minimum.
    let config = restic(&env.repo(), &env.password, &["cat", "config"]).ok();
    let polynom: serde_json::Value = serde_json::from_str(&config.stdout).expect("config");
    let polynom = u64::from_str_radix(
        polynom["chunker_polynomial"]
            .as_str()
            .expect("a polynomial"),
        16,
    )
    .expect("hex");
    std::fs::write(
        mountpoint(&volume).join("edge"),
        cut_past_the_minimum(polynom, 10),
    )
    .expect("write");
    env.lifeboat(&["backup", &volume]).ok();
    let path = mountpoint(&volume);
    let run = restic(
        &env.repo(),
        &env.password,
        &["backup", "--json", &path.to_string_lossy()],
    )
    .ok();
    let summary: serde_json::Value = run
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|m| m["message_type"] == "summary")
        .expect("restic's summary");
    assert_eq!(summary["total_files_processed"], 4, "{summary}");
    assert_eq!(
        summary["data_blobs"], 0,
        "restic stored chunks anew: {summary}"
    );
}

/// Random bytes in which restic's first chunk (minimum 512 KiB, average
/// 1 MiB) ends `past` bytes after the minimum: the 64 bytes that end there
/// are a window whose fingerprint has its 20 low bits zero.
fn cut_past_the_minimum(polynom: u64, past: usize) -> Vec<u8> {
    use rustic_cdc::{Rabin64, RollingHash64};
    const MIN: usize = 512 << 10;
    const MASK: u64 = (1 << 20) - 1;
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut noise = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect()
    };
    // A window with that fingerprint, found in noise.
    let mut rabin = Rabin64::new_with_polynom(6, &polynom);
    let mut window = Vec::new();
    while window.is_empty() {
        let bytes = noise(4 << 20);
        rabin.reset();
        for (i, &b) in bytes.iter().enumerate() {
            rabin.slide(b);
            if i >= 63 && rabin.hash & MASK == 0 {
                window = bytes[i - 63..=i].to_vec();
                break;
            }
        }
    }
    let mut data = noise(MIN + past - 64);
    data.extend_from_slice(&window);
    data.extend(noise(2 << 20));
    data
}
