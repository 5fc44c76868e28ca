//! Credits, payouts and the ledger.

use super::*;

#[derive(Deserialize)]
pub(super) struct CreditsQuery {
    by: Option<String>,
}

pub(super) async fn credits(
    State(app): State<App>,
    Query(q): Query<CreditsQuery>,
) -> Answer<Response> {
    let by = q.by.unwrap_or_else(|| "owner".into());
    let rows = app.store.credits(&by).await.map_err(|e| match e {
        StoreError::Conflict(m) => Fail::bad(m),
        e => e.into(),
    })?;
    Ok(json(&Credits { by, rows }))
}

pub(super) async fn credits_csv(
    State(app): State<App>,
    Query(q): Query<CreditsQuery>,
) -> Answer<Response> {
    let by = q.by.unwrap_or_else(|| "owner".into());
    let rows = app.store.credits(&by).await.map_err(|e| match e {
        StoreError::Conflict(m) => Fail::bad(m),
        e => e.into(),
    })?;
    let csv = Credits { by, rows }.to_csv();
    Ok(([(header::CONTENT_TYPE, "text/csv")], csv).into_response())
}

pub(super) async fn payouts(State(app): State<App>) -> Answer<Response> {
    Ok(json(
        &serde_json::json!({ "payouts": app.store.payouts().await? }),
    ))
}

pub(super) async fn payouts_csv(State(app): State<App>) -> Answer<Response> {
    let mut csv = String::from("seq,owner,micro_credits,credits,at_ms\n");
    for p in app.store.payouts().await? {
        csv.push_str(&format!(
            "{},{},{},{},{}\n",
            p.seq,
            p.owner,
            p.micro_credits,
            wire::credits_text(p.micro_credits),
            p.at_ms
        ));
    }
    Ok(([(header::CONTENT_TYPE, "text/csv")], csv).into_response())
}

#[derive(Deserialize)]
pub(super) struct PayoutRequest {
    /// Pay owners whose balance is at least this many micro-credits.
    threshold: u64,
}

/// Pays out every balance at or above the threshold now: operators only.
pub(super) async fn pay_out(
    State(app): State<App>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer<Response> {
    let operator = token_auth(&app, &headers, Role::Admin).await?;
    let req: PayoutRequest = parse(&body)?;
    let paid = app.store.pay_out(req.threshold, now_ms()).await?;
    let total: u64 = paid.iter().map(|p| p.micro_credits).sum();
    tracing::info!(
        operator,
        owners = paid.len(),
        micro_credits = total,
        "paid out balances"
    );
    Ok(json(&serde_json::json!({ "payouts": paid })))
}

/// The whole ledger with its anchor, for audits: operators only.
pub(super) async fn ledger(State(app): State<App>, headers: HeaderMap) -> Answer<Response> {
    token_auth(&app, &headers, Role::Admin).await?;
    let (entries, len, head) = app.store.ledger().await?;
    let verified = crate::ledger::verify_anchored(&entries, len, &head);
    let entries: Vec<serde_json::Value> = entries
        .iter()
        .map(|e| {
            serde_json::json!({
                "seq": e.seq, "kind": e.credit.kind.as_str(), "batch": e.credit.batch, "task": e.credit.task,
                "runner": e.credit.runner, "owner": e.credit.owner,
                "digest": e.credit.digest, "fuel": e.credit.fuel,
                "micro_credits": e.credit.micro_credits, "prev": e.prev, "hash": e.hash,
            })
        })
        .collect();
    Ok(json(&serde_json::json!({
        "len": len,
        "head": head,
        "verified": verified.is_ok(),
        "error": verified.err().map(|e| e.to_string()),
        "entries": entries,
    })))
}
