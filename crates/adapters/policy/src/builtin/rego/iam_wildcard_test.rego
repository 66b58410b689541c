package sluice.builtin.iam_wildcard

policy(type, doc) := {"address": sprintf("%s.x", [type]), "mode": "managed", "type": type, "name": "x", "change": {"actions": ["create"], "after": {"policy": json.marshal(doc)}}}

test_admin_policy_denied if {
	doc := {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
	results := deny with input as {"plan": {"resource_changes": [policy("aws_iam_policy", doc)]}}
	some r in results
	contains(r.msg, "allows every action")
}

test_service_wildcard_on_every_resource_denied if {
	doc := {"Statement": {"Effect": "Allow", "Action": ["s3:GetObject", "iam:*"], "Resource": "*"}}
	results := deny with input as {"plan": {"resource_changes": [policy("aws_iam_role_policy", doc)]}}
	some r in results
	contains(r.msg, "every iam action")
}

test_not_action_denied if {
	doc := {"Statement": [{"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}]}
	count(deny) == 1 with input as {"plan": {"resource_changes": [policy("aws_iam_user_policy", doc)]}}
}

test_role_inline_policy_denied if {
	doc := json.marshal({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})
	role := {"address": "aws_iam_role.r", "mode": "managed", "type": "aws_iam_role", "name": "r", "change": {"actions": ["create"], "after": {"inline_policy": [{"name": "p", "policy": doc}]}}}
	count(deny) == 1 with input as {"plan": {"resource_changes": [role]}}
}

test_scoped_policy_allowed if {
	doc := {"Statement": [
		{"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::acme/*"},
		{"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::acme-scratch/*"},
		{"Effect": "Allow", "Action": "ec2:Describe*", "Resource": "*"},
		{"Effect": "Deny", "Action": "*", "Resource": "*"},
	]}
	count(deny) == 0 with input as {"plan": {"resource_changes": [policy("aws_iam_policy", doc)]}}
}

test_unknown_policy_allowed if {
	unknown := {"address": "aws_iam_policy.x", "mode": "managed", "type": "aws_iam_policy", "name": "x", "change": {"actions": ["create"], "after": {}, "after_unknown": {"policy": true}}}
	count(deny) == 0 with input as {"plan": {"resource_changes": [unknown]}}
}
