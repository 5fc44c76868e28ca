//! The volunteer's controls at work: what the agent reads of the machine (the local time,
//! whether it runs on battery, how much of its CPU the rest of the machine uses), and the
//! thread that holds the work when the rules say so.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::controls::{Change, Controls, Holding, Situation};
use crate::display::{Display, Event};

/// Reads the machine as the controls in use need it.
pub struct Sensors {
    system: sysinfo::System,
    pid: Option<sysinfo::Pid>,
    battery: Option<starship_battery::Manager>,
    cores: f32,
    /// Whether the CPU has been sampled once (usage needs two samples).
    sampled: bool,
}

impl Sensors {
    /// Sensors for `controls`; an error says why a control asked for cannot work here.
    pub fn new(controls: &Controls) -> Result<Sensors, String> {
        let battery = if controls.mains_only {
            let manager = starship_battery::Manager::new().map_err(|e| {
                format!("--on-mains-only: cannot tell whether this machine runs on battery: {e}")
            })?;
            let unreadable =
                |e| format!("--on-mains-only: cannot read this machine's batteries: {e}");
            for battery in manager.batteries().map_err(unreadable)? {
                battery.map_err(unreadable)?;
            }
            Some(manager)
        } else {
            None
        };
        let system = sysinfo::System::new()
            .map_err(|e| format!("cannot read this machine's processor use: {e}"))?;
        Ok(Sensors {
            system,
            pid: sysinfo::get_current_pid().ok(),
            battery,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()) as f32,
            sampled: false,
        })
    }

    /// The machine now.
    pub fn look(&mut self, controls: &Controls) -> Situation {
        use chrono::Timelike;
        let now = chrono::Local::now();
        Situation {
            minute: (now.hour() * 60 + now.minute()) as u16,
            on_battery: self.battery.as_ref().and_then(on_battery),
            others_cpu: if controls.idle_below.is_some() {
                self.others_cpu()
            } else {
                None
            },
        }
    }

    /// The percentage of all the machine's CPU used by processes other than this one, since
    /// the last look; `None` at the first.
    fn others_cpu(&mut self) -> Option<f32> {
        self.system.refresh_cpu_usage();
        let own = self.pid.map_or(0.0, |pid| {
            self.system
                .refresh_processes(sysinfo::ProcessesToUpdate::Some(&[pid]), true);
            self.system.process(pid).map_or(0.0, |p| p.cpu_usage())
        });
        let first = !std::mem::replace(&mut self.sampled, true);
        (!first).then(|| (self.system.global_cpu_usage() - own / self.cores).max(0.0))
    }
}

/// Whether any battery is discharging (a machine with none runs on mains).
fn on_battery(manager: &starship_battery::Manager) -> Option<bool> {
    let batteries = manager.batteries().ok()?;
    let mut any = false;
    for battery in batteries {
        use starship_battery::State;
        if matches!(battery.ok()?.state(), State::Discharging | State::Empty) {
            any = true;
        }
    }
    Some(any)
}

/// How often the agent looks at the machine for the volunteer's controls.
const LOOK_EVERY: Duration = Duration::from_secs(10);

/// Looks at the machine every [`LOOK_EVERY`] on a thread of its own (first at once), and
/// holds the work as `controls` say: suspends the running tasks through `throttle` and says
/// so on `held`, which the main loop reads to take no new work. Ends when the main loop
/// does (nobody reads `held` any more).
pub(super) fn watch_machine(
    controls: Controls,
    mut sensors: Sensors,
    (throttle, held): (Arc<crate::throttle::Throttle>, watch::Sender<bool>),
    display: Arc<Display>,
) {
    let start = Instant::now();
    let mut holding = Holding::default();
    let mut first = true;
    let looking = std::thread::Builder::new()
        .name("helio-controls".into())
        .spawn(move || {
            while !held.is_closed() {
                let seen = sensors.look(&controls);
                match holding.look(controls.hold(&seen), start.elapsed()) {
                    Some(Change::Hold(why)) => {
                        throttle.suspend(true);
                        display.event(Event::Notice {
                            message: format!(
                                "work held: {why}; running tasks pause, and no new ones are taken"
                            ),
                        });
                    }
                    Some(Change::Go) => {
                        throttle.suspend(false);
                        display.event(Event::Notice {
                            message: "work goes on".into(),
                        });
                    }
                    None => {}
                }
                let now = holding.held().is_some();
                if first || *held.borrow() != now {
                    let _ = held.send_replace(now);
                    first = false;
                }
                std::thread::sleep(LOOK_EVERY);
            }
            throttle.suspend(false);
        });
    if let Err(e) = looking {
        tracing::warn!(error = %e, "cannot start the thread that applies the volunteer's controls");
    }
}
