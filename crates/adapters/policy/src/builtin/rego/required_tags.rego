# required-tags: taggable resources carry the org's required tags (compared case-insensitively;
# provider default_tags count).
package sluice.builtin.required_tags

import data.sluice.lib

warn contains result if {
	count(required) > 0
	some rc in lib.changes

	# Cheapest test first: this rule looks at every change of the plan. A resource that
	# supports tags has the attribute, null when it has none.
	tags := rc.change.after.tags
	not has_required_exact(tags)
	after := lib.after(rc)
	missing := required - present(rc, after)
	count(missing) > 0
	msg := sprintf("%s is missing required tags: %s", [rc.address, concat(", ", sort(missing))])
	result := lib.result("required-tags", rc, msg)
}

required := {lower(t) | some t in lib.params.required_tags}

# Fast path for the common case: every required tag present with exactly the configured
# spelling. Anything else takes the case-insensitive path over tags, tags_all and defaults.
has_required_exact(tags) if {
	is_object(tags)
	every t in lib.params.required_tags {
		_ := tags[t]
	}
}

present(rc, after) := {lower(k) |
	some src in [object.get(after, "tags", {}), object.get(after, "tags_all", {})]
	is_object(src)
	some k, _ in src
} | default_tags(rc)

default_tags(rc) := default_tag_keys if startswith(rc.type, "aws_")

default_tags(rc) := set() if not startswith(rc.type, "aws_")

# Keys of the AWS providers' default_tags (constant values only).
default_tag_keys := {lower(k) |
	some name, cfg in lib.items(object.get(input.plan, ["configuration", "provider_config"], {}))
	object.get(cfg, "name", name) == "aws"
	some block in lib.items(object.get(cfg, ["expressions", "default_tags"], []))
	some k, _ in lib.items(object.get(block, ["tags", "constant_value"], {}))
}
