//! What a volunteer runner shows while it works: on a terminal, a live status line per slot
//! (task, progress by fuel, elapsed) under a line with the session's accepted tasks and
//! credits; in a log, one plain line per event; for service managers, one JSON object per
//! event on standard output (`--json`); or nothing but errors (`--quiet`).

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use helio_sdk::Tier;
use helio_sdk::wire::{ReportStatus, credits_text};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::Progress;

/// How the runner reports what it does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Output {
    /// Live status lines on a terminal; plain lines when standard error is not one.
    #[default]
    Human,
    /// Nothing but errors.
    Quiet,
    /// One JSON object per event on standard output.
    Json,
}

/// Something the runner did or saw.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Registered with the scheduler.
    Joined {
        /// Its id.
        runner: String,
        /// Who gets the credits.
        owner: String,
        /// The highest tier it takes.
        tier: Tier,
        /// Tasks at once.
        slots: u32,
        /// Its calibration figure.
        fuel_per_second: u64,
        /// The scheduler's URL.
        scheduler: String,
    },
    /// A task started in a slot.
    Started {
        /// The slot, from 1.
        slot: u32,
        /// The scheduler's id of the task.
        task_id: i64,
        /// The task's name.
        task: String,
        /// Its batch.
        batch: String,
        /// Its fuel limit.
        fuel_limit: u64,
    },
    /// A task's result was reported, and this is what the scheduler made of it.
    Finished {
        /// The slot it ran in.
        slot: u32,
        /// The scheduler's id of the task.
        task_id: i64,
        /// The task's name.
        task: String,
        /// Its outcome (`exited`, `trapped`, ...).
        outcome: String,
        /// Fuel it burned.
        fuel: u64,
        /// How long it ran, in milliseconds.
        wall_ms: u64,
        /// What the scheduler made of the result (`recorded`: waiting for other runners).
        result: ReportStatus,
        /// Micro-credits it earned.
        micro_credits: u64,
        /// Why it was refused.
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// Results accepted this session so far.
        session_accepted: u64,
    },
    /// The scheduler's health check, which a runner passes before it gets tasks (when new,
    /// restarted or back from offline), was run and reported.
    HealthCheck {
        /// How long it ran, in milliseconds.
        wall_ms: u64,
        /// `accepted`: passed; `disagreed`: the scheduler's own run gave another digest.
        result: ReportStatus,
        /// Why it failed or was refused.
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// The ledger holds more credits for this runner (some granted when other runners later
    /// agreed with results it had reported).
    Credits {
        /// Micro-credits earned this session.
        session_micro_credits: u64,
        /// Tasks credited this session.
        session_tasks: u64,
        /// Micro-credits earned in all.
        total_micro_credits: u64,
    },
    /// Something the volunteer should know and keep in mind (nothing is wrong).
    Notice {
        /// What, in plain words.
        message: String,
    },
    /// Something the volunteer should know, which the runner works around.
    Warning {
        /// What, in plain words.
        message: String,
    },
    /// Something that lost work or will stop the runner.
    Error {
        /// What, in plain words.
        message: String,
    },
    /// The session is over.
    Session {
        /// Tasks run and reported.
        reported: u64,
        /// Results part of an accepted quorum.
        accepted: u64,
        /// Results that disagreed with the accepted one.
        disagreed: u64,
        /// Micro-credits earned.
        micro_credits: u64,
    },
}

impl Event {
    /// The event as one line for a person.
    pub fn line(&self) -> String {
        match self {
            Event::Joined {
                runner,
                owner,
                tier,
                slots,
                fuel_per_second,
                scheduler,
            } => format!(
                "runner {runner} (owner {owner}, tier {tier}, {slots} slots, {:.1} Gfuel/s) joined {scheduler}",
                *fuel_per_second as f64 / 1e9
            ),
            Event::Started {
                slot, task, batch, ..
            } => format!("slot {slot}: task {task} of batch {batch} started"),
            Event::Finished {
                task,
                outcome,
                result,
                micro_credits,
                error,
                wall_ms,
                ..
            } => match result {
                ReportStatus::Accepted => format!(
                    "task {task}: {outcome} in {}, accepted, +{} credits",
                    seconds(*wall_ms),
                    credits_text(*micro_credits),
                ),
                ReportStatus::Disagreed => format!(
                    "task {task}: {outcome}, but the accepted result differs from this runner's: \
                     no credit, and the scheduler flags this runner (unstable hardware, an \
                     overclock or a modified runner can cause this)"
                ),
                ReportStatus::Refused => format!(
                    "task {task}: result refused: {}",
                    error.as_deref().unwrap_or("no reason given")
                ),
                ReportStatus::Duplicate => format!("task {task}: already reported"),
                ReportStatus::Recorded => format!(
                    "task {task}: {outcome} in {}, reported; waiting for other runners to agree",
                    seconds(*wall_ms)
                ),
            },
            Event::HealthCheck {
                wall_ms,
                result,
                error,
            } => match result {
                ReportStatus::Accepted => format!(
                    "health check passed in {}: this runner now gets tasks",
                    seconds(*wall_ms)
                ),
                ReportStatus::Disagreed => format!(
                    "{}; unstable hardware, an overclock or a modified runner can cause this",
                    error.as_deref().unwrap_or("health check failed")
                ),
                other => format!(
                    "health check {}: {}",
                    other.as_str(),
                    error.as_deref().unwrap_or("no reason given")
                ),
            },
            Event::Credits {
                session_micro_credits,
                session_tasks,
                total_micro_credits,
            } => format!(
                "credits: {} this session for {session_tasks} tasks, {} in all",
                credits_text(*session_micro_credits),
                credits_text(*total_micro_credits)
            ),
            Event::Notice { message } => format!("note: {message}"),
            Event::Warning { message } => format!("warning: {message}"),
            Event::Error { message } => format!("error: {message}"),
            Event::Session {
                reported,
                accepted,
                disagreed,
                micro_credits,
            } => format!(
                "session: {reported} tasks reported, {accepted} accepted, {disagreed} disagreed, {} credits",
                credits_text(*micro_credits)
            ),
        }
    }
}

fn seconds(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

fn fuel_text(fuel: u64) -> String {
    match fuel {
        f if f >= 1_000_000_000 => format!("{:.1} G", f as f64 / 1e9),
        f if f >= 1_000_000 => format!("{:.1} M", f as f64 / 1e6),
        f => f.to_string(),
    }
}

/// One running task's line.
struct Slot {
    bar: ProgressBar,
    task: String,
    progress: Arc<Progress>,
}

/// The live lines of a terminal.
struct Live {
    multi: MultiProgress,
    header: ProgressBar,
    slots: Vec<Option<Slot>>,
    footer: Footer,
}

/// What the header line says of the session, from two sources that must agree with what the
/// lines above it said: each finished task's credit as its report was answered, and the
/// ledger's account of the session from the heartbeat (which also holds credits granted
/// later, when other runners agreed). The credits shown are the larger of the two, so a
/// task's credit shows the moment its line does, and none is counted twice whichever
/// source saw it first.
#[derive(Debug, Default, Clone, PartialEq)]
struct Footer {
    accepted: u64,
    /// Micro-credits of the session's finished tasks, as their reports were answered.
    reported_micro: u64,
    /// Micro-credits of the session by the ledger, as of the last heartbeat.
    ledger_micro: u64,
    away: bool,
}

impl Footer {
    fn finished(&mut self, session_accepted: u64, micro_credits: u64) {
        self.accepted = self.accepted.max(session_accepted);
        self.reported_micro += micro_credits;
        self.away = false;
    }

    fn ledger(&mut self, session_micro: u64, session_tasks: u64) {
        self.ledger_micro = session_micro;
        self.accepted = self.accepted.max(session_tasks);
    }

    fn micro_credits(&self) -> u64 {
        self.reported_micro.max(self.ledger_micro)
    }

    fn text(&self, busy: usize, slots: usize) -> String {
        format!(
            "{busy}/{slots} slots busy · {} tasks accepted · {} credits this session{}",
            self.accepted,
            credits_text(self.micro_credits()),
            if self.away {
                " · scheduler away, retrying"
            } else {
                ""
            }
        )
    }
}

/// Shows the runner's events as [`Output`] says, and keeps its status file.
pub struct Display {
    output: Output,
    live: Option<Mutex<Live>>,
    status: Option<crate::status::StatusFile>,
}

impl Display {
    /// A display for `slots` slots, keeping `status` (what `runner status` reads) if
    /// given. Live lines only in [`Output::Human`] on a terminal.
    pub fn new(
        output: Output,
        slots: u32,
        status: Option<crate::status::StatusFile>,
    ) -> Arc<Display> {
        let live = (output == Output::Human && std::io::stderr().is_terminal()).then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(4));
            let header = multi.add(ProgressBar::new_spinner());
            header.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("a template"));
            header.set_message("starting");
            Mutex::new(Live {
                multi,
                header,
                slots: (0..slots).map(|_| None).collect(),
                footer: Footer::default(),
            })
        });
        Arc::new(Display {
            output,
            live,
            status,
        })
    }

    /// Whether this display draws live lines, which [`Display::tick`] refreshes.
    pub fn is_live(&self) -> bool {
        self.live.is_some()
    }

    /// Shows `event`.
    pub fn event(&self, event: Event) {
        if let Some(status) = &self.status {
            status.record(&event);
        }
        match self.output {
            Output::Json => {
                let mut out = std::io::stdout().lock();
                let _ = serde_json::to_writer(&mut out, &event);
                let _ = out.write_all(b"\n");
                let _ = out.flush();
            }
            Output::Quiet => {
                if matches!(event, Event::Error { .. }) {
                    eprintln!("runner: {}", event.line());
                }
            }
            Output::Human => match &self.live {
                Some(live) => self.live_event(&mut live.lock().expect("display"), event),
                None => {
                    if !matches!(event, Event::Started { .. }) {
                        eprintln!("{}", event.line());
                    }
                }
            },
        }
    }

    fn live_event(&self, live: &mut Live, event: Event) {
        match &event {
            Event::Finished {
                session_accepted,
                micro_credits,
                ..
            } => live.footer.finished(*session_accepted, *micro_credits),
            Event::Credits {
                session_micro_credits,
                session_tasks,
                ..
            } => {
                live.footer.ledger(*session_micro_credits, *session_tasks);
                Self::header(live);
                return;
            }
            Event::Warning { message } if message.starts_with("scheduler away") => {
                live.footer.away = true;
            }
            _ => {}
        }
        let _ = live.multi.println(event.line());
        Self::header(live);
    }

    fn header(live: &Live) {
        let busy = live.slots.iter().filter(|s| s.is_some()).count();
        live.header
            .set_message(live.footer.text(busy, live.slots.len()));
    }

    /// A task started: shows `started` (an [`Event::Started`]) and, on a live display, a
    /// line for its slot that `progress` fills.
    pub fn started(&self, started: Event, progress: Arc<Progress>) {
        let Event::Started { slot, task, .. } = &started else {
            return self.event(started);
        };
        let (slot, task) = (*slot, task.clone());
        let Some(live) = &self.live else {
            return self.event(started);
        };
        if let Some(status) = &self.status {
            status.record(&started);
        }
        let mut live = live.lock().expect("display");
        let bar = live.multi.add(ProgressBar::new(1000));
        bar.set_style(
            ProgressStyle::with_template(
                "  slot {prefix}: {msg:38!} [{bar:24}] {percent:>3}% {elapsed:>4}",
            )
            .expect("a template")
            .progress_chars("=> "),
        );
        bar.set_prefix(slot.to_string());
        bar.set_message(task.clone());
        let index = (slot as usize).saturating_sub(1);
        if let Some(entry) = live.slots.get_mut(index) {
            if let Some(old) = entry.take() {
                old.bar.finish_and_clear();
            }
            *entry = Some(Slot {
                bar,
                task,
                progress,
            });
        }
        Self::header(&live);
    }

    /// Slot `slot`'s task ended.
    pub fn ended(&self, slot: u32) {
        if let Some(status) = &self.status {
            status.ended(slot);
        }
        let Some(live) = &self.live else { return };
        let mut live = live.lock().expect("display");
        let index = (slot as usize).saturating_sub(1);
        if let Some(s) = live.slots.get_mut(index).and_then(Option::take) {
            s.bar.finish_and_clear();
            live.multi.remove(&s.bar);
        }
        Self::header(&live);
    }

    /// Refreshes the live lines from the running tasks' fuel.
    pub fn tick(&self) {
        let Some(live) = &self.live else { return };
        let live = live.lock().expect("display");
        live.header.tick();
        for slot in live.slots.iter().flatten() {
            let p = &slot.progress;
            slot.bar.set_position((p.fraction() * 1000.0) as u64);
            slot.bar.set_message(format!(
                "{} {}/{} fuel",
                slot.task,
                fuel_text(p.fuel_used()),
                fuel_text(p.fuel_limit())
            ));
        }
    }

    /// How often [`Display::tick`] is worth calling.
    pub const TICK: Duration = Duration::from_millis(250);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_footer_shows_each_credit_at_once_and_none_twice() {
        let mut f = Footer::default();
        // A task's credit shows with its line, before any heartbeat.
        f.finished(1, 2_000_000);
        let text = f.text(0, 2);
        assert!(
            text.contains("1 tasks accepted · 2.000000 credits"),
            "{text}"
        );
        // The ledger then counts the same credit: not added again.
        f.ledger(2_000_000, 1);
        assert_eq!(f.micro_credits(), 2_000_000);
        // A heartbeat answered before a report's credit was committed, then the report.
        f.ledger(2_000_000, 1);
        f.finished(2, 1_000_000);
        assert_eq!(f.micro_credits(), 3_000_000);
        // Credits granted later, when other runners agreed, come from the ledger alone.
        f.ledger(4_500_000, 3);
        assert_eq!((f.micro_credits(), f.accepted), (4_500_000, 3));
        f.away = true;
        assert!(f.text(1, 2).ends_with("scheduler away, retrying"));
        f.finished(3, 0);
        assert!(!f.away, "a report answered means the scheduler is back");
    }
}
