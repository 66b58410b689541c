# k8s-plaintext-secret: a Secret manifest with values in Git is a leaked secret (base64 is an
# encoding, not encryption). Only key names are reported, never values: sluice redacts them
# before any policy runs.
package sluice.builtin.k8s_plaintext_secret

import data.sluice.k8s
import data.sluice.lib

deny contains result if {
	some obj in k8s.objects
	obj.kind == "Secret"
	object.get(obj, "apiVersion", "v1") == "v1"
	keys := sort([sprintf("%s.%s", [field, k]) |
		some field in ["data", "stringData"]
		some k, _ in lib.items(object.get(obj, field, {}))
	])
	count(keys) > 0
	msg := sprintf("%s is a plaintext Secret in Git (%s): store it in a secret manager and reference it with an ExternalSecret, or commit a SealedSecret", [k8s.address(obj), concat(", ", keys)])
	result := k8s.result("k8s-plaintext-secret", obj, msg)
}
