use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use super::*;
use crate::config::Config;
use crate::engine::MountKind;
use crate::error::ErrorClass;
use crate::inventory::{Content, Inventory, Size, Target};
use crate::plan::Strategy;
use crate::repo::testing::repo_in;

/// A bind mount of `path` that no container uses.
fn bind(path: &Path) -> Target {
    Target {
        kind: MountKind::Bind,
        name: path.display().to_string(),
        driver: None,
        driver_options: BTreeMap::new(),
        labels: BTreeMap::new(),
        host_path: Some(path.display().to_string()),
        anonymous: false,
        unused: true,
        users: Vec::new(),
        holds: Content::Files,
        size: Size::Pending,
        tmpfs_limit: None,
        last_snapshot: None,
        snapshot_count: 0,
        created_at: None,
    }
}

/// The events of a run, in words.
#[derive(Default)]
struct Recorded(Mutex<Vec<String>>);

impl Events for Recorded {
    fn event(&self, event: Event<'_>) {
        let line = match event {
            Event::WorkStarted { what, .. } => format!("started {what}"),
            Event::WorkEnded => "ended".to_string(),
            Event::TargetBackedUp(result) => match (&result.snapshot, result.failure) {
                (Some(_), None) => format!("published {}", result.name),
                (_, failure) => format!("failed {} ({failure:?})", result.name),
            },
            other => format!("{other:?}"),
        };
        self.0.lock().expect("valid").push(line);
    }
}

/// The middle of three targets fails: the other two are still backed up
/// and published, and the failure keeps its class. No engine is needed
/// for bind mounts read from the host, and none is reachable here.
#[tokio::test]
async fn a_failed_target_leaves_a_partial_result_with_the_others_published() {
    let tmp = tempfile::tempdir().expect("valid");
    let (first, missing, last) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
    );
    for (dir, content) in [(&first, "first"), (&last, "last")] {
        std::fs::create_dir(dir).expect("valid");
        std::fs::write(dir.join("data.txt"), content).expect("valid");
    }
    let targets = vec![bind(&first), bind(&missing), bind(&last)];
    let inventory = Inventory {
        engine: "none".into(),
        api_version: "1.41".into(),
        targets: targets.clone(),
        containers: Vec::new(),
    };
    let planned = plan::plan(
        &inventory,
        &targets,
        &StrategyFlags::default(),
        &Config::default(),
    );
    assert!(planned.iter().all(|p| p.strategy == Strategy::Live));

    let repo = repo_in(tmp.path());
    let stop = RunSettings {
        state_dir: tmp.path().join("state"),
        single_pass: false,
        time: None,
    };
    let events = Recorded::default();
    let results = back_up_each(
        &Engine::unreachable(),
        &repo,
        &planned,
        ReaderChoice::Host,
        &stop,
        &events,
    )
    .await;

    let names = |p: &Path| p.display().to_string();
    assert_eq!(
        events.0.into_inner().expect("valid"),
        vec![
            format!("started bind {}", names(&first)),
            "ended".to_string(),
            format!("published {}", names(&first)),
            format!("started bind {}", names(&missing)),
            "ended".to_string(),
            format!("failed {} (Some(BadRequest))", names(&missing)),
            format!("started bind {}", names(&last)),
            "ended".to_string(),
            format!("published {}", names(&last)),
        ]
    );
    assert!(results[0].succeeded() && results[2].succeeded());
    assert!(!results[1].succeeded());
    assert_eq!(results[1].failure, Some(ErrorClass::BadRequest));
    assert!(
        results[1]
            .error
            .as_deref()
            .is_some_and(|e| e.contains(&names(&missing))),
        "{:?}",
        results[1].error
    );

    // What the results say was published is in the repository, and
    // nothing else.
    let mut published: Vec<String> = repo
        .snapshots()
        .expect("valid")
        .into_iter()
        .map(|s| s.id)
        .collect();
    let mut reported: Vec<String> = results
        .iter()
        .filter_map(|r| r.snapshot.as_ref().map(|s| s.id.clone()))
        .collect();
    published.sort();
    reported.sort();
    assert_eq!(published.len(), 2);
    assert_eq!(published, reported);
}

#[test]
fn a_snapshot_time_keeps_the_offset_or_zone_it_is_given() {
    let now: jiff::Timestamp = "2026-12-07T00:00:00Z".parse().expect("now");
    let at =
        |text: &str| snapshot_time_at(text, now).map(|z| (z.timestamp().to_string(), z.offset()));
    assert_eq!(
        at("2026-03-01T03:00:00+01:00").expect("valid"),
        ("2026-03-01T02:00:00Z".to_string(), jiff::tz::offset(1))
    );
    assert_eq!(
        at("2026-03-01T03:00:00Z").expect("valid"),
        ("2026-03-01T03:00:00Z".to_string(), jiff::tz::offset(0))
    );
    assert_eq!(
        at("2026-03-01T03:00:00[America/New_York]").expect("valid"),
        ("2026-03-01T08:00:00Z".to_string(), jiff::tz::offset(-5))
    );
    let local = snapshot_time_at("2026-03-01 03:00:00", now).expect("valid");
    assert_eq!(local.datetime().to_string(), "2026-03-01T03:00:00");
    assert!(at("2026-12-07T00:00:59Z").is_ok(), "a minute of leeway");
    for (bad, says) in [
        ("", "use 2026-03-01 03:00:00"),
        ("yesterday", "use 2026-03-01 03:00:00"),
        ("2026-03-01", "use 2026-03-01 03:00:00"),
        ("2026-13-01T00:00:00Z", "use 2026-03-01 03:00:00"),
        ("2026-03-01T03:00:00[Nowhere/Atlantis]", "unknown time zone"),
        ("2062-01-01T00:00:00Z", "in the future"),
        ("2026-12-07T00:02:00Z", "in the future"),
    ] {
        let err = at(bad).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            err.starts_with(&format!("invalid time {bad:?}: ")) && err.contains(says),
            "{bad}: {err}"
        );
    }
}
