use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fmt::Display;
use std::str::FromStr;

use crate::{Error, Result};

/// The task's parameters: its arguments as `--name value`, `--name=value` or `--name`.
#[derive(Debug)]
pub struct Params {
    pairs: Vec<(String, Option<String>)>,
    used: RefCell<BTreeSet<String>>,
}

/// The parameters of this task, from its arguments.
pub fn params() -> Params {
    Params::parse(std::env::args().skip(1))
}

impl Params {
    /// Parses arguments (without the program name).
    pub fn parse(args: impl IntoIterator<Item = impl Into<String>>) -> Params {
        let mut pairs = Vec::new();
        let mut args = args.into_iter().map(Into::into).peekable();
        while let Some(arg) = args.next() {
            let Some(name) = arg.strip_prefix("--") else {
                // A value without a name: kept under "" so `finish` can complain.
                pairs.push((String::new(), Some(arg)));
                continue;
            };
            if let Some((name, value)) = name.split_once('=') {
                pairs.push((name.to_string(), Some(value.to_string())));
            } else if args.peek().is_some_and(|next| !next.starts_with("--")) {
                pairs.push((name.to_string(), args.next()));
            } else {
                pairs.push((name.to_string(), None));
            }
        }
        Params {
            pairs,
            used: RefCell::new(BTreeSet::new()),
        }
    }

    fn raw(&self, name: &str) -> Result<Option<&str>> {
        self.used.borrow_mut().insert(name.to_string());
        let mut found = self.pairs.iter().filter(|(n, _)| n == name);
        let first = found.next();
        if found.next().is_some() {
            return Err(Error::msg(format!("parameter --{name} is given twice")));
        }
        match first {
            None => Ok(None),
            Some((_, Some(value))) => Ok(Some(value)),
            Some((_, None)) => Err(Error::msg(format!("parameter --{name} needs a value"))),
        }
    }

    /// The parameter `name`, parsed as a `T`; an error if it is missing or does not parse.
    pub fn get<T>(&self, name: &str) -> Result<T>
    where
        T: FromStr,
        T::Err: Display,
    {
        match self.raw(name)? {
            Some(value) => parse(name, value),
            None => Err(Error::msg(format!("parameter --{name} is required"))),
        }
    }

    /// The parameter `name` parsed as a `T`, or `default` when it is not given.
    pub fn get_or<T>(&self, name: &str, default: T) -> Result<T>
    where
        T: FromStr,
        T::Err: Display,
    {
        match self.raw(name)? {
            Some(value) => parse(name, value),
            None => Ok(default),
        }
    }

    /// Whether the flag `--name` is given (without a value).
    pub fn flag(&self, name: &str) -> Result<bool> {
        self.used.borrow_mut().insert(name.to_string());
        match self.pairs.iter().find(|(n, _)| n == name) {
            None => Ok(false),
            Some((_, None)) => Ok(true),
            Some((_, Some(v))) => Err(Error::msg(format!(
                "parameter --{name} is a flag and takes no value (got {v:?})"
            ))),
        }
    }

    /// An error naming every argument the job never asked about: a misspelt parameter
    /// should fail the task, not be silently ignored.
    pub fn finish(&self) -> Result<()> {
        let used = self.used.borrow();
        let unknown: Vec<String> = self
            .pairs
            .iter()
            .filter(|(n, _)| !used.contains(n))
            .map(|(n, v)| match (n.as_str(), v) {
                ("", Some(v)) => format!("{v:?}"),
                (n, _) => format!("--{n}"),
            })
            .collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(Error::msg(format!(
                "unknown argument{} {}",
                if unknown.len() > 1 { "s" } else { "" },
                unknown.join(", ")
            )))
        }
    }
}

fn parse<T>(name: &str, value: &str) -> Result<T>
where
    T: FromStr,
    T::Err: Display,
{
    value.parse().map_err(|e: T::Err| {
        Error::msg(format!(
            "parameter --{name}: {value:?} is not a valid {}: {e}",
            short_type_name::<T>()
        ))
    })
}

fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_spellings_flags_and_defaults() {
        let p = Params::parse(["--steps", "100", "--dt=0.5", "--verbose", "--t", "-1.5"]);
        assert_eq!(p.get::<u32>("steps").unwrap(), 100);
        assert_eq!(p.get::<f64>("dt").unwrap(), 0.5);
        assert!(p.flag("verbose").unwrap());
        assert!(!p.flag("quiet").unwrap());
        assert_eq!(p.get_or::<u32>("size", 7).unwrap(), 7);
        // A negative number is a value, not a parameter name.
        assert_eq!(p.get::<f64>("t").unwrap(), -1.5);
        p.finish().unwrap();
    }

    #[test]
    fn errors_name_the_parameter() {
        let p = Params::parse(["--steps", "many", "--stpes", "3", "stray"]);
        let e = p.get::<u32>("steps").unwrap_err().to_string();
        assert!(
            e.contains("--steps") && e.contains("\"many\"") && e.contains("u32"),
            "{e}"
        );
        let e = p.get::<u32>("seed").unwrap_err().to_string();
        assert!(e.contains("--seed is required"), "{e}");
        let e = p.finish().unwrap_err().to_string();
        assert!(e.contains("--stpes") && e.contains("\"stray\""), "{e}");
        let twice = Params::parse(["--n=1", "--n=2"]);
        assert!(
            twice
                .get::<u32>("n")
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
    }
}
