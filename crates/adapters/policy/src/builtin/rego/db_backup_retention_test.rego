package sluice.builtin.db_backup_retention

mk_change(type, after) := {"address": sprintf("%s.x", [type]), "mode": "managed", "type": type, "name": "x", "change": {"actions": ["update"], "after": after}}

test_short_retention_denied if {
	results := deny with input as {"plan": {"resource_changes": [mk_change("aws_db_instance", {"backup_retention_period": 1})]}}
		with data.sluice.params.backup_retention_min_days as 7
	some r in results
	contains(r.msg, "keeps backups for 1 days, less than the required 7")
}

test_retention_at_minimum_allowed if {
	count(deny) == 0 with input as {"plan": {"resource_changes": [mk_change("aws_rds_cluster", {"backup_retention_period": 7})]}}
		with data.sluice.params.backup_retention_min_days as 7
}

test_minimum_is_configurable if {
	count(deny) == 1 with input as {"plan": {"resource_changes": [mk_change("aws_rds_cluster", {"backup_retention_period": 7})]}}
		with data.sluice.params.backup_retention_min_days as 14
}

test_replica_allowed if {
	count(deny) == 0 with input as {"plan": {"resource_changes": [mk_change("aws_db_instance", {"backup_retention_period": 0, "replicate_source_db": "main"})]}}
		with data.sluice.params.backup_retention_min_days as 7
}
