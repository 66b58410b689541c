package sluice.builtin.rds_storage_encryption

mk_change(type, after) := {"address": sprintf("%s.x", [type]), "mode": "managed", "type": type, "name": "x", "change": {"actions": ["create"], "after": after, "after_unknown": {}}}

test_unencrypted_instance_denied if {
	count(deny) == 1 with input as {"plan": {"resource_changes": [mk_change("aws_db_instance", {"storage_encrypted": false})]}}
}

test_unset_cluster_denied if {
	count(deny) == 1 with input as {"plan": {"resource_changes": [mk_change("aws_rds_cluster", {"engine": "aurora-postgresql"})]}}
}

test_encrypted_allowed if {
	count(deny) == 0 with input as {"plan": {"resource_changes": [mk_change("aws_db_instance", {"storage_encrypted": true})]}}
}

test_replica_and_serverless_allowed if {
	replica := mk_change("aws_db_instance", {"storage_encrypted": false, "replicate_source_db": "main"})
	serverless := mk_change("aws_rds_cluster", {"storage_encrypted": false, "engine_mode": "serverless"})
	count(deny) == 0 with input as {"plan": {"resource_changes": [replica, serverless]}}
}

test_unknown_allowed if {
	unknown := {"address": "aws_db_instance.x", "mode": "managed", "type": "aws_db_instance", "name": "x", "change": {"actions": ["create"], "after": {}, "after_unknown": {"storage_encrypted": true}}}
	count(deny) == 0 with input as {"plan": {"resource_changes": [unknown]}}
}
