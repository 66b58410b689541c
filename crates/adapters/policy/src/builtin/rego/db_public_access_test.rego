package sluice.builtin.db_public_access

mk_change(type, after) := {"address": sprintf("%s.x", [type]), "mode": "managed", "type": type, "name": "x", "change": {"actions": ["create"], "after": after}}

test_public_rds_denied if {
	results := deny with input as {"plan": {"resource_changes": [mk_change("aws_db_instance", {"publicly_accessible": true})]}}
	results == {{"id": "db-public-access", "resource": "aws_db_instance.x", "msg": "aws_db_instance.x is publicly accessible: set publicly_accessible = false and reach it over private networking"}}
}

test_public_redshift_denied if {
	count(deny) == 1 with input as {"plan": {"resource_changes": [mk_change("aws_redshift_cluster", {"publicly_accessible": true})]}}
}

test_private_rds_allowed if {
	count(deny) == 0 with input as {"plan": {"resource_changes": [mk_change("aws_db_instance", {"publicly_accessible": false})]}}
}

test_deleted_public_rds_allowed if {
	gone := {"address": "aws_db_instance.x", "mode": "managed", "type": "aws_db_instance", "name": "x", "change": {"actions": ["delete"], "before": {"publicly_accessible": true}, "after": null}}
	count(deny) == 0 with input as {"plan": {"resource_changes": [gone]}}
}
