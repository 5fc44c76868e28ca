//! The grid over time, for the dashboard's charts: tasks accepted minute by minute, a
//! batch's tasks accepted since it was submitted, owners' credits since the first one. Each
//! read groups rows into buckets in the database, so what it returns does not grow with the
//! grid; [`cumulative`] and [`per_bucket`] turn the buckets into series.

use super::*;

/// Counts per bucket (`bucket`, `count`), read from two columns of `rows`.
fn buckets(rows: &[AnyRow]) -> Result<Vec<(i64, i64)>> {
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

/// `points` buckets' counts, bucket 0 first; counts outside `0..points` are dropped.
pub fn per_bucket(counts: &[(i64, i64)], points: usize) -> Vec<u64> {
    let mut series = vec![0u64; points];
    for &(bucket, count) in counts {
        if let Some(slot) = usize::try_from(bucket).ok().and_then(|b| series.get_mut(b)) {
            *slot += count.max(0) as u64;
        }
    }
    series
}

/// The running total of `counts` (which may be negative: credits reversed) over `points`
/// buckets: point `i` counts everything in buckets `0..=i` (earlier buckets, below 0, count
/// from the start; later ones, at or past `points`, in the last point), never below 0.
pub fn cumulative(counts: &[(i64, i64)], points: usize) -> Vec<u64> {
    let last = points.saturating_sub(1) as i64;
    let mut net = vec![0i64; points];
    for &(bucket, count) in counts {
        if let Some(slot) = net.get_mut(bucket.clamp(0, last) as usize) {
            *slot += count;
        }
    }
    let mut total = 0i64;
    net.into_iter()
        .map(|n| {
            total += n;
            total.max(0) as u64
        })
        .collect()
}

/// The bucket of a time column: `(column - from) * points / span`, as SQL computes it.
fn bucket_of(column: &str, from: i64, span: i64, points: usize) -> String {
    format!("(({column} - {from}) * {points} / {span})")
}

impl Store {
    /// Tasks accepted in each of the `minutes` minutes up to `now`, oldest first.
    pub async fn accepted_per_minute(&self, now: i64, minutes: usize) -> Result<Vec<u64>> {
        let from = (now / 60_000 - minutes as i64 + 1) * 60_000;
        let bucket = bucket_of("accepted_ms", from, 60_000, 1);
        let rows = sqlx::query(&format!(
            "SELECT {bucket}, COUNT(*) FROM tasks WHERE accepted_ms >= $1 GROUP BY {bucket}"
        ))
        .bind(from)
        .fetch_all(&self.reads)
        .await?;
        Ok(per_bucket(&buckets(&rows)?, minutes))
    }

    /// Batch `batch`'s tasks accepted by each of `points` moments spread evenly from
    /// `from` (its submission) to `to`.
    pub async fn batch_progress(
        &self,
        batch: &BatchId,
        (from, to): (i64, i64),
        points: usize,
    ) -> Result<Vec<u64>> {
        let span = (to - from).max(1);
        let bucket = bucket_of("accepted_ms", from, span, points);
        let rows = sqlx::query(&format!(
            "SELECT {bucket}, COUNT(*) FROM tasks WHERE batch_id = $1 \
             AND accepted_ms IS NOT NULL GROUP BY {bucket}"
        ))
        .bind(batch.as_str())
        .fetch_all(&self.reads)
        .await?;
        Ok(cumulative(&buckets(&rows)?, points))
    }

    /// Each of `owners`' credits (as [`Store::credits`] by owner counts them, payouts apart)
    /// by each of `points` moments spread evenly from the ledger's first entry to `now`.
    pub async fn credit_trends(
        &self,
        owners: &[String],
        now: i64,
        points: usize,
    ) -> Result<BTreeMap<String, Vec<u64>>> {
        let mut trends = BTreeMap::new();
        if owners.is_empty() {
            return Ok(trends);
        }
        let first: Option<i64> = sqlx::query("SELECT MIN(created_ms) FROM ledger")
            .fetch_one(&self.reads)
            .await?
            .try_get(0)?;
        let Some(from) = first else {
            return Ok(trends);
        };
        let bucket = bucket_of("created_ms", from, (now - from).max(1), points);
        let sql = format!(
            "SELECT owner, {bucket}, CAST(COALESCE(SUM(CASE \
             WHEN kind IN ('task', 'fund', 'uptime') THEN micro_credits \
             WHEN kind IN ('reversal', 'fund_reversal') THEN -micro_credits ELSE 0 END), 0) \
             AS BIGINT) FROM ledger WHERE owner IN ({}) GROUP BY owner, {bucket}",
            params(self.postgres, 1, owners.len())
        );
        let mut query = sqlx::query(&sql);
        for owner in owners {
            query = query.bind(owner);
        }
        let mut by_owner: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
        for row in query.fetch_all(&self.reads).await? {
            let owner: String = row.try_get(0)?;
            by_owner
                .entry(owner)
                .or_default()
                .push((row.try_get(1)?, row.try_get(2)?));
        }
        for (owner, counts) in by_owner {
            trends.insert(owner, cumulative(&counts, points));
        }
        Ok(trends)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_become_series() {
        assert_eq!(
            per_bucket(&[(0, 2), (3, 1), (9, 5), (-1, 4)], 4),
            [2, 0, 0, 1]
        );
        assert_eq!(
            cumulative(&[(0, 2), (3, 1), (9, 5), (-1, 4)], 4),
            [6, 6, 6, 12]
        );
        assert_eq!(cumulative(&[], 3), [0, 0, 0]);
        assert_eq!(cumulative(&[(0, 5), (2, -2)], 3), [5, 5, 3]);
    }
}
