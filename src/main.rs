//! The `herald` binary: CLI parsing and wiring only.

fn main() -> std::process::ExitCode {
    herald::cli::main()
}
