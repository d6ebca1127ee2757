//! Build script: embeds the git revision for `--version` (and the plugin↔ipamd version check).
//! The instance-type table is compiled by the core crate's build script (core/build.rs).

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    git_revision();
}

fn git_revision() {
    let git = |args: &[&str]| -> Option<String> {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_string())
    };
    let rev = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=VPC_CNI_GIT_REV={rev}");
    println!("cargo:rerun-if-changed=build.rs");
    // Rebuild when HEAD moves. In a worktree .git is a file, and HEAD and the branch ref live in different
    // directories; watch only paths that exist, since a missing one makes cargo rerun this script every build.
    let mut watch: Vec<PathBuf> = Vec::new();
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        watch.push(Path::new(&dir).join("HEAD"));
    }
    if let (Some(common), Some(head_ref)) = (
        git(&["rev-parse", "--git-common-dir"]),
        git(&["rev-parse", "--symbolic-full-name", "HEAD"]),
    ) {
        watch.push(Path::new(&common).join(&head_ref));
        watch.push(Path::new(&common).join("packed-refs"));
    }
    for path in watch.iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
