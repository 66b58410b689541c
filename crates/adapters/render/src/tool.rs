//! Running the render engines (Kustomize, Helm) as the user's CLI tools: find them on PATH,
//! record their versions, run them with a timeout and bounded output, and turn a failure into
//! the tool's own message, trimmed and with temporary paths made repository-relative.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::RenderError;

/// Upper bound on what a tool may print (a runaway template must not exhaust memory).
pub const MAX_TOOL_OUTPUT: usize = 256 * 1024 * 1024;

/// A render engine as found on this machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tool {
    /// `kustomize`, `kubectl kustomize` or `helm`.
    pub name: String,
    #[serde(skip)]
    pub program: PathBuf,
    pub version: String,
}

/// Find an executable on a PATH-style list (the process's PATH when `search` is `None`).
pub fn which(name: &str, search: Option<&OsStr>) -> Option<PathBuf> {
    let path: OsString = match search {
        Some(p) => p.to_os_string(),
        None => std::env::var_os("PATH")?,
    };
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn version_cache() -> &'static Mutex<HashMap<PathBuf, String>> {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, String>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

fn cached_version(program: &Path, probe: impl FnOnce() -> String) -> String {
    if let Some(v) = version_cache().lock().expect("version cache").get(program) {
        return v.clone();
    }
    let v = probe();
    version_cache()
        .lock()
        .expect("version cache")
        .insert(program.to_path_buf(), v.clone());
    v
}

/// `kustomize` when on PATH, else `kubectl kustomize`.
pub fn kustomize(search: Option<&OsStr>) -> Result<Tool, RenderError> {
    if let Some(program) = which("kustomize", search) {
        let version = cached_version(&program, || {
            run(&program, &["version"], None, Duration::from_secs(30))
                .ok()
                .filter(|o| o.success)
                .map(|o| first_line(&o.stdout))
                .unwrap_or_else(|| "unknown".into())
        });
        return Ok(Tool {
            name: "kustomize".into(),
            program,
            version,
        });
    }
    if let Some(program) = which("kubectl", search) {
        let version = cached_version(&program, || {
            run(
                &program,
                &["version", "--client", "-o", "json"],
                None,
                Duration::from_secs(30),
            )
            .ok()
            .filter(|o| o.success)
            .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
            .map(|v| {
                format!(
                    "{} (kubectl {})",
                    v["kustomizeVersion"].as_str().unwrap_or("unknown"),
                    v["clientVersion"]["gitVersion"]
                        .as_str()
                        .unwrap_or("unknown")
                )
            })
            .unwrap_or_else(|| "unknown".into())
        });
        return Ok(Tool {
            name: "kubectl kustomize".into(),
            program,
            version,
        });
    }
    Err(RenderError::ToolMissing {
        tool: "kustomize".into(),
        hint: "install kustomize or kubectl (which embeds it) to render Kustomize apps".into(),
    })
}

/// `helm` when on PATH.
pub fn helm(search: Option<&OsStr>) -> Result<Tool, RenderError> {
    let Some(program) = which("helm", search) else {
        return Err(RenderError::ToolMissing {
            tool: "helm".into(),
            hint: "install Helm 3 to render Helm chart apps (sluice runs `helm template`)".into(),
        });
    };
    let version = cached_version(&program, || {
        run(
            &program,
            &["version", "--short"],
            None,
            Duration::from_secs(30),
        )
        .ok()
        .filter(|o| o.success)
        .map(|o| first_line(&o.stdout))
        .unwrap_or_else(|| "unknown".into())
    });
    Ok(Tool {
        name: "helm".into(),
        program,
        version,
    })
}

fn first_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .next()
        .unwrap_or("unknown")
        .trim()
        .to_string()
}

/// What a finished tool run produced.
#[derive(Debug)]
pub struct Output {
    pub success: bool,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Run `program args` in `cwd`, killing it after `timeout`.
pub fn run(
    program: &Path,
    args: &[&str],
    cwd: Option<&Path>,
    timeout: Duration,
) -> Result<Output, String> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    // Drain both pipes on threads: a tool blocked on a full pipe never exits.
    let out_reader = std::thread::spawn(move || read_capped(&mut stdout));
    let err_reader = std::thread::spawn(move || read_capped(&mut stderr));
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("timed out after {} s", timeout.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(e.to_string()),
        }
    };
    let (stdout, over) = out_reader.join().unwrap_or_default();
    let (stderr, _) = err_reader.join().unwrap_or_default();
    if over {
        return Err(format!("printed more than {MAX_TOOL_OUTPUT} bytes"));
    }
    Ok(Output {
        success: status.success(),
        stdout,
        stderr,
    })
}

fn read_capped(r: &mut impl Read) -> (Vec<u8>, bool) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    let mut over = false;
    loop {
        match r.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if buf.len() + n > MAX_TOOL_OUTPUT {
                    over = true;
                    // keep draining so the child can exit
                    continue;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
        }
    }
    (buf, over)
}

/// A tool's stderr as a short message: klog prefixes and Go's quoting removed, temporary
/// paths made repository-relative, scalar values from YAML decode errors masked (they may be
/// secrets), at most 20 lines.
pub fn trim_message(stderr: &str, tmp_root: &Path) -> String {
    let root = tmp_root.to_string_lossy();
    let mut lines = Vec::new();
    for line in stderr.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let line = strip_klog(line);
        let line = line
            .replace(&format!("{root}/"), "")
            .replace(root.as_ref(), ".");
        lines.push(mask_decode_values(&line));
    }
    let total = lines.len();
    let mut text = lines.into_iter().take(20).collect::<Vec<_>>().join("\n");
    if total > 20 {
        text.push_str(&format!("\n... ({} more lines)", total - 20));
    }
    if text.len() > 4000 {
        let mut cut = 4000;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str(" ...");
    }
    if text.is_empty() {
        "exited with an error and printed nothing".into()
    } else {
        text
    }
}

/// `E1127 15:48:00.577539   31076 run.go:72] "command failed" err="..."` → the err text.
fn strip_klog(line: &str) -> String {
    let is_klog = line.len() > 5
        && matches!(line.as_bytes()[0], b'E' | b'W' | b'I' | b'F')
        && line.as_bytes()[1..5].iter().all(u8::is_ascii_digit)
        && line.contains("] ");
    if !is_klog {
        return line.to_string();
    }
    let rest = &line[line.find("] ").expect("checked") + 2..];
    if let Some(i) = rest.find("err=\"") {
        let quoted = &rest[i + 4..];
        if let Ok(s) = serde_json::from_str::<String>(quoted) {
            return s;
        }
        return quoted.trim_matches('"').replace("\\\"", "\"");
    }
    rest.to_string()
}

/// go-yaml's "cannot unmarshal !!str `value` into ..." quotes the value; never repeat it.
fn mask_decode_values(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(i) = rest.find("!!str `") {
        out.push_str(&rest[..i + 7]);
        rest = &rest[i + 7..];
        match rest.find('`') {
            Some(j) => {
                out.push_str("…`");
                rest = &rest[j + 1..];
            }
            None => {
                out.push('…');
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_errors_are_trimmed_and_relative() {
        let stderr = "E1127 15:48:00.577539   31076 run.go:72] \"command failed\" err=\"accumulating resources: accumulation err='accumulating resources from 'missing.yaml': evalsymlink failure on '/tmp/sluice-render-x/apps/pay/missing.yaml' : lstat /tmp/sluice-render-x/apps/pay/missing.yaml: no such file or directory'\"\n";
        let msg = trim_message(stderr, Path::new("/tmp/sluice-render-x"));
        assert!(msg.starts_with("accumulating resources:"), "{msg}");
        assert!(msg.contains("lstat apps/pay/missing.yaml"), "{msg}");
        assert!(!msg.contains("/tmp/"), "{msg}");
    }

    #[test]
    fn decode_errors_never_repeat_values() {
        let msg = trim_message(
            "Error: yaml: unmarshal errors:\n  line 3: cannot unmarshal !!str `hunter2` into int\n",
            Path::new("/tmp/x"),
        );
        assert!(!msg.contains("hunter2"), "{msg}");
        assert!(msg.contains("cannot unmarshal !!str `…` into int"), "{msg}");
    }

    #[test]
    fn missing_tools_are_clear_errors() {
        let empty = tempfile::tempdir().unwrap();
        let err = helm(Some(empty.path().as_os_str())).unwrap_err();
        assert!(matches!(err, crate::error::RenderError::ToolMissing { .. }));
        assert!(
            err.to_string().starts_with("helm not found on PATH"),
            "{err}"
        );
        assert!(kustomize(Some(empty.path().as_os_str())).is_err());
    }

    #[test]
    fn timeouts_kill_the_tool() {
        let Some(sleep) = which("sleep", None) else {
            return;
        };
        let err = run(&sleep, &["5"], None, Duration::from_millis(100)).unwrap_err();
        assert!(err.contains("timed out"), "{err}");
    }
}
