//! Which implementation of [`DatabaseTools`] serves which database: kept
//! apart from the interface and the database vocabulary, so that neither
//! depends on the engines' modules, which depend on both.

use super::Database;
use super::tools::DatabaseTools;

impl Database {
    /// The tools of this database engine.
    pub(crate) fn tools(self) -> &'static dyn DatabaseTools {
        match self {
            Self::Postgres => &super::postgres::Postgres,
            Self::Mariadb | Self::Mysql => &super::mysql::Mysql,
            Self::Redis => &super::redis::Redis,
        }
    }
}
