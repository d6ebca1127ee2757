//! `argv[0]` dispatch: one binary, several roles.
//!
//! | `argv[0]` (basename)          | role                       |
//! |-----------------------------|----------------------------|
//! | `aws-cni`                   | CNI plugin                 |
//! | `aws-k8s-agent`, `ipamd`    | ipamd daemon               |
//! | `egress-cni`                | egress CNI plugin          |
//! | anything else (`vpc-cni`)   | the `vpc-cni <command>` CLI |

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

/// What the binary was asked to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The CNI plugin the container runtime runs per pod.
    CniPlugin,
    /// The node-local IP address manager.
    Ipamd,
    /// The egress plugin (IPv4 egress for IPv6 pods and the reverse).
    EgressPlugin,
    /// The `vpc-cni <command>` command line.
    Cli,
}

/// Picks the role from `argv[0]`; only the file name counts, so symlinks anywhere work.
pub fn role_for(argv0: &Path) -> Role {
    match argv0.file_name().and_then(|n| n.to_str()) {
        Some("aws-cni") => Role::CniPlugin,
        Some("aws-k8s-agent" | "ipamd") => Role::Ipamd,
        Some("egress-cni") => Role::EgressPlugin,
        _ => Role::Cli,
    }
}

/// Runs the role chosen by `argv[0]` with the rest of the arguments.
pub fn run(argv: Vec<OsString>) -> ExitCode {
    let argv0 = argv
        .first()
        .cloned()
        .unwrap_or_else(|| OsString::from("vpc-cni"));
    let rest: Vec<OsString> = argv.into_iter().skip(1).collect();
    match role_for(Path::new(&argv0)) {
        Role::CniPlugin => crate::cni::plugin_main(),
        Role::Ipamd => crate::ipamd::daemon_main(),
        Role::EgressPlugin => not_implemented("the egress-cni plugin"),
        Role::Cli => crate::cli::main(rest),
    }
}

/// A role or command that is not built yet: never a fake success.
pub fn not_implemented(what: &str) -> ExitCode {
    eprintln!("vpc-cni: {what} is not implemented yet");
    ExitCode::from(3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_follow_the_file_name_only() {
        assert_eq!(role_for(Path::new("/opt/cni/bin/aws-cni")), Role::CniPlugin);
        assert_eq!(role_for(Path::new("aws-k8s-agent")), Role::Ipamd);
        assert_eq!(role_for(Path::new("/usr/bin/ipamd")), Role::Ipamd);
        assert_eq!(role_for(Path::new("./egress-cni")), Role::EgressPlugin);
        assert_eq!(role_for(Path::new("/usr/bin/vpc-cni")), Role::Cli);
        assert_eq!(role_for(Path::new("aws-cni-old")), Role::Cli);
    }
}
