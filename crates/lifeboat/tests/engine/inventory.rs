//! `lifeboat ls` finds every volume, bind mount and tmpfs with its users.

use crate::support::{BUSYBOX, TestEnv, docker};

fn target<'a>(ls: &'a serde_json::Value, kind: &str, name: &str) -> &'a serde_json::Value {
    ls["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .find(|t| t["kind"] == kind && t["name"] == name)
        .unwrap_or_else(|| panic!("ls does not list {kind} {name}"))
}

#[test]
fn ls_lists_volumes_binds_and_tmpfs_with_their_users() {
    let env = TestEnv::new("ls");
    let db = env.volume("pgdata", &["com.docker.compose.project=shop", "team=data"]);
    let spare = env.volume("spare", &[]);
    let cache = env.volume("cache", &[]);
    env.busybox(
        &[format!("{db}:/v")],
        "echo 15 > /v/PG_VERSION; dd if=/dev/zero of=/v/base bs=1K count=100 2>/dev/null",
    )
    .ok();
    let bind = env.dir.path().join("site");
    std::fs::create_dir(&bind).expect("bind dir");
    let bind_arg = bind.to_string_lossy().to_string();

    let running = env.container(
        "db",
        &[
            "--label",
            "com.docker.compose.project=shop",
            "--label",
            "com.docker.compose.service=db",
            "-v",
            &format!("{db}:/var/lib/postgresql/data"),
            "-v",
            &format!("{bind_arg}:/srv:ro"),
            "--tmpfs",
            "/run/scratch:size=64m",
            "--tmpfs",
            "/run/share:size=5%",
            "--mount",
            "type=tmpfs,destination=/tmp/unbounded",
            BUSYBOX,
            "sleep",
            "300",
        ],
        true,
    );
    let stopped = env.container(
        "web",
        &["-v", &format!("{cache}:/var/cache/app"), BUSYBOX, "true"],
        false,
    );
    let anonymous = docker(&[
        "volume",
        "create",
        "--label",
        &format!("lbt.owner={}", env.prefix),
    ])
    .ok();
    let anonymous = anonymous.stdout.trim().to_string();
    env.adopt_volume(&anonymous);

    let ls = env.lifeboat(&["ls", "--json", "--wait"]).ok().json();

    let t = target(&ls, "volume", &db);
    assert_eq!(t["holds"], "postgres");
    assert_eq!(t["unused"], false);
    assert_eq!(t["labels"]["team"], "data");
    assert_eq!(t["size"]["state"], "known");
    assert_eq!(t["size"]["bytes"], 100 * 1024 + 3);
    let user = &t["users"][0];
    assert_eq!(user["container"], running.as_str());
    assert_eq!(user["running"], true);
    assert_eq!(user["read_write"], true);
    assert_eq!(user["compose_project"], "shop");
    assert_eq!(user["compose_service"], "db");
    assert!(t["last_snapshot"].is_null(), "never backed up");

    let t = target(&ls, "volume", &cache);
    assert_eq!(t["holds"], "cache");
    assert_eq!(t["users"][0]["container"], stopped.as_str());
    assert_eq!(t["users"][0]["running"], false);

    let t = target(&ls, "volume", &spare);
    assert_eq!(t["unused"], true);
    assert_eq!(t["anonymous"], false);
    assert_eq!(target(&ls, "volume", &anonymous)["anonymous"], true);

    let t = target(&ls, "bind", &bind_arg);
    assert_eq!(t["users"][0]["read_write"], false);

    let t = target(&ls, "tmpfs", &format!("{running}:/run/scratch"));
    assert_eq!(t["tmpfs_limit"], 64 << 20);
    let t = target(&ls, "tmpfs", &format!("{running}:/tmp/unbounded"));
    assert!(t["tmpfs_limit"].is_null());
    // Regression: a share of memory was read as no limit.
    let t = target(&ls, "tmpfs", &format!("{running}:/run/share"));
    assert_eq!(t["tmpfs_limit"], "5%");

    // After a backup, the inventory shows when.
    env.init();
    env.lifeboat(&["backup", &db]).ok();
    let ls = env.lifeboat(&["ls", "--json", "--no-sizes"]).ok().json();
    assert!(target(&ls, "volume", &db)["last_snapshot"].is_string());
    assert_eq!(target(&ls, "volume", &db)["snapshot_count"], 1);

    // The table names the same things.
    let table = env.lifeboat(&["ls"]).ok();
    assert!(
        table.stdout.contains(&db)
            && table.stdout.contains("postgres")
            && table.stdout.contains("limit 5% of memory"),
        "{}",
        table.stdout
    );
}

#[test]
fn helpers_left_by_a_killed_lifeboat_are_removed() {
    let env = TestEnv::new("stale-helper");
    let volume = env.volume("data", &[]);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    let host = host.trim();
    // A process that has exited: its pid is free (pid reuse within the
    // test is not a concern at this scale).
    let mut child = std::process::Command::new("true").spawn().expect("spawn");
    let dead_pid = child.id();
    child.wait().expect("wait");
    let live_pid = std::process::id();
    let make = |what: &str, pid: u32| {
        env.container(
            what,
            &[
                "--label",
                &format!("lifeboat.helper=volume {volume}"),
                "--label",
                &format!("lifeboat.helper.owner={host}/{pid}"),
                "-v",
                &format!("{volume}:/lifeboat-data:ro"),
                BUSYBOX,
                "true",
            ],
            false,
        )
    };
    let stale = make("stale", dead_pid);
    let live = make("live", live_pid);

    env.lifeboat(&["ls", "--no-sizes"]).ok();
    let exists = |name: &str| docker(&["container", "inspect", name]).code == 0;
    assert!(!exists(&stale), "the stale helper is still there");
    assert!(exists(&live), "a helper of a running process was removed");
}
