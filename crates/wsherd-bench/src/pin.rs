//! Pinning a run to cores with `taskset` (util-linux): the server child on one core and this
//! process (every client thread) on the other, so that where the scheduler happens to put a
//! client's threads beside the server's does not decide its rate. Unpinned, three `all` runs
//! of the same code gave wsherd 0.65× to 1.25× tokio-tungstenite, the baselines moving the
//! other way. Pinned, every client gets one core, whatever number of threads it runs, and the
//! server the other.

use std::process::{Command, Stdio};

/// The core the server child runs on.
pub(crate) const SERVER_CPU: usize = 0;
/// The core this process's threads (the clients) run on, and client child processes.
pub(crate) const CLIENT_CPU: usize = 1;

/// Whether pinning is possible here: two cores or more, and `taskset` runs.
pub(crate) fn available() -> bool {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    cpus >= 2
        && Command::new("taskset")
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
}

/// Whether a run pins: where [`available`], unless `WSHERD_BENCH_PIN=0` says not to.
pub(crate) fn wanted() -> bool {
    available() && std::env::var("WSHERD_BENCH_PIN").as_deref() != Ok("0")
}

/// A command that runs this executable, on core `cpu` alone when one is given.
pub(crate) fn this_executable_on(cpu: Option<usize>) -> Result<Command, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    Ok(match cpu {
        Some(cpu) => {
            let mut taskset = Command::new("taskset");
            taskset.args(["-c", &cpu.to_string()]).arg(exe);
            taskset
        }
        None => Command::new(exe),
    })
}

/// This process pinned to [`CLIENT_CPU`] until dropped; then back on every core it had.
pub(crate) struct ClientPin {
    every_core: String,
}

impl ClientPin {
    /// Pins every thread of this process (and those it starts later) to [`CLIENT_CPU`].
    pub(crate) fn new() -> Result<ClientPin, String> {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        let every_core = format!("0-{}", cpus.saturating_sub(1));
        set_affinity(&CLIENT_CPU.to_string())?;
        Ok(ClientPin { every_core })
    }
}

impl Drop for ClientPin {
    fn drop(&mut self) {
        // Best effort: a later scenario that finds itself pinned is slower, not wrong.
        let _ = set_affinity(&self.every_core);
    }
}

fn set_affinity(cpus: &str) -> Result<(), String> {
    let status = Command::new("taskset")
        .args(["-a", "-cp", cpus, &std::process::id().to_string()])
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("taskset: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("taskset -a -cp {cpus} failed ({status})"))
    }
}
