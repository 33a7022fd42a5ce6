//! Bind mounts are backed up and restored like volumes.

use crate::roundtrip::{Times, listing, xattrs};
use crate::support::TestEnv;

const TREE: &str = r#"
set -eu
cd /v
mkdir -p uploads/2026 empty
printf 'photo' > uploads/2026/a.jpg
ln -s uploads/2026/a.jpg latest
ln uploads/2026/a.jpg hard
dd if=/dev/urandom of=blob bs=1K count=300 2>/dev/null
chown -R 33:33 uploads
chmod 0750 /v
"#;

#[test]
fn bind_mounts_round_trip_through_both_readers() {
    let env = TestEnv::new("binds");
    env.init();
    let source = env.dir.path().join("app-data");
    std::fs::create_dir(&source).expect("bind source");
    let source_arg = source.to_string_lossy().to_string();
    env.busybox(&[format!("{source_arg}:/v")], TREE).ok();
    let status = std::process::Command::new("setfattr")
        .args(["-n", "user.origin", "-v", "camera"])
        .arg(source.join("uploads/2026/a.jpg"))
        .status()
        .expect("setfattr");
    assert!(status.success());
    // The engine knows a bind mount through a container that has it.
    env.container(
        "app",
        &[
            "-v",
            &format!("{source_arg}:/data"),
            crate::support::BUSYBOX,
            "true",
        ],
        false,
    );

    let ls = env.lifeboat(&["ls", "--json", "--no-sizes"]).ok().json();
    let listed = ls["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .any(|t| t["kind"] == "bind" && t["name"] == source_arg.as_str());
    assert!(listed, "ls does not list the bind mount {source_arg}");

    for (via, times) in [("host", Times::Exact), ("engine", Times::Seconds)] {
        let original = listing(&env, &source_arg, times);
        let backup = env
            .lifeboat(&["backup", &source_arg, "--via", via, "--json"])
            .ok()
            .json();
        assert_eq!(backup["targets"][0]["kind"], "bind");
        let id = backup["targets"][0]["snapshot"]["id"]
            .as_str()
            .expect("snapshot id")
            .to_string();
        let target = env.dir.path().join(format!("restored-{via}"));
        let target_arg = target.to_string_lossy().to_string();
        env.lifeboat(&["restore", &id, "--to", &target_arg]).ok();
        assert_eq!(listing(&env, &target_arg, times), original, "via {via}");
        if via == "host" {
            assert!(xattrs(&source).contains("user.origin"));
            assert_eq!(xattrs(&target), xattrs(&source));
        }
    }
}
