//! The `strata` binary: all the work is in the library's `cli` module.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(strata::cli::main() as u8)
}
