package sluice.builtin.k8s_host_path

sts(volumes) := {"kind": "StatefulSet", "metadata": {"name": "db", "namespace": "d"}, "spec": {"template": {"spec": {"containers": [{"name": "c"}], "volumes": volumes}}}}

test_host_path_volume_denied if {
	results := deny with input as {"manifests": [sts([{"name": "sock", "hostPath": {"path": "/var/run/docker.sock"}}])]}
	results == {{"id": "k8s-host-path", "resource": "StatefulSet/d/db", "msg": "StatefulSet/d/db: volume \"sock\" mounts hostPath \"/var/run/docker.sock\" from the node: use a PersistentVolumeClaim, a ConfigMap or an emptyDir"}}
}

test_host_path_persistent_volume_denied if {
	count(deny) == 1 with input as {"manifest": {"kind": "PersistentVolume", "metadata": {"name": "pv"}, "spec": {"hostPath": {"path": "/data"}}}}
}

test_other_volumes_allowed if {
	count(deny) == 0 with input as {"manifests": [sts([{"name": "tmp", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "x"}}])]}
}
