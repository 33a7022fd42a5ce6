//! `lifeboat check`: a sound repository passes; damage is found, named,
//! and makes it fail.

use std::path::{Path, PathBuf};

use crate::support::TestEnv;

/// The pack files of a repository, largest first.
fn packs(repo: &Path) -> Vec<PathBuf> {
    let mut packs: Vec<(u64, PathBuf)> = std::fs::read_dir(repo.join("data"))
        .expect("data")
        .flatten()
        .flat_map(|dir| std::fs::read_dir(dir.path()).expect("a data directory"))
        .flatten()
        .map(|f| (f.metadata().expect("metadata").len(), f.path()))
        .collect();
    packs.sort();
    packs.into_iter().rev().map(|(_, path)| path).collect()
}

fn checks(env: &TestEnv) -> serde_json::Value {
    let path = env.state_dir().join("checks.json");
    serde_json::from_slice(&std::fs::read(&path).expect("the recorded checks")).expect("JSON")
}

#[test]
fn check_finds_a_damaged_pack_and_records_each_check() {
    let env = TestEnv::new("check");
    env.init();
    let volume = env.random_volume("data", 3);
    env.lifeboat(&["backup", &volume]).ok();
    let location = env.repo().to_string_lossy().to_string();

    let sound = env
        .lifeboat(&["check", "--read-data", "--json"])
        .ok()
        .json();
    assert_eq!(sound["errors"], serde_json::json!([]), "{sound:#}");
    assert_eq!(sound["snapshots"], 1);
    assert_eq!(checks(&env)[&location]["ok"], true);
    let text = env.lifeboat(&["check"]).ok();
    assert!(text.stdout.contains("no errors"), "{}", text.stdout);

    // A pack no index lists (a backup running, or killed): a warning, not
    // a failure.
    let stray_id = format!("{}{}", "ab", "c".repeat(62));
    let stray_dir = env.repo().join("data").join("ab");
    std::fs::create_dir_all(&stray_dir).expect("a data directory");
    std::fs::copy(&packs(&env.repo())[0], stray_dir.join(&stray_id)).expect("copy a pack");
    let warned = env.lifeboat(&["check", "--json"]).ok().json();
    assert_eq!(warned["errors"], serde_json::json!([]), "{warned:#}");
    assert!(
        warned["warnings"].to_string().contains(&stray_id[..8]),
        "{warned:#}"
    );
    std::fs::remove_file(stray_dir.join(&stray_id)).expect("remove the copy");

    // One byte of the largest pack (the data) flipped: the structure is
    // still whole, the data is not.
    let pack = packs(&env.repo())[0].clone();
    let id = pack
        .file_name()
        .expect("a name")
        .to_string_lossy()
        .to_string();
    let mut bytes = std::fs::read(&pack).expect("read the pack");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&pack, &bytes).expect("write the pack");

    env.lifeboat(&["check"]).ok();
    let damaged = env.lifeboat(&["check", "--read-data"]);
    assert_eq!(damaged.code, 1, "{}", damaged.stderr);
    assert!(damaged.stdout.contains(&id[..8]), "{}", damaged.stdout);
    assert!(damaged.stderr.contains("error"), "{}", damaged.stderr);
    let recorded = &checks(&env)[&location];
    assert_eq!(recorded["ok"], false, "{recorded:#}");
    assert_eq!(recorded["read_data"]["read"], "all", "{recorded:#}");

    // Cut short, a pack no longer matches the index without reading it.
    bytes.truncate(middle);
    std::fs::write(&pack, &bytes).expect("write the pack");
    let short = env.lifeboat(&["check", "--json"]);
    assert_eq!(short.code, 1, "{}", short.stderr);
    let report = short.json();
    assert!(
        report["errors"].to_string().contains(&id[..8]),
        "{report:#}"
    );

    // A subset that does not parse is refused, naming it.
    let bad = env.lifeboat(&["check", "--read-data-subset", "lots"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("\"lots\""), "{}", bad.stderr);
    let subset = env.lifeboat(&["check", "--read-data-subset", "50%", "--json"]);
    assert_eq!(subset.code, 1, "{}", subset.stderr);
    assert_eq!(
        subset.json()["read_data"],
        serde_json::json!({"read": "subset", "subset": "50%"})
    );
}
