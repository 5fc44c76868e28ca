//! What `runner status` shows: the volunteer runner keeps a small file in its state
//! directory (`status.json`), rewritten at every event, of what it is doing and has earned;
//! `runner status` reads it, and says whether the runner that wrote it still runs.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use helio_sdk::client::now_ms;
use helio_sdk::wire::credits_text;
use serde::{Deserialize, Serialize};

use crate::display::Event;

/// The file's name in the state directory.
pub const STATUS_FILE: &str = "status.json";

/// A task running in a slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Running {
    /// The slot, from 1.
    pub slot: u32,
    /// The task's name.
    pub task: String,
    /// Its batch.
    pub batch: String,
    /// When it started (milliseconds since the Unix epoch).
    pub since_ms: i64,
}

/// What a runner is doing and has earned, as its events said.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The runner's process.
    pub pid: u32,
    /// Its id at the scheduler, once registered.
    pub runner: Option<String>,
    /// Who gets its credits.
    pub owner: Option<String>,
    /// The scheduler it works for.
    pub scheduler: Option<String>,
    /// Tasks it runs at once.
    pub slots: u32,
    /// When it started.
    pub started_ms: i64,
    /// When this was written.
    pub updated_ms: i64,
    /// When its session ended, if it did.
    pub stopped_ms: Option<i64>,
    /// What its slots run now.
    pub running: Vec<Running>,
    /// Results reported this session.
    pub reported: u64,
    /// Results accepted this session.
    pub accepted: u64,
    /// Micro-credits earned this session (each finished task's, or the ledger's, the
    /// larger).
    pub session_micro_credits: u64,
    /// Micro-credits earned in all, by the ledger, as of the last heartbeat.
    pub total_micro_credits: Option<u64>,
    /// The last thing it said.
    pub last: Option<String>,
}

impl Status {
    /// Takes `event` into account, at `now`.
    pub fn record(&mut self, event: &Event, now: i64) {
        self.updated_ms = now;
        match event {
            Event::Joined {
                runner,
                owner,
                slots,
                scheduler,
                ..
            } => {
                self.runner = Some(runner.clone());
                self.owner = Some(owner.clone());
                self.scheduler = Some(scheduler.clone());
                self.slots = *slots;
            }
            Event::Started {
                slot, task, batch, ..
            } => {
                self.running.retain(|r| r.slot != *slot);
                self.running.push(Running {
                    slot: *slot,
                    task: task.clone(),
                    batch: batch.clone(),
                    since_ms: now,
                });
                self.running.sort_by_key(|r| r.slot);
            }
            Event::Finished {
                slot,
                micro_credits,
                session_accepted,
                ..
            } => {
                self.running.retain(|r| r.slot != *slot);
                self.reported += 1;
                self.accepted = self.accepted.max(*session_accepted);
                self.session_micro_credits += micro_credits;
            }
            Event::Credits {
                session_micro_credits,
                session_tasks,
                total_micro_credits,
            } => {
                self.session_micro_credits = self.session_micro_credits.max(*session_micro_credits);
                self.accepted = self.accepted.max(*session_tasks);
                self.total_micro_credits = Some(*total_micro_credits);
            }
            Event::Session {
                reported,
                accepted,
                micro_credits,
                ..
            } => {
                self.stopped_ms = Some(now);
                self.running.clear();
                self.reported = *reported;
                self.accepted = *accepted;
                self.session_micro_credits = self.session_micro_credits.max(*micro_credits);
            }
            Event::HealthCheck { .. } => {}
            Event::Notice { .. } | Event::Warning { .. } | Event::Error { .. } => {
                self.last = Some(event.line());
            }
        }
    }

    /// Slot `slot`'s task ended (reported or handed back).
    pub fn ended(&mut self, slot: u32, now: i64) {
        self.updated_ms = now;
        self.running.retain(|r| r.slot != slot);
    }

    /// The status for a person: `alive` says whether its process still runs.
    pub fn text(&self, alive: bool, now: i64) -> String {
        let ago = |ms: i64| seconds_text((now - ms).max(0) / 1000);
        let mut out = format!(
            "runner {} (owner {}) for {}\n",
            self.runner.as_deref().unwrap_or("(not registered yet)"),
            self.owner.as_deref().unwrap_or("?"),
            self.scheduler.as_deref().unwrap_or("?"),
        );
        match (alive, self.stopped_ms) {
            (true, _) => out.push_str(&format!(
                "running: pid {}, for {}, {}/{} slots busy\n",
                self.pid,
                ago(self.started_ms),
                self.running.len(),
                self.slots
            )),
            (false, Some(at)) => out.push_str(&format!("stopped {} ago\n", ago(at))),
            (false, None) => out.push_str(&format!(
                "not running: pid {} ended without a word, {} ago\n",
                self.pid,
                ago(self.updated_ms)
            )),
        }
        if alive {
            for r in &self.running {
                out.push_str(&format!(
                    "  slot {}: {} of batch {}, for {}\n",
                    r.slot,
                    r.task,
                    r.batch,
                    ago(r.since_ms)
                ));
            }
        }
        out.push_str(&format!(
            "session: {} reported, {} accepted, {} credits",
            self.reported,
            self.accepted,
            credits_text(self.session_micro_credits)
        ));
        if let Some(total) = self.total_micro_credits {
            out.push_str(&format!("; {} credits in all", credits_text(total)));
        }
        out.push('\n');
        if let Some(last) = &self.last {
            out.push_str(&format!("last: {last}\n"));
        }
        out
    }
}

fn seconds_text(s: i64) -> String {
    match s {
        s if s < 120 => format!("{s} s"),
        s if s < 7_200 => format!("{} min", s / 60),
        s => format!("{:.1} h", s as f64 / 3600.0),
    }
}

/// The status file a running runner keeps.
pub struct StatusFile {
    path: PathBuf,
    status: Mutex<Status>,
}

impl StatusFile {
    /// A status file in `state_dir`, for this process, started now.
    pub fn new(state_dir: &Path) -> StatusFile {
        let now = now_ms();
        StatusFile {
            path: state_dir.join(STATUS_FILE),
            status: Mutex::new(Status {
                pid: std::process::id(),
                started_ms: now,
                updated_ms: now,
                ..Status::default()
            }),
        }
    }

    /// Records `event` and writes the file.
    pub fn record(&self, event: &Event) {
        let mut status = self.status.lock().expect("status");
        status.record(event, now_ms());
        self.write(&status);
    }

    /// Records that slot `slot`'s task ended and writes the file.
    pub fn ended(&self, slot: u32) {
        let mut status = self.status.lock().expect("status");
        status.ended(slot, now_ms());
        self.write(&status);
    }

    /// Writes beside the file and renames it into place, so that a reader never sees half
    /// of it; a failure costs only the status. Not synced to disk (unlike the caches'
    /// `write_atomically`): it is rewritten at every event, and after a power loss the
    /// process it describes is gone anyway.
    fn write(&self, status: &Status) {
        let tmp = self.path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(status).expect("a status serializes");
        if std::fs::write(&tmp, text).is_ok() {
            let _ = std::fs::rename(&tmp, &self.path);
        }
    }
}

/// Reads the status a runner with state directory `state_dir` left.
pub fn read(state_dir: &Path) -> Result<Status, String> {
    let path = state_dir.join(STATUS_FILE);
    let text = std::fs::read(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "no runner has run with state directory {} (no {STATUS_FILE}); give --state-dir",
                state_dir.display()
            )
        } else {
            format!("{}: {e}", path.display())
        }
    })?;
    serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Whether process `pid` still runs.
pub fn alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        // Signal 0 checks that the process exists (EPERM: it does, as another user).
        let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
        r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use helio_sdk::wire::ReportStatus;

    #[test]
    fn the_status_follows_the_events() {
        let mut s = Status::default();
        s.record(
            &Event::Joined {
                runner: "r-1".into(),
                owner: "ada".into(),
                tier: helio_sdk::Tier::Cpu,
                slots: 2,
                fuel_per_second: 1,
                scheduler: "http://s".into(),
            },
            1,
        );
        for slot in [1, 2] {
            s.record(
                &Event::Started {
                    slot,
                    task_id: i64::from(slot),
                    task: format!("t{slot}"),
                    batch: "b-1".into(),
                    fuel_limit: 10,
                },
                2,
            );
        }
        assert_eq!(s.running.len(), 2);
        s.record(
            &Event::Finished {
                slot: 1,
                task_id: 1,
                task: "t1".into(),
                outcome: "exited".into(),
                fuel: 5,
                wall_ms: 3,
                result: ReportStatus::Accepted,
                micro_credits: 7,
                error: None,
                session_accepted: 1,
            },
            3,
        );
        assert_eq!(
            (
                s.running.len(),
                s.reported,
                s.accepted,
                s.session_micro_credits
            ),
            (1, 1, 1, 7)
        );
        // The ledger's later account: more credits (granted as others agreed), never less.
        s.record(
            &Event::Credits {
                session_micro_credits: 12,
                session_tasks: 2,
                total_micro_credits: 40,
            },
            4,
        );
        assert_eq!((s.accepted, s.session_micro_credits), (2, 12));
        let text = s.text(true, 5_000);
        assert!(text.contains("1/2 slots busy"), "{text}");
        assert!(text.contains("slot 2: t2 of batch b-1"), "{text}");
        assert!(text.contains("0.000040 credits in all"), "{text}");
        s.record(
            &Event::Session {
                reported: 2,
                accepted: 2,
                disagreed: 0,
                micro_credits: 12,
            },
            6_000,
        );
        assert!(s.running.is_empty());
        assert!(s.text(false, 66_000).contains("stopped 60 s ago"));
    }
}
