package sluice.builtin.stateful_destroy

mk_change(type, actions) := {"address": sprintf("%s.x", [type]), "mode": "managed", "type": type, "name": "x", "action_reason": "replace_because_cannot_update", "change": {"actions": actions, "before": {}, "after": null}}

fixture_params := {"stateful_types": ["aws_db_instance", "aws_fsx_*_file_system"], "stateful_approvers": ["platform"]}

test_replace_of_production_db_requires_approval if {
	results := require_approval with input as {"change": {"production": true}, "plan": {"resource_changes": [mk_change("aws_db_instance", ["delete", "create"])]}}
		with data.sluice.params as fixture_params
	results == {{
		"id": "stateful-destroy",
		"resource": "aws_db_instance.x",
		"groups": ["platform"],
		"msg": "replace of stateful aws_db_instance.x in production (replace_because_cannot_update): data may be lost",
	}}
}

test_glob_types_match if {
	count(require_approval) == 1 with input as {"change": {"production": true}, "plan": {"resource_changes": [mk_change("aws_fsx_lustre_file_system", ["delete"])]}}
		with data.sluice.params as fixture_params
}

test_update_allowed if {
	count(require_approval) == 0 with input as {"change": {"production": true}, "plan": {"resource_changes": [mk_change("aws_db_instance", ["update"])]}}
		with data.sluice.params as fixture_params
}

test_stateless_delete_allowed if {
	count(require_approval) == 0 with input as {"change": {"production": true}, "plan": {"resource_changes": [mk_change("aws_iam_role", ["delete"])]}}
		with data.sluice.params as fixture_params
}

test_non_production_allowed if {
	count(require_approval) == 0 with input as {"change": {"production": false}, "plan": {"resource_changes": [mk_change("aws_db_instance", ["delete"])]}}
		with data.sluice.params as fixture_params
}
