# s3-encryption: S3 buckets must declare server-side encryption.
package sluice.builtin.s3_encryption

import data.sluice.lib

deny contains result if {
	some rc in lib.changes
	rc.type == "aws_s3_bucket"
	after := lib.after(rc)
	not inline_encryption(after)
	not bucket_encrypted(rc)
	msg := sprintf("%s has no server-side encryption configuration: add an aws_s3_bucket_server_side_encryption_configuration (aws:kms or AES256) for it", [rc.address])
	result := lib.result("s3-encryption", rc, msg)
}

# The pre-4.0 AWS provider's inline block.
inline_encryption(after) if count(after.server_side_encryption_configuration) > 0

# Configuration entries of bucket-attached resources (aws_s3_bucket_*), keyed
# "<module>|<type>.<name>", up to three levels of module nesting (Rego has no recursion; deeper
# modules fall back to matching by bucket name). Only these are indexed: the configuration of
# a large plan has as many entries as the plan has resources.
config_resources := object.union_n([
	{sprintf("|%s", [cr.address]): cr |
		some cr in lib.items(object.get(input.plan, ["configuration", "root_module", "resources"], []))
		startswith(cr.address, "aws_s3_bucket_")
	},
	{sprintf("module.%s|%s", [a, cr.address]): cr |
		some a, ma in lib.items(object.get(input.plan, ["configuration", "root_module", "module_calls"], {}))
		some cr in lib.items(object.get(ma, ["module", "resources"], []))
		startswith(cr.address, "aws_s3_bucket_")
	},
	{sprintf("module.%s.module.%s|%s", [a, b, cr.address]): cr |
		some a, ma in lib.items(object.get(input.plan, ["configuration", "root_module", "module_calls"], {}))
		some b, mb in lib.items(object.get(ma, ["module", "module_calls"], {}))
		some cr in lib.items(object.get(mb, ["module", "resources"], []))
		startswith(cr.address, "aws_s3_bucket_")
	},
	{sprintf("module.%s.module.%s.module.%s|%s", [a, b, c, cr.address]): cr |
		some a, ma in lib.items(object.get(input.plan, ["configuration", "root_module", "module_calls"], {}))
		some b, mb in lib.items(object.get(ma, ["module", "module_calls"], {}))
		some c, mc in lib.items(object.get(mb, ["module", "module_calls"], {}))
		some cr in lib.items(object.get(mc, ["module", "resources"], []))
		startswith(cr.address, "aws_s3_bucket_")
	},
])

config_of(rc) := config_resources[sprintf("%s|%s.%s", [lib.module_of(rc), rc.type, rc.name])]

# Keys under which a bucket can be found: its name when known, and its configuration address.
bucket_keys(rc) := names | {sprintf("ref:%s|aws_s3_bucket.%s", [lib.module_of(rc), rc.name])} if {
	names := {sprintf("name:%s", [b]) | b := rc.change.after.bucket; is_string(b)}
}

encryption_type := "aws_s3_bucket_server_side_encryption_configuration"

# Keys of the buckets an encryption configuration in the plan targets: by bucket name when it
# is known, else by the aws_s3_bucket its `bucket` expression references.
encrypted_buckets contains key if {
	some rc in lib.changes
	rc.type == encryption_type
	not rc.change.actions == ["delete"]
	some key in attached_keys(rc)
}

attached_keys(rc) := {sprintf("name:%s", [rc.change.after.bucket])} if is_string(rc.change.after.bucket)

attached_keys(rc) := {sprintf("ref:%s|%s", [lib.module_of(rc), bucket_ref(r)]) |
	some r in lib.items(object.get(config_of(rc), ["expressions", "bucket", "references"], []))
	startswith(r, "aws_s3_bucket.")
} if not is_string(rc.change.after.bucket)

bucket_ref(r) := concat(".", array.slice(split(r, "."), 0, 2))

# Whether the plan carries an encryption configuration for the bucket of change `rc`.
bucket_encrypted(rc) if {
	some k in bucket_keys(rc)
	encrypted_buckets[k]
}
