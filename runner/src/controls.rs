//! The volunteer's say over when and how hard the runner works: a CPU cap (slots and a duty
//! cycle), hours, mains power only, and idle only. The rules are pure: the agent reads the
//! clock, the battery and the processor, and these decide.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// How the volunteer limits the runner.
#[derive(Debug, Clone, PartialEq)]
pub struct Controls {
    /// The share of a processor each running task may use (see [`share`]).
    pub duty: f64,
    /// Run only within these hours of the local day (none: at any hour).
    pub hours: Vec<Window>,
    /// Run only while the machine is not running on battery.
    pub mains_only: bool,
    /// Run only while the rest of the machine uses less than this percentage of its CPU.
    pub idle_below: Option<u8>,
}

impl Default for Controls {
    fn default() -> Self {
        Controls {
            duty: 1.0,
            hours: Vec::new(),
            mains_only: false,
            idle_below: None,
        }
    }
}

/// Hours of the local day, `start` included and `end` not, in minutes since midnight; a
/// window whose end comes before its start runs past midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    start: u16,
    end: u16,
}

impl Window {
    /// Whether `minute` (since local midnight) falls within the window.
    pub fn contains(&self, minute: u16) -> bool {
        if self.start < self.end {
            (self.start..self.end).contains(&minute)
        } else {
            minute >= self.start || minute < self.end
        }
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hm = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
        write!(f, "{}-{}", hm(self.start), hm(self.end))
    }
}

/// A time of day, `HH:MM` (00:00 to 24:00), in minutes.
fn minute_of_day(text: &str) -> Result<u16, String> {
    let bad = || format!("{text:?} is not a time of day (HH:MM, from 00:00 to 24:00)");
    let (h, m) = text.trim().split_once(':').ok_or_else(bad)?;
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if m >= 60 || h > 24 || (h == 24 && m > 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

impl FromStr for Window {
    type Err = String;

    fn from_str(s: &str) -> Result<Window, String> {
        let (start, end) = s
            .split_once('-')
            .ok_or_else(|| format!("{s:?} is not a window of hours (HH:MM-HH:MM)"))?;
        // 24:00 ends a day (00:00-24:00 is all of it) and starts the next.
        let (start, end) = (minute_of_day(start)? % (24 * 60), minute_of_day(end)?);
        if start == end % (24 * 60) && end != 24 * 60 {
            return Err(format!(
                "{s:?} starts where it ends; leave out --hours to run at any hour"
            ));
        }
        Ok(Window { start, end })
    }
}

/// Windows of hours, comma-separated (`22:00-07:00,12:00-13:30`).
pub fn hours(text: &str) -> Result<Vec<Window>, String> {
    text.split(',')
        .filter(|w| !w.trim().is_empty())
        .map(|w| w.trim().parse())
        .collect()
}

/// A CPU cap as a percentage of the machine's processors, 1 to 100.
pub fn cpu_percent(text: &str) -> Result<u8, String> {
    let number = text.trim().trim_end_matches('%');
    match number.parse::<u8>() {
        Ok(p) if (1..=100).contains(&p) => Ok(p),
        _ => Err(format!("{text:?} is not a percentage from 1 to 100")),
    }
}

/// The slots a runner uses and the share of a processor each slot's task may use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Share {
    /// Tasks run at once.
    pub slots: u32,
    /// The share of a processor each running task may use, above 0 and at most 1.
    pub duty: f64,
}

/// The slots and duty cycle that keep the runner within `cpu_percent` of `cores`
/// processors: as many whole processors as the cap allows, each at full speed, and a duty
/// cycle for the fraction left (BOINC's "use at most N% of the CPUs" and "of CPU time"
/// in one). `slots` given by the volunteer are kept, and the duty cycle shares the cap
/// between them.
pub fn share(cpu_percent: Option<u8>, cores: u32, slots: Option<u32>) -> Share {
    let cores = cores.max(1);
    let Some(percent) = cpu_percent else {
        return Share {
            slots: slots.unwrap_or(cores).max(1),
            duty: 1.0,
        };
    };
    let processors = f64::from(cores) * f64::from(percent.min(100)) / 100.0;
    let slots = slots.unwrap_or(processors.ceil() as u32).max(1);
    Share {
        slots,
        duty: (processors / f64::from(slots)).clamp(0.01, 1.0),
    }
}

/// What the agent saw of the machine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Situation {
    /// Minutes since local midnight.
    pub minute: u16,
    /// Whether the machine runs on battery; `None` when it cannot tell.
    pub on_battery: Option<bool>,
    /// The percentage of the machine's CPU the rest of it uses (not this runner); `None`
    /// before it has been measured.
    pub others_cpu: Option<f32>,
}

/// Why the runner holds its work.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Hold {
    /// Outside the hours it may run.
    Hours,
    /// On battery.
    Battery,
    /// The rest of the machine uses this percentage of the CPU.
    Busy(f32),
}

impl fmt::Display for Hold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hold::Hours => write!(f, "outside the hours it may run"),
            Hold::Battery => write!(f, "the machine runs on battery"),
            Hold::Busy(p) => write!(f, "the machine is in use ({p:.0}% CPU besides the runner)"),
        }
    }
}

impl Controls {
    /// Whether any rule may hold the runner's work.
    pub fn any(&self) -> bool {
        !self.hours.is_empty() || self.mains_only || self.idle_below.is_some()
    }

    /// Why work must wait in `now`, if it must.
    pub fn hold(&self, now: &Situation) -> Option<Hold> {
        if !self.hours.is_empty() && !self.hours.iter().any(|w| w.contains(now.minute)) {
            return Some(Hold::Hours);
        }
        if self.mains_only && now.on_battery == Some(true) {
            return Some(Hold::Battery);
        }
        match (self.idle_below, now.others_cpu) {
            (Some(below), Some(used)) if used >= f32::from(below) => Some(Hold::Busy(used)),
            _ => None,
        }
    }
}

/// How long the machine must stay idle before held work goes on: a pause in typing is
/// not the end of the volunteer's session.
pub const IDLE_FOR: Duration = Duration::from_secs(30);

/// What changed in whether work is held.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Change {
    /// Hold the work, for this reason.
    Hold(Hold),
    /// Let it go on.
    Go,
}

/// Whether work is held, from one look at the machine to the next.
#[derive(Debug, Default)]
pub struct Holding {
    held: Option<Hold>,
    /// When the machine was first seen idle again while work was held for it being busy.
    idle_since: Option<Duration>,
}

impl Holding {
    /// Work is held now.
    pub fn held(&self) -> Option<Hold> {
        self.held
    }

    /// The rules said `hold` at `now` (on any clock): what changes. Work held because the
    /// machine was busy goes on only after it has been idle for [`IDLE_FOR`]; work held for
    /// the hours or the battery goes on at once.
    pub fn look(&mut self, hold: Option<Hold>, now: Duration) -> Option<Change> {
        match (self.held, hold) {
            (None, None) => None,
            (_, Some(h)) => {
                self.idle_since = None;
                let changed = self
                    .held
                    .is_none_or(|was| std::mem::discriminant(&was) != std::mem::discriminant(&h));
                self.held = Some(h);
                changed.then_some(Change::Hold(h))
            }
            (Some(Hold::Busy(_)), None) => {
                let since = *self.idle_since.get_or_insert(now);
                if now.saturating_sub(since) < IDLE_FOR {
                    return None;
                }
                self.held = None;
                self.idle_since = None;
                Some(Change::Go)
            }
            (Some(_), None) => {
                self.held = None;
                Some(Change::Go)
            }
        }
    }
}
