//! `fleetgate`: the control-plane binary. All logic lives in the library.

fn main() -> std::process::ExitCode {
    fleetgate_control_plane::cli::main()
}
