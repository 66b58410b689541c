package sluice.lib

test_production_from_flag if {
	production with input as {"change": {"env": "live", "production": true}}
}

test_production_flag_false_wins if {
	not production with input as {"change": {"env": "prod", "production": false}}
}

test_production_from_env_name if {
	production with input as {"change": {"env": "prod"}}
		with data.sluice.params.production_envs as ["prod"]
}

test_not_production if {
	not production with input as {"change": {"env": "dev"}}
		with data.sluice.params.production_envs as ["prod"]
}

test_module_of_strips_instance_keys if {
	module_of({"module_address": "module.a[\"x.y\"].module.b[0]"}) == "module.a.module.b"
	module_of({}) == ""
}

test_after_only_for_creates_and_updates if {
	after({"mode": "managed", "change": {"actions": ["create"], "after": {"a": 1}}}) == {"a": 1}
	after({"mode": "managed", "change": {"actions": ["delete", "create"], "after": {"a": 1}}}) == {"a": 1}
	not after({"mode": "managed", "change": {"actions": ["delete"], "after": null}})
	not after({"mode": "data", "change": {"actions": ["read"], "after": {"a": 1}}})
}

test_statements_parse_single_and_list if {
	count(statements(`{"Statement": {"Effect": "Allow"}}`)) == 1
	count(statements(`{"Statement": [{"Effect": "Allow"}, {"Effect": "Deny"}]}`)) == 2
	not statements("not json")
	not statements(null)
}
