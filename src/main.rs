//! Entry point: the role is chosen by argv[0]; see `vpc_cni::entry`.

fn main() -> std::process::ExitCode {
    vpc_cni::entry::run(std::env::args_os().collect())
}
