//! Running one engine command with a time limit, capturing its output.
//!
//! On timeout the engine gets SIGINT first — Terraform and OpenTofu then stop their provider
//! calls, release the state lock they hold and exit — and SIGKILL only if it is still running
//! after a grace period. The engine stays in sluice's process group, so a Ctrl-C at the
//! terminal reaches it (and its provider plugins) directly and it can shut down cleanly too.
//! stdout and stderr are drained on their own threads so a chatty engine can never block on a
//! full pipe; stderr keeps only its last [`STDERR_CAP`] bytes (the excerpt needs the tail, and
//! a runaway log must not exhaust memory).

use std::io::Read;
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How much of stderr is kept (the tail).
pub const STDERR_CAP: usize = 1 << 20;
/// Time between SIGINT and SIGKILL after a timeout.
pub const GRACE: Duration = Duration::from_secs(20);

#[derive(Debug)]
pub struct RunOutput {
    /// Exit code; `None` when killed by a signal.
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub timed_out: bool,
    pub elapsed: Duration,
}

/// Spawn `cmd` (stdin closed, output captured) and wait at most `timeout`.
/// `Err` is a spawn failure, e.g. `NotFound` when the program is missing.
pub fn run(mut cmd: Command, timeout: Duration) -> std::io::Result<RunOutput> {
    let started = Instant::now();
    // A child inherits ignored signals, and a shell cannot trap a signal ignored on entry. Run
    // from a background job of a script, sluice has SIGINT ignored: the engine would then be
    // killed at the end of the grace period instead of stopping cleanly on the interrupt.
    // SAFETY: the closure runs between fork and exec, where only async-signal-safe calls are
    // allowed; signal(2) is one, and nothing is allocated or locked.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        });
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    let pid = child.id() as libc::pid_t;
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || read_tail(&mut err, STDERR_CAP));

    let mut timed_out = false;
    let mut interrupted_at: Option<Instant> = None;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        let now = Instant::now();
        match interrupted_at {
            None if now.duration_since(started) >= timeout => {
                timed_out = true;
                signal(pid, libc::SIGINT);
                interrupted_at = Some(now);
            }
            Some(at) if now.duration_since(at) >= GRACE.min(timeout) => {
                signal(pid, libc::SIGKILL);
                break child.wait()?;
            }
            _ => {}
        }
        std::thread::sleep(poll_interval(now.duration_since(started)));
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    Ok(RunOutput {
        code: status.code(),
        stdout,
        stderr,
        timed_out,
        elapsed: started.elapsed(),
    })
}

/// Poll quickly at first (most commands of a test or a small stack end within a second),
/// then back off.
fn poll_interval(elapsed: Duration) -> Duration {
    if elapsed < Duration::from_secs(2) {
        Duration::from_millis(5)
    } else {
        Duration::from_millis(100)
    }
}

fn signal(pid: libc::pid_t, signal: libc::c_int) {
    // SAFETY: kill(2) only sends a signal to our own child (not yet reaped, so the pid cannot
    // have been reused); it touches no memory of ours.
    unsafe {
        libc::kill(pid, signal);
    }
}

fn read_tail(r: &mut impl Read, cap: usize) -> Vec<u8> {
    let mut kept: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match r.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                kept.extend_from_slice(&chunk[..n]);
                if kept.len() > 2 * cap {
                    kept.drain(..kept.len() - cap);
                }
            }
        }
    }
    if kept.len() > cap {
        kept.drain(..kept.len() - cap);
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c").arg(script);
        c
    }

    #[test]
    fn captures_output_and_code() {
        let out = run(
            sh("echo out; echo err >&2; exit 3"),
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(out.code, Some(3));
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
        assert!(!out.timed_out);
    }

    #[test]
    fn times_out_with_interrupt_first() {
        // The script exits 130 on SIGINT, as Terraform does when interrupted. It passes also
        // when the test itself runs with SIGINT ignored (a background job of a script).
        let out = run(
            sh("trap 'echo interrupted >&2; exit 130' INT; while :; do sleep 0.05; done"),
            Duration::from_millis(300),
        )
        .unwrap();
        assert!(out.timed_out);
        assert_eq!(out.code, Some(130));
        assert_eq!(out.stderr, b"interrupted\n");
    }

    #[test]
    fn missing_program_is_not_found() {
        let e = run(
            Command::new("/nonexistent/sluice-no-such-engine"),
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    }

    #[test]
    fn stderr_keeps_the_tail() {
        let mut data = std::io::Cursor::new(
            vec![b'a'; 100]
                .into_iter()
                .chain(vec![b'b'; 50])
                .collect::<Vec<u8>>(),
        );
        let tail = read_tail(&mut data, 60);
        assert_eq!(tail.len(), 60);
        assert!(tail.ends_with(&[b'b'; 50]));
    }
}
