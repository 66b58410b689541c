package sluice.builtin.db_deletion_protection

mk_change(after) := {"address": "aws_db_instance.x", "mode": "managed", "type": "aws_db_instance", "name": "x", "change": {"actions": ["create"], "after": after, "after_unknown": {}}}

test_unprotected_production_db_denied if {
	count(deny) == 1 with input as {"change": {"env": "prod", "production": true}, "plan": {"resource_changes": [mk_change({"deletion_protection": false})]}}
}

test_protected_production_db_allowed if {
	count(deny) == 0 with input as {"change": {"env": "prod", "production": true}, "plan": {"resource_changes": [mk_change({"deletion_protection": true})]}}
}

test_unprotected_dev_db_allowed if {
	count(deny) == 0 with input as {"change": {"env": "dev", "production": false}, "plan": {"resource_changes": [mk_change({"deletion_protection": false})]}}
}
