# k8s-image-digest: in protected (production) environments every container image is pinned by
# digest, so what runs is exactly what was reviewed and scanned.
package sluice.builtin.k8s_image_digest

import data.sluice.k8s

deny contains result if {
	k8s.protected
	some obj in k8s.objects
	spec := k8s.pod_spec(obj)
	some entry in k8s.containers(spec)
	image := object.get(entry.c, "image", "")
	not pinned(image)
	msg := sprintf("%s: container %q uses image %q without a digest in a protected environment: pin it as name@sha256:<digest> (Kustomize images[].digest, or your CD tool's image updater)", [k8s.address(obj), entry.c.name, image])
	result := k8s.result("k8s-image-digest", obj, msg)
}

pinned(image) if regex.match(`@sha256:[0-9a-f]{64}$`, image)
