//! Settings from a TOML file, for the binaries beside their flags and environment variables.
//! A file's keys are the long flags of the command it configures (`listen`, `data-dir` or
//! `data_dir`, `max-runners = ["cpu=1000"]`); a flag on the command line wins over the
//! environment, which wins over the file, which wins over the defaults.
//!
//! [`with_file`] turns the file's settings into the flags they stand for and puts them in
//! front of the command line's, so that clap validates a file's value exactly as it would
//! the flag's, and its error names the flag.

use std::ffi::OsString;
use std::path::Path;

use clap::Command;

/// Why a settings file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// It could not be read.
    #[error("settings file {path}: {error}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        error: std::io::Error,
    },
    /// It is not TOML, or a value has a type no flag takes.
    #[error("settings file {path}: {error}")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong and where.
        error: String,
    },
    /// It names a setting the command does not have.
    #[error("settings file {path}: unknown setting `{key}`; the settings are {known}")]
    Unknown {
        /// The file.
        path: String,
        /// The key.
        key: String,
        /// The settings there are.
        known: String,
    },
}

/// The command line `args` (program name first) with the settings of the file named by
/// `--config FILE` (or the environment variable `env`) added as flags, for `command`, or for
/// its subcommand when `args` name one. Without a file, `args` come back unchanged.
pub fn with_file(
    command: &Command,
    args: Vec<OsString>,
    env: &str,
) -> Result<Vec<OsString>, ConfigError> {
    let Some((path, at)) = config_path(&args).or_else(|| {
        std::env::var_os(env)
            .filter(|v| !v.is_empty())
            .map(|p| (p, None))
    }) else {
        return Ok(args);
    };
    let (target, insert) = target(command, &args, at);
    // Only a command that takes `--config` reads a file.
    if !target
        .get_arguments()
        .any(|a| a.get_long() == Some("config"))
    {
        return Ok(args);
    }
    let shown = Path::new(&path).display().to_string();
    let text = std::fs::read_to_string(&path).map_err(|error| ConfigError::Read {
        path: shown.clone(),
        error,
    })?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Parse {
            path: shown.clone(),
            error: e.to_string(),
        })?;
    let given: Vec<String> = args
        .iter()
        .filter_map(|a| a.to_str())
        .filter_map(|a| a.strip_prefix("--"))
        .map(|a| a.split('=').next().unwrap_or(a).to_string())
        .collect();
    let mut flags: Vec<OsString> = Vec::new();
    for (key, value) in &table {
        let long = key.replace('_', "-");
        let Some(arg) = target
            .get_arguments()
            .find(|a| a.get_long() == Some(long.as_str()) && long != "config")
        else {
            let known: Vec<String> = target
                .get_arguments()
                .filter_map(|a| a.get_long())
                .filter(|l| *l != "config" && *l != "help" && *l != "version")
                .map(String::from)
                .collect();
            return Err(ConfigError::Unknown {
                path: shown,
                key: key.clone(),
                known: known.join(", "),
            });
        };
        if given.contains(&long) {
            continue;
        }
        if let Some(var) = arg.get_env()
            && std::env::var_os(var).is_some_and(|v| !v.is_empty())
        {
            continue;
        }
        flags.extend(as_flags(&long, value).map_err(|error| ConfigError::Parse {
            path: shown.clone(),
            error: format!("`{key}` is {error}"),
        })?);
    }
    let mut out = args;
    out.splice(insert..insert, flags);
    Ok(out)
}

/// The command the file configures: `command`'s subcommand that `args` name (skipping the
/// `--config` flag at `at`), or `command` itself; and where its flags go in `args`.
fn target<'c>(command: &'c Command, args: &[OsString], at: Option<usize>) -> (&'c Command, usize) {
    for (i, arg) in args.iter().enumerate().skip(1) {
        if Some(i) == at || Some(i) == at.map(|a| a + 1) {
            continue;
        }
        let Some(text) = arg.to_str() else { break };
        if text.starts_with('-') {
            continue;
        }
        if let Some(sub) = command.find_subcommand(text) {
            return (sub, i + 1);
        }
        break;
    }
    (command, 1)
}

/// A setting as flags: `--long=value` per value (one per item of a list); `--long` for
/// true, nothing for false.
fn as_flags(long: &str, value: &toml::Value) -> Result<Vec<OsString>, String> {
    let values = match value {
        toml::Value::Array(items) => items.iter().collect(),
        one => vec![one],
    };
    let mut flags = Vec::new();
    for value in values {
        let text = match value {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(n) => n.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(true) => {
                flags.push(format!("--{long}").into());
                continue;
            }
            toml::Value::Boolean(false) => continue,
            other => {
                return Err(format!(
                    "a {}; give a string, number, boolean or a list of them",
                    other.type_str()
                ));
            }
        };
        flags.push(format!("--{long}={text}").into());
    }
    Ok(flags)
}

/// The value of `--config FILE` or `--config=FILE`, and where the flag is.
fn config_path(args: &[OsString]) -> Option<(OsString, Option<usize>)> {
    for (i, arg) in args.iter().enumerate() {
        let text = arg.to_str()?;
        if text == "--" {
            return None;
        }
        if text == "--config" {
            return args.get(i + 1).map(|p| (p.clone(), Some(i)));
        }
        if let Some(path) = text.strip_prefix("--config=") {
            return Some((path.into(), Some(i)));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, ArgAction};

    fn command() -> Command {
        Command::new("scheduler").subcommand(
            Command::new("serve")
                .arg(Arg::new("config").long("config"))
                .arg(
                    Arg::new("listen")
                        .long("listen")
                        .default_value("127.0.0.1:8080"),
                )
                .arg(
                    Arg::new("data-dir")
                        .long("data-dir")
                        .env("HELIO_TEST_CONFIG_DIR"),
                )
                .arg(
                    Arg::new("max-runners")
                        .long("max-runners")
                        .action(ArgAction::Append),
                )
                .arg(
                    Arg::new("json-logs")
                        .long("json-logs")
                        .action(ArgAction::SetTrue),
                ),
        )
    }

    fn run(file: &str, args: &[&str]) -> Result<Vec<String>, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("helio.toml");
        std::fs::write(&path, file).unwrap();
        let mut full: Vec<OsString> = vec!["scheduler".into(), "serve".into()];
        full.push("--config".into());
        full.push(path.into());
        full.extend(args.iter().map(OsString::from));
        with_file(&command(), full, "HELIO_TEST_CONFIG_UNSET")
            .map(|a| a.into_iter().map(|a| a.into_string().unwrap()).collect())
    }

    #[test]
    fn a_files_settings_become_flags_of_the_subcommand() {
        let args = run(
            "listen = \"0.0.0.0:9000\"\nmax_runners = [\"cpu=10\", \"gpu=2\"]\njson-logs = true\n",
            &[],
        )
        .unwrap();
        let matches = command().try_get_matches_from(&args).unwrap();
        let serve = matches.subcommand_matches("serve").unwrap();
        assert_eq!(serve.get_one::<String>("listen").unwrap(), "0.0.0.0:9000");
        let pools: Vec<&String> = serve.get_many("max-runners").unwrap().collect();
        assert_eq!(pools, ["cpu=10", "gpu=2"]);
        assert!(serve.get_flag("json-logs"));
    }

    #[test]
    fn a_flag_wins_over_the_file() {
        let args = run("listen = \"0.0.0.0:9000\"\n", &["--listen", "127.0.0.1:1"]).unwrap();
        let matches = command().try_get_matches_from(&args).unwrap();
        let serve = matches.subcommand_matches("serve").unwrap();
        assert_eq!(serve.get_one::<String>("listen").unwrap(), "127.0.0.1:1");
    }

    #[test]
    fn an_unknown_or_malformed_setting_is_named() {
        let e = run("lisen = \"x\"\n", &[]).unwrap_err().to_string();
        assert!(
            e.contains("unknown setting `lisen`") && e.contains("listen"),
            "{e}"
        );
        let e = run("listen = \n", &[]).unwrap_err().to_string();
        assert!(e.contains("helio.toml"), "{e}");
        let e = run("[listen]\nx = 1\n", &[]).unwrap_err().to_string();
        assert!(e.contains("`listen` is a table"), "{e}");
    }

    #[test]
    fn no_file_changes_nothing() {
        let args: Vec<OsString> = ["scheduler", "serve", "--listen", "x"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(
            with_file(&command(), args.clone(), "HELIO_TEST_CONFIG_UNSET").unwrap(),
            args
        );
    }
}
