# Helpers shared by sluice's built-in policy pack.
#
# Every rule reads the Terraform/OpenTofu plan JSON at input.plan (format 1.x) and the change
# context at input.change; parameters come from data.sluice.params (sluice.yaml
# policy.builtin.params, with defaults). Results are objects {id, msg, resource[, groups]}.
package sluice.lib

params := data.sluice.params

# The plan's resource changes (none when the plan has no changes). Not through items():
# handing the whole list to a function costs a pass over it on every query.
changes := input.plan.resource_changes if is_array(input.plan.resource_changes)

changes := [] if not is_array(input.plan.resource_changes)

# A collection to iterate: plan JSON writes null for absent blocks and lists, and iterating
# null is an error, so null (or a scalar) reads as empty.
# One definition and one builtin: this runs inside the loops over every change.
items(x) := x if {
	type_name(x) in collection_types
} else := []

collection_types := {"array", "object", "set"}

# The planned state of a change that creates or updates the resource (replace included),
# when it is known. Deletes and no-ops yield nothing.
after(rc) := rc.change.after if {
	creates_or_updates(rc)
	is_object(rc.change.after)
}

creates_or_updates(rc) if {
	rc.mode == "managed"
	some action in rc.change.actions
	action in {"create", "update"}
}

deletes(rc) if {
	rc.mode == "managed"
	"delete" in rc.change.actions
}

# "replace" when the change destroys and re-creates the resource, else "delete".
destroy_kind(rc) := "replace" if {
	"create" in rc.change.actions
} else := "delete"

# Whether an attribute is only known after apply.
unknown(rc, attr) if rc.change.after_unknown[attr] == true

# The change targets production: input.change.production when the caller set it (from the
# org's protected environments), else the environment name against params.production_envs.
production if input.change.production == true

production if {
	not is_boolean(input.change.production)
	input.change.env in params.production_envs
}

result(id, rc, msg) := {"id": id, "msg": msg, "resource": rc.address}

approval(id, rc, msg, groups) := {"id": id, "msg": msg, "resource": rc.address, "groups": groups}

# A value that may be a single item or a list, as a list.
as_list(x) := x if is_array(x)

as_list(x) := [x] if not is_array(x)

# The module a resource change lives in, without instance keys ("module.a.module.b").
module_of(rc) := regex.replace(object.get(rc, "module_address", ""), `\[[^\]]*\]`, "")

# IAM policy documents: the statements of a JSON policy string, or nothing when the string is
# unknown or not JSON (a plan may carry a policy computed at apply time).
statements(doc) := [s | some s in as_list(json.unmarshal(doc).Statement)] if {
	is_string(doc)
	json.is_valid(doc)
}

# Allow statements whose principal is everyone ("*" or {"AWS": "*"}) with no condition.
public_statement(s) if {
	s.Effect == "Allow"
	everyone(s.Principal)
	not s.Condition
}

everyone(p) if p == "*"

everyone(p) if "*" in as_list(p.AWS)
