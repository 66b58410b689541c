//! What the engine adapter is given for a discovered stack: its directory and the local inputs
//! its static evaluation found. The mapping lives here, where the org's types meet the engine's,
//! so that `sluice-iac` reads nothing of `sluice-org`.

use std::collections::BTreeSet;

use sluice_iac::driver::StackSpec;
use sluice_iac::export::Input;
use sluice_org::discovery::Stack;
use sluice_org::terragrunt::StackRefs;

/// A discovered stack with the inputs its static evaluation found.
pub fn stack_spec(stack: &Stack) -> StackSpec {
    StackSpec {
        id: stack.id.clone(),
        dir: stack.path.clone(),
        inputs: inputs_of(&stack.refs),
    }
}

/// The inputs of a discovered stack: its local references and its dependencies' directories.
pub fn inputs_of(refs: &StackRefs) -> Vec<Input> {
    let mut out: BTreeSet<Input> = refs
        .inputs
        .iter()
        .map(|i| Input {
            path: i.path.clone(),
            is_dir: i.is_dir,
        })
        .collect();
    out.extend(refs.dependencies.iter().map(|d| Input {
        path: d.dir.clone(),
        is_dir: true,
    }));
    out.into_iter().collect()
}
