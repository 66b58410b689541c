# k8s-network-policy: every namespace the app runs workloads in (or declares) has a
# NetworkPolicy among the app's manifests, so its traffic is not open by default.
# Only judged over a whole app (input.manifests): one object alone cannot show it.
package sluice.builtin.k8s_network_policy

import data.sluice.k8s

warn contains result if {
	is_array(input.manifests)
	some ns in namespaces
	not ns in covered
	msg := sprintf("namespace %q has no NetworkPolicy in this app: every pod in it accepts traffic from anywhere in the cluster; add a default-deny policy and allow what the app needs", [ns])
	result := {"id": "k8s-network-policy", "msg": msg, "resource": sprintf("Namespace/%s", [ns])}
}

namespaces contains ns if {
	some obj in input.manifests
	k8s.pod_spec(obj)
	ns := k8s.namespace_of(obj)
	ns != ""
}

namespaces contains obj.metadata.name if {
	some obj in input.manifests
	obj.kind == "Namespace"
}

covered contains ns if {
	some obj in input.manifests
	obj.kind == "NetworkPolicy"
	ns := k8s.namespace_of(obj)
}
