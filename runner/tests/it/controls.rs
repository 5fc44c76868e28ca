//! The volunteer's controls: the CPU cap's slots and duty cycle, hours, battery and idle
//! rules, each against a direct statement of what it means.

use std::time::Duration;

use helio_runner::controls::{self, Change, Controls, Hold, Holding, IDLE_FOR, Situation};
use proptest::prelude::*;

fn at(minute: u16) -> Situation {
    Situation {
        minute,
        on_battery: Some(false),
        others_cpu: Some(0.0),
    }
}

proptest! {
    /// The cap is never exceeded, and with the slots left to the runner it is used whole:
    /// slots × duty is the cap's share of the processors.
    #[test]
    fn the_cpu_cap_is_kept_by_slots_and_duty(
        percent in 1u8..=100,
        cores in 1u32..=256,
        slots in proptest::option::of(1u32..=64),
    ) {
        let share = controls::share(Some(percent), cores, slots);
        let cap = f64::from(cores) * f64::from(percent) / 100.0;
        let used = f64::from(share.slots) * share.duty;
        prop_assert!(share.duty > 0.0 && share.duty <= 1.0);
        prop_assert!(share.slots >= 1);
        // The duty cycle's floor (1%) may exceed a tiny cap spread over many slots.
        prop_assert!(used <= cap + 1e-9 || share.duty == 0.01, "{share:?} uses {used} of {cap}");
        if let Some(slots) = slots {
            prop_assert_eq!(share.slots, slots);
        } else {
            prop_assert!((used - cap).abs() < 1e-9, "{share:?} uses {used} of {cap}");
            prop_assert!(share.slots <= cores);
        }
    }

    /// A window holds exactly the minutes from its start up to its end, past midnight when
    /// it ends before it starts.
    #[test]
    fn a_window_holds_the_minutes_it_names(start in 0u16..1440, end in 0u16..1440, minute in 0u16..1440) {
        prop_assume!(start != end);
        let text = format!("{:02}:{:02}-{:02}:{:02}", start / 60, start % 60, end / 60, end % 60);
        let window: controls::Window = text.parse().unwrap();
        prop_assert_eq!(window.to_string(), text);
        let minutes_in = (0..1440u32)
            .map(|k| ((u32::from(start) + k) % 1440) as u16)
            .take_while(|m| *m != end)
            .any(|m| m == minute);
        prop_assert_eq!(window.contains(minute), minutes_in);
    }

    /// Work never goes on while a rule holds it, and goes on once no rule does (after the
    /// machine has stayed idle long enough, when it was held for being busy).
    #[test]
    fn held_work_goes_on_only_when_no_rule_holds_it(
        looks in proptest::collection::vec((any::<bool>(), any::<bool>(), 0f32..100.0, 1u64..20), 1..60),
    ) {
        let rules = Controls { mains_only: true, idle_below: Some(25), ..Controls::default() };
        let mut holding = Holding::default();
        let mut now = Duration::ZERO;
        let mut idle_from: Option<Duration> = None;
        for (battery, busy, cpu, step) in looks {
            now += Duration::from_secs(step);
            let seen = Situation {
                minute: 0,
                on_battery: Some(battery),
                others_cpu: Some(if busy { 25.0 + cpu * 0.75 } else { cpu * 0.24 }),
            };
            let hold = rules.hold(&seen);
            prop_assert_eq!(hold.is_some(), battery || busy);
            let was = holding.held();
            let change = holding.look(hold, now);
            if hold.is_some() {
                prop_assert!(holding.held().is_some());
                prop_assert_ne!(change, Some(Change::Go));
                idle_from = None;
            } else if matches!(was, Some(Hold::Busy(_))) {
                let since = *idle_from.get_or_insert(now);
                prop_assert_eq!(holding.held().is_none(), now - since >= IDLE_FOR);
            } else {
                idle_from = None;
                prop_assert!(holding.held().is_none());
            }
        }
    }
}

#[test]
fn hours_outside_their_windows_hold_the_work() {
    let rules = Controls {
        hours: controls::hours("22:00-07:00, 12:00-13:30").unwrap(),
        ..Controls::default()
    };
    assert_eq!(rules.hold(&at(23 * 60)), None);
    assert_eq!(rules.hold(&at(6 * 60 + 59)), None);
    assert_eq!(rules.hold(&at(12 * 60 + 45)), None);
    assert_eq!(rules.hold(&at(7 * 60)), Some(Hold::Hours));
    assert_eq!(rules.hold(&at(13 * 60 + 30)), Some(Hold::Hours));
}

#[test]
fn an_unknown_battery_or_cpu_holds_nothing() {
    let rules = Controls {
        mains_only: true,
        idle_below: Some(10),
        ..Controls::default()
    };
    let unknown = Situation {
        minute: 0,
        on_battery: None,
        others_cpu: None,
    };
    assert_eq!(rules.hold(&unknown), None);
}

#[test]
fn bad_controls_are_refused_naming_what_is_wrong() {
    for (text, words) in [
        ("22:00", "HH:MM-HH:MM"),
        ("25:00-07:00", "\"25:00\""),
        ("09:60-10:00", "\"09:60\""),
        ("08:00-08:00", "starts where it ends"),
        ("nine-five", "\"nine\""),
    ] {
        let error = controls::hours(text).unwrap_err();
        assert!(error.contains(words), "{text}: {error}");
    }
    assert!(controls::hours("00:00-24:00").is_ok());
    for bad in ["0", "101", "half", "-5%"] {
        let error = controls::cpu_percent(bad).unwrap_err();
        assert!(error.contains("1 to 100"), "{bad}: {error}");
    }
    assert_eq!(controls::cpu_percent("50%"), Ok(50));
}

#[test]
fn a_cap_on_two_cores_uses_one_slot_or_a_duty_cycle() {
    let share = controls::share(Some(50), 2, None);
    assert_eq!((share.slots, share.duty), (1, 1.0));
    let share = controls::share(Some(30), 2, None);
    assert_eq!(share.slots, 1);
    assert!((share.duty - 0.6).abs() < 1e-9);
    let share = controls::share(Some(50), 2, Some(2));
    assert_eq!((share.slots, share.duty), (2, 0.5));
    assert_eq!(controls::share(None, 8, None).slots, 8);
}
