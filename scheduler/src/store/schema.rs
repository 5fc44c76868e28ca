//! The schema: its migrations, applied in order at start-up and checked against their text, and
//! the planner statistics kept up to date on PostgreSQL.

use super::*;

/// One stored migration.
pub(super) struct Migration {
    pub(super) version: i64,
    pub(super) name: &'static str,
    pub(super) sql: &'static str,
}

pub(super) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "grid",
        sql: include_str!("../../migrations/0001_grid.sql"),
    },
    Migration {
        version: 2,
        name: "nodes and credits",
        sql: include_str!("../../migrations/0002_nodes_and_credits.sql"),
    },
    Migration {
        version: 3,
        name: "dashboard",
        sql: include_str!("../../migrations/0003_dashboard.sql"),
    },
    Migration {
        version: 4,
        name: "status indexes",
        sql: include_str!("../../migrations/0004_status_indexes.sql"),
    },
    Migration {
        version: 5,
        name: "batch counts",
        sql: include_str!("../../migrations/0005_batch_counts.sql"),
    },
    Migration {
        version: 6,
        name: "health checks",
        sql: include_str!("../../migrations/0006_health_checks.sql"),
    },
    Migration {
        version: 7,
        name: "batch progress",
        sql: include_str!("../../migrations/0007_batch_progress.sql"),
    },
    Migration {
        version: 8,
        name: "credibility",
        sql: include_str!("../../migrations/0008_credibility.sql"),
    },
    Migration {
        version: 9,
        name: "token lifetimes",
        sql: include_str!("../../migrations/0009_token_lifetimes.sql"),
    },
    Migration {
        version: 10,
        name: "owner accounts",
        sql: include_str!("../../migrations/0010_owner_accounts.sql"),
    },
    Migration {
        version: 11,
        name: "batch controls",
        sql: include_str!("../../migrations/0011_batch_controls.sql"),
    },
    Migration {
        version: 12,
        name: "task memory",
        sql: include_str!("../../migrations/0012_task_memory.sql"),
    },
    Migration {
        version: 13,
        name: "accepted index",
        sql: include_str!("../../migrations/0013_accepted_index.sql"),
    },
];

/// Whether a table of `live` rows, `changed` of them inserted, updated or deleted since it
/// was last analyzed, needs its statistics again: past a thousand changes and a tenth of
/// its rows (autovacuum's own rule is 50 and a tenth).
pub fn statistics_stale(live: i64, changed: i64) -> bool {
    changed > 1_000 + live / 10
}

impl Store {
    pub(super) async fn migrate(&self) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        if self.postgres {
            // Two schedulers starting at once migrate one after the other.
            sqlx::query("SELECT pg_advisory_xact_lock(7305141)")
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, \
             name TEXT NOT NULL, checksum TEXT NOT NULL, applied_ms BIGINT NOT NULL)",
        )
        .execute(&mut *tx)
        .await?;
        let applied: Vec<(i64, String)> =
            sqlx::query("SELECT version, checksum FROM schema_migrations ORDER BY version")
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect::<Result<_, sqlx::Error>>()?;
        for (version, checksum) in &applied {
            match MIGRATIONS.iter().find(|m| m.version == *version) {
                None => {
                    return Err(StoreError::Corrupt(format!(
                        "schema version {version}, newer than this scheduler knows; run a newer scheduler"
                    )));
                }
                Some(m) if Blake3Hash::of(m.sql.as_bytes()).to_string() != *checksum => {
                    return Err(StoreError::Corrupt(format!(
                        "schema migration {version} ({}) with another text than this scheduler's",
                        m.name
                    )));
                }
                Some(_) => {}
            }
        }
        for m in MIGRATIONS {
            if applied.iter().any(|(v, _)| *v == m.version) {
                continue;
            }
            sqlx::raw_sql(m.sql).execute(&mut *tx).await?;
            sqlx::query(
                "INSERT INTO schema_migrations (version, name, checksum, applied_ms) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(m.version)
            .bind(m.name)
            .bind(Blake3Hash::of(m.sql.as_bytes()).to_string())
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
            tracing::info!(
                version = m.version,
                name = m.name,
                "applied schema migration"
            );
        }
        tx.commit().await?;
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
