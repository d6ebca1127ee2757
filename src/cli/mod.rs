//! The `vpc-cni <command>` command line.

use std::ffi::OsString;
use std::process::ExitCode;

pub mod config;
pub mod flags;
pub mod max_pods;
pub mod plan;
pub mod status;

const USAGE: &str = "\
usage: vpc-cni <command> [options]

Pod networking for Kubernetes on AWS. The same binary is the CNI plugin when
called as aws-cni, and ipamd when called as aws-k8s-agent or ipamd.

commands:
  ipamd       run the node IP address manager (same as argv[0] aws-k8s-agent)
  cni         run the CNI plugin (same as argv[0] aws-cni)
  max-pods    print the kubelet --max-pods value for an instance type
  config      print the effective configuration from the environment as JSON
  plan        plan a subnet's addresses for instance groups by running the warm-pool planner
  install-cni install aws-cni into HOST_CNI_BIN_PATH and 10-aws.conflist into HOST_CNI_CONFDIR_PATH
  status      show the running ipamd's ENIs, addresses, prefixes and pods (exit 0 ready, 1 not
              ready or no free address, 2 unreachable; --json)

options:
  -h, --help     print this help
  -V, --version  print the version and git revision
";

/// Writes `text` to standard output. A closed pipe (`vpc-cni config | head`) is not an error worth a message
/// or a panic: the reader has what it wanted.
pub fn out(text: &str) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
}

/// Runs the CLI with the arguments after `argv[0]`.
pub fn main(args: Vec<OsString>) -> ExitCode {
    let mut args = args.into_iter();
    let Some(cmd) = args.next() else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    let rest: Vec<String> = match args.map(OsString::into_string).collect() {
        Ok(rest) => rest,
        Err(bad) => {
            eprintln!("vpc-cni: argument {bad:?} is not valid UTF-8");
            return ExitCode::from(2);
        }
    };
    match cmd.to_str() {
        Some("-h" | "--help" | "help") => {
            out(USAGE);
            ExitCode::SUCCESS
        }
        Some("-V" | "--version" | "version") => {
            out(&format!(
                "vpc-cni {} ({})\n",
                crate::VERSION,
                crate::GIT_REV
            ));
            ExitCode::SUCCESS
        }
        Some("ipamd") => crate::ipamd::daemon_main(),
        Some("cni") => crate::cni::plugin_main(),
        Some("max-pods") => max_pods::main(&rest),
        Some("config") => config::main(&rest),
        Some("plan") => plan::main(&rest),
        Some("status") => status::main(&rest),
        Some("install-cni") => crate::cni::install::cli_main(&rest),
        _ => {
            eprintln!("vpc-cni: unknown command {cmd:?}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
