package sluice.builtin.k8s_network_policy

deploy := {"kind": "Deployment", "metadata": {"name": "web", "namespace": "pay"}, "spec": {"template": {"spec": {"containers": [{"name": "app"}]}}}}

netpol := {"kind": "NetworkPolicy", "apiVersion": "networking.k8s.io/v1", "metadata": {"name": "default-deny", "namespace": "pay"}, "spec": {"podSelector": {}}}

test_namespace_without_policy_warned if {
	results := warn with input as {"manifests": [deploy]}
	results == {{"id": "k8s-network-policy", "resource": "Namespace/pay", "msg": "namespace \"pay\" has no NetworkPolicy in this app: every pod in it accepts traffic from anywhere in the cluster; add a default-deny policy and allow what the app needs"}}
}

test_declared_namespace_without_policy_warned if {
	count(warn) == 1 with input as {"manifests": [{"kind": "Namespace", "metadata": {"name": "empty"}}]}
}

test_namespace_with_policy_allowed if {
	count(warn) == 0 with input as {"manifests": [deploy, netpol]}
}

test_single_object_ignored if {
	count(warn) == 0 with input as {"manifest": deploy}
}
