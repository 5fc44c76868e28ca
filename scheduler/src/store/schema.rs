//! The schema: its migrations, applied in order at start-up by sqlx's migrator and checked
//! against their text, and the planner statistics kept up to date on PostgreSQL.

use sqlx::migrate::{Migrate, MigrateError, Migrator};

use super::*;

/// The schema's migrations, `scheduler/migrations/NNNN_name.sql`, embedded in the binary.
pub(super) static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// A migration's failure, saying what the operator can do about it.
fn migrate_error(e: MigrateError) -> StoreError {
    match e {
        MigrateError::Execute(e) => e.into(),
        MigrateError::VersionMissing(v) => StoreError::Corrupt(format!(
            "schema version {v}, newer than this scheduler knows; run a newer scheduler"
        )),
        MigrateError::VersionMismatch(v) => StoreError::Corrupt(format!(
            "schema migration {v} with another text than this scheduler's"
        )),
        MigrateError::Dirty(v) => StoreError::Corrupt(format!(
            "schema migration {v} was left half applied; restore the database from a backup"
        )),
        other => StoreError::Corrupt(format!("cannot bring the schema up to date: {other}")),
    }
}

/// Whether a table of `live` rows, `changed` of them inserted, updated or deleted since it
/// was last analyzed, needs its statistics again: past a thousand changes and a tenth of
/// its rows (autovacuum's own rule is 50 and a tenth).
pub fn statistics_stale(live: i64, changed: i64) -> bool {
    changed > 1_000 + live / 10
}

impl Store {
    /// Brings the schema up to date with sqlx's migrator ([`MIGRATOR`]): each migration not
    /// yet applied, in order, in a transaction of its own, under PostgreSQL's advisory lock
    /// when schedulers start together. A database with a migration this scheduler does not
    /// have, or with another text for one it has, is refused.
    pub(super) async fn migrate(&self) -> Result<()> {
        self.adopt_old_migrations().await?;
        MIGRATOR.run(&self.pool).await.map_err(migrate_error)
    }

    /// Databases made before the scheduler used sqlx's migrator listed their applied
    /// migrations in `schema_migrations`, each with the BLAKE3 of its text. Each is checked
    /// against the text embedded here, as before, and recorded as applied in sqlx's
    /// `_sqlx_migrations`, and the old table is dropped, in one transaction. A scheduler too old
    /// to know `_sqlx_migrations` then finds no record of its own, tries the first migration
    /// again and stops, rather than running on a schema it does not know.
    async fn adopt_old_migrations(&self) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        if self.postgres {
            // Two schedulers starting at once adopt one after the other.
            sqlx::query("SELECT pg_advisory_xact_lock(7305141)")
                .execute(&mut *tx)
                .await?;
        }
        let exists = if self.postgres {
            "SELECT 1 FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name = 'schema_migrations'"
        } else {
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
        };
        if sqlx::query(exists)
            .fetch_optional(&mut *tx)
            .await?
            .is_none()
        {
            return Ok(());
        }
        let applied: Vec<(i64, String)> =
            sqlx::query("SELECT version, checksum FROM schema_migrations ORDER BY version")
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect::<Result<_, sqlx::Error>>()?;
        tx.ensure_migrations_table().await.map_err(migrate_error)?;
        for (version, checksum) in &applied {
            let Some(m) = MIGRATOR.iter().find(|m| m.version == *version) else {
                return Err(migrate_error(MigrateError::VersionMissing(*version)));
            };
            if Blake3Hash::of(m.sql.as_bytes()).to_string() != *checksum {
                return Err(migrate_error(MigrateError::VersionMismatch(*version)));
            }
            sqlx::query(
                "INSERT INTO _sqlx_migrations (version, description, success, checksum, \
                 execution_time) VALUES ($1, $2, TRUE, $3, 0)",
            )
            .bind(m.version)
            .bind(m.description.to_string())
            .bind(m.checksum.to_vec())
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("DROP TABLE schema_migrations")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(
            migrations = applied.len(),
            "adopted the applied schema migrations into sqlx's migration table"
        );
        Ok(())
    }

    /// PostgreSQL only: brings the planner's statistics up to date for each table that grows
    /// with the grid's work and has changed by more than [`statistics_stale`] allows since it
    /// was last analyzed; returns the tables analyzed. Without statistics (a fresh database,
    /// before autovacuum's first visit, or a server with autovacuum off) PostgreSQL planned
    /// the group read's join of tasks with their replicas as a sequential scan of every
    /// replica, 28 ms a group at 100,000 tasks instead of 0.1 ms.
    pub async fn keep_statistics(&self) -> Result<Vec<String>> {
        if !self.postgres {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT CAST(relname AS TEXT), n_live_tup, n_mod_since_analyze \
             FROM pg_stat_user_tables \
             WHERE schemaname = current_schema() AND relname IN \
               ('tasks', 'replicas', 'ledger', 'health_checks', 'wanted_blobs') \
             ORDER BY relname",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut analyzed = Vec::new();
        for row in rows {
            let (table, live, changed): (String, i64, i64) =
                (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
            if statistics_stale(live, changed) {
                // SKIP_LOCKED: a table autovacuum is working on now is left to it.
                sqlx::query(&format!("ANALYZE (SKIP_LOCKED) {table}"))
                    .execute(&self.pool)
                    .await?;
                analyzed.push(table);
            }
        }
        Ok(analyzed)
    }
}
