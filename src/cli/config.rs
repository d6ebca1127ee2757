//! `vpc-cni config`: the effective configuration from the environment, as JSON.

use std::process::ExitCode;

use crate::config::Config;

const USAGE: &str = "\
usage: vpc-cni config

Prints the effective configuration read from the environment as a JSON object: variable name ->
effective value (defaults applied, odd values adjusted as upstream does; those adjustments are
printed to stderr as warnings). Exits 1 listing every bad variable, with its value and what is
allowed, when any is invalid.
";

/// Runs `vpc-cni config` with the arguments after the command name.
pub fn main(args: &[String]) -> ExitCode {
    match args.first().map(String::as_str) {
        None => {}
        Some("-h" | "--help") => {
            super::out(USAGE);
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            eprintln!("vpc-cni config: unexpected argument {other:?}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    }
    match Config::from_process_env() {
        Ok((config, warnings)) => {
            for w in &warnings {
                eprintln!("vpc-cni config: warning: {w}");
            }
            super::out(&format!("{}\n", config.to_json()));
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!(
                "vpc-cni config: {} invalid environment variable{}:",
                errors.len(),
                if errors.len() == 1 { "" } else { "s" }
            );
            for e in &errors {
                eprintln!("  {e}");
            }
            ExitCode::from(1)
        }
    }
}
