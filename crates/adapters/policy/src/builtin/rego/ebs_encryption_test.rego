package sluice.builtin.ebs_encryption

mk_change(type, after) := {"address": sprintf("%s.x", [type]), "mode": "managed", "type": type, "name": "x", "change": {"actions": ["create"], "after": after, "after_unknown": {}}}

test_unencrypted_volume_denied if {
	count(deny) == 1 with input as {"plan": {"resource_changes": [mk_change("aws_ebs_volume", {"encrypted": false, "size": 40})]}}
}

test_instance_with_unencrypted_root_denied if {
	results := deny with input as {"plan": {"resource_changes": [mk_change("aws_instance", {"root_block_device": [{"encrypted": false}]})]}}
	some r in results
	contains(r.msg, "root_block_device")
}

test_encrypted_volume_allowed if {
	count(deny) == 0 with input as {"plan": {"resource_changes": [mk_change("aws_ebs_volume", {"encrypted": true})]}}
}

test_account_default_encryption_allowed if {
	count(deny) == 0 with input as {"plan": {"resource_changes": [mk_change("aws_ebs_volume", {"encrypted": false}), mk_change("aws_ebs_encryption_by_default", {"enabled": true})]}}
}
