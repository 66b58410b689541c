# stateful-destroy: deleting or replacing a stateful resource in production needs approval.
package sluice.builtin.stateful_destroy

import data.sluice.lib

require_approval contains result if {
	lib.production
	some rc in lib.changes
	"delete" in rc.change.actions
	rc.mode == "managed"
	stateful(rc.type)
	kind := lib.destroy_kind(rc)
	msg := sprintf("%s of stateful %s in production%s: data may be lost", [kind, rc.address, reason(rc)])
	result := lib.approval("stateful-destroy", rc, msg, lib.params.stateful_approvers)
}

# Exact names are looked up; only the patterns with `*` are matched as globs.
exact_types := {t | some t in lib.params.stateful_types; not contains(t, "*")}

type_globs := [t | some t in lib.params.stateful_types; contains(t, "*")]

stateful(type) if exact_types[type]

stateful(type) if {
	not exact_types[type]
	some pattern in type_globs
	glob.match(pattern, [], type)
}

reason(rc) := sprintf(" (%s)", [rc.action_reason]) if is_string(rc.action_reason)

reason(rc) := "" if not is_string(rc.action_reason)
