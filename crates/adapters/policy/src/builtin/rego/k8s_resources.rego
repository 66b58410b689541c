# k8s-resources: every container of a workload declares the required requests and limits.
package sluice.builtin.k8s_resources

import data.sluice.k8s
import data.sluice.lib

deny contains result if {
	some obj in k8s.objects
	spec := k8s.pod_spec(obj)
	some entry in k8s.containers(spec)
	entry.field != "ephemeralContainers"
	missing := [r |
		some r in lib.params.k8s_required_resources
		not declared(entry.c, r)
	]
	count(missing) > 0
	msg := sprintf("%s: container %q has no %s: declare resources.requests and resources.limits so the scheduler and the quota can account for it", [k8s.address(obj), entry.c.name, concat(", ", missing)])
	result := k8s.result("k8s-resources", obj, msg)
}

# "requests.cpu" → resources.requests.cpu is set (to anything but an empty string).
declared(c, r) if {
	parts := split(r, ".")
	v := c.resources[parts[0]][parts[1]]
	v != ""
}
