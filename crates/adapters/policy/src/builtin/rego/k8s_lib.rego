# Helpers shared by the Kubernetes rules of sluice's built-in pack.
#
# The rules read rendered manifests: input.manifests (every object of an app, as `sluice pr`
# and `sluice render` produce them) or input.manifest (one object), with the change context at
# input.change and the app at input.app. Secret values never reach a policy: sluice replaces
# them with "<redacted>" before evaluation. Results are objects {id, msg, resource[, groups]}
# whose resource is `Kind/namespace/name` (`Kind/name` for cluster-scoped objects).
package sluice.k8s

import data.sluice.lib

# The objects under review.
objects := input.manifests if is_array(input.manifests)

objects := [input.manifest] if {
	not is_array(input.manifests)
	is_object(input.manifest)
}

objects := [] if {
	not is_array(input.manifests)
	not is_object(input.manifest)
}

namespace_of(obj) := obj.metadata.namespace if {
	is_string(obj.metadata.namespace)
	obj.metadata.namespace != ""
} else := ""

address(obj) := sprintf("%s/%s/%s", [obj.kind, ns, obj.metadata.name]) if {
	ns := namespace_of(obj)
	ns != ""
} else := sprintf("%s/%s", [obj.kind, obj.metadata.name])

result(id, obj, msg) := {"id": id, "msg": msg, "resource": address(obj)}

approval(id, obj, msg, groups) := {"id": id, "msg": msg, "resource": address(obj), "groups": groups}

# Kinds whose pod template runs long-lived containers (probes make sense for them).
long_running_kinds := {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController", "Pod"}

template_kinds := {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController", "Job"}

# The pod spec of a workload object (undefined for other kinds).
pod_spec(obj) := obj.spec if obj.kind == "Pod"

pod_spec(obj) := obj.spec.template.spec if obj.kind in template_kinds

pod_spec(obj) := obj.spec.jobTemplate.spec.template.spec if obj.kind == "CronJob"

# Containers of a pod spec, each as {"c": container, "field": "containers"|...}.
containers(spec) := [{"c": c, "field": field} |
	some field in ["initContainers", "containers", "ephemeralContainers"]
	some c in lib.items(object.get(spec, field, []))
]

# Only the app containers (probes apply to these).
app_containers(spec) := [c | some c in lib.items(object.get(spec, "containers", []))]

# The change targets a protected (production) environment: input.app.protected when the
# caller set it, else the IaC pack's rule (input.change.production, params.production_envs).
protected if input.app.protected == true

protected if {
	not is_boolean(input.app.protected)
	lib.production
}
