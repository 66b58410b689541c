package sluice.builtin.k8s_privileged

pod(ctx) := {"kind": "Pod", "metadata": {"name": "p", "namespace": "n"}, "spec": {"containers": [{"name": "app", "securityContext": ctx}]}}

test_privileged_container_denied if {
	results := deny with input as {"manifests": [pod({"privileged": true})]}
	results == {{"id": "k8s-privileged", "resource": "Pod/n/p", "msg": "Pod/n/p: container \"app\" runs privileged (securityContext.privileged: true), which gives it root on the node: drop it and add only the capabilities it needs"}}
}

test_privileged_init_container_in_cronjob_denied if {
	cj := {"kind": "CronJob", "metadata": {"name": "c"}, "spec": {"jobTemplate": {"spec": {"template": {"spec": {"initContainers": [{"name": "i", "securityContext": {"privileged": true}}]}}}}}}
	count(deny) == 1 with input as {"manifest": cj}
}

test_unprivileged_allowed if {
	count(deny) == 0 with input as {"manifests": [pod({"privileged": false}), pod({"runAsNonRoot": true})]}
}
