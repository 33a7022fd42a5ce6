use super::*;

#[test]
fn databases_are_recognised_by_the_inventorys_images() {
    for (image, want) in [
        ("postgres:16-alpine", Some(Content::Postgres)),
        ("docker.io/bitnami/postgresql:15", Some(Content::Postgres)),
        ("timescale/timescaledb:latest-pg16", Some(Content::Postgres)),
        ("mariadb:11", Some(Content::Mariadb)),
        ("mysql:8.4", Some(Content::Mysql)),
        ("redis:7", Some(Content::Redis)),
        ("valkey/valkey:8", Some(Content::Redis)),
        ("mongo:7", Some(Content::Mongo)),
        ("redis/redis-stack-server:7.4.0-v0", Some(Content::Redis)),
        ("nginx:1.27", None),
        // Tools named after their database are no servers.
        ("prometheuscommunity/postgres-exporter:v0.15.0", None),
        ("oliver006/redis_exporter:v1.62.0", None),
        ("prom/mysqld-exporter", None),
        ("mongo-express:1", None),
        ("rediscommander/redis-commander", None),
        ("redis/redisinsight:2", None),
        ("postgrest/postgrest:v12", None),
        ("prodrigestivill/postgres-backup-local:16", None),
    ] {
        assert_eq!(database(&Service::new("s", image)), want, "{image}");
    }
}

#[test]
fn database_images_running_their_clients_are_no_servers() {
    let with = |entrypoint: &[&str], command: &[&str]| Service {
        entrypoint: entrypoint.iter().map(|w| (*w).to_string()).collect(),
        command: command.iter().map(|w| (*w).to_string()).collect(),
        ..Service::new("s", "postgres:16")
    };
    assert_eq!(database(&with(&[], &["pg_dump", "-h", "db"])), None);
    assert_eq!(
        database(&with(&["/bin/sh", "-c"], &["pg_dumpall > /b/all.sql"])),
        None
    );
    assert_eq!(database(&with(&["docker-entrypoint.sh"], &["psql"])), None);
    assert_eq!(database(&with(&[], &["bash"])), None);
    // Regression: a script that only names the server's user or host
    // is still a client's.
    assert_eq!(
        database(&with(
            &[],
            &[
                "sh",
                "-c",
                "pg_dump -U postgres -h postgres shop > /b/shop.sql"
            ]
        )),
        None
    );
    assert_eq!(
        database(&with(
            &[],
            &["env", "-i", "PGPASSWORD=x", "psql", "-h", "db"]
        )),
        None
    );
    // An image's own entrypoint runs the command it is given.
    let bitnami_dump = Service {
        image: Some("bitnami/postgresql:16".into()),
        ..with(
            &["/opt/bitnami/scripts/postgresql/entrypoint.sh"],
            &["pg_dump", "-h", "db"],
        )
    };
    assert_eq!(database(&bitnami_dump), None);
    assert_eq!(
        database(&with(
            &[],
            &[
                "bash",
                "-ec",
                "set -e; pg_dump -h db shop | gzip > /b/shop.gz"
            ]
        )),
        None
    );
    let servers = [
        with(&[], &[]),
        with(&[], &["sh", "-c", "exec postgres -c fsync=on"]),
        with(&["/bin/sh", "-c"], &["sleep 5 && postgres"]),
        with(&["tini", "--", "docker-entrypoint.sh"], &["postgres"]),
        with(
            &["docker-entrypoint.sh"],
            &[
                "sh",
                "-c",
                "exec docker-entrypoint.sh \"$@\"",
                "--",
                "postgres",
            ],
        ),
        with(&["gosu", "postgres"], &["postgres"]),
        with(&[], &["postgres", "-c", "max_connections=200"]),
        with(&[], &["-c", "fsync=on"]),
        with(&["docker-entrypoint.sh"], &["postgres"]),
        with(
            &["/opt/bitnami/scripts/postgresql/entrypoint.sh"],
            &["/opt/bitnami/scripts/postgresql/run.sh"],
        ),
    ];
    for s in servers {
        assert_eq!(
            database(&s),
            Some(Content::Postgres),
            "{:?} {:?}",
            s.entrypoint,
            s.command
        );
    }
}

#[test]
fn a_redis_started_by_a_shell_is_judged_by_its_script() {
    let redis = |command: &[&str]| Service {
        entrypoint: vec!["docker-entrypoint.sh".into()],
        command: command.iter().map(|w| (*w).to_string()).collect(),
        ..Service::new("cache", "redis:7")
    };
    let keeps = redis(&["sh", "-c", "redis-server --appendonly yes"]);
    assert_eq!(database(&keeps), Some(Content::Redis));
    assert!(database_data(&keeps).is_some());
    let cache = redis(&[
        "sh",
        "-c",
        "redis-server --save '' --appendonly no --requirepass \"$$PASS\"",
    ]);
    assert_eq!(database(&cache), Some(Content::Redis));
    assert!(database_data(&cache).is_none(), "a cache keeps nothing");
    assert_eq!(
        simple_commands("a x;b && c|d ''\n e"),
        [
            vec!["a", "x"],
            vec!["b"],
            vec!["c"],
            vec!["d", ""],
            vec!["e"]
        ]
    );
}

#[test]
fn postgres_majors_come_from_pg_major_or_the_tag() {
    assert_eq!(tag_major("postgres:16-alpine").as_deref(), Some("16"));
    assert_eq!(tag_major("postgres:16.4-bookworm").as_deref(), Some("16"));
    assert_eq!(
        tag_major("registry:5000/lib/postgres:9.6.24").as_deref(),
        Some("9.6")
    );
    assert_eq!(tag_major("postgres:9").as_deref(), None);
    assert_eq!(tag_major("postgres:latest").as_deref(), None);
    assert_eq!(tag_major("postgres").as_deref(), None);
    assert_eq!(tag_major("postgres:17@sha256:abc").as_deref(), Some("17"));
    let mut s = Service::new("db", "postgres:latest");
    s.environment.insert("PG_MAJOR".into(), "17".into());
    assert_eq!(postgres_major(&s).as_deref(), Some("17"));
}

#[test]
fn data_directories_follow_pgdata_and_postgres_18() {
    let mut s = Service::new("db", "postgres:16");
    assert_eq!(
        data_dir(&s, Content::Postgres).as_deref(),
        Some("/var/lib/postgresql/data")
    );
    s.image = Some("postgres:18".into());
    assert_eq!(
        data_dir(&s, Content::Postgres).as_deref(),
        Some("/var/lib/postgresql/18/docker")
    );
    s.environment.insert("PGDATA".into(), "/pgdata/".into());
    assert_eq!(data_dir(&s, Content::Postgres).as_deref(), Some("/pgdata"));
}
