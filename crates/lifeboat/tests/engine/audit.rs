//! `lifeboat audit` on the live engine (the rules that need it: data in a
//! container's writable layer or an anonymous volume, two servers on one
//! volume, owners, `PG_VERSION`, backups) and on compose files, whose
//! SARIF output is validated against the official SARIF 2.1.0 schema.
//!
//! The engine is shared with tests running in parallel: each engine test
//! looks only at the findings about its own containers and volumes.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::{BUSYBOX, Run, TestEnv, docker};

const POSTGRES: &str = "lifeboat-test/postgres:15";
const REDIS: &str = "lifeboat-test/redis:7";

/// The exit code of `audit --fail-on` when a finding reaches the threshold.
const FINDINGS_EXIT: i32 = 8;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../lifeboat-core/testdata/audit")
        .join(name)
}

/// Runs `lifeboat audit --json` on the engine and keeps the findings about
/// this test's containers and volumes.
fn engine_findings(env: &TestEnv, extra: &[&str], vars: &[(&str, &str)]) -> (Vec<Value>, Run) {
    let mut args = vec!["audit", "--json"];
    args.extend(extra);
    let run = env.lifeboat_with(&args, vars).ok();
    let report = run.json();
    let mine = |f: &Value| {
        ["subject", "volume"]
            .iter()
            .any(|k| f[k].as_str().is_some_and(|s| s.starts_with(&env.prefix)))
    };
    let findings = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| mine(f))
        .cloned()
        .collect();
    (findings, run)
}

fn of_rule<'a>(findings: &'a [Value], rule: &str) -> Vec<&'a Value> {
    findings.iter().filter(|f| f["rule"] == rule).collect()
}

fn messages(findings: &[Value]) -> Vec<String> {
    findings
        .iter()
        .map(|f| format!("{} {}", f["rule"], f["message"]))
        .collect()
}

#[test]
fn audit_finds_database_data_in_the_writable_layer_and_in_anonymous_volumes() {
    let env = TestEnv::new("audit-layer");
    // PGDATA moved off the image's VOLUME: the data lives in the layer.
    let layer = env.container("layer", &["-e", "PGDATA=/pgdata", POSTGRES], false);
    // No mount at all: the image's VOLUME makes an anonymous volume.
    let anonymous = env.container("anon", &[POSTGRES], false);
    let anonymous_volume = docker(&[
        "inspect",
        "-f",
        "{{range .Mounts}}{{.Name}}{{end}}",
        &anonymous,
    ])
    .ok()
    .stdout
    .trim()
    .to_string();
    assert_eq!(anonymous_volume.len(), 64, "{anonymous_volume:?}");

    let (findings, _) = engine_findings(&env, &[], &[]);
    let lb001 = of_rule(&findings, "LB001");
    assert_eq!(lb001.len(), 1, "{:#?}", messages(&findings));
    assert_eq!(lb001[0]["subject"], layer.as_str());
    assert_eq!(lb001[0]["severity"], "critical");
    assert_eq!(lb001[0]["path"], "/pgdata");
    assert_eq!(lb001[0]["location"]["container"], layer.as_str());
    assert!(
        lb001[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("lives in the container's writable layer and goes")),
        "{}",
        lb001[0]["message"]
    );

    // The anonymous volume is found by its container, not by its name.
    let lb002 = of_rule(&findings, "LB002");
    assert_eq!(lb002.len(), 1, "{:#?}", messages(&findings));
    assert_eq!(lb002[0]["subject"], anonymous.as_str());
    assert_eq!(lb002[0]["volume"], anonymous_volume.as_str());
    assert_eq!(lb002[0]["path"], "/var/lib/postgresql/data");
}

#[test]
fn audit_finds_two_running_redis_servers_writing_one_volume() {
    let env = TestEnv::new("audit-writers");
    let volume = env.volume("shared", &[]);
    let first = env.database_on("redis-a", REDIS, &volume, "/data", &[], &[]);
    let second = env.database_on("redis-b", REDIS, &volume, "/data", &[], &[]);
    // A reader does not count.
    env.container(
        "reader",
        &["-v", &format!("{volume}:/data:ro"), BUSYBOX, "sleep", "300"],
        true,
    );

    let (findings, _) = engine_findings(&env, &[], &[]);
    let lb004 = of_rule(&findings, "LB004");
    assert_eq!(lb004.len(), 1, "{:#?}", messages(&findings));
    assert_eq!(lb004[0]["volume"], volume.as_str());
    assert_eq!(
        lb004[0]["message"],
        format!(
            "{first}, {second}: 2 database servers write the same volume {volume} ({first} at /data, {second} at /data)"
        )
    );

    // One writer left: nothing shared any more.
    docker(&["stop", &second]).ok();
    let (findings, _) = engine_findings(&env, &[], &[]);
    assert!(
        of_rule(&findings, "LB004").is_empty(),
        "{:#?}",
        messages(&findings)
    );
}

#[test]
fn audit_finds_a_container_user_that_cannot_write_its_volume() {
    let env = TestEnv::new("audit-owner");
    let volume = env.volume("data", &[]);
    env.busybox(
        &[format!("{volume}:/v")],
        "chown 999:999 /v && chmod 750 /v",
    )
    .ok();
    let stranger = env.container(
        "stranger",
        &[
            "--user",
            "1000:1000",
            "-v",
            &format!("{volume}:/data"),
            BUSYBOX,
            "sleep",
            "300",
        ],
        true,
    );
    let owner = env.container(
        "owner",
        &[
            "--user",
            "999:999",
            "-v",
            &format!("{volume}:/data"),
            BUSYBOX,
            "sleep",
            "300",
        ],
        true,
    );
    // The finding is true: the stranger cannot write, the owner can.
    assert_ne!(docker(&["exec", &stranger, "touch", "/data/x"]).code, 0);
    docker(&["exec", &owner, "touch", "/data/y"]).ok();

    let (findings, _) = engine_findings(&env, &[], &[]);
    let lb011 = of_rule(&findings, "LB011");
    assert_eq!(lb011.len(), 1, "{:#?}", messages(&findings));
    assert_eq!(lb011[0]["subject"], stranger.as_str());
    assert_eq!(lb011[0]["volume"], volume.as_str());
    assert_eq!(
        lb011[0]["message"],
        format!(
            "{stranger}: runs as 1000:1000 but /data belongs to 999:999, mode 750: it cannot write there"
        )
    );

    // The same finding, as SARIF that the official schema accepts.
    let run = env.lifeboat(&["audit", "--format", "sarif"]).ok();
    let log: Value = serde_json::from_str(&run.stdout).expect("SARIF is JSON");
    sarif::assert_valid(&log);
    let result = log["runs"][0]["results"]
        .as_array()
        .expect("results")
        .iter()
        .find(|r| r["ruleId"] == "LB011" && r["properties"]["subject"] == stranger.as_str())
        .unwrap_or_else(|| panic!("no LB011 result for {stranger}"));
    assert_eq!(
        result["locations"][0]["logicalLocations"][0]["name"],
        stranger.as_str()
    );
    assert_eq!(result["level"], "error");
}

#[test]
fn audit_finds_postgres_data_of_another_major_version() {
    let env = TestEnv::new("audit-pgversion");
    let old = env.volume("old", &[]);
    let same = env.volume("same", &[]);
    // The server reads its configuration before it checks the version:
    // an empty one is enough for it to get that far.
    env.busybox(
        &[format!("{old}:/old"), format!("{same}:/same")],
        "echo 14 > /old/PG_VERSION && touch /old/postgresql.conf && echo 15 > /same/PG_VERSION",
    )
    .ok();
    let upgraded = env.container(
        "upgraded",
        &["-v", &format!("{old}:/var/lib/postgresql/data"), POSTGRES],
        false,
    );
    env.container(
        "current",
        &["-v", &format!("{same}:/var/lib/postgresql/data"), POSTGRES],
        false,
    );

    let (findings, _) = engine_findings(&env, &[], &[]);
    let lb010 = of_rule(&findings, "LB010");
    assert_eq!(lb010.len(), 1, "{:#?}", messages(&findings));
    assert_eq!(lb010[0]["volume"], old.as_str());
    assert_eq!(
        lb010[0]["message"],
        format!(
            "{upgraded}: the data at /var/lib/postgresql/data was made by PostgreSQL 14, but {POSTGRES} runs PostgreSQL 15: the server will not start on it"
        )
    );

    // And indeed it does not.
    let start = docker(&["start", "-a", &upgraded]);
    assert_ne!(start.code, 0, "{}", start.stdout);
    let said = format!("{}{}", start.stdout, start.stderr);
    assert!(
        said.contains("initialized by PostgreSQL version 14"),
        "{said}"
    );
}

#[test]
fn audit_checks_backups_against_the_max_age_policy() {
    let env = TestEnv::new("audit-backup");
    let kept = env.volume("kept", &["lifeboat.max-age=1h"]);
    let forgotten = env.volume("forgotten", &["lifeboat.max-age=1h"]);
    let plain = env.volume("plain", &[]);
    env.busybox(&[format!("{kept}:/v")], "echo data > /v/file")
        .ok();

    // No repository yet: nothing has a snapshot.
    let (findings, run) = engine_findings(&env, &[], &[]);
    let stale: Vec<&str> = of_rule(&findings, "LB009")
        .iter()
        .filter_map(|f| f["volume"].as_str())
        .collect();
    assert_eq!(
        stale,
        [forgotten.as_str(), kept.as_str()],
        "{:#?}",
        messages(&findings)
    );
    assert_eq!(
        of_rule(&findings, "LB009")[1]["message"],
        format!(
            "volume {kept} has never been backed up, though its policy wants a snapshot every 1h"
        )
    );
    assert!(run.stderr.contains("no repository at"), "{}", run.stderr);

    // A fresh snapshot keeps the policy; a plain volume has none to keep.
    env.init();
    env.lifeboat(&["backup", &kept]).ok();
    let (findings, _) = engine_findings(&env, &[], &[]);
    let stale: Vec<&str> = of_rule(&findings, "LB009")
        .iter()
        .filter_map(|f| f["volume"].as_str())
        .collect();
    assert_eq!(stale, [forgotten.as_str()], "{:#?}", messages(&findings));
    assert!(!stale.contains(&plain.as_str()));

    // A repository that cannot be read says nothing about backups.
    let (findings, run) = engine_findings(&env, &[], &[("LIFEBOAT_PASSWORD", "not-the-password")]);
    assert!(
        of_rule(&findings, "LB009").is_empty(),
        "{:#?}",
        messages(&findings)
    );
    assert!(
        run.stderr.contains("cannot read the repository")
            && run.stderr.contains("backups are not checked"),
        "{}",
        run.stderr
    );
}

#[test]
fn audit_is_silent_on_a_well_kept_postgres() {
    let env = TestEnv::new("audit-clean");
    env.init();
    let volume = env.volume("pgdata", &[]);
    let db = env.database_on(
        "db",
        POSTGRES,
        &volume,
        "/var/lib/postgresql/data",
        &["POSTGRES_PASSWORD=not-a-secret"],
        &[],
    );
    let config = env.dir.path().join("lifeboat.toml");
    std::fs::write(
        &config,
        format!("[volume.\"{volume}\"]\nmax_age = \"26h\"\n"),
    )
    .expect("configuration file");
    let config = config.to_string_lossy().to_string();

    // The policy from the configuration file is in force...
    let (findings, _) = engine_findings(&env, &["--config", &config], &[]);
    assert_eq!(
        messages(&findings),
        [format!(
            "\"LB009\" \"{db}: volume {volume} at /var/lib/postgresql/data has never been backed up, though its policy wants a snapshot every 1d 2h\""
        )]
    );

    // ...and kept by a backup: nothing left to say about this database.
    env.lifeboat(&["backup", &volume]).ok();
    let (findings, run) = engine_findings(&env, &["--config", &config], &[]);
    assert!(findings.is_empty(), "{:#?}", messages(&findings));
    assert!(!run.stderr.contains(&env.prefix), "{}", run.stderr);
}

#[test]
fn audit_reads_compose_files_and_gates_on_severity() {
    let env = TestEnv::new("audit-compose");
    let lb003 = fixture("lb003.yaml");
    let lb003 = lb003.to_string_lossy();

    let report = env
        .lifeboat(&["audit", "-f", &lb003, "--offline", "--json"])
        .ok()
        .json();
    assert_eq!(report["origin"]["source"], "compose");
    assert_eq!(report["counts"]["critical"], 1);
    let finding = &report["findings"][0];
    assert_eq!(finding["rule"], "LB003");
    assert_eq!(finding["subject"], "db");
    assert_eq!(finding["location"]["source"], "compose");
    assert_eq!(finding["location"]["line"], 6);

    // Findings alone do not fail; --fail-on decides.
    let gate = |threshold: &str| {
        env.lifeboat(&["audit", "-f", &lb003, "--offline", "--fail-on", threshold])
            .code
    };
    assert_eq!(gate("critical"), FINDINGS_EXIT);
    assert_eq!(gate("low"), FINDINGS_EXIT);
    let lb005 = fixture("lb005.yaml");
    let lb005 = lb005.to_string_lossy();
    let medium = env.lifeboat(&["audit", "-f", &lb005, "--offline", "--fail-on", "high"]);
    assert_eq!(medium.code, 0, "{}", medium.stderr);
    assert!(medium.stdout.contains("MEDIUM (1)"), "{}", medium.stdout);
    assert_eq!(
        env.lifeboat(&["audit", "-f", &lb005, "--offline", "--fail-on", "medium"])
            .code,
        FINDINGS_EXIT
    );

    // A clean stack passes even the strictest gate; its project name
    // comes from -p when given.
    let clean = fixture("clean/compose.yaml");
    let clean = clean.to_string_lossy();
    let run = env
        .lifeboat(&["audit", "-f", &clean, "--offline", "--fail-on", "low"])
        .ok();
    assert_eq!(run.stdout.trim(), "no findings");
    let report = env
        .lifeboat(&["audit", "-f", &clean, "-p", "shop", "--offline", "--json"])
        .ok()
        .json();
    assert_eq!(report["project"], "shop");
    assert_eq!(report["findings"], serde_json::json!([]));

    // An external volume is checked against the engine when it answers,
    // and left alone when it does not.
    let lb012 = fixture("lb012.yaml");
    let lb012 = lb012.to_string_lossy();
    let report = env.lifeboat(&["audit", "-f", &lb012, "--json"]).ok().json();
    assert_eq!(report["findings"][0]["rule"], "LB012", "{report}");
    let offline = env.lifeboat_with(
        &["audit", "-f", &lb012, "--json"],
        &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")],
    );
    let report = offline.ok();
    assert_eq!(report.json()["findings"], serde_json::json!([]));
    assert!(
        report
            .stderr
            .contains("whether external volumes exist is not checked"),
        "{}",
        report.stderr
    );

    // Bad input is a usage error.
    let missing = env.lifeboat(&["audit", "-f", "/nonexistent/compose.yaml", "--offline"]);
    assert_eq!(missing.code, 2, "{}", missing.stderr);
    assert!(
        missing.stderr.contains("/nonexistent/compose.yaml"),
        "{}",
        missing.stderr
    );
    let both = env.lifeboat(&["audit", "-f", &lb003, "--json", "--format", "sarif"]);
    assert_eq!(both.code, 2, "{}", both.stderr);
}

#[test]
fn audit_explains_and_lists_its_rules() {
    let env = TestEnv::new("audit-explain");
    // No engine is needed for either.
    let offline = [("DOCKER_HOST", "unix:///nonexistent/docker.sock")];
    let run = env
        .lifeboat_with(&["audit", "--explain", "lb005"], &offline)
        .ok();
    assert!(
        run.stdout
            .starts_with("LB005 tmpfs-without-size (medium)\nA tmpfs mount has no size limit.\n\n"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("\nFix: give every tmpfs a size"),
        "{}",
        run.stdout
    );
    let by_name = env
        .lifeboat_with(&["audit", "--explain", "database-data-on-tmpfs"], &offline)
        .ok();
    assert!(by_name.stdout.starts_with("LB003 "), "{}", by_name.stdout);
    let unknown = env.lifeboat_with(&["audit", "--explain", "LB999"], &offline);
    assert_eq!(unknown.code, 2);
    assert!(
        unknown.stderr.contains("--list-rules"),
        "{}",
        unknown.stderr
    );

    let rules = env
        .lifeboat_with(&["audit", "--list-rules", "--json"], &offline)
        .ok()
        .json();
    let ids: Vec<&str> = rules
        .as_array()
        .expect("rules")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(ids.len(), 12);
    assert_eq!(ids.first(), Some(&"LB001"));
    assert_eq!(ids.last(), Some(&"LB012"));
    let table = env.lifeboat_with(&["audit", "--list-rules"], &offline).ok();
    assert!(
        table
            .stdout
            .contains("LB009  high      backup-missing-or-stale"),
        "{}",
        table.stdout
    );
}

#[test]
fn audit_sarif_of_every_fixture_is_valid_sarif_2_1_0() {
    let _env = TestEnv::new("audit-sarif");
    let dir = fixture("");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fixtures")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.push(dir.join("clean/compose.yaml"));
    files.sort();
    assert!(files.len() > 10, "{files:?}");
    let mut results = 0;
    for file in &files {
        // Relative to the fixtures, as a CI job in its checkout would run it.
        let relative = file.strip_prefix(&dir).expect("inside the fixtures");
        let out = Command::new(env!("CARGO_BIN_EXE_lifeboat"))
            .args(["audit", "--offline", "--format", "sarif", "-f"])
            .arg(relative)
            .current_dir(&dir)
            .output()
            .expect("run lifeboat");
        let run = Run::from(out).ok();
        let log: Value = serde_json::from_str(&run.stdout).expect("SARIF is JSON");
        sarif::assert_valid(&log);
        for r in log["runs"][0]["results"].as_array().expect("results") {
            let uri = r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].as_str();
            assert_eq!(uri, relative.to_str(), "{r}");
            assert!(r["locations"][0]["physicalLocation"]["region"]["startLine"].is_u64());
            results += 1;
        }
    }
    assert!(results >= 9, "only {results} results in all fixtures");
}

/// The official SARIF 2.1.0 schema, from the serde-sarif package that cargo
/// downloaded for the tests, and a validator for it.
mod sarif {
    use std::path::PathBuf;
    use std::process::Command;
    use std::sync::OnceLock;

    use serde_json::Value;

    /// Where serde-sarif's `src/schema.json` is, found through `cargo
    /// metadata` (so that the workspace's lock file decides the version).
    fn schema_path() -> &'static PathBuf {
        static PATH: OnceLock<PathBuf> = OnceLock::new();
        PATH.get_or_init(|| {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
            let out = Command::new(cargo)
                .args(["metadata", "--format-version", "1"])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .output()
                .expect("run cargo metadata");
            assert!(
                out.status.success(),
                "cargo metadata: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let metadata: Value =
                serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON");
            let manifest = metadata["packages"]
                .as_array()
                .expect("packages")
                .iter()
                .find(|p| p["name"] == "serde-sarif")
                .and_then(|p| p["manifest_path"].as_str())
                .expect("serde-sarif is a dev-dependency");
            let schema = PathBuf::from(manifest)
                .parent()
                .expect("package directory")
                .join("src/schema.json");
            assert!(schema.is_file(), "{} is missing", schema.display());
            schema
        })
    }

    /// Fails the test unless `log` is valid against the SARIF 2.1.0 schema
    /// (formats such as `uri` asserted too) and parses into serde-sarif's
    /// typed model.
    #[track_caller]
    pub fn assert_valid(log: &Value) {
        let mut schemas = boon::Schemas::new();
        let mut compiler = boon::Compiler::new();
        compiler.enable_format_assertions();
        let path = schema_path().to_string_lossy().into_owned();
        let schema = compiler
            .compile(&path, &mut schemas)
            .unwrap_or_else(|e| panic!("the SARIF schema does not compile: {e:#}"));
        if let Err(e) = schemas.validate(log, schema) {
            panic!("not valid SARIF 2.1.0: {e:#}\n{log:#}");
        }
        if let Err(e) = serde_json::from_value::<serde_sarif::sarif::Sarif>(log.clone()) {
            panic!("serde-sarif cannot read it: {e}\n{log:#}");
        }
    }
}
