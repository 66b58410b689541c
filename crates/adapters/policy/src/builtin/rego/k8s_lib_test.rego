package sluice.k8s

test_objects_from_manifests_or_manifest if {
	count(objects) == 2 with input as {"manifests": [{"kind": "A"}, {"kind": "B"}]}
	objects == [{"kind": "A"}] with input as {"manifest": {"kind": "A"}}
	objects == [] with input as {"plan": {}}
}

test_addresses if {
	address({"kind": "Deployment", "metadata": {"name": "web", "namespace": "pay"}}) == "Deployment/pay/web"
	address({"kind": "Namespace", "metadata": {"name": "pay"}}) == "Namespace/pay"
}

test_pod_specs if {
	pod_spec({"kind": "Pod", "spec": {"a": 1}}) == {"a": 1}
	pod_spec({"kind": "Deployment", "spec": {"template": {"spec": {"a": 2}}}}) == {"a": 2}
	pod_spec({"kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": {"spec": {"a": 3}}}}}}) == {"a": 3}
	not pod_spec({"kind": "Service", "spec": {}})
}

test_protected_from_app_or_change if {
	protected with input as {"app": {"protected": true}}
	not protected with input as {"app": {"protected": false}, "change": {"env": "prod"}}
		with data.sluice.params as {"production_envs": ["prod"]}
	protected with input as {"change": {"env": "prod"}}
		with data.sluice.params as {"production_envs": ["prod"]}
}
