//! `fleetgate-dp`: the data-plane binary. All logic lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;

fn usage() -> ExitCode {
    eprintln!(
        "usage: fleetgate-dp [--conf FILE]   (settings: FLEETGATE_<KEY> env overrides the file)"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut conf: Option<PathBuf> = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--conf" | "-c" => match args.next() {
                Some(path) => conf = Some(PathBuf::from(path)),
                None => return usage(),
            },
            "--help" | "-h" => {
                let _ = usage();
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("fleetgate-dp: unknown argument {other:?}");
                return usage();
            }
        }
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("FLEETGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let settings = match fleetgate_dataplane::Settings::load(conf.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fleetgate-dp: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The proxy runs on its own worker threads (see `proxy_workers`); this runtime only
    // serves the status port, signals and reloads.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fleetgate-dp: start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(fleetgate_dataplane::run(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fleetgate-dp: {e:#}");
            ExitCode::FAILURE
        }
    }
}
