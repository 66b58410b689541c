# db-public-access: a database reachable from the internet.
package sluice.builtin.db_public_access

import data.sluice.lib

types := {
	"aws_db_instance",
	"aws_rds_cluster_instance",
	"aws_redshift_cluster",
	"aws_dms_replication_instance",
}

deny contains result if {
	some rc in lib.changes
	rc.type in types
	after := lib.after(rc)
	after.publicly_accessible == true
	msg := sprintf("%s is publicly accessible: set publicly_accessible = false and reach it over private networking", [rc.address])
	result := lib.result("db-public-access", rc, msg)
}
