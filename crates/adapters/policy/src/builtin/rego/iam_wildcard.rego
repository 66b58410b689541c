# iam-wildcard: IAM policies that allow every action, or every action of a service on every
# resource, or everything except a list (Allow + NotAction).
package sluice.builtin.iam_wildcard

import data.sluice.lib

# Resource types and the attribute holding their policy JSON.
policy_attrs := {
	"aws_iam_policy": "policy",
	"aws_iam_role_policy": "policy",
	"aws_iam_user_policy": "policy",
	"aws_iam_group_policy": "policy",
	"aws_ssoadmin_permission_set_inline_policy": "inline_policy",
}

documents(rc, after) := [after[attr]] if {
	attr := policy_attrs[rc.type]
}

documents(rc, after) := [p.policy | some p in lib.items(object.get(after, "inline_policy", []))] if {
	rc.type == "aws_iam_role"
}

# Every type above, plus roles (inline policies).
types := {t | some t, _ in policy_attrs} | {"aws_iam_role"}

deny contains result if {
	some rc in lib.changes
	rc.type in types
	after := lib.after(rc)
	some doc in documents(rc, after)
	some s in lib.statements(doc)
	s.Effect == "Allow"
	some problem in problems(s)
	msg := sprintf("%s %s: grant the specific actions and resources it needs", [rc.address, problem])
	result := lib.result("iam-wildcard", rc, msg)
}

problems(s) := {p |
	some a in lib.as_list(object.get(s, "Action", []))
	a in {"*", "*:*"}
	p := "allows every action (\"*\")"
} | {p |
	some a in lib.as_list(object.get(s, "Action", []))
	not a in {"*", "*:*"}
	endswith(a, ":*")
	"*" in lib.as_list(object.get(s, "Resource", []))
	p := sprintf("allows every %s action on every resource (\"%s\" on \"*\")", [split(a, ":")[0], a])
} | {p |
	s.NotAction
	"*" in lib.as_list(object.get(s, "Resource", []))
	p := "allows everything except its NotAction list on every resource"
}
