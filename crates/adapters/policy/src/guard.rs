//! The boundary to the Rego engine. regorus is a dependency we do not control: a bug in it
//! that a policy or an input triggers must not end the sluice process nor print a panic
//! message and backtrace into a PR comment or a CI log. Every call into regorus that parses,
//! compiles or evaluates goes through [`catch`], which turns a panic into an error the caller
//! reports as any other engine error (an evaluation failure fails closed).

use std::any::Any;
use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    /// Set while this thread is inside [`catch`]: its panics are caught and reported there.
    static GUARDED: Cell<bool> = const { Cell::new(false) };
}

/// Run `f` (a call into regorus); a panic becomes `Err` with the panic's message.
pub(crate) fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    quiet_guarded_panics();
    let was = GUARDED.with(|g| g.replace(true));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(was));
    result.map_err(|payload| format!("the Rego engine panicked: {}", message(&*payload)))
}

/// The process's panic hook stays in charge of every other panic; only those of a guarded
/// call are silenced, since [`catch`] reports them itself.
fn quiet_guarded_panics() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !GUARDED.with(Cell::get) {
                previous(info);
            }
        }));
    });
}

fn message(payload: &(dyn Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_string());
    // One line: the message ends up in a decision record and a PR comment.
    crate::error::truncate(text.lines().next().unwrap_or(""), 300)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_error_and_the_thread_goes_on() {
        let r: Result<(), String> = catch(|| panic!("index out of bounds: the len is 0"));
        assert_eq!(
            r.unwrap_err(),
            "the Rego engine panicked: index out of bounds: the len is 0"
        );
        let owned: Result<(), String> = catch(|| std::panic::panic_any(format!("at {}", 7)));
        assert_eq!(owned.unwrap_err(), "the Rego engine panicked: at 7");
        assert_eq!(catch(|| 41 + 1), Ok(42));
        // Outside a guarded call the flag is clear again.
        assert!(!GUARDED.with(Cell::get));
    }
}
