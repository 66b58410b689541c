# k8s-probes: long-running containers declare liveness and readiness probes.
package sluice.builtin.k8s_probes

import data.sluice.k8s

warn contains result if {
	some obj in k8s.objects
	obj.kind in k8s.long_running_kinds
	spec := k8s.pod_spec(obj)
	some c in k8s.app_containers(spec)
	missing := [p | some p in ["livenessProbe", "readinessProbe"]; not c[p]]
	count(missing) > 0
	msg := sprintf("%s: container %q has no %s: without a readiness probe traffic reaches it before it is ready, without a liveness probe a hung process is never restarted", [k8s.address(obj), c.name, concat(" or ", missing)])
	result := k8s.result("k8s-probes", obj, msg)
}
