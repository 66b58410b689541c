package sluice.builtin.required_tags

mk_change(after) := {"address": "aws_s3_bucket.x", "mode": "managed", "type": "aws_s3_bucket", "name": "x", "change": {"actions": ["create"], "after": after}}

test_missing_tags_warned if {
	results := warn with input as {"plan": {"resource_changes": [mk_change({"tags": {"Name": "x"}})]}}
		with data.sluice.params.required_tags as ["owner", "cost-center"]
	results == {{"id": "required-tags", "resource": "aws_s3_bucket.x", "msg": "aws_s3_bucket.x is missing required tags: cost-center, owner"}}
}

test_null_tags_warned if {
	count(warn) == 1 with input as {"plan": {"resource_changes": [mk_change({"tags": null})]}}
		with data.sluice.params.required_tags as ["owner"]
}

test_tags_present_case_insensitively_allowed if {
	count(warn) == 0 with input as {"plan": {"resource_changes": [mk_change({"tags": {"Owner": "team-a"}})]}}
		with data.sluice.params.required_tags as ["owner"]
}

test_provider_default_tags_count if {
	cfg := {"provider_config": {"aws": {"name": "aws", "expressions": {"default_tags": [{"tags": {"constant_value": {"owner": "platform"}}}]}}}}
	count(warn) == 0 with input as {"plan": {"resource_changes": [mk_change({"tags": null})], "configuration": cfg}}
		with data.sluice.params.required_tags as ["owner"]
}

test_untaggable_resources_ignored if {
	count(warn) == 0 with input as {"plan": {"resource_changes": [mk_change({"bucket": "x"})]}}
		with data.sluice.params.required_tags as ["owner"]
}
