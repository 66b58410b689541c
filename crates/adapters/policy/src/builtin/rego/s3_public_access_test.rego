package sluice.builtin.s3_public_access

mk_change(type, after) := {"address": sprintf("%s.x", [type]), "mode": "managed", "type": type, "name": "x", "change": {"actions": ["create"], "after": after}}

test_public_canned_acl_denied if {
	count(deny) == 1 with input as {"plan": {"resource_changes": [mk_change("aws_s3_bucket_acl", {"acl": "public-read"})]}}
	count(deny) == 1 with input as {"plan": {"resource_changes": [mk_change("aws_s3_bucket", {"acl": "public-read-write"})]}}
}

test_grant_to_all_users_denied if {
	acp := [{"grant": [{"permission": "READ", "grantee": [{"type": "Group", "uri": "http://acs.amazonaws.com/groups/global/AllUsers"}]}], "owner": []}]
	count(deny) == 1 with input as {"plan": {"resource_changes": [mk_change("aws_s3_bucket_acl", {"access_control_policy": acp})]}}
}

test_public_access_block_off_denied if {
	pab := {"block_public_acls": true, "block_public_policy": false, "ignore_public_acls": true, "restrict_public_buckets": false}
	results := deny with input as {"plan": {"resource_changes": [mk_change("aws_s3_bucket_public_access_block", pab)]}}
	some r in results
	contains(r.msg, "block_public_policy, restrict_public_buckets = false")
}

test_public_bucket_policy_denied if {
	doc := json.marshal({"Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "s3:GetObject", "Resource": "arn:aws:s3:::acme/*"}]})
	count(deny) == 1 with input as {"plan": {"resource_changes": [mk_change("aws_s3_bucket_policy", {"policy": doc})]}}
}

test_private_bucket_allowed if {
	pab := {"block_public_acls": true, "block_public_policy": true, "ignore_public_acls": true, "restrict_public_buckets": true}
	conditional := json.marshal({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::acme/*", "Condition": {"StringEquals": {"aws:SourceVpce": "vpce-1"}}}]})
	changes := [
		mk_change("aws_s3_bucket", {"acl": "private"}),
		mk_change("aws_s3_bucket_public_access_block", pab),
		mk_change("aws_s3_bucket_policy", {"policy": conditional}),
	]
	count(deny) == 0 with input as {"plan": {"resource_changes": changes}}
}
