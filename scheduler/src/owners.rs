//! Owner accounts: who may hold an owner name, and how a new owner is admitted.
//!
//! An owner is a key, not a string: the first runner that registers under a name, endorsed
//! by an owner key ([`helio_sdk::wire::endorsement_message`]), makes that key the name's
//! holder for good; every later runner of the name must carry the same key's endorsement.
//! Names are compared without regard to case, so that no one passes for `Ada` as `ada`. One
//! key holds one name. A name that runners used before owner keys existed is claimed only
//! through one of those runners (its runner key proves it is the same volunteer).
//!
//! A new owner is admitted as the operator chooses ([`Admission`]): openly, at most so many
//! new owners a day from one network address, or by invitation only. Neither makes a fresh
//! identity credible: that is earned ([`crate::credibility`]); admission bounds how fast
//! identities can be made.
//!
//! **Pure**: what the database holds is passed in as [`Found`].

/// How the operator admits new owners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Anyone, at most `per_address_per_day` new owners a day from one network address
    /// (an invitation admits beyond that).
    Open {
        /// New owners a day from one address.
        per_address_per_day: u32,
    },
    /// Only with an invitation the operator made (`scheduler token create --role invite`).
    Invite,
}

impl Default for Admission {
    /// Open, five new owners a day from one address: a household or a lab behind one address
    /// gets going; a script minting identities does not.
    fn default() -> Self {
        Admission::Open {
            per_address_per_day: 5,
        }
    }
}

impl std::str::FromStr for Admission {
    type Err = String;
    fn from_str(s: &str) -> Result<Admission, String> {
        match s {
            "open" => Ok(Admission::default()),
            "invite" => Ok(Admission::Invite),
            _ => Err(format!(
                "unknown admission {s:?}: choose open (rate-limited per address) or invite"
            )),
        }
    }
}

/// What the database holds about a registration's owner name and key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    /// The account holding the name (compared without case): its name as written, and
    /// whether its key is the one presented.
    pub name_held: Option<(String, bool)>,
    /// The name the presented key already holds, if any.
    pub key_holds: Option<String>,
    /// Runners registered under the name before it had an account, and whether the
    /// registering runner is one of them.
    pub earlier_runners: Option<bool>,
    /// Owners admitted from the registration's address in the last day.
    pub from_address_today: u64,
    /// Whether a valid invitation came with the registration.
    pub invited: bool,
}

/// How a registration's owner is let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admitted {
    /// The account exists and the key is its own.
    Known,
    /// A new account, admitted openly.
    Open,
    /// A new account, on an invitation (which is now used up).
    Invited,
}

impl Admitted {
    /// How it is recorded.
    pub fn as_str(self) -> &'static str {
        match self {
            Admitted::Known => "known",
            Admitted::Open => "open",
            Admitted::Invited => "invite",
        }
    }
}

/// Why a registration's owner is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Another key holds the name.
    #[error(
        "owner name {0:?} is held by another owner key; register with that owner's key \
         (--owner-key), or choose another name"
    )]
    NameHeld(String),
    /// The name is held by this key, spelt otherwise.
    #[error("this owner key holds the name {0:?}: register under that spelling")]
    Spelling(String),
    /// The key holds another name.
    #[error(
        "this owner key holds the name {0:?}; one key holds one name: register as {0:?}, or \
         make another key (runner owner create) for another owner"
    )]
    KeyHoldsOther(String),
    /// The name's earlier runners have not claimed it.
    #[error(
        "owner {0:?} has runners from before owner keys; start one of them (with its own \
         runner key) with your owner key to claim the name"
    )]
    Unclaimed(String),
    /// Admission is by invitation and none came.
    #[error(
        "this grid admits new owners by invitation: ask its operator for one and start the \
         runner with --invite"
    )]
    NeedsInvite,
    /// Too many new owners from one address.
    #[error(
        "{0} new owners came from this address in the last day, the most this grid admits; \
         try again tomorrow, or ask the operator for an invitation"
    )]
    TooMany(u64),
}

/// Whether a registration under `name` (as written) with the database showing `found` is
/// let in under `admission`, and how.
pub fn admit(admission: Admission, name: &str, found: &Found) -> Result<Admitted, Refused> {
    if let Some((held, ours)) = &found.name_held {
        return match (ours, held == name) {
            (true, true) => Ok(Admitted::Known),
            (true, false) => Err(Refused::Spelling(held.clone())),
            (false, _) => Err(Refused::NameHeld(held.clone())),
        };
    }
    if let Some(other) = &found.key_holds {
        return Err(Refused::KeyHoldsOther(other.clone()));
    }
    if found.earlier_runners == Some(false) {
        return Err(Refused::Unclaimed(name.to_string()));
    }
    if found.invited {
        return Ok(Admitted::Invited);
    }
    match admission {
        Admission::Invite => Err(Refused::NeedsInvite),
        Admission::Open {
            per_address_per_day,
        } if found.from_address_today >= u64::from(per_address_per_day) => {
            Err(Refused::TooMany(found.from_address_today))
        }
        Admission::Open { .. } => Ok(Admitted::Open),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPEN: Admission = Admission::Open {
        per_address_per_day: 2,
    };

    #[test]
    fn a_name_is_held_by_its_key_alone() {
        let held = |ours| Found {
            name_held: Some(("Ada".into(), ours)),
            ..Found::default()
        };
        assert_eq!(admit(OPEN, "Ada", &held(true)), Ok(Admitted::Known));
        // An invitation does not buy another's name.
        let invited = Found {
            invited: true,
            ..held(false)
        };
        assert_eq!(
            admit(OPEN, "Ada", &invited),
            Err(Refused::NameHeld("Ada".into()))
        );
        assert_eq!(
            admit(OPEN, "ada", &held(false)),
            Err(Refused::NameHeld("Ada".into()))
        );
        assert_eq!(
            admit(OPEN, "ada", &held(true)),
            Err(Refused::Spelling("Ada".into()))
        );
    }

    #[test]
    fn one_key_holds_one_name() {
        let found = Found {
            key_holds: Some("ada".into()),
            ..Found::default()
        };
        assert_eq!(
            admit(OPEN, "bob", &found),
            Err(Refused::KeyHoldsOther("ada".into()))
        );
    }

    #[test]
    fn a_name_from_before_keys_is_claimed_only_by_its_runners() {
        let found = |mine| Found {
            earlier_runners: Some(mine),
            ..Found::default()
        };
        assert_eq!(
            admit(OPEN, "ada", &found(false)),
            Err(Refused::Unclaimed("ada".into()))
        );
        assert_eq!(admit(OPEN, "ada", &found(true)), Ok(Admitted::Open));
    }

    #[test]
    fn new_owners_are_limited_per_address_or_need_an_invitation() {
        let from = |n| Found {
            from_address_today: n,
            ..Found::default()
        };
        assert_eq!(admit(OPEN, "a", &from(1)), Ok(Admitted::Open));
        assert_eq!(admit(OPEN, "a", &from(2)), Err(Refused::TooMany(2)));
        let invited = Found {
            invited: true,
            ..from(2)
        };
        assert_eq!(admit(OPEN, "a", &invited), Ok(Admitted::Invited));
        assert_eq!(
            admit(Admission::Invite, "a", &from(0)),
            Err(Refused::NeedsInvite)
        );
        assert_eq!(
            admit(Admission::Invite, "a", &invited),
            Ok(Admitted::Invited)
        );
    }
}
