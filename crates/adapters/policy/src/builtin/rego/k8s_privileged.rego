# k8s-privileged: no container runs privileged.
package sluice.builtin.k8s_privileged

import data.sluice.k8s

deny contains result if {
	some obj in k8s.objects
	spec := k8s.pod_spec(obj)
	some entry in k8s.containers(spec)
	entry.c.securityContext.privileged == true
	msg := sprintf("%s: container %q runs privileged (securityContext.privileged: true), which gives it root on the node: drop it and add only the capabilities it needs", [k8s.address(obj), entry.c.name])
	result := k8s.result("k8s-privileged", obj, msg)
}
