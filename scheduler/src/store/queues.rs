//! The queues leases are served from: the batches that may be given work, what each
//! submitter is granted and has out ([`Shares`], read once a transaction), and the tasks a
//! lease is drawn from, read queue by queue in the order fair share serves them.

use super::*;
use crate::rules::{Asker, Offer};
use crate::share::{Grant, Queue, Shares};

/// How long grants read from the database are used before they are read again.
const GRANTS_HELD_FOR: std::time::Duration = std::time::Duration::from_secs(5);

/// The batches not yet finished (see the `batches_unfinished` index): `FROM batches WHERE`.
const UNFINISHED: &str = "accepted_ok + accepted_failed + cancelled < tasks";

/// Extra tasks read from a queue beyond the `k` leases planned from it: enough that the
/// draw has more to pick from than it takes, and for runners that may not take some.
fn spare(k: u32) -> i64 {
    i64::from(k).clamp(8, POOL_SPARE)
}

impl Store {
    /// The queues, grants and leases out, as committed: the active batches not finished,
    /// and each submitter's leases out over every unfinished batch (paused ones' too).
    pub(super) async fn read_shares<'e, E>(&self, conn: E) -> Result<Shares>
    where
        E: Executor<'e, Database = Any>,
    {
        let grants = self.grants().await?;
        let rows = sqlx::query(&format!(
            "SELECT id, submitted_by, priority, created_ms, leased, state FROM batches \
             WHERE {UNFINISHED}"
        ))
        .fetch_all(conn)
        .await?;
        let mut queues = Vec::new();
        let mut running: BTreeMap<String, u64> = BTreeMap::new();
        for row in rows {
            let submitter: String = row.try_get(1)?;
            *running.entry(submitter.clone()).or_default() +=
                row.try_get::<i64, _>(4)?.max(0) as u64;
            if row.try_get::<String, _>(5)? == "active" {
                queues.push(Queue {
                    batch: row.try_get(0)?,
                    submitter,
                    priority: row.try_get(2)?,
                    since_ms: row.try_get(3)?,
                });
            }
        }
        Ok(Shares::new(queues, &grants, &running))
    }

    /// The operators' grants: read from the database at most every
    /// [`GRANTS_HELD_FOR`] (another process, `scheduler submitter`, may change them),
    /// and at once after this store changed one.
    pub(super) async fn grants(&self) -> Result<Arc<BTreeMap<String, Grant>>> {
        if let Some((at, held)) = &*self.grants.lock().expect("not poisoned")
            && at.elapsed() < GRANTS_HELD_FOR
        {
            return Ok(held.clone());
        }
        let grants: BTreeMap<String, Grant> = self
            .submitter_grants()
            .await?
            .into_iter()
            .map(|g| {
                let grant = Grant {
                    share: g.share,
                    max_running: g.max_running,
                };
                (g.name, grant)
            })
            .collect();
        let limited = grants.values().any(|g| g.max_running.is_some());
        self.quotas
            .store(limited, std::sync::atomic::Ordering::Relaxed);
        let grants = Arc::new(grants);
        *self.grants.lock().expect("not poisoned") =
            Some((std::time::Instant::now(), grants.clone()));
        Ok(grants)
    }

    /// Reads the shares into `p` unless it holds them, counting in the leases this
    /// transaction already made or ended.
    pub(super) async fn shares_in(
        &self,
        tx: &mut Transaction<'static, Any>,
        p: &mut Pending,
    ) -> Result<()> {
        if p.shares.is_some() {
            return Ok(());
        }
        let mut shares = self.read_shares(&mut **tx).await?;
        for t in p.tasks.values() {
            let by = i64::from(t.state.leased()) - i64::from(t.read.leased());
            shares.count(&t.info.batch_id, by);
        }
        p.shares = Some(shares);
        Ok(())
    }

    /// Reads (into `p`) the tasks a group's leases will most likely go to: of the queues
    /// fair share would serve `jobs`' leases from, the lowest-id tasks that want a replica,
    /// of a tier one of the group's runners may run, as many as planned from each and a few
    /// more; so that each lease request picks its tasks from memory instead of a query of its
    /// own. What a runner may take of them (its tier, its trust, no second replica for an
    /// owner) is decided per request; a request the pool cannot fill queries for itself,
    /// unless the pool holds every task of every queue that wants a replica.
    pub(super) async fn pool(
        &self,
        tx: &mut Transaction<'static, Any>,
        p: &mut Pending,
        jobs: &[Job],
    ) -> Result<()> {
        let mut wanted = 0u32;
        let mut tier = None;
        for job in jobs {
            let (runner, max, reported) = match job {
                Job::Lease { runner, max, .. } => (runner, *max, 0),
                Job::Report {
                    runner,
                    results,
                    lease: Some((max, _)),
                    ..
                } => (runner, *max, results.len() as i64),
                Job::Report { .. } => continue,
            };
            let Some(row) = p.runners.get(&runner.id) else {
                continue;
            };
            if self.policy.health_checks && !row.warm {
                continue;
            }
            // What it may lease once the results in its own request free their slots; a
            // request this undercounts (its runner unflagged by this group, say) queries
            // for itself.
            let asker = Asker {
                runner: &runner.id,
                owner: &runner.owner,
                tier: runner.tier,
                slots: runner.slots,
                reputation: row.reputation,
                active: (row.active - reported).max(0) as u32,
                weight: crate::credibility::Weight(0),
                established_online: false,
            };
            wanted = wanted.saturating_add(asker.wants(max));
            tier = tier.max(Some(tier_rank(runner.tier)));
        }
        let Some(tier) = tier.filter(|_| wanted > 0) else {
            return Ok(());
        };
        self.shares_in(tx, p).await?;
        let shares = p.shares.take().expect("shares read");
        let n = shares.queues().len();
        // Per queue: the tasks read, and whether that was all it has (None: not read).
        let mut read: Vec<Vec<i64>> = vec![Vec::new(); n];
        let mut all: Vec<Option<bool>> = vec![None; n];
        let result = async {
            loop {
                // Plan with what is known of each queue's work; read where the plan asks
                // for more than was read.
                let mut left: Vec<Option<u64>> = (0..n)
                    .map(|q| (all[q] == Some(true)).then_some(read[q].len() as u64))
                    .collect();
                let plan = shares.plan(wanted, &mut shares.tally(), &mut left);
                let short: Vec<(usize, u32)> = plan
                    .into_iter()
                    .filter(|&(q, k)| all[q] != Some(true) && (read[q].len() as u64) < u64::from(k))
                    .collect();
                if short.is_empty() {
                    break;
                }
                for (q, k) in short {
                    let limit = i64::from(k) + spare(k);
                    let ids = self
                        .wanted_of(tx, &shares.queues()[q].batch, tier, limit)
                        .await?;
                    all[q] = Some((ids.len() as i64) < limit);
                    read[q] = ids;
                }
            }
            Ok::<_, StoreError>(())
        }
        .await;
        p.shares = Some(shares);
        result?;
        let mut ids: Vec<i64> = read.into_iter().flatten().collect();
        ids.sort_unstable();
        p.pool.complete = all.iter().all(|a| *a == Some(true));
        self.fetch(tx, p, &ids).await?;
        p.pool.ids = ids;
        Ok(())
    }

    /// Up to `limit` of `batch`'s tasks that want a replica, of tier `tier` or below, lowest
    /// id first (on PostgreSQL those no other transaction holds).
    async fn wanted_of(
        &self,
        tx: &mut Transaction<'static, Any>,
        batch: &str,
        tier: i64,
        limit: i64,
    ) -> Result<Vec<i64>> {
        Ok(sqlx::query(&format!(
            "SELECT t.id FROM tasks t WHERE t.batch_id = $1 AND t.wanted > 0 AND t.tier <= $2 \
             ORDER BY t.id LIMIT $3{}",
            self.skip_locked()
        ))
        .bind(batch)
        .bind(tier)
        .bind(limit)
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?)
    }

    /// Up to `n` tasks `runner` may lease, drawn by `draw` as fair share serves them from
    /// the lowest-id ones it may take of each queue (read from the database, and fetched
    /// into `p`): the leasing of a runner the group's pool did not serve. The queues fair
    /// share would serve `n` leases from are read first, then the others in the order it
    /// would serve them, until there is enough to draw from.
    pub(super) async fn candidates(
        &self,
        tx: &mut Transaction<'static, Any>,
        p: &mut Pending,
        (asker, free): (&Asker<'_>, u64),
        n: u32,
        draw: u64,
    ) -> Result<Vec<i64>> {
        self.shares_in(tx, p).await?;
        // Tasks this transaction changed still look wanted in the database: ask for as many
        // more, and pass over those it already gave away.
        let stale = p.tasks.values().filter(|t| t.read.wanted > 0).count() as i64;
        let shares = p.shares.take().expect("shares read");
        let queues = shares.queues().len();
        let mut order: Vec<usize> = shares
            .plan(n, &mut shares.tally(), &mut vec![None; queues])
            .into_iter()
            .map(|(q, _)| q)
            .collect();
        let tally = shares.tally();
        let mut candidates = Vec::new();
        let result = async {
            let mut i = 0;
            loop {
                // The planned queues, then the others, best served first.
                if i == order.len() {
                    match shares.next(&tally, |q| !order.contains(&q)) {
                        Some(q) => order.push(q),
                        None => break,
                    }
                }
                let q = order[i];
                i += 1;
                let ids: Vec<i64> = sqlx::query(&format!(
                    "SELECT t.id {TAKEABLE} AND t.batch_id = $6 ORDER BY t.id LIMIT $5{}",
                    self.skip_locked()
                ))
                .bind(tier_rank(asker.tier))
                .bind(i64::from(asker.reputation.trusted()))
                .bind(asker.owner)
                .bind(sql_bytes(free))
                .bind(i64::from(n) + stale + POOL_SPARE)
                .bind(&shares.queues()[q].batch)
                .fetch_all(&mut **tx)
                .await?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<Result<_, _>>()?;
                candidates.extend(ids);
                if candidates.len() as i64 >= i64::from(n) + stale + POOL_SPARE {
                    break;
                }
            }
            Ok::<_, StoreError>(())
        }
        .await;
        p.shares = Some(shares);
        result?;
        // Those this transaction changed are judged as they now are; the others as read.
        self.fetch(tx, p, &candidates).await?;
        // These may ask for credibility where the pool's did not.
        let credible = candidates
            .iter()
            .any(|id| p.tasks.get(id).is_some_and(|t| t.state.need.is_some()));
        let asker = Asker {
            established_online: self
                .established_online(tx, p, asker.weight, credible)
                .await?,
            ..*asker
        };
        Ok(choose_from(p, (&asker, free), &candidates, n, draw))
    }

    /// Whether `runner`, whose lease request just found nothing, may have missed work
    /// another transaction held: on PostgreSQL a lease passes over tasks locked by a
    /// concurrent one (`SKIP LOCKED`), which may commit with some of them still wanted and
    /// ring no bell, so the request must not wait for one. Reads without locks, outside any
    /// transaction, of the queues whose submitter is below its quota. On SQLite (one
    /// writer) a lease that found nothing missed nothing.
    pub async fn passed_over_work(&self, runner: &RunnerRecord) -> Result<bool> {
        if !self.postgres {
            return Ok(false);
        }
        let shares = self.read_shares(&self.reads).await?;
        let tally = shares.tally();
        let open: Vec<&str> = (0..shares.queues().len())
            .filter(|&q| shares.below_quota(&tally, q))
            .map(|q| shares.queues()[q].batch.as_str())
            .collect();
        for chunk in open.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "SELECT 1 {TAKEABLE} AND t.batch_id IN ({}) LIMIT 1",
                params(true, 5, chunk.len())
            );
            let mut query = sqlx::query(&sql)
                .bind(tier_rank(runner.tier))
                .bind(i64::from(runner.reputation.trusted()))
                .bind(&runner.owner)
                // Its memory, as if it held nothing: a hint, not a lease.
                .bind(sql_bytes(crate::rules::memory_free(runner.memory_bytes, 0)));
            for batch in chunk {
                query = query.bind(*batch);
            }
            if query.fetch_optional(&self.reads).await?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// `bytes` as SQL compares it: an `i64`, `u64::MAX` (no limit) as `i64::MAX`.
fn sql_bytes(bytes: u64) -> i64 {
    bytes.min(i64::MAX as u64) as i64
}

/// `n` of `ids` (read into `p`) that `asker`, with `free` bytes of memory for new leases, may
/// take, as fair share serves them and as many as fit in `free` together
/// ([`Asker::choose_within`]); tasks of no queue (a batch paused or cancelled since they
/// were read) are passed over.
pub(super) fn choose_from(
    p: &Pending,
    (asker, free): (&Asker<'_>, u64),
    ids: &[i64],
    n: u32,
    draw: u64,
) -> Vec<i64> {
    let Some(shares) = p.shares.as_ref() else {
        return Vec::new();
    };
    let offers = ids.iter().filter_map(|id| {
        let t = p.tasks.get(id)?;
        Some(Offer {
            id: *id,
            queue: shares.queue(&t.info.batch_id)?,
            tier: t.info.tier,
            memory: t.info.memory_bytes,
            state: &t.state,
        })
    });
    asker.choose_within(offers, n, draw, shares, free)
}
