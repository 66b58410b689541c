package sluice.builtin.s3_encryption

bucket(name, after) := {"address": sprintf("aws_s3_bucket.%s", [name]), "mode": "managed", "type": "aws_s3_bucket", "name": name, "change": {"actions": ["create"], "after": after}}

sse(name, after) := {"address": sprintf("aws_s3_bucket_server_side_encryption_configuration.%s", [name]), "mode": "managed", "type": "aws_s3_bucket_server_side_encryption_configuration", "name": name, "change": {"actions": ["create"], "after": after}}

test_bucket_without_encryption_denied if {
	results := deny with input as {"plan": {"resource_changes": [bucket("logs", {"bucket": "acme-logs"})]}}
	[r.resource | some r in results] == ["aws_s3_bucket.logs"]
}

test_encryption_resource_by_name_allowed if {
	count(deny) == 0 with input as {"plan": {"resource_changes": [bucket("logs", {"bucket": "acme-logs"}), sse("logs", {"bucket": "acme-logs"})]}}
}

test_encryption_resource_by_reference_allowed if {
	cfg := {"root_module": {"resources": [{"address": "aws_s3_bucket_server_side_encryption_configuration.enc", "expressions": {"bucket": {"references": ["aws_s3_bucket.logs.id", "aws_s3_bucket.logs"]}}}]}}
	count(deny) == 0 with input as {"plan": {"resource_changes": [bucket("logs", {}), sse("enc", {})], "configuration": cfg}}
}

test_encryption_of_another_bucket_denied if {
	count(deny) == 1 with input as {"plan": {"resource_changes": [bucket("logs", {"bucket": "acme-logs"}), sse("other", {"bucket": "acme-other"})]}}
}

test_legacy_inline_block_allowed if {
	inline := {"server_side_encryption_configuration": [{"rule": [{"apply_server_side_encryption_by_default": [{"sse_algorithm": "aws:kms"}]}]}]}
	count(deny) == 0 with input as {"plan": {"resource_changes": [bucket("logs", inline)]}}
}

test_encryption_in_a_module_by_reference_allowed if {
	b0 := {"address": "module.s.aws_s3_bucket.b", "module_address": "module.s", "type": "aws_s3_bucket", "name": "b", "mode": "managed", "change": {"actions": ["create"], "after": {}}}
	enc := {"address": "module.s.aws_s3_bucket_server_side_encryption_configuration.b", "module_address": "module.s", "type": "aws_s3_bucket_server_side_encryption_configuration", "name": "b", "mode": "managed", "change": {"actions": ["create"], "after": {}}}
	cfg := {"root_module": {"module_calls": {"s": {"module": {"resources": [{"address": "aws_s3_bucket_server_side_encryption_configuration.b", "expressions": {"bucket": {"references": ["aws_s3_bucket.b.id", "aws_s3_bucket.b"]}}}]}}}}}
	bucket_encrypted(b0) with input as {"plan": {"resource_changes": [b0, enc], "configuration": cfg}}
	count(deny) == 0 with input as {"plan": {"resource_changes": [b0, enc], "configuration": cfg}}
	not bucket_encrypted(b0) with input as {"plan": {"resource_changes": [b0], "configuration": cfg}}
}
