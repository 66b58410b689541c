# ebs-encryption: EBS volumes (standalone and instance block devices) must be encrypted.
package sluice.builtin.ebs_encryption

import data.sluice.lib

types := {"aws_ebs_volume", "aws_instance"}

deny contains result if {
	not encrypted_by_default
	some rc in lib.changes
	rc.type in types
	after := lib.after(rc)
	some msg in problems(rc, after)
	result := lib.result("ebs-encryption", rc, msg)
}

problems(rc, after) := {msg |
	not after.encrypted == true
	not lib.unknown(rc, "encrypted")
	msg := sprintf("%s is not encrypted: set encrypted = true", [rc.address])
} if rc.type == "aws_ebs_volume"

problems(rc, after) := {msg |
	some kind in ["root_block_device", "ebs_block_device"]
	some device in lib.items(object.get(after, kind, []))
	device.encrypted == false
	msg := sprintf("%s has an unencrypted %s: set encrypted = true", [rc.address, kind])
} if rc.type == "aws_instance"

# The account-wide default (aws_ebs_encryption_by_default) encrypts every new volume.
encrypted_by_default if {
	some rc in lib.changes
	rc.type == "aws_ebs_encryption_by_default"
	lib.after(rc).enabled == true
}
