//! Configuration files for `herald serve` (and `herald config`, which prints the result).
//!
//! `--config FILE` (or `HERALD_CONFIG`) names a TOML file whose keys are the long flags of
//! `herald serve`, with `-` or `_` (`data-dir = "/var/lib/herald"`, `cors_origin = ["https://a"]`,
//! `no-anonymous = true`). Precedence: a flag beats its environment variable, which beats the
//! file, which beats the default. A key that is not a flag is an error naming the key.
//!
//! It works on the arguments before the final parse: the file's values are added as flags for
//! exactly the options that neither the command line nor the environment set.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Command, CommandFactory};

use super::Cli;

/// Subcommands that take `--config`.
const CONFIGURABLE: [&str; 2] = ["serve", "config"];

/// `argv` with the settings of the configuration file added, if one is named.
pub fn apply_file(argv: Vec<OsString>) -> Result<Vec<OsString>, String> {
    let command = Cli::command();
    let Ok(matches) = command.clone().try_get_matches_from(&argv) else {
        // Let the real parse report the problem.
        return Ok(argv);
    };
    let Some((name, sub)) = matches.subcommand() else {
        return Ok(argv);
    };
    if !CONFIGURABLE.contains(&name) {
        return Ok(argv);
    }
    let Some(path) = sub.get_one::<PathBuf>("config").cloned() else {
        return Ok(argv);
    };
    let Some(sub_command) = command.find_subcommand(name) else {
        return Ok(argv);
    };
    let extra = file_arguments(&path, sub_command, sub)?;
    let mut out = argv;
    out.extend(extra);
    Ok(out)
}

fn file_arguments(
    path: &Path,
    command: &Command,
    matches: &ArgMatches,
) -> Result<Vec<OsString>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the configuration file {}: {e}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| format!("{} is not valid TOML: {e}", path.display()))?;
    let mut extra = Vec::new();
    for (key, value) in &table {
        let wanted = key.replace('_', "-");
        let arg = command
            .get_arguments()
            .find(|a| a.get_long() == Some(wanted.as_str()) && a.get_id() != "config")
            .ok_or_else(|| {
                format!(
                    "unknown key `{key}` in {}: the keys are the long options of `herald serve` \
                     (see `herald serve --help`)",
                    path.display()
                )
            })?;
        let id = arg.get_id().as_str();
        if matches!(
            matches.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        let flag = format!("--{wanted}");
        let is_switch = matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse);
        let values = match value {
            toml::Value::Array(items) => items.iter().collect(),
            single => vec![single],
        };
        for v in values {
            match (v, is_switch) {
                (toml::Value::Boolean(true), true) => extra.push(OsString::from(&flag)),
                (toml::Value::Boolean(false), true) => {}
                (_, true) => {
                    return Err(format!(
                        "`{key}` in {} must be true or false",
                        path.display()
                    ))
                }
                (toml::Value::String(s), false) => extra.push(format!("{flag}={s}").into()),
                (toml::Value::Integer(n), false) => extra.push(format!("{flag}={n}").into()),
                (toml::Value::Float(n), false) => extra.push(format!("{flag}={n}").into()),
                (toml::Value::Boolean(b), false) => extra.push(format!("{flag}={b}").into()),
                (other, false) => {
                    return Err(format!(
                        "`{key}` in {} has a value of an unsupported kind: {other}",
                        path.display()
                    ))
                }
            }
        }
    }
    Ok(extra)
}

/// Prints the effective settings of `herald serve` as TOML, with where each came from; secrets
/// are masked.
pub fn print_effective(argv: &[OsString]) -> Result<(), String> {
    let matches = Cli::command()
        .try_get_matches_from(argv)
        .map_err(|e| e.to_string())?;
    let Some(("config", sub)) = matches.subcommand() else {
        return Err("`herald config` was not the command".into());
    };
    let command = Cli::command();
    let Some(config) = command.find_subcommand("config") else {
        return Err("no `config` subcommand".into());
    };
    for arg in config.get_arguments() {
        let id = arg.get_id().as_str();
        let Some(long) = arg.get_long() else { continue };
        if id == "config" || long == "help" {
            continue;
        }
        let source = match sub.value_source(id) {
            Some(ValueSource::CommandLine) => "flag or configuration file",
            Some(ValueSource::EnvVariable) => "environment",
            Some(ValueSource::DefaultValue) => "default",
            _ => "not set",
        };
        let values: Vec<String> = sub
            .get_raw(id)
            .map(|vals| vals.map(|v| v.to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let secret = id.ends_with("key") && !values.is_empty();
        let shown = if secret {
            "\"********\"".to_owned()
        } else if matches!(arg.get_action(), ArgAction::SetTrue) {
            (sub.get_flag(id)).to_string()
        } else if values.is_empty() {
            format!("# {long} is not set")
        } else if values.len() == 1 && !matches!(arg.get_action(), ArgAction::Append) {
            toml_string(&without_password(&values[0]))
        } else {
            format!(
                "[{}]",
                values
                    .iter()
                    .map(|v| toml_string(v))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        if shown.starts_with('#') {
            println!("{shown}");
        } else {
            println!("{long} = {shown}  # {source}");
        }
    }
    Ok(())
}

/// A URL's user and password replaced by `…` (e.g. `redis://:secret@host` in `--store`).
fn without_password(value: &str) -> String {
    match value.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((_, host)) if !host.contains('/') || rest.find('@') < rest.find('/') => {
                format!("{scheme}://…@{host}")
            }
            _ => value.to_owned(),
        },
        None => value.to_owned(),
    }
}

/// A value as TOML: whole numbers bare, everything else a string.
fn toml_string(value: &str) -> String {
    match value.parse::<i64>() {
        Ok(n) => n.to_string(),
        Err(_) => toml::Value::String(value.to_owned()).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn file_values_fill_only_what_flags_and_env_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("herald.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9999\"\ndata_dir = \"/from/file\"\nno-anonymous = true\n\
             cors-origin = [\"https://a.example\", \"https://b.example\"]\nheartbeat = \"5s\"\n",
        )
        .unwrap();
        let p = path.to_string_lossy().into_owned();
        let out = apply_file(argv(&[
            "herald",
            "serve",
            "--config",
            &p,
            "--data-dir",
            "/from/flag",
        ]))
        .unwrap();
        let text: Vec<String> = out
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        assert!(
            text.contains(&"--listen=127.0.0.1:9999".to_owned()),
            "{text:?}"
        );
        assert!(
            !text.iter().any(|a| a == "--data-dir=/from/file"),
            "{text:?}"
        );
        assert!(text.contains(&"--no-anonymous".to_owned()));
        assert!(text.contains(&"--cors-origin=https://b.example".to_owned()));
        assert!(text.contains(&"--heartbeat=5s".to_owned()));
    }

    #[test]
    fn passwords_in_urls_are_masked() {
        assert_eq!(
            without_password("redis://:pw@127.0.0.1:6379/0"),
            "redis://…@127.0.0.1:6379/0"
        );
        assert_eq!(
            without_password("redis://127.0.0.1:6379/0"),
            "redis://127.0.0.1:6379/0"
        );
        assert_eq!(without_password("redb"), "redb");
    }

    #[test]
    fn unknown_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("herald.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:1\"\nlisten_adress = \"x\"\n").unwrap();
        let p = path.to_string_lossy().into_owned();
        let err = apply_file(argv(&["herald", "serve", "--config", &p])).unwrap_err();
        assert!(err.contains("unknown key `listen_adress`"), "{err}");
    }

    #[test]
    fn bad_toml_and_missing_files_are_reported() {
        let err =
            apply_file(argv(&["herald", "serve", "--config", "/no/such/file.toml"])).unwrap_err();
        assert!(err.contains("/no/such/file.toml"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "listen = \n").unwrap();
        let p = path.to_string_lossy().into_owned();
        assert!(apply_file(argv(&["herald", "serve", "--config", &p]))
            .unwrap_err()
            .contains("not valid TOML"));
    }
}
