//! Writing what a transaction changed: each task's row and replicas as they now are, the
//! ledger's new entries and end, the batches' kept counts and the runners' agreement counts,
//! a few multi-row statements in all, just before it commits.

use super::*;
use crate::rules::BatchDelta;

impl Store {
    /// Writes what the transaction changed. Returns whether work appeared (a task wants more
    /// replicas than before), for [`Store::commit`] to ring the bell; on PostgreSQL it then
    /// also notifies the other schedulers, when the transaction commits.
    pub(super) async fn flush(
        &self,
        tx: &mut Transaction<'static, Any>,
        p: Pending,
    ) -> Result<bool> {
        // Work appeared: a task wants more replicas, or, where a submitter has a quota of
        // leases out, a lease ended (it may have been at its quota).
        let quotas = self.quotas.load(std::sync::atomic::Ordering::Relaxed);
        let work = p.tasks.values().any(|t| {
            t.state.wanted > t.read.wanted || (quotas && t.state.leased() < t.read.leased())
        });
        if work {
            self.notify_work(tx).await?;
        }
        {
            // Accepted tasks' names are not needed before their results (a late report is
            // checked in its transaction); should this transaction roll back, the same.
            let mut held = self.group.names.lock().expect("not poisoned");
            for (id, t) in &p.tasks {
                if t.accepted.is_some() {
                    held.remove(id);
                }
            }
        }
        self.write_tasks(tx, &p).await?;
        self.write_replicas(tx, &p).await?;
        self.write_ledger(tx, &p).await?;
        self.write_batches(tx, &p).await?;
        self.write_reputation(tx, &p).await?;
        Ok(work)
    }

    /// The rows of tasks whose phase, wanted replicas or dispute changed, or that were
    /// accepted.
    async fn write_tasks(&self, tx: &mut Transaction<'static, Any>, p: &Pending) -> Result<()> {
        let mut tasks = Vec::new();
        for (id, t) in &p.tasks {
            let disputed = t.state.disputed() && !t.read.disputed();
            if t.state.phase != t.read.phase
                || t.state.wanted != t.read.wanted
                || disputed
                || t.accepted.is_some()
            {
                tasks.push((*id, &t.state, disputed, t.accepted.as_ref()));
            }
        }
        for chunk in tasks.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "UPDATE tasks SET phase = v.column2, wanted = v.column3, digest = v.column4, \
                 by_scheduler = v.column5, \
                 disputed = CASE WHEN v.column6 = 1 THEN 1 ELSE tasks.disputed END, \
                 result = COALESCE(v.column7, tasks.result), \
                 succeeded = COALESCE(v.column8, tasks.succeeded), \
                 accepted_ms = COALESCE(v.column9, tasks.accepted_ms), \
                 outputs_stored = CASE WHEN v.column10 = 1 THEN 1 ELSE tasks.outputs_stored END \
                 FROM (VALUES {}) AS v WHERE tasks.id = v.column1",
                placeholders(self.postgres, chunk.len(), 10)
            );
            let mut q = sqlx::query(&sql);
            for (id, state, disputed, accepted) in chunk {
                let (digest, by_scheduler) = match state.phase {
                    Phase::Accepted {
                        digest,
                        by_scheduler,
                    } => (Some(digest.to_string()), i64::from(by_scheduler)),
                    _ => (None, 0),
                };
                q = q
                    .bind(*id)
                    .bind(phase_name(state.phase))
                    .bind(i64::from(state.wanted))
                    .bind(digest)
                    .bind(by_scheduler)
                    .bind(i64::from(*disputed))
                    .bind(accepted.map(|a| a.result.clone()))
                    .bind(accepted.map(|a| i64::from(a.succeeded)))
                    .bind(accepted.map(|a| a.at))
                    .bind(i64::from(accepted.is_some_and(|a| a.outputs_stored)));
            }
            q.execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// The replicas leased, reported, expired or handed back, with the reports received.
    async fn write_replicas(&self, tx: &mut Transaction<'static, Any>, p: &Pending) -> Result<()> {
        let mut replicas = Vec::new();
        for (id, t) in &p.tasks {
            for (seq, replica) in t.state.replicas.iter().enumerate() {
                let signed = t.reports.iter().rev().find(|s| s.runner == replica.runner);
                if t.read.replicas.get(seq) == Some(replica) && signed.is_none() {
                    continue;
                }
                replicas.push((*id, seq, replica, signed));
            }
        }
        for chunk in replicas.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO replicas (task_id, runner_id, owner, lease_seq, state, deadline_ms, \
                 digest, report_seq, report, signature, reported_ms, wall_ms, weight) VALUES {} \
                 ON CONFLICT (task_id, runner_id) DO UPDATE SET state = excluded.state, \
                 digest = excluded.digest, report_seq = excluded.report_seq, \
                 report = COALESCE(excluded.report, replicas.report), \
                 signature = COALESCE(excluded.signature, replicas.signature), \
                 reported_ms = COALESCE(excluded.reported_ms, replicas.reported_ms), \
                 wall_ms = COALESCE(excluded.wall_ms, replicas.wall_ms)",
                placeholders(self.postgres, chunk.len(), 13)
            );
            let mut q = sqlx::query(&sql);
            for (id, seq, replica, signed) in chunk {
                let (state, deadline, digest, report_seq) = match replica.state {
                    ReplicaState::Leased { deadline_ms } => ("leased", deadline_ms, None, None),
                    ReplicaState::Reported { digest, seq } => (
                        "reported",
                        0,
                        digest.map(|d| d.to_string()),
                        Some(i64::from(seq)),
                    ),
                    ReplicaState::Expired => ("expired", 0, None, None),
                    ReplicaState::Returned => ("returned", 0, None, None),
                    ReplicaState::Withdrawn => ("withdrawn", 0, None, None),
                };
                q = q
                    .bind(*id)
                    .bind(replica.runner.as_str())
                    .bind(replica.owner.as_str())
                    .bind(*seq as i64)
                    .bind(state)
                    .bind(deadline)
                    .bind(digest)
                    .bind(report_seq)
                    .bind(signed.map(|s| s.report.clone()))
                    .bind(signed.map(|s| s.signature.clone()))
                    .bind(signed.map(|s| s.at))
                    .bind(signed.map(|s| s.wall_ms))
                    .bind(replica.weight.0);
            }
            q.execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// The ledger's new entries and its new end.
    async fn write_ledger(&self, tx: &mut Transaction<'static, Any>, p: &Pending) -> Result<()> {
        for chunk in p.ledger.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO ledger (seq, kind, batch_id, task, runner_id, owner, digest, fuel, \
                 micro_credits, prev, hash, created_ms) VALUES {}",
                placeholders(self.postgres, chunk.len(), 12)
            );
            let mut q = sqlx::query(&sql);
            for e in chunk {
                q = q
                    .bind(e.seq)
                    .bind(e.credit.kind.as_str())
                    .bind(e.credit.batch.as_str())
                    .bind(e.credit.task.as_str())
                    .bind(e.credit.runner.as_str())
                    .bind(e.credit.owner.as_str())
                    .bind(e.credit.digest.to_string())
                    .bind(e.credit.fuel as i64)
                    .bind(e.credit.micro_credits as i64)
                    .bind(e.prev.to_string())
                    .bind(e.hash.to_string())
                    .bind(e.at);
            }
            q.execute(&mut **tx).await?;
        }
        if let (Some(tail), false) = (&p.tail, p.ledger.is_empty()) {
            sqlx::query("UPDATE ledger_head SET len = $1, head = $2 WHERE id = 1")
                .bind(tail.len)
                .bind(tail.head.to_string())
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// Each batch's newly accepted tasks and credits, and its tasks that began or stopped
    /// running or deciding (see [`Store::batch_status`]), as [`BatchDelta`] counts them.
    async fn write_batches(&self, tx: &mut Transaction<'static, Any>, p: &Pending) -> Result<()> {
        let mut batches: BTreeMap<&str, BatchDelta> = BTreeMap::new();
        for t in p.tasks.values() {
            let succeeded = t.accepted.as_ref().map(|a| a.succeeded);
            let delta = batches.entry(t.info.batch_id.as_str()).or_default();
            delta.task(&t.read, &t.state, succeeded);
            if let Some(a) = &t.accepted
                && let Some(was) = a.replaces
            {
                delta.regraded(was, a.succeeded);
            }
        }
        for e in &p.ledger {
            let delta = batches.entry(e.credit.batch.as_str()).or_default();
            match e.credit.kind.reverses() {
                None => delta.credited(e.credit.micro_credits),
                Some(_) => delta.reversed(e.credit.micro_credits),
            }
        }
        let rows: Vec<_> = batches
            .into_iter()
            .filter(|(_, d)| *d != BatchDelta::default())
            .collect();
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "UPDATE batches SET accepted_ok = batches.accepted_ok + v.column2, \
                 accepted_failed = batches.accepted_failed + v.column3, \
                 micro_credits = batches.micro_credits + v.column4, \
                 running = batches.running + v.column5, \
                 deciding = batches.deciding + v.column6, \
                 cancelled = batches.cancelled + v.column7, \
                 leased = batches.leased + v.column8 \
                 FROM (VALUES {}) AS v WHERE batches.id = v.column1",
                placeholders(self.postgres, chunk.len(), 8)
            );
            let mut q = sqlx::query(&sql);
            for (batch, d) in chunk {
                q = q
                    .bind(*batch)
                    .bind(d.ok)
                    .bind(d.failed)
                    .bind(d.micro_credits)
                    .bind(d.running)
                    .bind(d.deciding)
                    .bind(d.cancelled)
                    .bind(d.leased);
            }
            q.execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// What the transaction adds to its runners' records.
    async fn write_reputation(
        &self,
        tx: &mut Transaction<'static, Any>,
        p: &Pending,
    ) -> Result<()> {
        let counts: Vec<_> = p.reputation.iter().collect();
        for chunk in counts.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "UPDATE runners SET agreements = runners.agreements + v.column2, \
                 disagreements = runners.disagreements + v.column3, \
                 spot_checks = runners.spot_checks + v.column4, \
                 returns = runners.returns + v.column5 \
                 FROM (VALUES {}) AS v WHERE runners.id = v.column1",
                placeholders(self.postgres, chunk.len(), 5)
            );
            let mut q = sqlx::query(&sql);
            for (runner, c) in chunk {
                q = q
                    .bind(runner.as_str())
                    .bind(c.agreements)
                    .bind(c.disagreements)
                    .bind(c.spot_checks)
                    .bind(c.returns);
            }
            q.execute(&mut **tx).await?;
        }
        Ok(())
    }
}
