//! Leasing: which tasks a runner gets, handing leases back, and ending those past their
//! deadline.

use super::*;
use crate::rules::{Asker, memory_free};

/// The tasks a runner may take a replica of: wanted, of its tier (`$1`, a rank) or below,
/// of a quorum above one unless it is trusted (`$2`, 1 or 0), and holding no replica of
/// its owner's (`$3`).
pub(super) const TAKEABLE: &str = "FROM tasks t WHERE t.wanted > 0 AND t.tier <= $1 \
     AND t.memory_bytes <= $4 \
     AND (t.quorum > 1 OR $2 = 1 OR EXISTS (SELECT 1 FROM batches b \
          WHERE b.id = t.batch_id AND b.target_error IS NOT NULL)) \
     AND NOT EXISTS (SELECT 1 FROM replicas r WHERE r.task_id = t.id AND r.owner = $3)";

/// Tasks a group's pool reads beyond what its runners may lease: for the requests whose
/// runners some of them do not fit, and to draw each request's tasks from more than it
/// takes (`Asker::choose`), so that no runner can tell which task it will get.
pub(super) const POOL_SPARE: i64 = 64;

/// A random seed for one lease request's draw.
pub(super) fn draw() -> Result<u64> {
    getrandom::u64().map_err(|e| StoreError::Corrupt(format!("no random seed for a lease: {e}")))
}

/// What leasing reads of a runner: its reputation, the leases it holds and whether it is
/// warm, as stored (this transaction's own changes are counted in from [`Pending`]).
#[derive(Debug, Clone)]
pub(super) struct LeasingRunner {
    pub(super) reputation: Reputation,
    pub(super) active: i64,
    pub(super) warm: bool,
    pub(super) check_after: i64,
    /// The `limits.memory_bytes` of the tasks it holds, together.
    pub(super) memory_leased: u64,
}

/// Reads [`LeasingRunner`]s: the columns, then `FROM runners r WHERE ...`.
pub(super) const LEASING_COLUMNS: &str = "SELECT r.id, r.agreements, r.disagreements, r.missed_deadlines, \
     r.spot_checks, r.returns, \
     (SELECT COUNT(*) FROM replicas WHERE runner_id = r.id AND state = 'leased'), r.warm, \
     r.check_after_ms, \
     (SELECT CAST(COALESCE(SUM(t.memory_bytes), 0) AS BIGINT) FROM replicas x \
      JOIN tasks t ON t.id = x.task_id \
      WHERE x.runner_id = r.id AND x.state = 'leased') FROM runners r";

/// Whether any of tasks `ids` (read into `p`) asks for credibility.
fn asks_credibility(p: &Pending, ids: &[i64]) -> bool {
    ids.iter()
        .any(|id| p.tasks.get(id).is_some_and(|t| t.state.need.is_some()))
}

/// A reputation from five columns from `first` on: agreements, disagreements, missed
/// deadlines, spot checks passed, leases handed back.
pub(super) fn reputation_at(row: &AnyRow, first: usize) -> Result<Reputation> {
    Ok(Reputation {
        agreements: row.try_get::<i64, _>(first)? as u64,
        disagreements: row.try_get::<i64, _>(first + 1)? as u64,
        missed_deadlines: row.try_get::<i64, _>(first + 2)? as u64,
        spot_checks: row.try_get::<i64, _>(first + 3)? as u64,
        returns: row.try_get::<i64, _>(first + 4)? as u64,
    })
}

pub(super) fn leasing_runner(row: &AnyRow) -> Result<(String, LeasingRunner)> {
    Ok((
        row.try_get(0)?,
        LeasingRunner {
            reputation: reputation_at(row, 1)?,
            active: row.try_get(6)?,
            warm: row.try_get::<i64, _>(7)? == 1,
            check_after: row.try_get(8)?,
            memory_leased: row.try_get::<i64, _>(9)?.max(0) as u64,
        },
    ))
}

impl Store {
    /// Leases up to `max` tasks to `runner` (never more than its free slots, one for a
    /// flagged runner), each until
    /// its wall-clock limit plus `grace_ms` from `now`.
    pub async fn lease(
        &self,
        runner: &RunnerRecord,
        max: u32,
        now: i64,
        grace_ms: i64,
    ) -> Result<Vec<Lease>> {
        let (reply, answer) = oneshot::channel();
        self.grouped(
            Job::Lease {
                runner: runner.clone(),
                max,
                now,
                grace_ms,
                reply,
            },
            answer,
        )
        .await
    }

    pub(super) async fn lease_in(
        &self,
        tx: &mut Transaction<'static, Any>,
        p: &mut Pending,
        runner: &RunnerRecord,
        max: u32,
        now: i64,
        grace_ms: i64,
    ) -> Result<Vec<Lease>> {
        // The runner's reputation as of now (the caller's record may be a moment old), and
        // how many leases it holds.
        let row = match p.runners.get(&runner.id) {
            Some(row) => row.clone(),
            None => {
                let row = sqlx::query(&format!("{LEASING_COLUMNS} WHERE r.id = $1"))
                    .bind(&runner.id)
                    .fetch_optional(&mut **tx)
                    .await?
                    .ok_or_else(|| StoreError::NotFound(format!("runner {}", runner.id)))?;
                leasing_runner(&row)?.1
            }
        };
        if self.policy.health_checks && !row.warm {
            return self.check_lease_in(tx, runner, row.check_after, now).await;
        }
        // What this transaction changed is not written yet: count it in.
        let conduct = p.reputation.get(&runner.id).copied().unwrap_or_default();
        let reputation = conduct.on(row.reputation);
        let weight = self.policy.credibility.weight(&reputation);
        let credible = asks_credibility(p, &p.pool.ids);
        let established_online = self.established_online(tx, p, weight, credible).await?;
        let asker = Asker {
            runner: &runner.id,
            owner: &runner.owner,
            tier: runner.tier,
            slots: runner.slots,
            reputation,
            active: (row.active + p.leases_gained(&runner.id)).max(0) as u32,
            weight,
            established_online,
        };
        let n = asker.wants(max);
        if n == 0 {
            return Ok(Vec::new());
        }
        self.shares_in(tx, p).await?;
        let draw = draw()?;
        let free = memory_free(runner.memory_bytes, row.memory_leased);
        let pooled = choose_from(p, (&asker, free), &p.pool.ids, n, draw);
        let ids = if pooled.len() == n as usize || p.pool.complete {
            pooled
        } else {
            self.candidates(tx, p, (&asker, free), n, draw).await?
        };
        let mut leases = Vec::with_capacity(ids.len());
        for id in ids {
            let (before, info) = self.load(tx, p, id).await?;
            let mut after = before;
            let deadline = crate::task::lease_deadline(now, info.wall_seconds, grace_ms);
            if after
                .lease_weighing(&runner.id, &runner.owner, weight, deadline)
                .is_err()
            {
                continue;
            }
            p.save(id, after, None);
            let manifest = info.manifest()?;
            let resume = match manifest.checkpoint {
                Some(_) => self.resume_in(tx, id, &runner.id).await?,
                None => None,
            };
            let lease = Lease {
                task_id: id,
                manifest,
                batch: info.batch_id.clone(),
                deadline_ms: deadline,
                resume,
            };
            self.remember_name(&lease);
            leases.push(lease);
        }
        Ok(leases)
    }

    /// Whether a runner of `weight`, choosing among tasks of which some ask for credibility
    /// (`credible`), should leave a newcomer's task to an established runner
    /// ([`Asker::may_take`]): it is no established runner itself, and an established runner
    /// is online (read once a transaction, and only then: a grid whose batches ask for no
    /// credibility never pays for it).
    pub(super) async fn established_online(
        &self,
        tx: &mut Transaction<'static, Any>,
        p: &mut Pending,
        weight: crate::credibility::Weight,
        credible: bool,
    ) -> Result<bool> {
        let policy = &self.policy.credibility;
        if policy.established(weight) {
            return Ok(true);
        }
        if !credible {
            // The rule is about tasks that ask for credibility: none here does.
            return Ok(false);
        }
        if let Some(known) = p.established_online {
            return Ok(known);
        }
        let online = sqlx::query(
            "SELECT 1 FROM runners WHERE online = 1 AND disagreements = 0 \
             AND agreements + spot_checks - missed_deadlines - returns >= $1 LIMIT 1",
        )
        .bind(policy.established_after() as i64)
        .fetch_optional(&mut **tx)
        .await?
        .is_some();
        p.established_online = Some(online);
        Ok(online)
    }

    /// Hands `runner`'s leases of `tasks` back; returns how many it held.
    pub async fn give_back(&self, runner: &str, tasks: &[TaskId], now: i64) -> Result<u32> {
        let mut tx = self.pool.begin().await?;
        let mut p = Pending::default();
        let tasks = tasks.iter().map(|t| t.get()).collect();
        let n = self.hand_back(&mut tx, &mut p, runner, tasks).await?;
        let work = self.flush(&mut tx, p).await?;
        if n > 0 {
            let detail = format!(
                "handed {n} leased task{} back",
                if n == 1 { "" } else { "s" }
            );
            event_in(&mut tx, runner, now, "handed back", &detail).await?;
        }
        self.commit(tx, work).await?;
        Ok(n)
    }

    /// Ends `runner`'s leases of `tasks` (unknown tasks and tasks it holds no lease of are
    /// passed over) and counts each on its record, in task order so that concurrent transactions never deadlock; returns
    /// how many it held.
    pub(super) async fn hand_back(
        &self,
        tx: &mut Transaction<'static, Any>,
        p: &mut Pending,
        runner: &str,
        mut tasks: Vec<i64>,
    ) -> Result<u32> {
        tasks.sort_unstable();
        tasks.dedup();
        let mut n = 0;
        for id in tasks {
            let mut state = match self.load(tx, p, id).await {
                Ok((state, _)) => state,
                Err(StoreError::NotFound(_)) => continue,
                Err(e) => return Err(e),
            };
            if state.give_back(runner).is_ok() {
                p.save(id, state, None);
                // A lease handed back costs a verified result (`Policy::verified`), so that
                // a runner cannot keep only the tasks it likes for free.
                p.reputation.entry(runner.to_string()).or_default().returns += 1;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Ends every lease past its deadline; returns how many ended.
    pub async fn expire(&self, now: i64) -> Result<u32> {
        let ids: Vec<i64> = sqlx::query(
            "SELECT DISTINCT task_id FROM replicas WHERE state = 'leased' AND deadline_ms < $1 \
             ORDER BY task_id LIMIT 1000",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
        let mut tx = self.pool.begin().await?;
        let mut p = Pending::default();
        self.fetch(&mut tx, &mut p, &ids).await?;
        let mut ended = 0;
        for id in ids {
            let (mut state, info) = self.load(&mut tx, &mut p, id).await?;
            let (missed, _) = state.expire(now);
            p.save(id, state, None);
            for runner in &missed {
                sqlx::query(
                    "UPDATE runners SET missed_deadlines = missed_deadlines + 1 WHERE id = $1",
                )
                .bind(runner)
                .execute(&mut *tx)
                .await?;
                let detail = format!(
                    "no result for task {} of batch {} by its deadline",
                    info.name, info.batch_id
                );
                event_in(&mut tx, runner, now, "missed deadline", &detail).await?;
                tracing::info!(
                    task = id,
                    runner,
                    "lease expired; the task goes to another runner"
                );
            }
            ended += missed.len() as u32;
        }
        let work = self.flush(&mut tx, p).await?;
        self.commit(tx, work).await?;
        Ok(ended)
    }
}
