package sluice.builtin.k8s_resources

params := {"k8s_required_resources": ["requests.cpu", "requests.memory", "limits.memory"]}

deployment(resources) := {"kind": "Deployment", "metadata": {"name": "web", "namespace": "pay"}, "spec": {"template": {"spec": {"containers": [{"name": "app", "image": "x", "resources": resources}]}}}}

test_missing_limits_denied if {
	results := deny with input as {"manifests": [deployment({"requests": {"cpu": "100m", "memory": "1Gi"}})]}
		with data.sluice.params as params
	results == {{"id": "k8s-resources", "resource": "Deployment/pay/web", "msg": "Deployment/pay/web: container \"app\" has no limits.memory: declare resources.requests and resources.limits so the scheduler and the quota can account for it"}}
}

test_init_container_without_resources_denied if {
	pod := {"kind": "Pod", "metadata": {"name": "p"}, "spec": {"initContainers": [{"name": "init"}], "containers": [{"name": "app", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "1Gi"}}}]}}
	count(deny) == 1 with input as {"manifest": pod} with data.sluice.params as params
}

test_complete_resources_allowed if {
	count(deny) == 0 with input as {"manifests": [deployment({"requests": {"cpu": "100m", "memory": "1Gi"}, "limits": {"memory": "1Gi"}})]}
		with data.sluice.params as params
}

test_non_workloads_ignored if {
	count(deny) == 0 with input as {"manifests": [{"kind": "Service", "metadata": {"name": "s"}, "spec": {}}]}
		with data.sluice.params as params
}
