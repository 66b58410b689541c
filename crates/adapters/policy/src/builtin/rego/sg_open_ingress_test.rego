package sluice.builtin.sg_open_ingress

sg(before, after) := {"address": "aws_security_group.web", "mode": "managed", "type": "aws_security_group", "name": "web", "change": {"actions": ["update"], "before": before, "after": after}}

ingress(cidrs, port) := {"protocol": "tcp", "from_port": port, "to_port": port, "cidr_blocks": cidrs, "ipv6_cidr_blocks": []}

test_new_open_ingress_requires_security if {
	results := require_approval with input as {"plan": {"resource_changes": [sg({"ingress": []}, {"ingress": [ingress(["0.0.0.0/0"], 22)]})]}}
		with data.sluice.params.open_ingress_approvers as ["security"]
	results == {{"id": "sg-open-ingress", "resource": "aws_security_group.web", "groups": ["security"], "msg": "aws_security_group.web allows ingress from 0.0.0.0/0 on tcp port 22"}}
}

test_ipv6_rule_resource_requires_approval if {
	rule := {"address": "aws_security_group_rule.r", "mode": "managed", "type": "aws_security_group_rule", "name": "r", "change": {"actions": ["create"], "before": null, "after": {"type": "ingress", "protocol": "-1", "from_port": 0, "to_port": 0, "ipv6_cidr_blocks": ["::/0"]}}}
	results := require_approval with input as {"plan": {"resource_changes": [rule]}}
		with data.sluice.params.open_ingress_approvers as ["security"]
	some r in results
	contains(r.msg, "::/0 on all protocols and ports")
}

test_vpc_ingress_rule_requires_approval if {
	rule := {"address": "aws_vpc_security_group_ingress_rule.r", "mode": "managed", "type": "aws_vpc_security_group_ingress_rule", "name": "r", "change": {"actions": ["create"], "before": null, "after": {"ip_protocol": "tcp", "from_port": 443, "to_port": 443, "cidr_ipv4": "0.0.0.0/0"}}}
	count(require_approval) == 1 with input as {"plan": {"resource_changes": [rule]}}
		with data.sluice.params.open_ingress_approvers as ["security"]
}

test_already_open_not_reported_again if {
	open := {"ingress": [ingress(["0.0.0.0/0"], 443)], "description": "new"}
	count(require_approval) == 0 with input as {"plan": {"resource_changes": [sg({"ingress": [ingress(["0.0.0.0/0"], 443)]}, open)]}}
		with data.sluice.params.open_ingress_approvers as ["security"]
}

test_private_ingress_allowed if {
	count(require_approval) == 0 with input as {"plan": {"resource_changes": [sg(null, {"ingress": [ingress(["10.0.0.0/8"], 5432)]})]}}
		with data.sluice.params.open_ingress_approvers as ["security"]
}

test_egress_to_everywhere_allowed if {
	egress := {"address": "aws_security_group_rule.e", "mode": "managed", "type": "aws_security_group_rule", "name": "e", "change": {"actions": ["create"], "before": null, "after": {"type": "egress", "protocol": "-1", "from_port": 0, "to_port": 0, "cidr_blocks": ["0.0.0.0/0"]}}}
	count(require_approval) == 0 with input as {"plan": {"resource_changes": [egress]}}
		with data.sluice.params.open_ingress_approvers as ["security"]
}
