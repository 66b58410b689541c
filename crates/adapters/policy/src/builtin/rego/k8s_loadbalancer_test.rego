package sluice.builtin.k8s_loadbalancer

params := {"k8s_loadbalancer_namespaces": ["ingress"], "k8s_loadbalancer_approvers": ["network"]}

svc(ns, type) := {"kind": "Service", "metadata": {"name": "edge", "namespace": ns}, "spec": {"type": type}}

test_loadbalancer_requires_approval if {
	results := require_approval with input as {"manifests": [svc("pay", "LoadBalancer")]} with data.sluice.params as params
	results == {{"id": "k8s-loadbalancer", "resource": "Service/pay/edge", "groups": ["network"], "msg": "Service/pay/edge is a LoadBalancer Service: it gets an address reachable from outside the cluster; use an Ingress or Gateway route, or have the owners of the network edge approve it"}}
}

test_allowed_namespace_allowed if {
	count(require_approval) == 0 with input as {"manifests": [svc("ingress", "LoadBalancer")]} with data.sluice.params as params
}

test_cluster_ip_allowed if {
	count(require_approval) == 0 with input as {"manifests": [svc("pay", "ClusterIP")]} with data.sluice.params as params
}
