//! One `fleetgate-dp` process: spawning it, recognising it again after a control-plane restart
//! (pid plus the kernel's start time, so a recycled pid is never mistaken for it), waiting for
//! it to exit, and stopping it (SIGTERM, then SIGKILL after a grace period).
//!
//! Linux only: liveness and start time come from `/proc/<pid>/stat`.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// How often a process this provider did not spawn (adopted after a restart) is checked.
const ADOPTED_POLL: Duration = Duration::from_millis(200);

/// A process's identity: a pid is only "the same process" with the same start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ProcessId {
    pub pid: u32,
    /// Clock ticks since boot at which the process started (`/proc/<pid>/stat` field 22).
    pub start_time: u64,
}

impl ProcessId {
    /// The identity of a live pid, or `None` when it is gone (or a zombie).
    pub fn of(pid: u32) -> Option<Self> {
        let stat = read_stat(pid)?;
        (!stat.dead).then_some(Self {
            pid,
            start_time: stat.start_time,
        })
    }

    /// Whether this very process is still running (not exited, not a zombie, pid not reused).
    pub fn is_alive(&self) -> bool {
        Self::of(self.pid) == Some(*self)
    }

    fn signal(&self, signal: Signal) {
        // Checked right before, so a recycled pid is (practically) never signalled.
        if self.is_alive() {
            if let Ok(pid) = i32::try_from(self.pid) {
                let _ = kill(Pid::from_raw(pid), signal);
            }
        }
    }
}

struct Stat {
    dead: bool,
    start_time: u64,
}

fn read_stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ...`: comm may hold spaces and parentheses, so split after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state); starttime is field 22.
    let state = fields.first()?;
    let start_time = fields.get(19)?.parse().ok()?;
    Some(Stat {
        dead: matches!(*state, "Z" | "X" | "x"),
        start_time,
    })
}

/// A running gateway-node process, spawned here or adopted from an earlier provider.
pub(super) enum NodeProcess {
    /// Spawned by this provider: waited on (and so reaped) directly.
    Child {
        child: tokio::process::Child,
        id: ProcessId,
    },
    /// Found running after a restart: not our child, so watched by polling.
    Adopted(ProcessId),
}

impl NodeProcess {
    /// Starts `binary --conf <conf>` with its output appended to `log`, in its own process
    /// group (a Ctrl-C meant for the control plane does not reach the nodes: they are meant to
    /// outlive a control-plane restart) and with `HOSTNAME` set, which the node reports to the
    /// control plane.
    pub fn spawn(binary: &Path, conf: &Path, log: &Path, hostname: &str) -> anyhow::Result<Self> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("open the node log {}", log.display()))?;
        let child = tokio::process::Command::new(binary)
            .arg("--conf")
            .arg(conf)
            .env("HOSTNAME", hostname)
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("clone the node log handle")?)
            .stderr(log)
            .process_group(0)
            .kill_on_drop(false)
            .spawn()
            .with_context(|| format!("start {}", binary.display()))?;
        let pid = child
            .id()
            .context("the spawned node has no pid (exited at once)")?;
        // The process exists until it is reaped, and only we reap it, so its stat is readable
        // even if it already exited (a zombie still has its start time).
        let start_time = read_stat(pid)
            .with_context(|| format!("read the start time of node process {pid}"))?
            .start_time;
        let id = ProcessId { pid, start_time };
        Ok(Self::Child { child, id })
    }

    /// Who the process is.
    pub fn id(&self) -> ProcessId {
        match self {
            Self::Child { id, .. } | Self::Adopted(id) => *id,
        }
    }

    /// Resolves when the process has exited; the string says how, for the log.
    pub async fn exited(&mut self) -> String {
        match self {
            Self::Child { child, .. } => match child.wait().await {
                Ok(status) => status.to_string(),
                Err(e) => format!("wait failed: {e}"),
            },
            Self::Adopted(id) => {
                while id.is_alive() {
                    tokio::time::sleep(ADOPTED_POLL).await;
                }
                "exited (adopted process; exit status unknown)".into()
            }
        }
    }

    /// SIGTERM, up to `grace` for a clean exit, then SIGKILL; returns once the process is gone.
    pub async fn stop(&mut self, grace: Duration) {
        let id = self.id();
        id.signal(Signal::SIGTERM);
        // A stopped node (SIGSTOP, or a debugger) would hold the SIGTERM until the grace ran
        // out; continuing it lets it exit cleanly now.
        id.signal(Signal::SIGCONT);
        if tokio::time::timeout(grace, self.exited()).await.is_ok() {
            return;
        }
        tracing::warn!(
            pid = id.pid,
            grace_ms = grace.as_millis() as u64,
            "gateway node ignored SIGTERM; sending SIGKILL"
        );
        id.signal(Signal::SIGKILL);
        // SIGKILL cannot be ignored; the bound only guards against a process stuck in the
        // kernel (uninterruptible sleep).
        let deadline = Instant::now() + Duration::from_secs(30);
        if tokio::time::timeout_at(deadline.into(), self.exited())
            .await
            .is_err()
        {
            tracing::error!(pid = id.pid, "gateway node did not exit 30 s after SIGKILL");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_process_is_alive_and_a_wrong_start_time_is_not_it() {
        let me = ProcessId::of(std::process::id()).expect("own stat readable");
        assert!(me.is_alive());
        let impostor = ProcessId {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(!impostor.is_alive(), "a recycled pid must not count");
    }
}
