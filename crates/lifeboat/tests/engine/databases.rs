//! Databases are dumped with their own tools inside their containers and
//! restored into fresh ones, with the row counts recorded at backup.

use std::time::{Duration, Instant};

use crate::support::{
    BUSYBOX as BUSYBOX_IMAGE, TestEnv, docker, docker_with_input, restic, wait_until,
};

const POSTGRES: &str = "lifeboat-test/postgres:15";

fn postgres(env: &TestEnv, what: &str, password: &str) -> (String, String) {
    env.database(
        what,
        POSTGRES,
        "/var/lib/postgresql/data",
        &[
            "POSTGRES_USER=shop",
            &format!("POSTGRES_PASSWORD={password}"),
            "POSTGRES_DB=shopdb",
        ],
        &[],
    )
}

fn sql(container: &str, database: &str, query: &str) -> String {
    docker(&[
        "exec", container, "psql", "-X", "-A", "-t", "-U", "shop", "-d", database, "-c", query,
    ])
    .ok()
    .stdout
    .trim()
    .to_string()
}

/// A PostgreSQL container filled by `pgbench -i -s SCALE`.
fn postgres_with_rows(env: &TestEnv, scale: &str) -> (String, String) {
    let (db, volume) = postgres(env, "pg", "pw");
    docker(&[
        "exec", &db, "pgbench", "-U", "shop", "-i", "-s", scale, "-q", "shopdb",
    ])
    .ok();
    (db, volume)
}

/// Waits until a `pg_dump` runs in the container.
fn wait_for_pg_dump(db: &str) {
    let dumping = "grep -qx pg_dump /proc/[0-9]*/comm 2>/dev/null";
    wait_until("pg_dump runs", Duration::from_secs(60), || {
        docker(&["exec", db, "sh", "-c", dumping]).code == 0
    });
}

/// A database's entry in a dump's manifest.
fn database_in(manifest: &serde_json::Value, name: &str) -> serde_json::Value {
    manifest["databases"]
        .as_array()
        .expect("databases")
        .iter()
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in the manifest: {manifest}"))
        .clone()
}

/// The manifest of a dump snapshot, read by restic.
fn manifest(env: &TestEnv, snapshot: &str, volume: &str) -> serde_json::Value {
    let path = format!("/volumes/{volume}/postgres/lifeboat-manifest.json");
    let run = restic(&env.repo(), &env.password, &["dump", snapshot, &path]).ok();
    serde_json::from_str(&run.stdout).expect("manifest JSON")
}

#[test]
fn postgres_dump_under_load_restores_with_the_recorded_row_counts() {
    let env = TestEnv::new("pg-load");
    env.init();
    let (source, volume) = postgres(&env, "pg", "s3cret-pw");
    docker(&[
        "exec", &source, "pgbench", "-U", "shop", "-i", "-s", "4", "-q", "shopdb",
    ])
    .ok();
    // Writes go on through the whole backup: pgbench appends a row to
    // pgbench_history for each transaction.
    docker(&[
        "exec", "-d", &source, "pgbench", "-U", "shop", "-c", "2", "-T", "120", "shopdb",
    ])
    .ok();
    let written = || {
        sql(&source, "shopdb", "SELECT count(*) FROM pgbench_history")
            .parse::<u64>()
            .expect("a count")
    };
    wait_until("pgbench writes", Duration::from_secs(60), || written() > 0);
    let before = written();

    let plan = env
        .lifeboat(&["backup", &volume, "--plan", "--json"])
        .ok()
        .json();
    assert_eq!(plan[0]["strategy"], "dump", "{plan}");
    let backup = env.lifeboat(&["backup", &volume, "--json"]).ok();
    assert!(!backup.stdout.contains("s3cret-pw") && !backup.stderr.contains("s3cret-pw"));
    let backup = backup.json();
    let id = backup["targets"][0]["snapshot"]["id"]
        .as_str()
        .expect("snapshot")
        .to_string();
    let tags = backup["targets"][0]["snapshot"]["tags"].to_string();
    assert!(
        tags.contains("strategy=dump") && tags.contains("database=postgres"),
        "{tags}"
    );
    assert!(!tags.contains("s3cret-pw"));

    let shop = database_in(&manifest(&env, &id, &volume), "shopdb");
    assert_eq!(shop["tables"]["public.pgbench_accounts"], 400_000);
    let history = shop["tables"]["public.pgbench_history"]
        .as_u64()
        .expect("history count");
    // The load was in flight: rows came between the count before the
    // backup and the dump's snapshot, and after it, while it ran.
    let after = written();
    assert!(
        before < history && history < after,
        "pgbench was not writing around the dump: {before} before, {history} in the dump, {after} after"
    );

    // A fresh container, another password: the dump brings the data, but
    // not the source's password for the role the fresh server already has.
    let (fresh, _) = postgres(&env, "pg-fresh", "another-pw");
    let password_hash = "SELECT rolpassword FROM pg_authid WHERE rolname = 'shop'";
    let fresh_hash = sql(&fresh, "postgres", password_hash);
    assert!(fresh_hash.starts_with("SCRAM-SHA-256"), "{fresh_hash}");
    let report = env
        .lifeboat(&["restore", &id, "--into", &fresh, "--json"])
        .ok()
        .json();
    for d in report["databases"].as_array().expect("databases") {
        assert_eq!(d["mismatches"].as_array().map(Vec::len), Some(0), "{d}");
    }
    // Judged without lifeboat: counts and a full pg_dump of the result.
    for (table, count) in shop["tables"].as_object().expect("tables") {
        let counted = sql(&fresh, "shopdb", &format!("SELECT count(*) FROM {table}"));
        assert_eq!(counted, count.to_string(), "{table}");
    }
    assert_eq!(
        sql(&fresh, "shopdb", "SELECT count(*) FROM pgbench_history"),
        history.to_string()
    );
    assert_eq!(
        sql(&fresh, "postgres", password_hash),
        fresh_hash,
        "the restore changed the password of a role the server had"
    );
    docker(&[
        "exec",
        &fresh,
        "sh",
        "-c",
        "pg_dump -U shop shopdb > /dev/null",
    ])
    .ok();
    restic(&env.repo(), &env.password, &["check", "--read-data"]).ok();
    // Each dump file says how long it is, though its size was not known
    // before the command ran: restic restores it to exactly that length.
    let copy = env.dir.path().join("restic-copy");
    restic(
        &env.repo(),
        &env.password,
        &["restore", &id, "--target", copy.to_str().expect("a path")],
    )
    .ok();
    let listing = restic(&env.repo(), &env.password, &["ls", "--json", &id]).ok();
    let mut dumps = 0;
    for node in listing.stdout.lines().skip(1) {
        let node: serde_json::Value = serde_json::from_str(node).expect("a node");
        if node["type"] != "file" {
            continue;
        }
        let path = node["path"].as_str().expect("a path");
        let length = std::fs::metadata(copy.join(path.trim_start_matches('/')))
            .expect("restored by restic")
            .len();
        assert_eq!(node["size"].as_u64(), Some(length), "{path}");
        dumps += usize::from(path.ends_with(".dump"));
    }
    assert!(dumps >= 2, "{}", listing.stdout);

    // Brought up on a new volume by lifeboat, then used as any volume: a
    // container of the image starts on it with the data.
    let restored = format!("{volume}-new");
    env.adopt_volume(&restored);
    let report = env
        .lifeboat(&[
            "restore", &id, "--to", &restored, "--image", POSTGRES, "--json",
        ])
        .ok()
        .json();
    assert_eq!(report["volume"], restored.as_str());
    for d in report["databases"].as_array().expect("databases") {
        assert_eq!(d["mismatches"], serde_json::json!([]), "{d}");
    }
    let on_new = env.database_on(
        "pg-on-new",
        POSTGRES,
        &restored,
        "/var/lib/postgresql/data",
        &["POSTGRES_USER=shop", "POSTGRES_PASSWORD=unused"],
        &[],
    );
    assert_eq!(
        sql(&on_new, "shopdb", "SELECT count(*) FROM pgbench_accounts"),
        "400000"
    );
    let label = format!("label=lifeboat.helper=volume {restored}");
    let helpers = docker(&["ps", "-a", "-q", "--filter", &label]).ok();
    assert_eq!(
        helpers.stdout.trim(),
        "",
        "the temporary container was left behind"
    );

    // One database alone, again. The server now holds data, so lifeboat
    // refuses until told, and then backs that data up first.
    sql(&fresh, "shopdb", "DELETE FROM pgbench_tellers");
    let one_again = [
        "restore",
        &id,
        "--into",
        &fresh,
        "--database",
        "shopdb",
        "--json",
    ];
    let refused = env.lifeboat(&one_again);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(refused.stderr.contains("--force"), "{}", refused.stderr);
    assert_eq!(
        sql(&fresh, "shopdb", "SELECT count(*) FROM pgbench_tellers"),
        "0",
        "a refused restore changed the data"
    );
    let mut forced = one_again.to_vec();
    forced.push("--force");
    let one = env.lifeboat(&forced).ok().json();
    assert_eq!(one["databases"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        sql(&fresh, "shopdb", "SELECT count(*) FROM pgbench_tellers"),
        "40"
    );
    // What was overwritten can be had back: its dump has no tellers.
    let previous = one["previous_content"]["id"]
        .as_str()
        .expect("the previous content was backed up")
        .to_string();
    let undo = env
        .lifeboat(&[
            "restore",
            &previous,
            "--into",
            &fresh,
            "--database",
            "shopdb",
            "--force",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(undo["databases"][0]["mismatches"], serde_json::json!([]));
    assert_eq!(
        sql(&fresh, "shopdb", "SELECT count(*) FROM pgbench_tellers"),
        "0"
    );
}

#[test]
fn a_postgres_dump_with_wrong_credentials_fails_and_names_the_cause() {
    let env = TestEnv::new("pg-creds");
    env.init();
    let (db, volume) = postgres(&env, "pg", "original-pw");
    // The password was rotated in the database but not in the container's
    // environment, and local connections now need it.
    docker(&[
        "exec",
        &db,
        "sh",
        "-c",
        "sed -i 's/^local.*all.*all.*trust/local all all scram-sha-256/' $PGDATA/pg_hba.conf \
         && psql -U shop -d postgres -c \"ALTER USER shop PASSWORD 'rotated'\" \
         && psql -U shop -d postgres -c 'SELECT pg_reload_conf()'",
    ])
    .ok();

    let run = env.lifeboat(&["backup", &volume]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("container {db}")),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("password authentication failed"),
        "{}",
        run.stderr
    );
    let snapshots = env.lifeboat(&["snapshots", "--json"]).ok().json();
    assert_eq!(snapshots.as_array().map(Vec::len), Some(0));
}

#[test]
fn a_postgres_server_dying_mid_dump_leaves_no_snapshot() {
    let env = TestEnv::new("pg-dies");
    env.init();
    let (db, volume) = postgres_with_rows(&env, "30");

    let backup = env.start_lifeboat(&["backup", &volume]);
    // Wait until pg_dump of the big database runs, then kill the server.
    wait_for_pg_dump(&db);
    docker(&["kill", &db]).ok();
    let out = backup.wait_with_output().expect("lifeboat ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("container {db}")), "{stderr}");
    let snapshots = env.lifeboat(&["snapshots", "--json"]).ok().json();
    assert_eq!(
        snapshots.as_array().map(Vec::len),
        Some(0),
        "a failed dump left a snapshot"
    );
    restic(&env.repo(), &env.password, &["check"]).ok();
}

#[test]
fn an_interrupted_postgres_dump_ends_at_once_and_leaves_no_session_open() {
    let env = TestEnv::new("pg-int");
    env.init();
    let (db, volume) = postgres_with_rows(&env, "30");

    let backup = env.start_lifeboat(&["backup", &volume]);
    // Interrupted while the dump runs and the rows are being counted
    // beside it: nothing may wait for counts that will never come.
    wait_for_pg_dump(&db);
    let pid = backup.id().to_string();
    let _ = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status();
    let interrupted = Instant::now();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(backup.wait_with_output());
    });
    let Ok(out) = done_rx.recv_timeout(Duration::from_secs(60)) else {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid])
            .status();
        panic!("lifeboat did not end within a minute of SIGINT");
    };
    let out = out.expect("lifeboat ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        interrupted.elapsed() < Duration::from_secs(30),
        "{:?} to end after SIGINT",
        interrupted.elapsed()
    );
    // No psql or pg_dump of the backup is left holding a transaction.
    let sessions = "SELECT count(*) FROM pg_stat_activity \
                    WHERE datname IS NOT NULL AND pid <> pg_backend_pid() \
                    AND (application_name IN ('psql', 'pg_dump') OR state LIKE 'idle in transaction%')";
    let start = Instant::now();
    while sql(&db, "postgres", sessions) != "0" {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "sessions left: {}",
            sql(
                &db,
                "postgres",
                "SELECT string_agg(application_name || ' ' || state, ', ') FROM pg_stat_activity \
                 WHERE datname IS NOT NULL AND pid <> pg_backend_pid()"
            )
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let snapshots = env.lifeboat(&["snapshots", "--json"]).ok().json();
    assert_eq!(
        snapshots.as_array().map(Vec::len),
        Some(0),
        "an interrupted dump left a snapshot"
    );
}

#[test]
fn a_truncate_during_a_postgres_dump_waits_for_it_and_the_counts_match_the_dump() {
    let env = TestEnv::new("pg-truncate");
    env.init();
    let (db, volume) = postgres_with_rows(&env, "10");

    let backup = env.start_lifeboat(&["backup", &volume, "--json"]);
    // Once pg_dump holds its lock on the accounts, a TRUNCATE comes: it
    // must wait for the backup, not break it, and the counts taken beside
    // the dump must still be the dump's. (Whether the count of that table
    // had run by then is not forced here: the case where it had not is
    // what the session's table locks are for.)
    let held = "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) \
                WHERE a.application_name = 'pg_dump' AND l.granted \
                AND l.relation = 'pgbench_accounts'::regclass";
    wait_until("pg_dump locks the table", Duration::from_secs(60), || {
        sql(&db, "shopdb", held) == "1"
    });
    docker(&[
        "exec",
        "-d",
        &db,
        "psql",
        "-U",
        "shop",
        "-d",
        "shopdb",
        "-c",
        "TRUNCATE pgbench_accounts",
    ])
    .ok();
    let out = backup.wait_with_output().expect("lifeboat ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let id = report["targets"][0]["snapshot"]["id"]
        .as_str()
        .expect("snapshot")
        .to_string();
    let shop = database_in(&manifest(&env, &id, &volume), "shopdb");
    assert_eq!(shop["tables"]["public.pgbench_accounts"], 1_000_000);
    // The TRUNCATE went through once the backup let go of the table.
    wait_until("the TRUNCATE runs", Duration::from_secs(60), || {
        sql(&db, "shopdb", "SELECT count(*) FROM pgbench_accounts") == "0"
    });

    let (fresh, _) = postgres(&env, "pg-fresh", "pw");
    let restored = env
        .lifeboat(&["restore", &id, "--into", &fresh, "--json"])
        .ok()
        .json();
    for d in restored["databases"].as_array().expect("databases") {
        assert_eq!(d["mismatches"], serde_json::json!([]), "{d}");
    }
    assert_eq!(
        sql(&fresh, "shopdb", "SELECT count(*) FROM pgbench_accounts"),
        "1000000"
    );
}

const MARIADB: &str = "lifeboat-test/mariadb:10.11";

fn mariadb(env: &TestEnv, what: &str, root_password: &str) -> (String, String) {
    env.database(
        what,
        MARIADB,
        "/var/lib/mysql",
        &[
            &format!("MARIADB_ROOT_PASSWORD={root_password}"),
            "MARIADB_DATABASE=shop",
        ],
        &[],
    )
}

fn maria_sql(container: &str, password: &str, query: &str) -> String {
    docker(&[
        "exec",
        "-e",
        &format!("MYSQL_PWD={password}"),
        container,
        "mariadb",
        "-uroot",
        "--batch",
        "--skip-column-names",
        "-e",
        query,
    ])
    .ok()
    .stdout
    .trim()
    .to_string()
}

#[test]
fn mariadb_dump_under_load_restores_with_the_recorded_row_counts() {
    let env = TestEnv::new("maria-load");
    env.init();
    let (source, volume) = mariadb(&env, "maria", "root-pw-1");
    let mut setup = String::from(
        "CREATE TABLE shop.orders (id INT AUTO_INCREMENT PRIMARY KEY, note TEXT, data BLOB);\n\
         CREATE TABLE shop.empty_one (x INT);\n\
         CREATE TABLE shop.ticks (id INT AUTO_INCREMENT PRIMARY KEY, at TIMESTAMP DEFAULT CURRENT_TIMESTAMP);\n\
         CREATE USER 'clerk'@'%' IDENTIFIED BY 'clerk-pw';\n\
         GRANT SELECT, INSERT ON shop.* TO 'clerk'@'%';\n",
    );
    for i in 0..300 {
        setup.push_str(&format!(
            "INSERT INTO shop.orders (note, data) VALUES ('order {i}: it''s (really) \"quoted\"; ), (', 0x00{i:04x});\n"
        ));
    }
    docker_with_input(
        &[
            "exec",
            "-i",
            "-e",
            "MYSQL_PWD=root-pw-1",
            &source,
            "mariadb",
            "-uroot",
        ],
        &setup,
    )
    .ok();
    // Writes go on through the whole backup.
    docker(&[
        "exec",
        "-d",
        "-e",
        "MYSQL_PWD=root-pw-1",
        &source,
        "sh",
        "-c",
        "for i in $(seq 1 20000); do mariadb -uroot -e 'INSERT INTO shop.ticks () VALUES ()'; done",
    ])
    .ok();
    let ticked = || {
        maria_sql(&source, "root-pw-1", "SELECT COUNT(*) FROM shop.ticks")
            .parse::<u64>()
            .expect("a count")
    };
    wait_until("the inserts run", Duration::from_secs(60), || ticked() > 0);
    let before = ticked();

    let backup = env.lifeboat(&["backup", &volume, "--json"]).ok();
    assert!(!backup.stdout.contains("root-pw-1") && !backup.stderr.contains("root-pw-1"));
    let backup = backup.json();
    assert_eq!(backup["targets"][0]["strategy"], "dump");
    let id = backup["targets"][0]["snapshot"]["id"]
        .as_str()
        .expect("snapshot")
        .to_string();
    let path = format!("/volumes/{volume}/mariadb/lifeboat-manifest.json");
    let manifest: serde_json::Value = serde_json::from_str(
        &restic(&env.repo(), &env.password, &["dump", &id, &path])
            .ok()
            .stdout,
    )
    .expect("manifest");
    let tables = manifest["databases"][0]["tables"].clone();
    assert_eq!(manifest["databases"][0]["name"], "shop");
    assert_eq!(tables["orders"], 300, "{manifest}");
    assert_eq!(tables["empty_one"], 0, "{manifest}");
    let ticks = tables["ticks"].as_u64().expect("ticks counted");
    // The load was in flight: rows came between the count before the
    // backup and the dump's snapshot, and after it, while it ran.
    let after = ticked();
    assert!(
        before < ticks && ticks < after,
        "the inserts were not running around the dump: {before} before, {ticks} in the dump, {after} after"
    );

    let (fresh, _) = mariadb(&env, "maria-fresh", "root-pw-2");
    let report = env
        .lifeboat(&["restore", &id, "--into", &fresh, "--json"])
        .ok()
        .json();
    assert_eq!(
        report["databases"][0]["mismatches"]
            .as_array()
            .map(Vec::len),
        Some(0),
        "{report}"
    );
    // Judged without lifeboat.
    assert_eq!(
        maria_sql(&fresh, "root-pw-2", "SELECT COUNT(*) FROM shop.orders"),
        "300"
    );
    assert_eq!(
        maria_sql(&fresh, "root-pw-2", "SELECT COUNT(*) FROM shop.ticks"),
        ticks.to_string()
    );
    assert_eq!(
        maria_sql(
            &fresh,
            "root-pw-2",
            "SELECT HEX(data) FROM shop.orders WHERE id = 300"
        ),
        "00012B"
    );
    // The fresh server's root password still works; the clerk came back.
    assert!(maria_sql(&fresh, "root-pw-2", "SELECT user FROM mysql.user").contains("clerk"));
    docker(&[
        "exec",
        "-e",
        "MYSQL_PWD=clerk-pw",
        &fresh,
        "mariadb",
        "-uclerk",
        "-e",
        "SELECT 1 FROM shop.orders LIMIT 1",
    ])
    .ok();
    docker(&[
        "exec",
        "-e",
        "MYSQL_PWD=root-pw-2",
        &fresh,
        "sh",
        "-c",
        "mariadb-dump -uroot --all-databases > /dev/null",
    ])
    .ok();

    // On a new volume the server is a copy of the original: its root
    // password is the original one, whatever the new container says.
    let restored = format!("{volume}-new");
    env.adopt_volume(&restored);
    env.lifeboat(&["restore", &id, "--to", &restored, "--image", MARIADB])
        .ok();
    let on_new = env.database_on(
        "maria-on-new",
        MARIADB,
        &restored,
        "/var/lib/mysql",
        &["MARIADB_ROOT_PASSWORD=not-used-any-more"],
        &[],
    );
    assert_eq!(
        maria_sql(&on_new, "root-pw-1", "SELECT COUNT(*) FROM shop.orders"),
        "300"
    );
    let clerk = [
        "exec",
        "-e",
        "MYSQL_PWD=clerk-pw",
        &on_new,
        "mariadb",
        "-uclerk",
        "-e",
        "SELECT 1",
    ];
    docker(&clerk).ok();
}

const REDIS: &str = "lifeboat-test/redis:7";

fn redis_keys(container: &str) -> u64 {
    let info = docker(&["exec", container, "redis-cli", "INFO", "keyspace"])
        .ok()
        .stdout;
    info.lines()
        .filter_map(|l| {
            l.split(":keys=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

#[test]
fn redis_rdb_restores_into_an_append_only_container_and_survives_a_restart() {
    let env = TestEnv::new("redis");
    env.init();
    let (source, volume) = env.database("redis", REDIS, "/data", &[], &["--appendonly", "yes"]);
    let mut commands = String::new();
    for i in 0..1000 {
        commands.push_str(&format!("SET key:{i} value-{i}\n"));
    }
    commands.push_str("SELECT 3\nSET elsewhere 1\n");
    docker_with_input(&["exec", "-i", &source, "redis-cli"], &commands).ok();
    docker(&[
        "exec",
        "-d",
        &source,
        "sh",
        "-c",
        "i=0; while [ $i -lt 3000 ]; do redis-cli SET live:$i x > /dev/null; i=$((i+1)); done",
    ])
    .ok();
    wait_until("the writes run", Duration::from_secs(60), || {
        docker(&["exec", &source, "redis-cli", "EXISTS", "live:0"])
            .ok()
            .stdout
            .trim()
            == "1"
    });

    let backup = env.lifeboat(&["backup", &volume, "--json"]).ok().json();
    assert_eq!(backup["targets"][0]["strategy"], "dump");
    let id = backup["targets"][0]["snapshot"]["id"]
        .as_str()
        .expect("snapshot")
        .to_string();
    let path = format!("/volumes/{volume}/redis/lifeboat-manifest.json");
    let manifest: serde_json::Value = serde_json::from_str(
        &restic(&env.repo(), &env.password, &["dump", &id, &path])
            .ok()
            .stdout,
    )
    .expect("manifest");
    let keys = manifest["databases"][0]["keys"].as_u64().expect("keys");
    assert!(keys >= 1001, "{manifest}");
    let leftovers = docker(&["exec", &source, "sh", "-c", "ls -a /data"])
        .ok()
        .stdout;
    assert!(
        !leftovers.contains(".lifeboat-"),
        "the pinning link was left: {leftovers}"
    );

    let (fresh, _) = env.database("redis-fresh", REDIS, "/data", &[], &["--appendonly", "yes"]);
    docker(&["exec", &fresh, "redis-cli", "SET", "junk", "1"]).ok();
    let refused = env.lifeboat(&["restore", &id, "--into", &fresh]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert_eq!(redis_keys(&fresh), 1, "a refused restore changed the data");
    let report = env
        .lifeboat(&["restore", &id, "--into", &fresh, "--force", "--json"])
        .ok()
        .json();
    assert!(report["previous_content"]["id"].is_string(), "{report}");
    assert_eq!(report["databases"][0]["keys"], keys, "{report}");
    assert_eq!(redis_keys(&fresh), keys);
    assert_eq!(
        docker(&["exec", &fresh, "redis-cli", "EXISTS", "junk"])
            .ok()
            .stdout
            .trim(),
        "0"
    );
    docker(&["exec", &fresh, "redis-cli", "-n", "3", "GET", "elsewhere"]).ok();
    // The append-only file now holds the restored data.
    docker(&["restart", &fresh]).ok();
    wait_until("redis comes back", Duration::from_secs(30), || {
        docker(&["exec", &fresh, "redis-cli", "PING"]).stdout.trim() == "PONG"
    });
    assert_eq!(redis_keys(&fresh), keys);
    assert_eq!(
        docker(&["exec", &fresh, "redis-cli", "CONFIG", "GET", "appendonly"])
            .ok()
            .stdout
            .trim(),
        "appendonly\nyes"
    );

    // On a new volume, for a container that runs with the append-only file
    // on, as the original did.
    let restored = format!("{volume}-new");
    env.adopt_volume(&restored);
    env.lifeboat(&["restore", &id, "--to", &restored, "--image", REDIS])
        .ok();
    let on_new = env.database_on(
        "redis-on-new",
        REDIS,
        &restored,
        "/data",
        &[],
        &["--appendonly", "yes"],
    );
    assert_eq!(redis_keys(&on_new), keys);
}

/// The whole job on a mixed engine: `backup --all` with PostgreSQL,
/// MariaDB, Redis and a plain file volume, each restored afterwards.
#[test]
fn backup_all_of_a_mixed_engine_restores_each_volume() {
    let env = TestEnv::exclusive("all");
    env.init();
    let (pg, pg_volume) = postgres(&env, "pg", "pg-pw");
    docker(&[
        "exec", &pg, "pgbench", "-U", "shop", "-i", "-s", "1", "-q", "shopdb",
    ])
    .ok();
    let (maria, maria_volume) = mariadb(&env, "maria", "maria-pw");
    docker_with_input(
        &[
            "exec",
            "-i",
            "-e",
            "MYSQL_PWD=maria-pw",
            &maria,
            "mariadb",
            "-uroot",
        ],
        "CREATE TABLE shop.items (id INT PRIMARY KEY); INSERT INTO shop.items VALUES (1),(2),(3);",
    )
    .ok();
    let (redis, redis_volume) = env.database("redis", REDIS, "/data", &[], &[]);
    docker(&["exec", &redis, "redis-cli", "SET", "answer", "42"]).ok();
    let files = env.volume("files", &[]);
    env.busybox(&[format!("{files}:/v")], "echo kept > /v/note")
        .ok();
    env.container(
        "web",
        &["-v", &format!("{files}:/srv"), BUSYBOX_IMAGE, "true"],
        false,
    );

    let report = env.lifeboat(&["backup", "--all", "--json"]).json();
    let of = |name: &str| {
        report["targets"]
            .as_array()
            .expect("targets")
            .iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("{name} not backed up: {report}"))
            .clone()
    };
    for (volume, strategy) in [
        (&pg_volume, "dump"),
        (&maria_volume, "dump"),
        (&redis_volume, "dump"),
        (&files, "live"),
    ] {
        let t = of(volume);
        assert_eq!(t["strategy"], strategy, "{t}");
        assert!(
            t["error"].is_null() && t["snapshot"]["id"].is_string(),
            "{t}"
        );
    }

    let pg_new = format!("{pg_volume}-new");
    env.adopt_volume(&pg_new);
    env.lifeboat(&[
        "restore", "latest", "--volume", &pg_volume, "--to", &pg_new, "--image", POSTGRES,
    ])
    .ok();
    let on_new = env.database_on(
        "pg-new",
        POSTGRES,
        &pg_new,
        "/var/lib/postgresql/data",
        &["POSTGRES_USER=shop"],
        &[],
    );
    assert_eq!(
        sql(&on_new, "shopdb", "SELECT count(*) FROM pgbench_accounts"),
        "100000"
    );

    let (maria_fresh, _) = mariadb(&env, "maria-fresh", "other-pw");
    env.lifeboat(&[
        "restore",
        "latest",
        "--volume",
        &maria_volume,
        "--into",
        &maria_fresh,
    ])
    .ok();
    assert_eq!(
        maria_sql(&maria_fresh, "other-pw", "SELECT COUNT(*) FROM shop.items"),
        "3"
    );

    let redis_new = format!("{redis_volume}-new");
    env.adopt_volume(&redis_new);
    env.lifeboat(&[
        "restore",
        "latest",
        "--volume",
        &redis_volume,
        "--to",
        &redis_new,
        "--image",
        REDIS,
    ])
    .ok();
    let redis_on_new = env.database_on("redis-new", REDIS, &redis_new, "/data", &[], &[]);
    assert_eq!(
        docker(&["exec", &redis_on_new, "redis-cli", "GET", "answer"])
            .ok()
            .stdout
            .trim(),
        "42"
    );

    let files_new = format!("{files}-new");
    env.adopt_volume(&files_new);
    env.lifeboat(&["restore", "latest", "--volume", &files, "--to", &files_new])
        .ok();
    let note = env
        .busybox(&[format!("{files_new}:/v:ro")], "cat /v/note")
        .ok()
        .stdout;
    assert_eq!(note, "kept\n");
    restic(&env.repo(), &env.password, &["check", "--read-data"]).ok();
}

/// Images whose server runs as the child of something that stays PID 1: a
/// shell wrapper (as under su or gosu), and tini (as under `docker run
/// --init`). Made by `testing/build-images.sh`.
const POSTGRES_NOT_PID_1: [&str; 2] = [
    "lifeboat-test/postgres-wrapped:15",
    "lifeboat-test/postgres-tini:15",
];

#[test]
fn a_dump_restores_into_images_whose_server_is_not_pid_1() {
    let env = TestEnv::new("pg-wrapped");
    env.init();
    let (db, volume) = postgres(&env, "pg", "pw");
    sql(
        &db,
        "shopdb",
        "CREATE TABLE t AS SELECT generate_series(1, 1000) AS n",
    );
    let backup = env.lifeboat(&["backup", &volume, "--json"]).ok().json();
    let id = backup["targets"][0]["snapshot"]["id"]
        .as_str()
        .expect("a snapshot")
        .to_string();

    for (n, image) in POSTGRES_NOT_PID_1.into_iter().enumerate() {
        // Waiting for the server to be PID 1 timed out here after 180 s.
        let restored = format!("{volume}-wrapped{n}");
        env.adopt_volume(&restored);
        let started = Instant::now();
        let report = env
            .lifeboat(&[
                "restore", &id, "--to", &restored, "--image", image, "--json",
            ])
            .ok()
            .json();
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{image}: the restore waited {:?}",
            started.elapsed()
        );
        for d in report["databases"].as_array().expect("databases") {
            assert_eq!(d["mismatches"], serde_json::json!([]), "{image}: {d}");
        }
        let on_new = env.database_on(
            &format!("pg-on-new{n}"),
            image,
            &restored,
            "/var/lib/postgresql/data",
            &["POSTGRES_USER=shop", "POSTGRES_PASSWORD=unused"],
            &[],
        );
        let pid1 = docker(&["exec", &on_new, "cat", "/proc/1/comm"]).ok();
        assert_ne!(
            pid1.stdout.trim(),
            "postgres",
            "{image}: the server is PID 1"
        );
        assert_eq!(
            sql(&on_new, "shopdb", "SELECT count(*) FROM t"),
            "1000",
            "{image}"
        );
    }
}
