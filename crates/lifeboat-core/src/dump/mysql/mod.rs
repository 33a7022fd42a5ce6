//! MariaDB and MySQL: every user database with `mariadb-dump` (or
//! `mysqldump`) `--single-transaction --routines --events --triggers`, and
//! on MariaDB the accounts and grants with `--system=users`.
//!
//! The rows are counted from the dump stream itself as it passes on its way
//! into the repository: a count taken separately would see another moment
//! than the dump's own consistent snapshot. The counts therefore describe
//! exactly what the dump holds, however busy the server.

mod dump;
mod restore;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::tools::{self, DatabaseTools, DumpContext, RestoreContext, ServerStart};
use super::{
    CommandOpen, DatabaseDump, DumpManifest, DumpOpen, RestoredDatabase, Slot, Tap, run, shell,
};
use super::{Database, DumpFrom};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::progress::TransferProgress;
use crate::repo::source::SharedLog;

use dump::*;
use restore::*;

/// Runs the dump tool (`dump`) or the client (`client`) as root with the
/// root password from the container's own environment, preferring the
/// MariaDB names of the tools.
const WITH_CREDENTIALS: &str = r#"pw="${MARIADB_ROOT_PASSWORD:-${MYSQL_ROOT_PASSWORD:-}}"
if [ -z "$pw" ]; then
  f="${MARIADB_ROOT_PASSWORD_FILE:-${MYSQL_ROOT_PASSWORD_FILE:-}}"
  if [ -n "$f" ] && [ -r "$f" ]; then pw="$(cat "$f")"; fi
fi
if [ -n "$pw" ]; then export MYSQL_PWD="$pw"; fi
tool="$1"; shift
case "$tool" in
  dump) names="mariadb-dump mysqldump" ;;
  *) names="mariadb mysql" ;;
esac
for name in $names; do
  if command -v "$name" >/dev/null 2>&1; then exec "$name" --user=root "$@"; fi
done
echo "neither of $names is in the container" >&2
exit 127"#;

/// Databases that belong to the server, not to its users.
const SYSTEM_DATABASES: &[&str] = &["information_schema", "performance_schema", "sys", "mysql"];

/// The file that holds the user databases.
pub(crate) const DATABASES_FILE: &str = "databases.sql";

/// The file that holds accounts and grants (MariaDB only).
pub(crate) const USERS_FILE: &str = "users.sql";

fn client(args: &[&str]) -> Vec<String> {
    let mut all = vec!["client", "--batch", "--skip-column-names"];
    all.extend_from_slice(args);
    shell(WITH_CREDENTIALS, &all)
}

/// MariaDB's and MySQL's tools.
pub(crate) struct Mysql;

impl DatabaseTools for Mysql {
    fn prepare<'a>(&'a self, dump: DumpContext<'a>) -> BoxFuture<'a, Result<tools::Prepared>> {
        Box::pin(async move {
            let files = prepare(dump.engine, dump.from, dump.log, dump.progress).await?;
            Ok(tools::Prepared { files, after: None })
        })
    }

    fn holds<'a>(
        &'a self,
        engine: &'a Engine,
        container: &'a str,
        manifest: &'a DumpManifest,
    ) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(holds(engine, container, manifest))
    }

    fn restore_into<'a>(
        &'a self,
        r: RestoreContext<'a>,
    ) -> BoxFuture<'a, Result<Vec<RestoredDatabase>>> {
        Box::pin(restore_into(
            r.engine,
            r.container,
            r.manifest,
            r.files,
            r.only,
            r.fresh,
        ))
    }

    fn server_start(&self, _: &DumpManifest, password: &str) -> ServerStart {
        ServerStart {
            env: vec![
                format!("MARIADB_ROOT_PASSWORD={password}"),
                format!("MYSQL_ROOT_PASSWORD={password}"),
            ],
            args: Vec::new(),
            processes: &["mariadbd", "mysqld"],
            ready: "mariadb-admin ping --silent 2>/dev/null || mysqladmin ping --silent",
            ready_tcp: "mariadb-admin ping --silent --protocol=tcp -h 127.0.0.1 2>/dev/null || mysqladmin ping --silent --protocol=tcp -h 127.0.0.1",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "-- MariaDB dump\n\
-- Current Database: `app`\n\
CREATE DATABASE /*!32312 IF NOT EXISTS*/ `app`;\n\
USE `app`;\n\
CREATE TABLE `empty_t` (\n  `x` int(11) DEFAULT NULL\n);\n\
CREATE TABLE `odd``name` (\n  `x` int(11) DEFAULT NULL\n);\n\
INSERT INTO `odd``name` VALUES\n(1),\n(2);\n\
CREATE TABLE `t` (\n  `id` int(11) NOT NULL\n);\n\
INSERT INTO `t` VALUES\n(1,'it\\'s (a) \\\"quote\\\" ), x;',0x00FF28),\n(2,'line\\nbreak \\\\ (',NULL),\n(3,')),((',0x29);\n\
INSERT INTO `t` VALUES (4,'old style'),(5,'same line');\n\
DELIMITER ;;\n\
CREATE PROCEDURE `p`()\nBEGIN\nINSERT INTO `t` VALUES (99,'not a row');\nEND ;;\n\
DELIMITER ;\n\
USE `other`;\n\
INSERT INTO `t` VALUES (1);\n";

    fn count(dump: &str, piece: usize) -> Counts {
        let slot = Slot::new();
        let mut counter = RowCounter::new(slot.clone());
        for chunk in dump.as_bytes().chunks(piece) {
            counter.bytes(chunk);
        }
        counter.finish();
        slot.wait().expect("counts")
    }

    #[test]
    fn rows_are_counted_from_the_dump_stream() {
        for piece in [1, 3, 7, 64, 4096] {
            let counts = count(DUMP, piece);
            let get = |db: &str, t: &str| counts.get(&(db.to_string(), t.to_string())).copied();
            assert_eq!(get("app", "empty_t"), Some(0), "piece {piece}");
            assert_eq!(get("app", "odd`name"), Some(2), "piece {piece}");
            assert_eq!(get("app", "t"), Some(5), "piece {piece}");
            assert_eq!(get("other", "t"), Some(1), "piece {piece}");
            assert_eq!(counts.len(), 4, "piece {piece}: {counts:?}");
        }
    }

    #[test]
    fn an_abandoned_dump_has_no_counts() {
        let slot = Slot::new();
        let mut counter = RowCounter::new(slot.clone());
        counter.bytes(DUMP.as_bytes());
        counter.abandon();
        assert!(slot.wait().is_none());
    }

    #[test]
    fn only_new_accounts_are_restored() {
        let dump = "CREATE USER `root`@`localhost` IDENTIFIED BY PASSWORD '*79';\n\
CREATE USER `appuser`@`%` IDENTIFIED BY PASSWORD '*85';\n\
GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` IDENTIFIED BY PASSWORD '*79' WITH GRANT OPTION;\n\
GRANT PROXY ON ''@'%' TO 'root'@'localhost' WITH GRANT OPTION;\n\
GRANT ALL PRIVILEGES ON `app`.* TO `appuser`@`%`;\n\
/*M!100005 SET DEFAULT ROLE NONE FOR 'appuser'@'%' */;\n\
SET ROLE NONE;\n";
        let kept = keep_new_accounts(dump, |user, _| user != "root");
        assert!(!kept.contains("root"), "{kept}");
        assert!(kept.contains("CREATE USER `appuser`@`%`"));
        assert!(kept.contains("GRANT ALL PRIVILEGES ON `app`.* TO `appuser`@`%`"));
        assert!(kept.contains("SET DEFAULT ROLE NONE FOR 'appuser'@'%'"));
        assert!(kept.contains("SET ROLE NONE;"));
    }

    #[test]
    fn identifiers_round_trip() {
        assert_eq!(quoted(&quote("odd`name")), Some("odd`name".to_string()));
        assert_eq!(quote_string("it's \\"), "'it\\'s \\\\'");
    }
}
