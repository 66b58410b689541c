# k8s-host-path: no pod mounts a hostPath volume, no PersistentVolume is a hostPath.
package sluice.builtin.k8s_host_path

import data.sluice.k8s
import data.sluice.lib

deny contains result if {
	some obj in k8s.objects
	spec := k8s.pod_spec(obj)
	some v in lib.items(object.get(spec, "volumes", []))
	v.hostPath
	msg := sprintf("%s: volume %q mounts hostPath %q from the node: use a PersistentVolumeClaim, a ConfigMap or an emptyDir", [k8s.address(obj), v.name, object.get(v.hostPath, "path", "")])
	result := k8s.result("k8s-host-path", obj, msg)
}

deny contains result if {
	some obj in k8s.objects
	obj.kind == "PersistentVolume"
	obj.spec.hostPath
	msg := sprintf("%s is a hostPath volume (%q): it ties data to one node; use a storage class", [k8s.address(obj), object.get(obj.spec.hostPath, "path", "")])
	result := k8s.result("k8s-host-path", obj, msg)
}
