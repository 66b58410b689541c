# k8s-loadbalancer: a Service of type LoadBalancer exposes the app outside the cluster network;
# outside the namespaces allowed to, it needs approval.
package sluice.builtin.k8s_loadbalancer

import data.sluice.k8s
import data.sluice.lib

require_approval contains result if {
	some obj in k8s.objects
	obj.kind == "Service"
	obj.spec.type == "LoadBalancer"
	not k8s.namespace_of(obj) in {ns | some ns in lib.params.k8s_loadbalancer_namespaces}
	msg := sprintf("%s is a LoadBalancer Service: it gets an address reachable from outside the cluster; use an Ingress or Gateway route, or have the owners of the network edge approve it", [k8s.address(obj)])
	result := k8s.approval("k8s-loadbalancer", obj, msg, lib.params.k8s_loadbalancer_approvers)
}
