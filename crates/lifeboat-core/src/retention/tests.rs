use super::*;
use crate::config::keep::Within;

fn snapshot(id: &str, host: &str, tags: &[&str], time: &str) -> SnapshotInfo {
    SnapshotInfo::example(id, host, tags, &format!("{time}+00:00[UTC]"))
}

fn ids(group: &Group) -> Vec<&str> {
    group.snapshots.iter().map(|s| s.id.as_str()).collect()
}

const NOW: &str = "2030-01-01T00:00:00Z";

#[test]
fn snapshots_are_grouped_per_target_and_host_newest_first() {
    let (groups, foreign) = group(vec![
        snapshot(
            "a1",
            "web",
            &["lifeboat", "volume=a"],
            "2026-12-01T00:00:00",
        ),
        snapshot(
            "a3",
            "web",
            &["lifeboat", "volume=a"],
            "2026-12-03T00:00:00",
        ),
        snapshot(
            "a2",
            "web",
            &["lifeboat", "volume=a"],
            "2026-12-02T00:00:00",
        ),
        snapshot("x1", "db", &["lifeboat", "volume=a"], "2026-12-04T00:00:00"),
        snapshot(
            "b1",
            "web",
            &["lifeboat", "bind=/srv/a"],
            "2026-12-01T00:00:00",
        ),
        snapshot("f1", "web", &["restic-only"], "2026-12-01T00:00:00"),
        // Equal times: by id.
        snapshot(
            "c2",
            "web",
            &["lifeboat", "volume=c"],
            "2026-12-01T00:00:00",
        ),
        snapshot(
            "c1",
            "web",
            &["lifeboat", "volume=c"],
            "2026-12-01T00:00:00",
        ),
    ]);
    assert_eq!(foreign, 1);
    let named: Vec<(TargetKind, &str, &str, Vec<&str>)> = groups
        .iter()
        .map(|g| (g.kind, g.name.as_str(), g.host.as_str(), ids(g)))
        .collect();
    assert_eq!(
        named,
        vec![
            (TargetKind::Volume, "a", "db", vec!["x1"]),
            (TargetKind::Volume, "a", "web", vec!["a3", "a2", "a1"]),
            (TargetKind::Volume, "c", "web", vec!["c1", "c2"]),
            (TargetKind::Bind, "/srv/a", "web", vec!["b1"]),
        ]
    );
}

fn decided(rules: &str, group: &Group, safety: &Safety) -> Vec<(String, Vec<KeepReason>)> {
    let rules: KeepRules = rules.parse().expect("rules");
    decide(&rules, group, safety, NOW.parse().expect("valid"))
        .into_iter()
        .zip(&group.snapshots)
        .map(|(reasons, s)| (s.id.clone(), reasons))
        .collect()
}

#[test]
fn the_newest_restore_point_is_never_removed() {
    // The newest snapshot is the undo copy of a restore; the newest
    // backup is two hours older, outside `within=1h`.
    let (groups, _) = group(vec![
        snapshot(
            "undo",
            "web",
            &["lifeboat", "volume=a", "pre-restore"],
            "2026-12-07T12:00:00",
        ),
        snapshot(
            "backup",
            "web",
            &["lifeboat", "volume=a"],
            "2026-12-07T10:00:00",
        ),
        snapshot(
            "older",
            "web",
            &["lifeboat", "volume=a"],
            "2026-12-06T10:00:00",
        ),
    ]);
    let reasons = decided("within=1h", &groups[0], &Safety::default());
    assert_eq!(
        reasons,
        vec![
            (
                "undo".to_string(),
                vec![KeepReason::Within(Within {
                    hours: 1,
                    ..Within::default()
                })]
            ),
            ("backup".to_string(), vec![KeepReason::Newest]),
            ("older".to_string(), vec![]),
        ]
    );
    // Kept by a rule, the newest gets no safety reason.
    let reasons = decided("last=1", &groups[0], &Safety::default());
    assert_eq!(reasons[0].1, [KeepReason::Last]);
    assert_eq!(reasons[1].1, [KeepReason::Newest]);
}

#[test]
fn drilled_and_pruned_snapshots_are_kept_beyond_the_rules() {
    let (groups, _) = group(vec![
        snapshot(
            "new",
            "web",
            &["lifeboat", "volume=a"],
            "2026-12-07T00:00:00",
        ),
        snapshot(
            "drilled",
            "web",
            &["lifeboat", "volume=a"],
            "2026-12-06T00:00:00",
        ),
        snapshot(
            "plain",
            "web",
            &["lifeboat", "volume=a"],
            "2026-12-05T00:00:00",
        ),
        snapshot(
            "pruned",
            "web",
            &["lifeboat", "volume=a", "pruned"],
            "2026-12-04T00:00:00",
        ),
        snapshot(
            "oldest",
            "web",
            &["lifeboat", "volume=a"],
            "2026-12-03T00:00:00",
        ),
    ]);
    let safety = Safety {
        drilled: vec!["drilled".to_string(), "oldest".to_string()],
        include_pruned: false,
    };
    let reasons = decided("last=1", &groups[0], &safety);
    let kept: Vec<(&str, &[KeepReason])> = reasons
        .iter()
        .map(|(id, r)| (id.as_str(), r.as_slice()))
        .collect();
    assert_eq!(
        kept,
        vec![
            ("new", &[KeepReason::Last][..]),
            // Only the newest drilled snapshot is protected.
            ("drilled", &[KeepReason::Drilled][..]),
            ("plain", &[][..]),
            ("pruned", &[KeepReason::Pruned][..]),
            ("oldest", &[][..]),
        ]
    );
    let reasons = decided(
        "last=1",
        &groups[0],
        &Safety {
            include_pruned: true,
            ..Safety::default()
        },
    );
    assert!(reasons[3].1.is_empty(), "{reasons:?}");
    assert_eq!(
        KeepReason::Pruned.to_string(),
        "last copy of a pruned volume (tagged pruned)"
    );
}

#[test]
fn a_snapshot_from_the_future_does_not_make_the_real_newest_go() {
    let (groups, _) = group(vec![
        snapshot(
            "typo",
            "web",
            &["lifeboat", "volume=a"],
            "2062-01-01T00:00:00",
        ),
        snapshot(
            "real",
            "web",
            &["lifeboat", "volume=a"],
            "2026-12-07T00:00:00",
        ),
        snapshot(
            "older",
            "web",
            &["lifeboat", "volume=a"],
            "2026-12-06T00:00:00",
        ),
    ]);
    let reasons = decided("last=1", &groups[0], &Safety::default());
    assert_eq!(reasons[0].1, [KeepReason::Last]);
    assert_eq!(reasons[1].1, [KeepReason::Newest]);
    assert!(reasons[2].1.is_empty(), "{reasons:?}");
}
