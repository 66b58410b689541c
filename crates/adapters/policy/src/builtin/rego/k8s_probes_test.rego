package sluice.builtin.k8s_probes

deploy(c) := {"kind": "Deployment", "metadata": {"name": "web", "namespace": "pay"}, "spec": {"template": {"spec": {"containers": [c]}}}}

probe := {"httpGet": {"path": "/healthz", "port": 8080}}

test_missing_readiness_warned if {
	results := warn with input as {"manifests": [deploy({"name": "app", "livenessProbe": probe})]}
	results == {{"id": "k8s-probes", "resource": "Deployment/pay/web", "msg": "Deployment/pay/web: container \"app\" has no readinessProbe: without a readiness probe traffic reaches it before it is ready, without a liveness probe a hung process is never restarted"}}
}

test_both_probes_allowed if {
	count(warn) == 0 with input as {"manifests": [deploy({"name": "app", "livenessProbe": probe, "readinessProbe": probe})]}
}

test_jobs_ignored if {
	job := {"kind": "Job", "metadata": {"name": "j"}, "spec": {"template": {"spec": {"containers": [{"name": "once"}]}}}}
	count(warn) == 0 with input as {"manifests": [job]}
}
