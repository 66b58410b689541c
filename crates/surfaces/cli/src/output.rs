//! Writing reports to stdout, the one way every subcommand does it.

use crate::exit;

/// Write a report to stdout. A closed pipe (`sluice ... | head`) ends the process quietly
/// instead of panicking, as Unix tools do; any other write error ends it with the internal
/// error code.
pub fn emit(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(exit::OK);
        }
        eprintln!("error: writing output: {e}");
        std::process::exit(exit::INTERNAL);
    }
}

/// Pretty JSON on stdout, ending with a newline.
pub fn print_json(value: &impl serde::Serialize) {
    let mut text = serde_json::to_string_pretty(value).expect("reports serialize");
    text.push('\n');
    emit(&text);
}
