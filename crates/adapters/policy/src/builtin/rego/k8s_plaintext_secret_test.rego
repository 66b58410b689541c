package sluice.builtin.k8s_plaintext_secret

test_secret_with_data_denied if {
	secret := {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "pay"}, "data": {"password": "<redacted>"}, "stringData": {"user": "<redacted>"}}
	results := deny with input as {"manifests": [secret]}
	results == {{"id": "k8s-plaintext-secret", "resource": "Secret/pay/db", "msg": "Secret/pay/db is a plaintext Secret in Git (data.password, stringData.user): store it in a secret manager and reference it with an ExternalSecret, or commit a SealedSecret"}}
}

test_empty_secret_allowed if {
	count(deny) == 0 with input as {"manifests": [{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "filled-by-operator", "namespace": "pay"}}]}
}

test_external_and_sealed_secrets_allowed if {
	es := {"apiVersion": "external-secrets.io/v1beta1", "kind": "ExternalSecret", "metadata": {"name": "db", "namespace": "pay"}, "spec": {"data": [{"secretKey": "password"}]}}
	ss := {"apiVersion": "bitnami.com/v1alpha1", "kind": "SealedSecret", "metadata": {"name": "db", "namespace": "pay"}, "spec": {"encryptedData": {"password": "AgB..."}}}
	count(deny) == 0 with input as {"manifests": [es, ss]}
}
