# s3-public-access: buckets readable or writable by anyone: public canned ACLs, grants to
# AllUsers/AuthenticatedUsers, a public access block switched off, or a bucket policy allowing
# Principal "*" without a condition.
package sluice.builtin.s3_public_access

import data.sluice.lib

public_acls := {"public-read", "public-read-write", "authenticated-read"}

global_groups := {
	"http://acs.amazonaws.com/groups/global/AllUsers",
	"http://acs.amazonaws.com/groups/global/AuthenticatedUsers",
}

# Named sets: a set literal inside a rule body is built again for every change iterated.
acl_types := {"aws_s3_bucket", "aws_s3_bucket_acl"}

block_types := {"aws_s3_bucket_public_access_block", "aws_s3_account_public_access_block"}

policy_types := {"aws_s3_bucket_policy", "aws_s3_bucket"}

block_flags := ["block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"]

types := (acl_types | block_types) | policy_types

# One pass over the plan; each kind of exposure is a function of the change.
deny contains result if {
	some rc in lib.changes
	rc.type in types
	after := lib.after(rc)
	some msg in problems(rc, after)
	result := lib.result("s3-public-access", rc, msg)
}

problems(rc, after) := ((canned_acl(rc, after) | grants(rc, after)) | blocks(rc, after)) | policies(rc, after)

canned_acl(rc, after) := {msg |
	rc.type in acl_types
	after.acl in public_acls
	msg := sprintf("%s grants the public canned ACL \"%s\"", [rc.address, after.acl])
}

grants(rc, after) := {msg |
	rc.type == "aws_s3_bucket_acl"
	some acp in lib.items(object.get(after, "access_control_policy", []))
	some grant in lib.items(acp.grant)
	some grantee in lib.items(grant.grantee)
	grantee.uri in global_groups
	msg := sprintf("%s grants %s to %s", [rc.address, grant.permission, grantee.uri])
}

blocks(rc, after) := {msg |
	rc.type in block_types
	off := [f | some f in block_flags; after[f] == false]
	count(off) > 0
	msg := sprintf("%s turns off public access blocking (%s = false)", [rc.address, concat(", ", off)])
}

policies(rc, after) := {msg |
	rc.type in policy_types
	some s in lib.statements(object.get(after, "policy", null))
	lib.public_statement(s)
	actions := concat(", ", lib.as_list(object.get(s, "Action", "any action")))
	msg := sprintf("%s has a bucket policy allowing %s to Principal \"*\" without a condition", [rc.address, actions])
}
