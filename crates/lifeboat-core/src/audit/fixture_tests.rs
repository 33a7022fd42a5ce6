//! The audit end to end on the compose fixtures in `testdata/audit`: for
//! each rule a compose source can show, one file that triggers it (and
//! nothing else) and one that must not trigger anything; and a clean stack
//! that must produce no finding at all.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::compose::{self, ComposeOptions};
use super::sarif::{SarifOptions, to_sarif};
use super::variables::compose_variables;
use super::{Finding, Location, Stack, audit};
use crate::error::Result;

/// The rules with compose fixtures. LB009 (backups), LB010 (`PG_VERSION`)
/// and LB011 (owners) need facts only the engine has: their tests build
/// stacks by hand, next to the rules.
const FIXTURE_RULES: &[&str] = &[
    "LB001", "LB002", "LB003", "LB004", "LB005", "LB006", "LB007", "LB008", "LB012",
];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/audit")
}

/// Reads a fixture as the CLI would: variables from `.env` beside it,
/// bind sources looked at, `shared-volume` the one volume on the engine.
fn load(path: &Path) -> Result<Stack> {
    let options = ComposeOptions {
        variables: compose_variables(path, [])?,
        existing_volumes: Some(BTreeSet::from(["shared-volume".to_string()])),
        ..ComposeOptions::default()
    };
    let mut stack = compose::load(path, &options)?;
    stack.inspect_bind_sources();
    Ok(stack)
}

fn findings_of(path: &Path) -> Result<Vec<Finding>> {
    Ok(audit(&load(path)?, SystemTime::now()))
}

/// The text of the 1-based `line` of `path` and of the lines indented
/// below it: a whole list item in the long syntax.
fn entry_at(path: &Path, line: usize) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut lines = text.lines().skip(line.checked_sub(1)?);
    let first = lines.next()?;
    let indent = |l: &str| l.len() - l.trim_start().len();
    let deeper = lines.take_while(|l| indent(l) > indent(first) || l.trim_start().is_empty());
    Some(
        std::iter::once(first)
            .chain(deeper)
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

#[test]
fn each_rule_fires_on_its_fixture_alone_and_points_at_the_line() -> Result<()> {
    for id in FIXTURE_RULES {
        let path = fixtures().join(format!("{}.yaml", id.to_ascii_lowercase()));
        let findings = findings_of(&path)?;
        assert!(
            !findings.is_empty(),
            "{id}: no finding in {}",
            path.display()
        );
        for f in &findings {
            assert_eq!(f.rule, *id, "{id}'s fixture also triggers: {}", f.message);
            assert!(f.message.starts_with(&f.subject), "{}", f.message);
            let Location::Compose {
                file,
                service,
                line,
            } = &f.location
            else {
                panic!(
                    "{id}: a compose finding located elsewhere: {:?}",
                    f.location
                );
            };
            assert_eq!(file, &path);
            assert_eq!(service.as_deref(), Some(f.subject.as_str()));
            let line = line.unwrap_or_else(|| panic!("{id}: no line for {}", f.message));
            let text = entry_at(&path, line).unwrap_or_default();
            let at_path = f.path.as_deref().is_some_and(|p| text.contains(p));
            let at_service = text.trim_start().starts_with(&format!("{}:", f.subject));
            assert!(
                at_path || at_service,
                "{id}: line {line} is {text:?}, for {}",
                f.message
            );
        }
    }
    Ok(())
}

#[test]
fn no_rule_fires_on_the_fixtures_done_right() -> Result<()> {
    for id in FIXTURE_RULES {
        let path = fixtures().join(format!("{}-ok.yaml", id.to_ascii_lowercase()));
        let findings = findings_of(&path)?;
        let messages: Vec<&str> = findings.iter().map(|f| f.message.as_str()).collect();
        assert!(messages.is_empty(), "{}: {messages:#?}", path.display());
    }
    Ok(())
}

#[test]
fn the_clean_stack_has_no_findings() -> Result<()> {
    let path = fixtures().join("clean/compose.yaml");
    let stack = load(&path)?;
    // The stack was really read: interpolated from .env, merged, resolved.
    assert_eq!(stack.project.as_deref(), Some("clean"));
    let names: Vec<&str> = stack.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "db",
            "cache",
            "web",
            "queue",
            "reports-db",
            "certbot",
            "app"
        ]
    );
    let db = stack.service("db").expect("db");
    assert_eq!(db.image.as_deref(), Some("postgres:16-alpine"));
    assert_eq!(db.environment["POSTGRES_PASSWORD"], "not-a-secret");
    let web = stack.service("web").expect("web");
    assert_eq!(web.mounts[0].host_is_file, Some(true));
    assert_eq!(web.mounts[1].host_is_file, Some(false));
    // The shell's script was read: a server, keeping its file.
    let queue = stack.service("queue").expect("queue");
    assert_eq!(queue.command[0], "sh");
    assert!(super::images::database_data(queue).is_some_and(|d| d.mount.is_some()));
    let app = stack.service("app").expect("app");
    assert_eq!(app.mounts[2].source.as_deref(), Some("clean_uploads"));
    assert!(stack.warnings.is_empty(), "{:?}", stack.warnings);

    let findings = audit(&stack, SystemTime::now());
    let messages: Vec<&str> = findings.iter().map(|f| f.message.as_str()).collect();
    assert!(messages.is_empty(), "{messages:#?}");
    Ok(())
}

#[test]
fn an_ignore_label_silences_a_rule_for_its_service_only() -> Result<()> {
    let text = "services:\n  a:\n    image: nginx\n    tmpfs: /run\n    labels:\n      lifeboat.audit.ignore: LB007, lb005\n  b:\n    image: nginx\n    tmpfs: /run\n";
    let stack = compose::parse(
        text,
        Path::new("/srv/x/compose.yaml"),
        &ComposeOptions::default(),
    )?;
    let findings = audit(&stack, SystemTime::now());
    let subjects: Vec<(&str, &str)> = findings
        .iter()
        .map(|f| (f.rule, f.subject.as_str()))
        .collect();
    assert_eq!(subjects, [("LB005", "b")]);
    Ok(())
}

#[test]
fn the_fixtures_make_a_complete_sarif_log() -> Result<()> {
    let mut findings = Vec::new();
    for id in FIXTURE_RULES {
        findings.extend(findings_of(
            &fixtures().join(format!("{}.yaml", id.to_ascii_lowercase())),
        )?);
    }
    let log = to_sarif(
        &findings,
        &SarifOptions {
            base: Some(Path::new(env!("CARGO_MANIFEST_DIR"))),
            information_uri: None,
        },
    );
    let results = log["runs"][0]["results"].as_array().map(Vec::len);
    assert_eq!(results, Some(findings.len()));
    let uris: BTreeSet<&str> = log["runs"][0]["results"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].as_str())
        .collect();
    assert_eq!(uris.len(), FIXTURE_RULES.len());
    assert!(
        uris.iter().all(|u| u.starts_with("testdata/audit/lb0")),
        "{uris:?}"
    );
    Ok(())
}

/// The rule and path of each finding in a compose file read from `file`.
fn flagged(text: &str, file: &str) -> Result<Vec<(&'static str, Option<String>)>> {
    let stack = compose::parse(text, Path::new(file), &ComposeOptions::default())?;
    Ok(audit(&stack, SystemTime::now())
        .into_iter()
        .map(|f| (f.rule, f.path))
        .collect())
}

#[test]
fn a_project_kept_in_a_system_directory_may_mount_its_own_files() -> Result<()> {
    // Regression: relative sources became absolute and LB006 then judged
    // /usr/src/shop/data as a part of the host system.
    let text = "services:\n  app:\n    image: example/app\n    volumes:\n      - ./data:/data\n      - .:/app\n      - ../../../etc:/host-etc\n";
    assert_eq!(
        flagged(text, "/usr/src/shop/compose.yaml")?,
        [("LB006", Some("/etc".to_string()))]
    );

    // A project kept in a system directory itself gets no such pass:
    // its files are the system's.
    let text = "services:\n  app:\n    image: example/app\n    volumes:\n      - .:/config\n      - ./ssh:/etc/ssh\n";
    assert_eq!(
        flagged(text, "/etc/compose.yaml")?,
        [
            ("LB006", Some("/etc".to_string())),
            ("LB006", Some("/etc/ssh".to_string()))
        ]
    );
    Ok(())
}
