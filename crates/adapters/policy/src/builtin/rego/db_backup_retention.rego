# db-backup-retention: databases keep automated backups for a minimum number of days.
package sluice.builtin.db_backup_retention

import data.sluice.lib

types := {"aws_db_instance", "aws_rds_cluster", "aws_docdb_cluster", "aws_neptune_cluster"}

deny contains result if {
	some rc in lib.changes
	rc.type in types
	after := lib.after(rc)
	days := after.backup_retention_period
	is_number(days)
	days < lib.params.backup_retention_min_days
	not replica(after)
	msg := sprintf("%s keeps backups for %v days, less than the required %v: set backup_retention_period >= %v", [rc.address, days, lib.params.backup_retention_min_days, lib.params.backup_retention_min_days])
	result := lib.result("db-backup-retention", rc, msg)
}

# Read replicas are restored from their source's backups.
replica(after) if {
	is_string(after.replicate_source_db)
	after.replicate_source_db != ""
}
