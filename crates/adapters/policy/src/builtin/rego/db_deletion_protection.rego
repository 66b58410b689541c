# db-deletion-protection: production databases cannot be deleted by accident.
package sluice.builtin.db_deletion_protection

import data.sluice.lib

types := {"aws_db_instance", "aws_rds_cluster", "aws_docdb_cluster", "aws_neptune_cluster"}

deny contains result if {
	lib.production
	some rc in lib.changes
	rc.type in types
	after := lib.after(rc)
	not after.deletion_protection == true
	not lib.unknown(rc, "deletion_protection")
	msg := sprintf("%s is a production database without deletion protection: set deletion_protection = true", [rc.address])
	result := lib.result("db-deletion-protection", rc, msg)
}
