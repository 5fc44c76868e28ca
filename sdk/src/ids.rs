//! The grid's ids, parsed once where they come in (an HTTP request, a command line) into
//! types that cannot hold a wrong one. On the wire they keep their plain forms: a lease's
//! `task_id` is a number, a batch id a string.

use std::fmt;
use std::str::FromStr;

use crate::types::Name;

/// Why an id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct IdError(String);

/// A task at the scheduler: a positive number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskId(i64);

/// A health check at the scheduler: a positive number of its own sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CheckId(i64);

macro_rules! positive_id {
    ($ty:ident, $what:literal) => {
        impl $ty {
            /// The id `n`, which must be positive.
            pub fn new(n: i64) -> Result<$ty, IdError> {
                if n > 0 {
                    Ok($ty(n))
                } else {
                    Err(IdError(format!(
                        concat!("{} is not a ", $what, " id (they are positive)"),
                        n
                    )))
                }
            }

            /// The number.
            pub fn get(self) -> i64 {
                self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

positive_id!(TaskId, "task");
positive_id!(CheckId, "health-check");

/// What a lease is of: a task, or a health check the scheduler gives a cold runner in its
/// place. A runner runs and reports both alike; on the wire a check's lease carries its id
/// negated as the lease's `task_id`, so that a runner needs to know nothing of checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LeaseId {
    /// A task of a batch.
    Task(TaskId),
    /// A health check.
    Check(CheckId),
}

impl LeaseId {
    /// The lease named by a wire `task_id`: positive for a task, negative for a check.
    pub fn from_wire(task_id: i64) -> Result<LeaseId, IdError> {
        match task_id {
            0 => Err(IdError(
                "task_id 0 names no lease (tasks are positive, health checks negative)".into(),
            )),
            n if n > 0 => Ok(LeaseId::Task(TaskId(n))),
            n => n
                .checked_neg()
                .map(|n| LeaseId::Check(CheckId(n)))
                .ok_or_else(|| IdError(format!("task_id {n} names no lease"))),
        }
    }

    /// Its wire `task_id`.
    pub fn wire(self) -> i64 {
        match self {
            LeaseId::Task(t) => t.0,
            LeaseId::Check(c) => -c.0,
        }
    }

    /// The task, when it is one.
    pub fn task(self) -> Option<TaskId> {
        match self {
            LeaseId::Task(t) => Some(t),
            LeaseId::Check(_) => None,
        }
    }
}

/// An id of a prefix and 16 lowercase hex digits, parsed once where it comes in.
macro_rules! hex_id {
    ($(#[$doc:meta])* $ty:ident, $prefix:literal, $what:literal, $hint:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $ty(String);

        impl $ty {
            /// The id whose 16 hex digits are `hex` (the first 16 of a BLAKE3, say).
            pub fn from_digits(hex: &str) -> Result<$ty, IdError> {
                format!(concat!($prefix, "{}"), hex).parse()
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $ty {
            type Err = IdError;

            fn from_str(s: &str) -> Result<$ty, IdError> {
                let digits = s.strip_prefix($prefix).unwrap_or("");
                if digits.len() == 16
                    && digits
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                {
                    Ok($ty(s.to_string()))
                } else {
                    Err(IdError(format!(
                        concat!("{:?} is not a ", $what, " id (`", $prefix,
                            "` and 16 lowercase hex digits, ", $hint, ")"),
                        s
                    )))
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

hex_id!(
    /// A batch: `b-` and 16 lowercase hex digits, derived from everything that defines it.
    BatchId,
    "b-",
    "batch",
    "as `helio submit` prints"
);

hex_id!(
    /// A runner: `r-` and 16 lowercase hex digits of the BLAKE3 of its public key.
    RunnerId,
    "r-",
    "runner",
    "as the runner prints when it joins"
);

/// An owner: the name its owner key holds at a scheduler (the [`Name`] rule: 1 to 128 of
/// A-Z, a-z, 0-9, `.`, `_` and `-`). On the wire, a plain string.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Owner(Name);

impl Owner {
    /// Checks `text` against the name rule.
    pub fn parse(text: &str) -> Result<Owner, IdError> {
        Name::parse(text)
            .map(Owner)
            .map_err(|e| IdError(format!("owner: {e}")))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_id_is_a_task_or_a_check_and_round_trips() {
        assert_eq!(LeaseId::from_wire(7), Ok(LeaseId::Task(TaskId(7))));
        assert_eq!(LeaseId::from_wire(-7), Ok(LeaseId::Check(CheckId(7))));
        for n in [1, 42, i64::MAX, -1, -42, -i64::MAX] {
            assert_eq!(LeaseId::from_wire(n).unwrap().wire(), n);
        }
        assert!(
            LeaseId::from_wire(0)
                .unwrap_err()
                .to_string()
                .contains("task_id 0")
        );
        assert!(LeaseId::from_wire(i64::MIN).is_err());
        assert!(TaskId::new(0).is_err() && CheckId::new(-3).is_err());
    }

    #[test]
    fn a_batch_id_is_b_and_sixteen_lowercase_hex_digits() {
        assert!("b-0123456789abcdef".parse::<BatchId>().is_ok());
        for bad in [
            "",
            "b-",
            "0123456789abcdef",
            "b-0123456789ABCDEF",
            "b-0123456789abcde",
            "b-../../etc/passwd",
        ] {
            let e = bad.parse::<BatchId>().unwrap_err().to_string();
            assert!(e.contains("not a batch id"), "{bad}: {e}");
        }
    }

    #[test]
    fn runner_ids_and_owners_are_checked_where_they_come_in() {
        assert!("r-0123456789abcdef".parse::<RunnerId>().is_ok());
        for bad in [
            "",
            "r-",
            "b-0123456789abcdef",
            "r-0123456789abcdeg",
            "r-x/../y",
        ] {
            let e = bad.parse::<RunnerId>().unwrap_err().to_string();
            assert!(e.contains("not a runner id"), "{bad}: {e}");
        }
        assert_eq!(Owner::parse("ada-lab").unwrap().as_str(), "ada-lab");
        for bad in ["", "ada lab", "../ada", ".."] {
            let e = Owner::parse(bad).unwrap_err().to_string();
            assert!(e.starts_with("owner: "), "{bad}: {e}");
        }
    }
}
