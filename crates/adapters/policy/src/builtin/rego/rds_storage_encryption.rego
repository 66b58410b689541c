# rds-storage-encryption: RDS instances and clusters must encrypt their storage.
package sluice.builtin.rds_storage_encryption

import data.sluice.lib

types := {"aws_db_instance", "aws_rds_cluster"}

deny contains result if {
	some rc in lib.changes
	rc.type in types
	after := lib.after(rc)
	not after.storage_encrypted == true
	not lib.unknown(rc, "storage_encrypted")
	not inherits_encryption(after)
	msg := sprintf("%s does not encrypt its storage: set storage_encrypted = true (and kms_key_id for a customer-managed key)", [rc.address])
	result := lib.result("rds-storage-encryption", rc, msg)
}

# A read replica takes its encryption from the source; Aurora Serverless v1 is always encrypted.
inherits_encryption(after) if {
	is_string(after.replicate_source_db)
	after.replicate_source_db != ""
}

inherits_encryption(after) if after.engine_mode == "serverless"
