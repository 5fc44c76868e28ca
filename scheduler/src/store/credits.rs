//! Credits and the ledger: entries appended to the hash chain inside the transaction that earns
//! them, uptime credits, payouts, and the reads of them.

use super::*;
use crate::rules;

impl Store {
    /// Credits `runner` for an accepted task (its owner's part, and the cooperative fund's
    /// share when the policy sets one). Returns the owner's part.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn credit(
        &self,
        tx: &mut Transaction<'static, Any>,
        p: &mut Pending,
        info: &TaskInfo,
        state: &TaskState,
        runner: &str,
        result: &RunReport,
        now: i64,
    ) -> Result<u64> {
        let owner = match state.replicas.iter().find(|r| r.runner == runner) {
            Some(r) => r.owner.clone(),
            None => sqlx::query("SELECT owner FROM runners WHERE id = $1")
                .bind(runner)
                .fetch_one(&mut **tx)
                .await?
                .try_get(0)?,
        };
        let (own, fund) = rules::task_credit(
            result.fuel_consumed,
            info.credit_rate,
            self.policy.cooperative_share,
        );
        let mut credit = Credit {
            kind: Kind::Task,
            batch: info.batch_id.clone(),
            task: info.name.clone(),
            runner: runner.into(),
            owner,
            digest: result.digest,
            fuel: result.fuel_consumed,
            micro_credits: own,
        };
        self.append(tx, p, &credit, now).await?;
        if fund > 0 {
            credit.kind = Kind::Fund;
            credit.owner = self.policy.cooperative.clone();
            credit.micro_credits = fund;
            self.append(tx, p, &credit, now).await?;
        }
        Ok(own)
    }

    /// Takes back every credit (and the fund's share of it) `runner` was given for task
    /// `info`, by compensating entries; returns the micro-credits taken from its owner.
    pub(super) async fn reverse(
        &self,
        tx: &mut Transaction<'static, Any>,
        p: &mut Pending,
        info: &TaskInfo,
        runner: &str,
        now: i64,
    ) -> Result<u64> {
        let rows = sqlx::query(
            "SELECT kind, owner, digest, fuel, micro_credits FROM ledger WHERE batch_id = $1 \
             AND task = $2 AND runner_id = $3 AND kind IN ('task', 'fund') ORDER BY seq",
        )
        .bind(&info.batch_id)
        .bind(&info.name)
        .bind(runner)
        .fetch_all(&mut **tx)
        .await?;
        let mut taken = 0;
        for row in rows {
            let kind: String = row.try_get(0)?;
            let kind = Kind::parse(&kind)
                .and_then(Kind::reversal)
                .ok_or_else(|| StoreError::Corrupt(format!("a ledger entry of kind {kind:?}")))?;
            let credit = Credit {
                kind,
                batch: info.batch_id.clone(),
                task: info.name.clone(),
                runner: runner.to_string(),
                owner: row.try_get(1)?,
                digest: hash(&row.try_get::<String, _>(2)?)?,
                fuel: row.try_get::<i64, _>(3)? as u64,
                micro_credits: row.try_get::<i64, _>(4)? as u64,
            };
            if kind == Kind::Reversal {
                taken += credit.micro_credits;
            }
            self.append(tx, p, &credit, now).await?;
        }
        Ok(taken)
    }

    /// Appends `credit` to the ledger after the chain's end as this transaction sees it
    /// (read, and on PostgreSQL locked, at the first append); the entry is written with
    /// the transaction's other writes.
    pub(super) async fn append(
        &self,
        tx: &mut Transaction<'static, Any>,
        p: &mut Pending,
        credit: &Credit,
        now: i64,
    ) -> Result<()> {
        let tail = self.tail(tx, p).await?;
        let (seq, prev) = (tail.len, tail.head);
        let entry_hash = ledger::entry_hash(&prev, seq as u64, credit);
        *tail = LedgerTail {
            len: seq + 1,
            head: entry_hash,
        };
        p.ledger.push(LedgerRow {
            seq,
            credit: credit.clone(),
            prev,
            hash: entry_hash,
            at: now,
        });
        Ok(())
    }

    /// The ledger's end as this transaction sees it, read (and on PostgreSQL locked) once.
    pub(super) async fn tail<'p>(
        &self,
        tx: &mut Transaction<'static, Any>,
        p: &'p mut Pending,
    ) -> Result<&'p mut LedgerTail> {
        if p.tail.is_none() {
            let row = sqlx::query(&format!(
                "SELECT len, head FROM ledger_head WHERE id = 1{}",
                self.for_update()
            ))
            .fetch_one(&mut **tx)
            .await?;
            p.tail = Some(LedgerTail {
                len: row.try_get(0)?,
                head: hash(&row.try_get::<String, _>(1)?)?,
            });
        }
        Ok(p.tail.as_mut().expect("read above"))
    }

    /// Credits summed per `owner`, `runner` or `batch`, highest first. An owner's row
    /// counts everything it earned (tasks, the fund's shares, uptime) and what it was paid;
    /// a runner's its task and uptime credits; a batch's what its tasks earned in all.
    pub async fn credits(&self, by: &str) -> Result<Vec<CreditRow>> {
        let (column, kinds) = match by {
            "owner" => (
                "owner",
                "'task', 'fund', 'uptime', 'payout', 'reversal', 'fund_reversal'",
            ),
            "runner" => ("runner_id", "'task', 'uptime', 'reversal'"),
            "batch" => ("batch_id", "'task', 'fund', 'reversal', 'fund_reversal'"),
            other => {
                return Err(StoreError::Conflict(format!(
                    "credits by {other:?}: choose owner, runner or batch"
                )));
            }
        };
        let sum = |what: &str| format!("CAST(COALESCE(SUM({what}), 0) AS BIGINT)");
        sqlx::query(&format!(
            "SELECT {column}, {}, {}, {}, {} FROM ledger WHERE kind IN ({kinds}) \
             GROUP BY {column} ORDER BY 4 DESC, 1",
            sum("CASE WHEN kind IN ('task', 'fund') THEN 1 \
                 WHEN kind IN ('reversal', 'fund_reversal') THEN -1 ELSE 0 END"),
            sum("CASE WHEN kind = 'task' THEN fuel WHEN kind = 'reversal' THEN -fuel ELSE 0 END"),
            sum(
                "CASE WHEN kind IN ('task', 'fund', 'uptime') THEN micro_credits \
                 WHEN kind IN ('reversal', 'fund_reversal') THEN -micro_credits ELSE 0 END"
            ),
            sum("CASE WHEN kind = 'payout' THEN micro_credits ELSE 0 END"),
        ))
        .fetch_all(&self.reads)
        .await?
        .iter()
        .map(|r| {
            Ok(CreditRow {
                key: r.try_get(0)?,
                tasks: r.try_get::<i64, _>(1)? as u64,
                fuel: r.try_get::<i64, _>(2)? as u64,
                micro_credits: r.try_get::<i64, _>(3)? as u64,
                paid: r.try_get::<i64, _>(4)? as u64,
            })
        })
        .collect()
    }

    /// Credits every runner that is not flagged for its time online not yet credited, when
    /// it is at least the policy's minimum. Returns how many runners were credited.
    pub async fn credit_uptime(&self, now: i64) -> Result<u32> {
        let per_hour = self.policy.uptime_micro_per_hour;
        if per_hour == 0 {
            return Ok(0);
        }
        let mut tx = self.pool.begin().await?;
        let mut p = Pending::default();
        // Lock the ledger first: two rounds at once credit one after the other.
        self.tail(&mut tx, &mut p).await?;
        let rows = sqlx::query(
            "SELECT id, owner, uptime_credited_ms, uptime_ms FROM runners \
             WHERE uptime_ms - uptime_credited_ms >= $1 AND disagreements = 0 ORDER BY id",
        )
        .bind(self.policy.uptime_min_ms)
        .fetch_all(&mut *tx)
        .await?;
        let mut credited = 0;
        for row in rows {
            let runner: String = row.try_get(0)?;
            let (from, to): (i64, i64) = (row.try_get(2)?, row.try_get(3)?);
            let ms = (to - from) as u64;
            let micro_credits = rules::uptime_credit(ms, per_hour);
            let credit = Credit {
                kind: Kind::Uptime,
                batch: String::new(),
                task: format!("uptime {from}..{to} ms"),
                runner: runner.clone(),
                owner: row.try_get(1)?,
                digest: Blake3Hash::ZERO,
                fuel: ms,
                micro_credits,
            };
            self.append(&mut tx, &mut p, &credit, now).await?;
            sqlx::query("UPDATE runners SET uptime_credited_ms = $2 WHERE id = $1")
                .bind(&runner)
                .bind(to)
                .execute(&mut *tx)
                .await?;
            let detail = format!(
                "{} s online credited: {} micro-credits",
                ms / 1000,
                micro_credits
            );
            event_in(&mut tx, &runner, now, "uptime credit", &detail).await?;
            credited += 1;
        }
        let work = self.flush(&mut tx, p).await?;
        self.commit(tx, work).await?;
        Ok(credited)
    }

    /// Pays every owner whose balance (earned, less paid) is at least `threshold`
    /// micro-credits its whole balance: one payout entry each, in one transaction.
    pub async fn pay_out(&self, threshold: u64, now: i64) -> Result<Vec<Payout>> {
        let mut tx = self.pool.begin().await?;
        let mut p = Pending::default();
        // Lock the ledger before reading balances, so that two rounds never pay one balance
        // twice: the second waits, then sees the first's payouts.
        self.tail(&mut tx, &mut p).await?;
        let rows = sqlx::query(
            "SELECT owner, CAST(SUM(CASE WHEN kind IN ('payout', 'reversal', 'fund_reversal') \
             THEN -micro_credits ELSE micro_credits END) AS BIGINT) FROM ledger \
             GROUP BY owner ORDER BY owner",
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut payouts = Vec::new();
        for row in rows {
            let owner: String = row.try_get(0)?;
            let Some(balance) = rules::payout(row.try_get(1)?, threshold) else {
                continue;
            };
            let seq = self.tail(&mut tx, &mut p).await?.len as u64;
            let credit = Credit {
                kind: Kind::Payout,
                batch: String::new(),
                task: format!("payout {seq}"),
                runner: String::new(),
                owner: owner.clone(),
                digest: Blake3Hash::ZERO,
                fuel: 0,
                micro_credits: balance,
            };
            self.append(&mut tx, &mut p, &credit, now).await?;
            payouts.push(Payout {
                seq,
                owner,
                micro_credits: balance,
                at_ms: now,
            });
        }
        let work = self.flush(&mut tx, p).await?;
        self.commit(tx, work).await?;
        Ok(payouts)
    }

    /// Every payout so far, oldest first.
    pub async fn payouts(&self) -> Result<Vec<Payout>> {
        sqlx::query(
            "SELECT seq, owner, micro_credits, created_ms FROM ledger WHERE kind = 'payout' \
             ORDER BY seq",
        )
        .fetch_all(&self.reads)
        .await?
        .iter()
        .map(|r| {
            Ok(Payout {
                seq: r.try_get::<i64, _>(0)? as u64,
                owner: r.try_get(1)?,
                micro_credits: r.try_get::<i64, _>(2)? as u64,
                at_ms: r.try_get(3)?,
            })
        })
        .collect()
    }

    /// The whole ledger in order, and its anchor (length and head hash), both as of one
    /// moment while the grid may be appending: read in one transaction that sees one
    /// snapshot (on PostgreSQL `REPEATABLE READ`; read apart, a commit between the two reads
    /// made a sound ledger fail `verify`).
    pub async fn ledger(&self) -> Result<(Vec<Entry>, u64, Blake3Hash)> {
        let mut tx = self.reads.begin().await?;
        if self.postgres {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *tx)
                .await?;
        }
        let head = sqlx::query("SELECT len, head FROM ledger_head WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?;
        let entries = sqlx::query(
            "SELECT seq, batch_id, task, runner_id, owner, digest, fuel, micro_credits, prev, \
             hash, kind FROM ledger ORDER BY seq",
        )
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| {
            let kind: String = r.try_get(10)?;
            Ok(Entry {
                seq: r.try_get::<i64, _>(0)? as u64,
                credit: Credit {
                    kind: Kind::parse(&kind).ok_or_else(|| {
                        StoreError::Corrupt(format!("a ledger entry of kind {kind:?}"))
                    })?,
                    batch: r.try_get(1)?,
                    task: r.try_get(2)?,
                    runner: r.try_get(3)?,
                    owner: r.try_get(4)?,
                    digest: hash(&r.try_get::<String, _>(5)?)?,
                    fuel: r.try_get::<i64, _>(6)? as u64,
                    micro_credits: r.try_get::<i64, _>(7)? as u64,
                },
                prev: hash(&r.try_get::<String, _>(8)?)?,
                hash: hash(&r.try_get::<String, _>(9)?)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
        tx.commit().await?;
        Ok((
            entries,
            head.try_get::<i64, _>(0)? as u64,
            hash(&head.try_get::<String, _>(1)?)?,
        ))
    }

    /// Tasks credited to `runner` and the micro-credits it earned (tasks and time online).
    pub async fn runner_totals(&self, runner: &str) -> Result<(u64, u64)> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(CASE WHEN kind = 'task' THEN 1 \
             WHEN kind = 'reversal' THEN -1 ELSE 0 END), 0) AS BIGINT), \
             CAST(COALESCE(SUM(CASE WHEN kind = 'reversal' THEN -micro_credits \
             ELSE micro_credits END), 0) AS BIGINT) FROM ledger \
             WHERE runner_id = $1 AND kind IN ('task', 'uptime', 'reversal')",
        )
        .bind(runner)
        .fetch_one(&self.reads)
        .await?;
        Ok((
            row.try_get::<i64, _>(0)? as u64,
            row.try_get::<i64, _>(1)? as u64,
        ))
    }
}
