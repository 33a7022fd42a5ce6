use super::*;
use crate::engine::ContainerMount;

fn container(
    name: &str,
    image: &str,
    running: bool,
    mounts: Vec<ContainerMount>,
) -> EngineContainer {
    EngineContainer {
        id: format!("id-{name}"),
        name: name.into(),
        image: image.into(),
        running,
        state: if running { "running" } else { "exited" }.into(),
        labels: [("com.docker.compose.project".to_string(), "shop".to_string())].into(),
        mounts,
        needs: Vec::new(),
        auto_remove: false,
    }
}

fn volume_mount(name: &str, dest: &str, rw: bool) -> ContainerMount {
    ContainerMount {
        kind: MountKind::Volume,
        name: Some(name.into()),
        source: Some(format!("/nonexistent/{name}/_data")),
        destination: dest.into(),
        read_write: rw,
        tmpfs_size: None,
    }
}

fn volume(name: &str) -> EngineVolume {
    EngineVolume {
        name: name.into(),
        driver: "local".into(),
        mountpoint: format!("/nonexistent/{name}/_data"),
        ..Default::default()
    }
}

#[test]
fn mounts_join_their_volumes() {
    let anon = "a".repeat(64);
    let targets = assemble(
        &[volume("pgdata"), volume("spare"), volume(&anon)],
        &[
            container(
                "db",
                "docker.io/library/postgres:15",
                true,
                vec![volume_mount("pgdata", "/var/lib/postgresql/data", true)],
            ),
            container(
                "backup",
                "alpine",
                false,
                vec![volume_mount("pgdata", "/src", false)],
            ),
        ],
    );
    let pg = targets.iter().find(|t| t.name == "pgdata").expect("pgdata");
    assert_eq!(pg.users.len(), 2);
    assert_eq!(pg.holds, Content::Postgres);
    assert!(!pg.unused);
    let spec = pg.spec().expect("spec");
    assert_eq!(spec.containers, ["backup", "db"]);
    assert_eq!(spec.compose_project.as_deref(), Some("shop"));
    let spare = targets.iter().find(|t| t.name == "spare").expect("spare");
    assert!(spare.unused);
    assert_eq!(spare.holds, Content::Files);
    assert!(
        targets
            .iter()
            .find(|t| t.name == anon)
            .expect("anon")
            .anonymous
    );
}

#[test]
fn database_images_mounting_other_paths_hold_files() {
    let targets = assemble(
        &[volume("init")],
        &[container(
            "db",
            "postgres:15",
            true,
            vec![volume_mount("init", "/docker-entrypoint-initdb.d", false)],
        )],
    );
    assert_eq!(targets[0].holds, Content::Files);
}

#[test]
fn images_and_paths_name_their_databases() {
    for (image, dest, want) in [
        ("mariadb:11", "/var/lib/mysql", Content::Mariadb),
        ("mysql:8", "/var/lib/mysql", Content::Mysql),
        ("bitnami/redis:7", "/data", Content::Redis),
        ("mongo:7", "/data/db", Content::Mongo),
        ("myapp:1", "/var/lib/postgresql/data", Content::Postgres),
        ("nginx", "/var/cache/nginx", Content::Cache),
        ("nginx", "/usr/share/nginx/html", Content::Files),
    ] {
        let targets = assemble(
            &[volume("v")],
            &[container(
                "c",
                image,
                true,
                vec![volume_mount("v", dest, true)],
            )],
        );
        assert_eq!(targets[0].holds, want, "{image} at {dest}");
    }
}

#[test]
fn tmpfs_and_binds_are_listed() {
    let targets = assemble(
        &[],
        &[container(
            "web",
            "nginx",
            true,
            vec![
                ContainerMount {
                    kind: MountKind::Bind,
                    name: None,
                    source: Some("/srv/www".into()),
                    destination: "/usr/share/nginx/html".into(),
                    read_write: false,
                    tmpfs_size: None,
                },
                ContainerMount {
                    kind: MountKind::Tmpfs,
                    name: None,
                    source: None,
                    destination: "/run".into(),
                    read_write: true,
                    tmpfs_size: Some(TmpfsSize::Bytes(64 << 20)),
                },
            ],
        )],
    );
    assert_eq!(targets.len(), 2);
    assert_eq!(targets[0].kind, MountKind::Bind);
    assert_eq!(targets[0].name, "/srv/www");
    assert_eq!(targets[1].name, "web:/run");
    assert_eq!(targets[1].tmpfs_limit, Some(TmpfsSize::Bytes(64 << 20)));
    assert!(targets[1].spec().is_none());
}

#[test]
fn counting_skips_links_and_counts_hard_links_once() -> std::io::Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("a"), vec![0u8; 1000])?;
    std::fs::hard_link(dir.path().join("a"), dir.path().join("b"))?;
    std::fs::create_dir(dir.path().join("d"))?;
    std::fs::write(dir.path().join("d/c"), b"xyz")?;
    std::os::unix::fs::symlink("/etc", dir.path().join("l"))?;
    assert_eq!(count(dir.path())?, (1003, 4));
    Ok(())
}

#[test]
fn system_paths_are_not_container_data() {
    for p in [
        "/",
        "/etc",
        "/proc/1",
        "/var/run/docker.sock",
        "/var/lib/docker",
    ] {
        assert!(is_host_system_path(Path::new(p)), "{p}");
    }
    assert!(!is_host_system_path(Path::new("/srv/app")));
    assert!(!is_host_system_path(Path::new("/etc2")));
}
