//! Credits, payouts and the ledger.

use super::doc::TokenRefusals;
use super::*;
use crate::store::Payout;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct CreditsQuery {
    /// What to sum by: `owner` (the default), `runner` or `batch`.
    by: Option<String>,
}

/// Credits per owner, runner or batch, highest first.
#[utoipa::path(get, path = "/v1/credits", tag = "credits",
    params(CreditsQuery),
    responses(
        (status = 200, body = Credits),
        (status = 400, description = "An unknown `by`", body = ApiError),
    ))]
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

/// Credits per owner, runner or batch as CSV, with the columns of `helio credits --csv`.
#[utoipa::path(get, path = "/v1/credits.csv", tag = "credits",
    params(CreditsQuery),
    responses(
        (status = 200, body = String, content_type = "text/csv"),
        (status = 400, description = "An unknown `by`", body = ApiError),
    ))]
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

/// Payouts of owners' balances.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct Payouts {
    /// Oldest first.
    payouts: Vec<Payout>,
}

/// Every payout so far, oldest first.
#[utoipa::path(get, path = "/v1/payouts", tag = "credits",
    responses((status = 200, body = Payouts)))]
pub(super) async fn payouts(State(app): State<App>) -> Answer<Response> {
    Ok(json(&Payouts {
        payouts: app.store.payouts().await?,
    }))
}

/// Every payout as CSV: `seq,owner,micro_credits,credits,at_ms`.
#[utoipa::path(get, path = "/v1/payouts.csv", tag = "credits",
    responses((status = 200, body = String, content_type = "text/csv")))]
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

/// `POST /v1/payouts`: pay out balances.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PayoutRequest {
    /// Pay owners whose balance is at least this many micro-credits.
    threshold: u64,
}

/// Pays out every balance at or above the threshold now: operators only.
///
/// Each owner whose balance (earned less paid) is at least `threshold` micro-credits is paid
/// its whole balance, each payout a ledger entry.
#[utoipa::path(post, path = "/v1/payouts", tag = "credits",
    security(("bearerToken" = [])),
    request_body = PayoutRequest,
    responses(
        (status = 200, description = "The payouts made", body = Payouts),
        (status = 400, description = "A bad body", body = ApiError),
        TokenRefusals,
    ))]
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
    Ok(json(&Payouts { payouts: paid }))
}

/// The whole credit ledger, for audits.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct LedgerDump {
    /// Its entries as the anchor counts them.
    len: u64,
    /// The anchor: the hash of the last entry.
    head: Blake3Hash,
    /// Whether the entries chain from the first to the anchor.
    verified: bool,
    /// Where the chain breaks, when it does.
    error: Option<String>,
    /// Every entry, in order.
    entries: Vec<LedgerLine>,
}

/// One ledger entry.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct LedgerLine {
    /// Its position, from 0.
    seq: u64,
    /// What it records.
    #[schema(value_type = String, example = "task")]
    kind: &'static str,
    /// The batch (empty for uptime and payouts).
    batch: String,
    /// The accepted task; for uptime the span of online time; for a payout its name.
    task: String,
    /// The runner credited (empty for a payout).
    runner: String,
    /// Who the credit goes to: the runner's owner, or the cooperative fund.
    owner: String,
    /// The accepted digest (zero for uptime and payouts).
    digest: Blake3Hash,
    /// The fuel the task consumed; for uptime, the milliseconds online.
    fuel: u64,
    /// The credit, in micro-credits.
    micro_credits: u64,
    /// The hash of the entry before.
    prev: Blake3Hash,
    /// The hash of this entry.
    hash: Blake3Hash,
}

/// The whole ledger with its anchor and whether it verifies, for audits: operators only.
#[utoipa::path(get, path = "/v1/ledger", tag = "credits",
    security(("bearerToken" = [])),
    responses((status = 200, body = LedgerDump), TokenRefusals))]
pub(super) async fn ledger(State(app): State<App>, headers: HeaderMap) -> Answer<Response> {
    token_auth(&app, &headers, Role::Admin).await?;
    let (entries, len, head) = app.store.ledger().await?;
    let verified = crate::ledger::verify_anchored(&entries, len, &head);
    let entries = entries
        .iter()
        .map(|e| LedgerLine {
            seq: e.seq,
            kind: e.credit.kind.as_str(),
            batch: e.credit.batch.clone(),
            task: e.credit.task.clone(),
            runner: e.credit.runner.clone(),
            owner: e.credit.owner.clone(),
            digest: e.credit.digest,
            fuel: e.credit.fuel,
            micro_credits: e.credit.micro_credits,
            prev: e.prev,
            hash: e.hash,
        })
        .collect();
    Ok(json(&LedgerDump {
        len,
        head,
        verified: verified.is_ok(),
        error: verified.err().map(|e| e.to_string()),
        entries,
    }))
}
