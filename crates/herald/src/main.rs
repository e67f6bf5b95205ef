//! `herald`: the Herald command. Subcommands live in `cli/`, one file each.
#![forbid(unsafe_code)]

mod cli;

use std::process::ExitCode;

/// mimalloc instead of the system allocator: the publish path makes a few dozen small
/// allocations per request, and glibc's malloc and free took about a fifth of the hub's CPU there
/// (bench/RESULTS.md, session 5).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let (args, argv) = match cli::parse() {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("herald: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(cli::run(args, argv))
}
