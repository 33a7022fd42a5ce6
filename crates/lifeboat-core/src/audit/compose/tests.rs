use super::mounts::parse_short;
use super::*;

fn options(vars: &[(&str, &str)]) -> ComposeOptions {
    ComposeOptions {
        variables: vars
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect(),
        ..ComposeOptions::default()
    }
}

fn read(text: &str) -> Result<Stack> {
    parse(
        text,
        Path::new("/srv/shop/compose.yaml"),
        &options(&[("HOME", "/home/ada")]),
    )
}

fn error_of(text: &str) -> String {
    read(text).err().map(|e| e.to_string()).unwrap_or_default()
}

#[test]
fn short_syntax_is_split_as_compose_splits_it() {
    let spec = |s: &str| parse_short(s).map(|v| (v.kind, v.source, v.target, v.read_only));
    assert_eq!(
        spec("pgdata:/var/lib/postgresql/data"),
        Ok((
            "volume".into(),
            Some("pgdata".into()),
            "/var/lib/postgresql/data".into(),
            false
        ))
    );
    assert_eq!(
        spec("./nginx.conf:/etc/nginx/nginx.conf:ro"),
        Ok((
            "bind".into(),
            Some("./nginx.conf".into()),
            "/etc/nginx/nginx.conf".into(),
            true
        ))
    );
    assert_eq!(
        spec("/srv/www:/usr/share/nginx/html:rw,z"),
        Ok((
            "bind".into(),
            Some("/srv/www".into()),
            "/usr/share/nginx/html".into(),
            false
        ))
    );
    assert_eq!(
        spec("/var/lib/mysql"),
        Ok(("volume".into(), None, "/var/lib/mysql".into(), false))
    );
    assert_eq!(
        spec("~/.ssh:/root/.ssh:z,ro"),
        Ok((
            "bind".into(),
            Some("~/.ssh".into()),
            "/root/.ssh".into(),
            true
        ))
    );
    assert_eq!(
        spec("C:\\data:/data:ro"),
        Ok(("bind".into(), Some("C:\\data".into()), "/data".into(), true))
    );
    assert_eq!(
        spec("d:/cache:/cache"),
        Ok((
            "bind".into(),
            Some("d:/cache".into()),
            "/cache".into(),
            false
        ))
    );
    assert!(spec("a:b:ro:x").is_err());
    assert!(spec("a::b").is_err());
}

#[test]
fn long_syntax_reads_types_options_and_sizes() -> Result<()> {
    let stack = read(
        r#"
services:
  app:
    image: example/app
    volumes:
      - type: volume
        source: data
        target: /data
        volume: {nocopy: true}
      - type: bind
        source: ./conf
        target: /etc/app
        read_only: true
        bind: {create_host_path: true}
      - type: tmpfs
        target: /cache
        tmpfs: {size: 64m}
      - type: tmpfs
        target: /scratch
        tmpfs: {size: 1048576}
      - type: volume
        target: /anon
      - type: npipe
        source: \\.\pipe\docker_engine
        target: \\.\pipe\docker_engine
      - source: /var/log
        target: /logs
        read_only: "false"
volumes:
  data:
"#,
    )?;
    let m = &stack.services[0].mounts;
    assert_eq!(m.len(), 7);
    assert_eq!(
        (m[0].kind, m[0].source.as_deref()),
        (MountType::Volume, Some("shop_data"))
    );
    assert_eq!(
        (m[1].kind, m[1].source.as_deref()),
        (MountType::Bind, Some("/srv/shop/conf"))
    );
    assert!(m[1].read_only);
    assert_eq!(
        (m[2].kind, m[2].tmpfs_size),
        (MountType::Tmpfs, Some(TmpfsSize::Bytes(64 << 20)))
    );
    assert_eq!(m[3].tmpfs_size, Some(TmpfsSize::Bytes(1 << 20)));
    assert_eq!(
        (m[4].kind, m[4].source.as_deref()),
        (MountType::Anonymous, None)
    );
    assert_eq!(m[5].kind, MountType::Npipe);
    assert_eq!((m[6].kind, m[6].read_only), (MountType::Bind, false));
    Ok(())
}

#[test]
fn service_tmpfs_takes_a_string_or_a_list_with_sizes() -> Result<()> {
    let stack = read(
        "services:\n  a:\n    image: x\n    tmpfs: /run\n  b:\n    image: x\n    tmpfs:\n      - /run:size=64m,mode=1777\n      - /tmp:mode=1777\n      - /zero:size=0\n      - /half:size=50%\n",
    )?;
    let a = &stack.services[0].mounts;
    assert_eq!(
        (a[0].kind, a[0].target.as_str(), a[0].tmpfs_size),
        (MountType::Tmpfs, "/run", None)
    );
    let b: Vec<(&str, Option<TmpfsSize>)> = stack.services[1]
        .mounts
        .iter()
        .map(|m| (m.target.as_str(), m.tmpfs_size))
        .collect();
    assert_eq!(
        b,
        [
            ("/run", Some(TmpfsSize::Bytes(64 << 20))),
            ("/tmp", None),
            ("/zero", None),
            ("/half", Some(TmpfsSize::Percent(50)))
        ]
    );
    Ok(())
}

#[test]
fn bind_sources_resolve_against_the_compose_file() -> Result<()> {
    let stack = read(
        "services:\n  a:\n    image: x\n    volumes:\n      - ./conf/../site:/site\n      - ../shared:/shared\n      - ~/notes:/notes\n      - /abs/./path/:/abs\n",
    )?;
    let sources: Vec<&str> = stack.services[0]
        .mounts
        .iter()
        .filter_map(|m| m.source.as_deref())
        .collect();
    assert_eq!(
        sources,
        [
            "/srv/shop/site",
            "/srv/shared",
            "/home/ada/notes",
            "/abs/path"
        ]
    );
    Ok(())
}

#[test]
fn named_volumes_get_the_engines_names() -> Result<()> {
    let stack = read(
        r#"
services:
  app:
    image: x
    volumes: [plain:/a, named:/b, ext:/c, legacy:/d, extnamed:/e]
volumes:
  plain:
  named:
    name: exact-name
    driver: local
    driver_opts: {type: nfs, o: "addr=10.0.0.1,rw", device: ":/export"}
    labels: [lifeboat.protect=true]
  ext:
    external: true
  legacy:
    external: {name: old-style}
  extnamed:
    external: true
    name: shared-data
"#,
    )?;
    let names: Vec<(&str, &str, bool)> = stack
        .volumes
        .iter()
        .map(|v| (v.key.as_str(), v.name.as_str(), v.external))
        .collect();
    assert_eq!(
        names,
        [
            ("plain", "shop_plain", false),
            ("named", "exact-name", false),
            ("ext", "ext", true),
            ("legacy", "old-style", true),
            ("extnamed", "shared-data", true),
        ]
    );
    let named = stack.volume("exact-name").expect("declared");
    assert_eq!(named.driver.as_deref(), Some("local"));
    assert_eq!(named.driver_opts["o"], "addr=10.0.0.1,rw");
    assert_eq!(named.labels["lifeboat.protect"], "true");
    assert_eq!(named.exists, None);
    let sources: Vec<&str> = stack.services[0]
        .mounts
        .iter()
        .filter_map(|m| m.source.as_deref())
        .collect();
    assert_eq!(
        sources,
        [
            "shop_plain",
            "exact-name",
            "ext",
            "old-style",
            "shared-data"
        ]
    );
    Ok(())
}

#[test]
fn the_project_name_comes_from_flag_env_file_or_directory() -> Result<()> {
    let text = "name: From-File\nservices: {}\n";
    let path = Path::new("/srv/My Shop/compose.yaml");
    let with = |opts: ComposeOptions| parse(text, path, &opts).map(|s| s.project);
    let mut opts = options(&[("COMPOSE_PROJECT_NAME", "fromenv")]);
    opts.project_name = Some("flag".into());
    assert_eq!(with(opts)?.as_deref(), Some("flag"));
    assert_eq!(
        with(options(&[("COMPOSE_PROJECT_NAME", "fromenv")]))?.as_deref(),
        Some("fromenv")
    );
    assert_eq!(with(options(&[]))?.as_deref(), Some("from-file"));
    let unnamed = parse("services: {}\n", path, &options(&[]))?;
    assert_eq!(unnamed.project.as_deref(), Some("myshop"));
    Ok(())
}

#[test]
fn variables_are_interpolated_everywhere_but_extensions() -> Result<()> {
    let stack = parse(
        r#"
x-notes: "${NOT_CHECKED:?extensions are skipped}"
services:
  db:
    image: "postgres:${PG_TAG:-16-alpine}"
    user: "${UID}:${GID-999}"
    environment:
      PGDATA: ${PGDATA:-/var/lib/postgresql/data}
      COST: "$$5"
    volumes:
      - ${DATA_DIR}/pg:/var/lib/postgresql/data
      - type: bind
        source: ${CONF:-./conf}
        target: /etc/postgresql
        read_only: ${RO:-true}
"#,
        Path::new("/srv/shop/compose.yaml"),
        &options(&[("UID", "1000"), ("DATA_DIR", "/mnt/fast")]),
    )?;
    let db = &stack.services[0];
    assert_eq!(db.image.as_deref(), Some("postgres:16-alpine"));
    assert_eq!(db.user.as_deref(), Some("1000:999"));
    assert_eq!(db.environment["PGDATA"], "/var/lib/postgresql/data");
    assert_eq!(db.environment["COST"], "$5");
    assert_eq!(db.mounts[0].source.as_deref(), Some("/mnt/fast/pg"));
    assert_eq!(db.mounts[1].source.as_deref(), Some("/srv/shop/conf"));
    assert!(db.mounts[1].read_only);
    assert!(stack.warnings.is_empty(), "{:?}", stack.warnings);
    Ok(())
}

#[test]
fn unset_variables_warn_and_required_ones_fail_with_the_line() -> Result<()> {
    let stack = read("services:\n  a:\n    image: app:$TAG\n")?;
    assert_eq!(stack.services[0].image.as_deref(), Some("app:"));
    assert_eq!(
        stack.warnings,
        ["/srv/shop/compose.yaml: the variable TAG is not set: it reads as an empty string"]
    );
    assert_eq!(
        error_of(
            "services:\n  a:\n    image: x\n    environment:\n      PASSWORD: ${PASSWORD:?set PASSWORD in .env}\n"
        ),
        "/srv/shop/compose.yaml:5: services.a.environment.PASSWORD: required variable PASSWORD is missing a value: set PASSWORD in .env"
    );
    Ok(())
}

#[test]
fn services_read_users_commands_replicas_and_dependencies() -> Result<()> {
    let stack = read(
        r#"
x-common: &common
  labels:
    lifeboat.audit.ignore: LB005
  restart: unless-stopped
services:
  cache:
    <<: *common
    image: redis:7
    user: 999
    group_add: [100, video]
    command: redis-server --save "" --appendonly no
    depends_on: [db]
    scale: 2
  db:
    image: postgres:16
    entrypoint: /usr/local/bin/docker-entrypoint.sh
    command: ["postgres", "-c", "fsync=on"]
    depends_on:
      init: {condition: service_completed_successfully}
    deploy:
      replicas: 3
    labels: ["a=1", "b"]
  init:
    image: busybox
"#,
    )?;
    let cache = stack.service("cache").expect("cache");
    assert_eq!(cache.user.as_deref(), Some("999"));
    assert_eq!(cache.group_add, ["100", "video"]);
    assert_eq!(
        cache.command,
        ["redis-server", "--save", "", "--appendonly", "no"]
    );
    assert_eq!(cache.depends_on, ["db"]);
    assert_eq!(cache.replicas, 2);
    assert_eq!(cache.labels["lifeboat.audit.ignore"], "LB005");
    let db = stack.service("db").expect("db");
    assert_eq!(db.entrypoint, ["/usr/local/bin/docker-entrypoint.sh"]);
    assert_eq!(db.command, ["postgres", "-c", "fsync=on"]);
    assert!(cache.entrypoint.is_empty());
    assert_eq!(db.depends_on, ["init"]);
    assert_eq!(db.replicas, 3);
    assert_eq!(db.labels["b"], "");
    assert_eq!(stack.service("init").map(|s| s.replicas), Some(1));
    assert_eq!(stack.services.len(), 3);
    Ok(())
}

#[test]
fn environment_reads_lists_maps_and_env_files() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
    std::fs::write(dir.path().join("db.env"), "PGDATA=/from/file\nOTHER=file\n")
        .map_err(|e| Error::io("db.env", e))?;
    let path = dir.path().join("compose.yaml");
    let stack = parse(
        r#"
services:
  a:
    image: x
    env_file: db.env
    environment: [PGDATA=/from/list, FROM_SHELL, MISSING]
  b:
    image: x
    env_file:
      - path: ./missing.env
        required: false
      - db.env
      - nothere.env
    environment:
      OTHER: map
      FROM_SHELL:
"#,
        &path,
        &options(&[("FROM_SHELL", "shell")]),
    )?;
    let a = &stack.services[0].environment;
    assert_eq!(a["PGDATA"], "/from/list");
    assert_eq!(a["OTHER"], "file");
    assert_eq!(a["FROM_SHELL"], "shell");
    assert!(!a.contains_key("MISSING"));
    let b = &stack.services[1].environment;
    assert_eq!(b["PGDATA"], "/from/file");
    assert_eq!(b["OTHER"], "map");
    assert_eq!(b["FROM_SHELL"], "shell");
    assert_eq!(stack.warnings.len(), 1, "{:?}", stack.warnings);
    assert!(stack.warnings[0].contains("nothere.env does not exist"));
    Ok(())
}

#[test]
fn lines_point_at_services_mounts_and_volumes() -> Result<()> {
    let stack = read(
        "services:\n  db:\n    image: postgres\n    volumes:\n      - pgdata:/var/lib/postgresql/data\n      - type: tmpfs\n        target: /run\n    tmpfs:\n      - /tmp\nvolumes:\n  pgdata:\n",
    )?;
    let db = &stack.services[0];
    assert_eq!(db.line, Some(2));
    let lines: Vec<Option<usize>> = db.mounts.iter().map(|m| m.line).collect();
    assert_eq!(lines, [Some(5), Some(6), Some(9)]);
    assert_eq!(stack.volumes[0].line, Some(11));
    Ok(())
}

#[test]
fn files_that_are_not_compose_files_are_errors_naming_them() {
    assert_eq!(
        error_of("services:\n  db:\n    image: [unclosed\n"),
        "/srv/shop/compose.yaml: not valid YAML: did not find expected ',' or ']' at line 4 column 1, while parsing a flow sequence at line 3 column 12"
    );
    assert_eq!(
        error_of(""),
        "/srv/shop/compose.yaml: is empty: not a compose file"
    );
    assert_eq!(
        error_of("- a\n- b\n"),
        "/srv/shop/compose.yaml:1: not a compose file: the top level must be a mapping"
    );
    assert_eq!(
        error_of("services: [db]\n"),
        "/srv/shop/compose.yaml:1: services: must be a mapping of service names"
    );
    assert_eq!(
        error_of("services:\n  db: postgres\n"),
        "/srv/shop/compose.yaml:2: services.db: must be a mapping"
    );
    assert_eq!(
        error_of(
            "services:\n  db:\n    image: postgres\n    volumes:\n      - pgdata:/var/lib/postgresql/data\n"
        ),
        "/srv/shop/compose.yaml:5: service db refers to undefined volume pgdata: declare it under the top-level `volumes:`"
    );
    assert_eq!(
        error_of("services:\n  db:\n    image: postgres\n    volumes:\n      - a:b:c:d\n"),
        "/srv/shop/compose.yaml:5: services.db.volumes[0]: \"a:b:c:d\": too many colons"
    );
    assert_eq!(
        error_of("services:\n  db:\n    volumes:\n      - type: bind\n        source: ./x\n"),
        "/srv/shop/compose.yaml:4: services.db.volumes[0]: a volume needs a target"
    );
    assert_eq!(
        error_of("services:\n  db:\n    volumes: pgdata\n"),
        "/srv/shop/compose.yaml:3: services.db.volumes: must be a list"
    );
    assert_eq!(
        error_of("volumes:\n  v:\n    external: maybe\n"),
        "/srv/shop/compose.yaml:2: volumes.v.external: expected true or false"
    );
    assert_eq!(
        error_of("services:\n  db:\n    scale: many\n"),
        "/srv/shop/compose.yaml:2: services.db: replicas must be a whole number"
    );
}

#[test]
fn unfollowed_features_and_unknown_mount_types_warn() -> Result<()> {
    let stack = read(
        "include: [other.yaml]\nservices:\n  a:\n    extends: {service: base}\n    volumes_from: [\"container:data\"]\n    volumes:\n      - type: image\n        source: alpine\n        target: /img\n",
    )?;
    assert_eq!(stack.warnings.len(), 4, "{:?}", stack.warnings);
    assert!(stack.services[0].mounts.is_empty());
    Ok(())
}

#[test]
fn volumes_from_brings_in_the_other_services_mounts() -> Result<()> {
    let stack = read(
        "services:\n  data:\n    image: busybox\n    volumes:\n      - pgdata:/var/lib/postgresql/data\n      - ./conf:/conf:ro\n  db:\n    image: postgres:16\n    volumes_from:\n      - data\n  reader:\n    image: busybox\n    volumes_from: [\"data:ro\"]\nvolumes:\n  pgdata:\n",
    )?;
    let db = stack.service("db").expect("db");
    let mounts: Vec<(&str, bool, Option<usize>)> = db
        .mounts
        .iter()
        .map(|m| (m.target.as_str(), m.read_only, m.line))
        .collect();
    assert_eq!(
        mounts,
        [
            ("/var/lib/postgresql/data", false, Some(10)),
            ("/conf", true, Some(10))
        ]
    );
    assert_eq!(db.mounts[0].source.as_deref(), Some("shop_pgdata"));
    let reader = stack.service("reader").expect("reader");
    assert!(reader.mounts.iter().all(|m| m.read_only));
    assert_eq!(
        error_of("services:\n  db:\n    image: postgres\n    volumes_from: [ghost]\n"),
        "/srv/shop/compose.yaml:2: service db takes volumes from undefined service ghost"
    );
    Ok(())
}

#[test]
fn existing_volumes_are_known_when_given() -> Result<()> {
    let mut opts = options(&[]);
    opts.existing_volumes = Some(["shop_here".to_string()].into());
    let stack = parse(
        "services: {}\nvolumes:\n  here:\n  gone:\n    external: true\n",
        Path::new("/srv/shop/compose.yaml"),
        &opts,
    )?;
    let exists: Vec<Option<bool>> = stack.volumes.iter().map(|v| v.exists).collect();
    assert_eq!(exists, [Some(true), Some(false)]);
    Ok(())
}
