package sluice.builtin.k8s_image_digest

deploy(image) := {"kind": "Deployment", "metadata": {"name": "web", "namespace": "pay"}, "spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}}

digest := "sha256:9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b"

test_tag_in_production_denied if {
	results := deny with input as {"app": {"protected": true}, "manifests": [deploy("ghcr.io/acme/web:v1.5.0")]}
	results == {{"id": "k8s-image-digest", "resource": "Deployment/pay/web", "msg": "Deployment/pay/web: container \"app\" uses image \"ghcr.io/acme/web:v1.5.0\" without a digest in a protected environment: pin it as name@sha256:<digest> (Kustomize images[].digest, or your CD tool's image updater)"}}
}

test_env_named_production_denied if {
	count(deny) == 1 with input as {"change": {"env": "prod"}, "manifests": [deploy("web:latest")]}
		with data.sluice.params as {"production_envs": ["prod"]}
}

test_digest_in_production_allowed if {
	count(deny) == 0 with input as {"app": {"protected": true}, "manifests": [deploy(sprintf("ghcr.io/acme/web:v1.5.0@%s", [digest])), deploy(sprintf("ghcr.io/acme/web@%s", [digest]))]}
}

test_tag_outside_production_allowed if {
	count(deny) == 0 with input as {"app": {"protected": false}, "manifests": [deploy("ghcr.io/acme/web:v1.5.0")]}
}
