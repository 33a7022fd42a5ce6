use super::*;
use crate::audit::rules::testing::*;

#[test]
fn lb005_tmpfs_without_size() {
    let stack = stack_of(vec![service(
        "web",
        "nginx",
        vec![
            mount(MountType::Tmpfs, None, "/run"),
            Mount {
                tmpfs_size: Some(TmpfsSize::Percent(10)),
                ..mount(MountType::Tmpfs, None, "/tmp")
            },
            Mount {
                tmpfs_size: Some(TmpfsSize::Percent(50)),
                ..mount(MountType::Tmpfs, None, "/var/cache")
            },
        ],
    )]);
    assert_eq!(
        messages("LB005", &stack),
        [
            "web: tmpfs at /run has no size limit: what is written there takes the host's memory",
            "web: tmpfs at /var/cache may take 50% of the host's memory, no less than with no size limit",
        ]
    );
    assert!(run("LB005", &stack)[0].fix.contains("--tmpfs /run:size="));
}

#[test]
fn lb006_sensitive_paths() {
    let flagged = [
        ("/", false),
        ("/etc", false),
        ("/etc/nginx", false),
        ("/var/lib/docker/volumes", false),
        ("/root", false),
        ("/home", false),
        ("/home/ada", false),
        ("/home/ada/.ssh", false),
        ("/root/.aws/credentials", false),
        ("/run", false),
        ("/var/run/docker.sock", true),
        ("/run/user/1000/docker.sock", true),
        ("/run/podman/podman.sock", false),
    ];
    let fine = [
        ("/", true),
        ("/etc/localtime", true),
        ("/var/lib/docker", true),
        ("/home/ada/projects/shop", false),
        ("/srv/etc", false),
        ("/etcetera", false),
        ("/run/secrets", false),
        ("/rootfs", false),
    ];
    for (path, ro) in flagged {
        assert!(sensitivity(Path::new(path), ro).is_some(), "{path} ro={ro}");
    }
    for (path, ro) in fine {
        assert_eq!(sensitivity(Path::new(path), ro), None, "{path} ro={ro}");
    }
    let stack = stack_of(vec![service(
        "proxy",
        "traefik:3",
        vec![
            Mount {
                read_only: true,
                ..bind("/var/run/docker.sock", "/var/run/docker.sock")
            },
            bind("/etc", "/host/etc"),
            Mount {
                read_only: true,
                ..bind("/etc/ssl/certs", "/etc/ssl/certs")
            },
            bind("/run/podman/podman.sock", "/podman.sock"),
        ],
    )]);
    let found: Vec<(Severity, String)> = run("LB006", &stack)
        .into_iter()
        .map(|f| (f.severity, f.message))
        .collect();
    assert_eq!(
            found,
            [
                (
                    Severity::Low,
                    "proxy: bind mount of /var/run/docker.sock (the engine's socket: `:ro` does not limit what is asked through it) at /var/run/docker.sock, read-only".to_string()
                ),
                (
                    Severity::High,
                    "proxy: bind mount of /etc (a part of the host system) at /host/etc, read-write".to_string()
                ),
                (
                    Severity::High,
                    "proxy: bind mount of /run/podman/podman.sock (the engine's socket, which controls every container and volume) at /podman.sock, read-write".to_string()
                ),
            ]
        );
}

#[test]
fn lb007_config_mounted_writable() {
    let stack = stack_of(vec![service(
        "web",
        "nginx",
        vec![
            bind("/srv/web/nginx.conf", "/etc/nginx/nginx.conf"),
            bind("/srv/web/conf.d", "/etc/nginx/conf.d"),
            bind("/srv/app/settings.toml", "/app/settings.toml"),
            Mount {
                host_is_file: Some(true),
                ..bind("/srv/app/Caddyfile", "/srv/Caddyfile")
            },
            // Read-only, data, written files, directories elsewhere.
            Mount {
                read_only: true,
                ..bind("/srv/web/site.conf", "/etc/nginx/site.conf")
            },
            Mount {
                host_is_file: Some(true),
                ..bind("/srv/app/app.sqlite", "/data/app.sqlite")
            },
            bind("/srv/traefik/acme.json", "/acme.json"),
            bind("/srv/www", "/usr/share/nginx/html"),
            Mount {
                host_is_file: Some(false),
                ..bind("/srv/weird.conf", "/data/weird.conf")
            },
            // The host's /etc is LB006's.
            bind("/etc/timezone", "/etc/timezone"),
            // Directories under /etc that applications write.
            bind("/srv/certbot/conf", "/etc/letsencrypt"),
            bind("/srv/wg", "/etc/wireguard"),
            bind("/srv/pihole/dnsmasq", "/etc/dnsmasq.d/"),
            // But a single file there is configuration.
            Mount {
                host_is_file: Some(true),
                ..bind("/srv/ssh/sshd_config", "/etc/ssh/sshd_config")
            },
        ],
    )]);
    let paths: Vec<Option<String>> = run("LB007", &stack).into_iter().map(|f| f.path).collect();
    assert_eq!(
        paths,
        [
            Some("/etc/nginx/nginx.conf".into()),
            Some("/etc/nginx/conf.d".into()),
            Some("/app/settings.toml".into()),
            Some("/srv/Caddyfile".into()),
            Some("/etc/ssh/sshd_config".into()),
        ]
    );
    assert_eq!(
        messages("LB007", &stack)[0],
        "web: configuration /srv/web/nginx.conf is mounted read-write at /etc/nginx/nginx.conf"
    );
}

#[test]
fn lb008_dependency_directories() {
    let stack = stack_of(vec![service(
        "app",
        "node:22",
        vec![
            bind("/srv/app", "/app"),
            bind("/srv/app/node_modules", "/app/node_modules"),
            bind("/srv/php/vendor", "/var/www/lib"),
            mount(MountType::Anonymous, None, "/app/vendor"),
            volume("venv", "/app/.venv"),
        ],
    )]);
    assert_eq!(
        messages("LB008", &stack),
        [
            "app: dependency directory /app/node_modules is a bind mount of /srv/app/node_modules: the host's packages replace the image's",
            "app: dependency directory /var/www/lib is a bind mount of /srv/php/vendor: the host's packages replace the image's",
        ]
    );
}

#[test]
fn lb011_users_that_cannot_write() {
    let owned = |uid, gid, mode| Mount {
        owner: Some(Owner { uid, gid, mode }),
        ..volume("data", "/data")
    };
    let as_user = |name: &str, user: &str, m: Mount| Service {
        user: Some(user.into()),
        ..service(name, "example/app", vec![m])
    };
    let stack = stack_of(vec![
        as_user("mismatch", "1000:1000", owned(0, 0, Some(0o755))),
        as_user("unknown-mode", "1000:1000", owned(999, 999, None)),
        as_user("no-group-write", "1000", owned(0, 0, Some(0o755))),
        // Owner, group with write, everyone, root, names: fine.
        as_user("owner", "999", owned(999, 999, Some(0o700))),
        as_user("group", "1000:50", owned(0, 50, Some(0o775))),
        Service {
            group_add: vec!["50".into()],
            ..as_user("added", "1000:1000", owned(0, 50, Some(0o770)))
        },
        as_user("world", "1000:1000", owned(0, 0, Some(0o777))),
        as_user("root", "0", owned(999, 999, Some(0o700))),
        as_user("named", "postgres", owned(0, 0, Some(0o700))),
        as_user("primary-unknown", "1000", owned(0, 50, Some(0o775))),
        as_user(
            "read-only",
            "1000:1000",
            Mount {
                read_only: true,
                ..owned(0, 0, Some(0o755))
            },
        ),
        // A bind mount of source code is no data mount...
        as_user(
            "code",
            "1000:1000",
            Mount {
                owner: Some(Owner {
                    uid: 0,
                    gid: 0,
                    mode: Some(0o755),
                }),
                ..bind("/srv/app", "/app")
            },
        ),
        // ...but a database's data directory is, bound or not.
        Service {
            user: Some("999:999".into()),
            ..service(
                "pg",
                "postgres:16",
                vec![Mount {
                    owner: Some(Owner {
                        uid: 0,
                        gid: 0,
                        mode: Some(0o755),
                    }),
                    ..bind("/srv/pg", "/var/lib/postgresql/data")
                }],
            )
        },
    ]);
    assert_eq!(
        messages("LB011", &stack),
        [
            "mismatch: runs as 1000:1000 but /data belongs to 0:0, mode 755: it cannot write there",
            "unknown-mode: runs as 1000:1000 but /data belongs to 999:999: it cannot write there",
            "no-group-write: runs as 1000 but /data belongs to 0:0, mode 755: it cannot write there",
            "pg: runs as 999:999 but /var/lib/postgresql/data belongs to 0:0, mode 755: it cannot write there",
        ]
    );
}
