//! lifeboat: keeps the data of Docker hosts safe.
//!
//! A thin binary over lifeboat-core: parse the command line, run one
//! command, print the error once and map it to a documented exit code.

mod cli;
mod events;
mod output;

use std::process::ExitCode;

use clap::Parser;
use lifeboat_core::ErrorClass;
use output::errln;

/// Exit codes, documented in `--help`.
pub(crate) mod exit {
    pub const SUCCESS: u8 = 0;
    pub const FAILURE: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const PARTIAL: u8 = 3;
    pub const ENGINE_UNREACHABLE: u8 = 4;
    pub const REPOSITORY_MISSING: u8 = 5;
    pub const WRONG_PASSWORD: u8 = 6;
    pub const REPOSITORY_LOCKED: u8 = 7;
    /// `audit --fail-on`: a finding at or above the threshold.
    pub const FINDINGS: u8 = 8;
    pub const INTERRUPTED: u8 = 130;
}

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    output::init_logging(cli.global.verbose);
    lifeboat_core::raise_open_file_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            errln!("lifeboat: cannot start: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    let ran = runtime.block_on(cli.run());
    // Work abandoned on SIGINT/SIGTERM may still run on blocking threads
    // (a volume's read, hours long): it has been cancelled and its effects
    // undone, so lifeboat exits now instead of waiting for it, as a killed
    // one would. Finished work leaves nothing running.
    runtime.shutdown_background();
    match ran {
        Ok(code) if output::output_lost() => {
            errln!("lifeboat: the output could not be written whole");
            ExitCode::from(if code == exit::SUCCESS {
                exit::FAILURE
            } else {
                code
            })
        }
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            errln!("lifeboat: {e:#}");
            ExitCode::from(exit_code_of(&e))
        }
    }
}

fn exit_code_of(e: &anyhow::Error) -> u8 {
    let class = e
        .chain()
        .find_map(|c| c.downcast_ref::<lifeboat_core::Error>())
        .map(lifeboat_core::Error::class);
    exit_code_of_class(class)
}

/// The exit code of a failure of this class (`None`: not the library's).
pub(crate) fn exit_code_of_class(class: Option<ErrorClass>) -> u8 {
    match class {
        Some(ErrorClass::EngineUnreachable) => exit::ENGINE_UNREACHABLE,
        Some(ErrorClass::RepositoryMissing) => exit::REPOSITORY_MISSING,
        Some(ErrorClass::WrongPassword) => exit::WRONG_PASSWORD,
        Some(ErrorClass::RepositoryLocked) => exit::REPOSITORY_LOCKED,
        Some(ErrorClass::BadRequest | ErrorClass::NotFound | ErrorClass::Refused) => exit::USAGE,
        Some(ErrorClass::Interrupted) => exit::INTERRUPTED,
        Some(
            ErrorClass::DumpFailed
            | ErrorClass::Io
            | ErrorClass::Engine
            | ErrorClass::Mismatch
            | ErrorClass::Other,
        )
        | None => exit::FAILURE,
    }
}
