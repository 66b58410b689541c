# sg-open-ingress: a security group change that opens ingress to the whole internet
# (0.0.0.0/0 or ::/0) needs the security team's approval. Rules already open before the change
# are not reported again.
package sluice.builtin.sg_open_ingress

import data.sluice.lib

types := {"aws_security_group", "aws_security_group_rule", "aws_vpc_security_group_ingress_rule"}

require_approval contains result if {
	some rc in lib.changes
	rc.type in types
	after := lib.after(rc)
	now_open := openings(rc.type, after)
	count(now_open) > 0
	some opening in now_open - openings(rc.type, before(rc))
	msg := sprintf("%s allows ingress from %s on %s", [rc.address, opening.cidr, ports(opening)])
	result := lib.approval("sg-open-ingress", rc, msg, lib.params.open_ingress_approvers)
}

# The state before the change ({} for a create).
before(rc) := rc.change.before if is_object(rc.change.before)

before(rc) := {} if not is_object(rc.change.before)

# Any /0 (0.0.0.0/0, ::/0) is the whole address space. Inlined below as endswith(c, "/0"):
# a function call per CIDR is the dominant cost on large plans (endswith of a non-string is
# undefined).

openings("aws_security_group", state) := {o |
	some rule in lib.items(object.get(state, "ingress", []))
	some attr in ["cidr_blocks", "ipv6_cidr_blocks"]
	some c in lib.items(object.get(rule, attr, []))
	endswith(c, "/0")
	o := make_opening(rule.protocol, rule.from_port, rule.to_port, c)
}

openings("aws_security_group_rule", state) := {o |
	state.type == "ingress"
	some attr in ["cidr_blocks", "ipv6_cidr_blocks"]
	some c in lib.items(object.get(state, attr, []))
	endswith(c, "/0")
	o := make_opening(state.protocol, state.from_port, state.to_port, c)
}

openings("aws_vpc_security_group_ingress_rule", state) := {o |
	some attr in ["cidr_ipv4", "cidr_ipv6"]
	c := object.get(state, attr, null)
	endswith(c, "/0")
	o := make_opening(state.ip_protocol, object.get(state, "from_port", null), object.get(state, "to_port", null), c)
}

make_opening(protocol, from, to, cidr) := {"protocol": protocol, "from": from, "to": to, "cidr": cidr}

ports(o) := "all protocols and ports" if o.protocol in {"-1", -1, "all"}

ports(o) := sprintf("%v port %v", [o.protocol, o.from]) if {
	not o.protocol in {"-1", -1, "all"}
	o.from == o.to
}

ports(o) := sprintf("%v ports %v-%v", [o.protocol, o.from, o.to]) if {
	not o.protocol in {"-1", -1, "all"}
	o.from != o.to
}
