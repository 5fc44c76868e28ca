//! The scheduler's HTTP API as data: the JSON bodies runners, submitters and the scheduler
//! exchange under `/v1`, and how runners sign what they send.
//!
//! A runner holds an Ed25519 key. It signs every request ([`request_message`]: method, path,
//! time and the BLAKE3 of the body) and, separately, every result it reports
//! ([`result_message`]), so that the scheduler can keep the signature beside the credit it
//! grants and anyone with the runner's public key can check who reported what.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::digest::RunReport;
use crate::manifest::TaskManifest;
use crate::types::{Blake3Hash, Tier};

mod batches;
pub use batches::*;

/// Header naming the runner that signed a request.
pub const RUNNER_HEADER: &str = "x-helio-runner";
/// Header carrying the request's time, in milliseconds since the Unix epoch.
pub const TIME_HEADER: &str = "x-helio-time";
/// Header carrying the request's Ed25519 signature, in hex.
pub const SIGNATURE_HEADER: &str = "x-helio-signature";
/// How far a signed request's time may be from the scheduler's clock.
pub const MAX_CLOCK_SKEW_MS: i64 = 5 * 60 * 1000;

/// What a runner signs for one request.
pub fn request_message(method: &str, path: &str, time_ms: i64, body: &[u8]) -> Vec<u8> {
    format!(
        "helio-request-v1\n{method}\n{path}\n{time_ms}\n{}",
        Blake3Hash::of(body)
    )
    .into_bytes()
}

/// What a runner signs for one result: it reported `digest` for task `task` of batch `batch`.
pub fn result_message(batch: &str, task: &str, digest: &Blake3Hash) -> Vec<u8> {
    format!("helio-result-v1\n{batch}\n{task}\n{digest}").into_bytes()
}

/// A runner's identity: its Ed25519 key pair.
pub struct RunnerKey(SigningKey);

impl RunnerKey {
    /// The key from its 32 secret bytes.
    pub fn from_secret(secret: [u8; 32]) -> RunnerKey {
        RunnerKey(SigningKey::from_bytes(&secret))
    }

    /// The 32 secret bytes (to keep the key on disk).
    pub fn secret(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The public key, in hex.
    pub fn public_hex(&self) -> String {
        to_hex(self.0.verifying_key().as_bytes())
    }

    /// The runner id the scheduler derives from this key.
    pub fn runner_id(&self) -> String {
        runner_id(&self.public_key())
    }

    /// The public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// Signs `message`; the signature in hex.
    pub fn sign(&self, message: &[u8]) -> String {
        to_hex(&self.0.sign(message).to_bytes())
    }
}

/// The runner id of a public key: `r-` and the first 16 hex digits of its BLAKE3.
pub fn runner_id(public_key: &PublicKey) -> String {
    format!(
        "r-{}",
        &Blake3Hash::of(public_key.as_bytes()).to_string()[..16]
    )
}

/// What an owner signs to vouch for one of its runners: the owner name it holds, and the
/// runner's public key (hex).
pub fn endorsement_message(owner: &str, runner_public_key: &str) -> Vec<u8> {
    format!("helio-owner-v1\n{owner}\n{runner_public_key}").into_bytes()
}

/// An owner's identity: the Ed25519 key pair that holds its owner name at a scheduler. Made
/// once (`runner owner create`) and kept by the owner; it signs each of the owner's runner
/// keys ([`OwnerKey::endorse`]), so that credits go to the account, not to whoever types its
/// name.
pub struct OwnerKey(SigningKey);

impl OwnerKey {
    /// The key from its 32 secret bytes.
    pub fn from_secret(secret: [u8; 32]) -> OwnerKey {
        OwnerKey(SigningKey::from_bytes(&secret))
    }

    /// The 32 secret bytes (to keep the key on disk).
    pub fn secret(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The public key, in hex.
    pub fn public_hex(&self) -> String {
        to_hex(self.0.verifying_key().as_bytes())
    }

    /// The owner key's id: `o-` and the first 16 hex digits of the public key's BLAKE3.
    pub fn id(&self) -> String {
        owner_key_id(&PublicKey(self.0.verifying_key()))
    }

    /// Its endorsement of the runner with `runner_public_key` under `owner` (hex).
    pub fn endorse(&self, owner: &str, runner_public_key: &str) -> String {
        to_hex(
            &self
                .0
                .sign(&endorsement_message(owner, runner_public_key))
                .to_bytes(),
        )
    }
}

/// An owner key's id: `o-` and the first 16 hex digits of its BLAKE3.
pub fn owner_key_id(public_key: &PublicKey) -> String {
    format!(
        "o-{}",
        &Blake3Hash::of(public_key.as_bytes()).to_string()[..16]
    )
}

/// A runner's Ed25519 public key, checked and decompressed once when parsed, so that
/// checking each of its signatures does not decompress it again (a tenth of the cost of a
/// check).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// The key's 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }

    /// Whether `signature_hex` is this key's signature of `message`.
    pub fn verifies(&self, message: &[u8], signature_hex: &str) -> bool {
        let Some(sig) = from_hex(signature_hex).and_then(|b| <[u8; 64]>::try_from(b).ok()) else {
            return false;
        };
        self.0.verify(message, &Signature::from_bytes(&sig)).is_ok()
    }
}

/// Parses a public key written in hex.
pub fn parse_public_key(hex: &str) -> Result<PublicKey, String> {
    let bytes = from_hex(hex).ok_or("is not hex")?;
    let key: [u8; 32] = bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("has {} bytes, an Ed25519 key has 32", b.len()))?;
    VerifyingKey::from_bytes(&key)
        .map(PublicKey)
        .map_err(|_| "is not a valid Ed25519 public key".into())
}

/// Lowercase hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of a hex string, if it is one.
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// `POST /v1/runners`: a runner joins (or rejoins) the grid. Signed with the key it names.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RegisterRunner {
    /// The runner's Ed25519 public key, in hex.
    pub public_key: String,
    /// Who runs it: replicas of one task never go to two runners of one owner.
    pub owner: String,
    /// The highest tier of task it takes.
    pub tier: Tier,
    /// Tasks it runs at once.
    pub slots: u32,
    /// Its processor cores.
    pub cores: u32,
    /// The memory it may use, in bytes: the machine's, or less under the runner's memory
    /// cap. The scheduler leases it only tasks whose `limits.memory_bytes` fit this over its
    /// slots.
    pub memory_bytes: u64,
    /// Fuel per second it reached on the calibration task.
    pub fuel_per_second: u64,
    /// The determinism profile its sandbox implements.
    pub profile: String,
    /// Where it is, as its owner says (a city, a region; at most 64 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// The share of its electricity from renewable sources, as its owner says: 0 to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub green_energy: Option<f64>,
    /// The public key (hex) of the owner account `owner` names: the name is held by this key
    /// from the first runner that registers under it. Required by the scheduler; optional
    /// on the wire so that it can tell a runner from before owner keys what to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_key: Option<String>,
    /// The owner key's signature of [`endorsement_message`] for `owner` and `public_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endorsement: Option<String>,
    /// An invitation from the grid's operator, for an owner the scheduler has not seen when
    /// it admits new owners by invitation only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invite: Option<String>,
}

impl RegisterRunner {
    /// Signs this registration's owner fields with `owner_key`, for its `owner` and
    /// `public_key` as they stand.
    pub fn endorsed_by(mut self, owner_key: &OwnerKey) -> RegisterRunner {
        self.endorsement = Some(owner_key.endorse(&self.owner, &self.public_key));
        self.owner_key = Some(owner_key.public_hex());
        self
    }
}

/// The answer to [`RegisterRunner`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Registered {
    /// The runner's id, to send in [`RUNNER_HEADER`].
    pub runner: String,
    /// How often the scheduler expects to hear from it.
    pub heartbeat_seconds: u64,
}

/// The answer to `POST /v1/heartbeat`: what the ledger holds for the runner, so that it can
/// show credits granted when other runners later agreed with results it reported.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeartbeatAck {
    /// Micro-credits the runner earned in all (tasks and time online).
    #[serde(default)]
    pub micro_credits: u64,
    /// Tasks it was credited for.
    #[serde(default)]
    pub tasks: u64,
    /// Whether it is flagged: a result it reported disagreed with an accepted one.
    #[serde(default)]
    pub flagged: bool,
}

/// `POST /v1/leases`: a runner asks for work.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LeaseRequest {
    /// The most tasks it wants now (it never holds more than its slots).
    pub max: u32,
    /// When no task is there for it, how long the scheduler may hold the request open
    /// waiting for work to appear (a batch submitted, a lease ended), in milliseconds; it
    /// then answers with no tasks at once, and the runner asks again. The scheduler waits
    /// at most [`MAX_LEASE_WAIT_MS`]. 0 (or absent) answers at once.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub wait_ms: u32,
}

/// The longest a scheduler holds a lease request open waiting for work.
pub const MAX_LEASE_WAIT_MS: u32 = 30_000;

/// One task leased to a runner.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Lease {
    /// The task's id at the scheduler.
    pub task_id: i64,
    /// The batch's id.
    pub batch: String,
    /// The task manifest. Its module and inputs are fetched by hash from `/v1/blobs/`.
    pub manifest: TaskManifest,
    /// When the lease ends, in milliseconds since the Unix epoch: a result after it is
    /// refused, and the task goes to another runner.
    pub deadline_ms: i64,
    /// The checkpoint to go on from, for a task that checkpoints and that another runner
    /// began: fetched by hash from `/v1/blobs/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<Resume>,
}

/// A checkpoint a lease goes on from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Resume {
    /// The checkpoint's bytes' BLAKE3.
    pub blake3: Blake3Hash,
    /// How many checkpoints the task had saved, this one included.
    pub saved: u32,
    /// The fuel the task had used by it.
    pub fuel_used: u64,
}

/// The answer to [`LeaseRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Leases {
    /// The tasks leased, possibly none.
    pub leases: Vec<Lease>,
    /// Whether the scheduler, finding no task, waited for work before answering (see
    /// [`LeaseRequest::wait_ms`]): a runner that got no tasks after a wait asks again at
    /// once; after none (a scheduler that does not wait, or one shutting down) it backs off.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub waited: bool,
}

/// One result a runner reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ResultReport {
    /// The leased task.
    pub task_id: i64,
    /// What the run gave; its digest must match its fields.
    pub report: RunReport,
    /// The runner's signature of [`result_message`] for this task and digest, in hex.
    pub signature: String,
}

/// `POST /v1/results`: a runner reports results.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReportRequest {
    /// The results.
    pub results: Vec<ResultReport>,
    /// The most new tasks the runner wants leased in the same exchange (0: none), as
    /// [`LeaseRequest::max`] would ask: a busy runner reports and takes its next work in one
    /// request, and the scheduler records both in one transaction.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub lease: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// What became of one reported result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ReportStatus {
    /// Recorded; the task is still waiting for other replicas.
    Recorded,
    /// Recorded, and it completed a quorum that accepted the task.
    Accepted,
    /// Recorded, and it completed a quorum for another digest: this result disagreed.
    Disagreed,
    /// This runner had already reported this task; nothing changed.
    Duplicate,
    /// Refused, with a reason (no lease, lease expired, inconsistent digest, bad signature).
    Refused,
}

impl ReportStatus {
    /// Its name, as it is written in JSON (`accepted`, `disagreed`, ...).
    pub fn as_str(&self) -> &'static str {
        match self {
            ReportStatus::Recorded => "recorded",
            ReportStatus::Accepted => "accepted",
            ReportStatus::Disagreed => "disagreed",
            ReportStatus::Duplicate => "duplicate",
            ReportStatus::Refused => "refused",
        }
    }
}

/// The answer for one [`ResultReport`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReportAck {
    /// The task.
    pub task_id: i64,
    /// What became of the result.
    pub status: ReportStatus,
    /// Why it was refused, for [`ReportStatus::Refused`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Micro-credits granted to this runner for it (when the task was accepted).
    #[serde(default)]
    pub micro_credits: u64,
    /// Blobs the scheduler asks this runner to upload (`PUT /v1/blobs/{hash}`): the accepted
    /// task's outputs and standard output that it does not hold yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upload: Vec<Blake3Hash>,
}

/// The answer to [`ReportRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Reported {
    /// One per result, in order.
    pub results: Vec<ReportAck>,
    /// The tasks leased when the request asked for some ([`ReportRequest::lease`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leases: Vec<Lease>,
}

/// `POST /v1/leases/return`: a runner that stops hands back leases it will not finish.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReturnRequest {
    /// The tasks.
    pub task_ids: Vec<i64>,
}

/// `POST /v1/blobs/missing`: which of these blobs the scheduler does not hold.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BlobList {
    /// The hashes.
    pub blobs: Vec<Blake3Hash>,
}

/// One row of `GET /v1/credits`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreditRow {
    /// The owner, runner or batch the row counts for.
    pub key: String,
    /// Tasks credited.
    pub tasks: u64,
    /// Fuel credited.
    pub fuel: u64,
    /// Micro-credits earned.
    pub micro_credits: u64,
    /// Micro-credits paid out (owners only).
    #[serde(default)]
    pub paid: u64,
}

/// Checks a runner's location: a short label its volunteer chooses (`eu-west`,
/// `Lagos, NG`), 1 to 64 printable characters.
pub fn check_location(location: &str) -> Result<(), String> {
    let n = location.chars().count();
    if n == 0 || n > 64 {
        return Err(format!("location must be 1 to 64 characters, got {n}"));
    }
    if let Some(c) = location.chars().find(|c| c.is_control()) {
        return Err(format!("location must be printable; it holds {c:?}"));
    }
    Ok(())
}

/// Checks a runner's green-energy share: the part of its electricity from renewable
/// sources, 0 to 1.
pub fn check_green_energy(share: f64) -> Result<(), String> {
    if (0.0..=1.0).contains(&share) {
        Ok(())
    } else {
        Err(format!(
            "green_energy is the share of renewable energy, 0 to 1 (0.8 means 80%); got {share}"
        ))
    }
}

/// Micro-credits as whole credits with six decimals (`1.500000`), as every Helio command and
/// CSV export shows them.
pub fn credits_text(micro_credits: u64) -> String {
    format!(
        "{}.{:06}",
        micro_credits / 1_000_000,
        micro_credits % 1_000_000
    )
}

/// `GET /v1/credits?by=owner|runner|batch`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Credits {
    /// `owner`, `runner` or `batch`.
    pub by: String,
    /// Highest credit first.
    pub rows: Vec<CreditRow>,
}

/// The columns of a credits CSV after its first, which names what the rows count by.
#[cfg(feature = "csv")]
const CREDITS_COLUMNS: [&str; 5] = [
    "tasks",
    "fuel",
    "micro_credits",
    "credits",
    "paid_micro_credits",
];

#[cfg(feature = "csv")]
impl Credits {
    /// The CSV the scheduler serves (`GET /v1/credits.csv`) and `helio credits --csv`
    /// prints: a header of `{by}` and [`CREDITS_COLUMNS`], then one row per key, written by
    /// the `csv` crate (a key with a comma or a quote is quoted).
    pub fn to_csv(&self) -> String {
        let mut w = csv::Writer::from_writer(Vec::new());
        let header = std::iter::once(self.by.as_str()).chain(CREDITS_COLUMNS);
        w.write_record(header).expect("writing to memory");
        for r in &self.rows {
            w.write_record([
                r.key.clone(),
                r.tasks.to_string(),
                r.fuel.to_string(),
                r.micro_credits.to_string(),
                credits_text(r.micro_credits),
                r.paid.to_string(),
            ])
            .expect("writing to memory");
        }
        let bytes = w.into_inner().expect("writing to memory");
        String::from_utf8(bytes).expect("CSV of UTF-8 fields is UTF-8")
    }

    /// Reads what [`Credits::to_csv`] wrote, naming the line and column of anything else.
    pub fn from_csv(text: &str) -> Result<Credits, String> {
        let mut r = csv::Reader::from_reader(text.as_bytes());
        let header = r.headers().map_err(|e| e.to_string())?.clone();
        let columns: Vec<&str> = header.iter().skip(1).collect();
        if header.is_empty() || columns != CREDITS_COLUMNS {
            return Err(format!(
                "line 1: the header is {:?}; a credits CSV has a key column, then {}",
                header.iter().collect::<Vec<_>>(),
                CREDITS_COLUMNS.join(",")
            ));
        }
        let mut rows = Vec::new();
        for record in r.records() {
            let record = record.map_err(|e| e.to_string())?;
            let line = record.position().map_or(0, |p| p.line());
            let number = |i: usize| -> Result<u64, String> {
                let field = record.get(i).unwrap_or("");
                field.parse().map_err(|_| {
                    format!(
                        "line {line}: {} is {field:?}, not a whole number",
                        &header[i]
                    )
                })
            };
            rows.push(CreditRow {
                key: record.get(0).unwrap_or("").to_string(),
                tasks: number(1)?,
                fuel: number(2)?,
                micro_credits: number(3)?,
                paid: number(5)?,
            });
        }
        Ok(Credits {
            by: header[0].to_string(),
            rows,
        })
    }
}

/// An error answer: every non-2xx response has this body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiError {
    /// What went wrong, naming the field or object.
    pub error: String,
}

impl ApiError {
    /// The message of an error answer's body, or the body itself when it is not one.
    pub fn message(body: String) -> String {
        serde_json::from_str::<ApiError>(&body).map_or(body, |e| e.error)
    }
}

/// One runner in `GET /v1/runners`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunnerInfo {
    /// Its id.
    pub id: String,
    /// Its owner.
    pub owner: String,
    /// Its tier.
    pub tier: Tier,
    /// Tasks it runs at once.
    pub slots: u32,
    /// Whether it counts as online: heard from since it was last marked offline (a runner
    /// silent for three heartbeats is marked offline and its leases go to others).
    pub online: bool,
    /// When it was last heard from, in milliseconds since the Unix epoch.
    pub last_seen_ms: i64,
    /// Results that matched an accepted digest.
    pub agreements: u64,
    /// Results that did not: a runner with any is flagged.
    pub disagreements: u64,
    /// Leases that ended without a result.
    pub missed_deadlines: u64,
    /// Whether it ever disagreed with an accepted result.
    pub flagged: bool,
    /// Whether it may run tasks one runner's result decides alone.
    pub trusted: bool,
    /// Where it says it is.
    #[serde(default)]
    pub location: String,
    /// The share of renewable electricity it says it runs on, 0 to 1.
    #[serde(default)]
    pub green_energy: Option<f64>,
    /// Milliseconds it was online.
    #[serde(default)]
    pub uptime_ms: i64,
    /// Whether it passed a health check since it last registered or came back online (a
    /// cold runner gets a health check before any task).
    #[serde(default)]
    pub warm: bool,
    /// Health checks it failed in a row.
    #[serde(default)]
    pub checks_failed: u64,
    /// The scheduler's unannounced re-runs of its results that it passed.
    #[serde(default)]
    pub spot_checks: u64,
    /// Leases it handed back unfinished.
    #[serde(default)]
    pub returns: u64,
    /// Its results that count as verified: agreements co-signed by others or by the
    /// scheduler, and spot checks passed, less one per lease handed back or deadline missed.
    #[serde(default)]
    pub verified: u64,
    /// Whether its result alone is believed where a batch asks for credibility (at the
    /// scheduler's target error).
    #[serde(default)]
    pub established: bool,
}

#[cfg(all(test, feature = "csv"))]
mod csv_tests {
    use super::*;

    #[test]
    fn credits_round_trip_through_csv_whatever_their_keys() {
        let credits = Credits {
            by: "batch".into(),
            rows: vec![
                CreditRow {
                    key: "sweep, \"final\"".into(),
                    tasks: 3,
                    fuel: 1 << 40,
                    micro_credits: 2_500_000,
                    paid: 1,
                },
                CreditRow {
                    key: "b-2".into(),
                    tasks: 0,
                    fuel: 0,
                    micro_credits: 0,
                    paid: 0,
                },
            ],
        };
        let text = credits.to_csv();
        assert!(
            text.starts_with("batch,tasks,fuel,micro_credits,credits,paid_micro_credits\n"),
            "{text}"
        );
        assert!(text.contains(",2.500000,"), "{text}");
        let back = Credits::from_csv(&text).unwrap();
        assert_eq!(back.by, "batch");
        assert_eq!(back.rows.len(), 2);
        assert_eq!(back.rows[0].key, "sweep, \"final\"");
        assert_eq!(
            (
                back.rows[0].tasks,
                back.rows[0].fuel,
                back.rows[0].micro_credits,
                back.rows[0].paid
            ),
            (3, 1 << 40, 2_500_000, 1)
        );
        let bad = Credits::from_csv("owner,tasks\nada,1\n").unwrap_err();
        assert!(bad.contains("line 1"), "{bad}");
        let bad = Credits::from_csv(&text.replace(",1099511627776,", ",lots,")).unwrap_err();
        assert!(bad.contains("line 2") && bad.contains("fuel"), "{bad}");
    }
}
