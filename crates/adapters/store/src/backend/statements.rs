//! The writes of a transaction sent to the database as one query.
//!
//! A state backend request is a short transaction: a `LOCK` updates the lock row, attaches the
//! Terraform lock, appends one log leaf and records one audit event; a `POST` adds a blob, a
//! version, a leaf and an event. Sent one by one, each statement is a round trip (on
//! PostgreSQL over the socket, on SQLite a hand-off to the connection's thread and back), and
//! those round trips were most of a lock request's time. A [`Statements`] collects the statements
//! and sends them together:
//!
//! - on SQLite as statements separated by `;`, which sqlx runs in turn on the connection's
//!   thread (its unnumbered `?` binds continue from one statement to the next);
//! - on PostgreSQL as data-modifying `WITH` clauses in front of one `SELECT` (a query of the
//!   extended protocol holds one statement). The clauses run against one snapshot and cannot
//!   see each other's rows, so a batch never writes a row twice or reads what it writes;
//!   foreign keys are checked at the end of the statement, so a version may reference a blob
//!   inserted beside it.
//!
//! At most one statement's `RETURNING` rows are the batch's answer (the ids of the audit events).

use sqlx::{Database, QueryBuilder};

/// Pushes `sql` onto a query builder, binding the values in order, one at each `?` of `sql`
/// (which must have no other `?`).
macro_rules! push_sql {
    ($q:expr, $sql:expr $(, $bind:expr)* $(,)?) => {{
        let q = $q;
        let mut parts = $sql.split('?');
        q.push(parts.next().unwrap_or_default());
        $(
            q.push_bind($bind);
            q.push(parts.next().expect("one `?` per bound value"));
        )*
        debug_assert!(parts.next().is_none(), "one bound value per `?`");
    }};
}
pub(crate) use push_sql;

/// Write statements sent as one query (see the module documentation).
pub(crate) struct Statements<DB: Database> {
    query: QueryBuilder<DB>,
    /// Statements as `WITH` clauses (PostgreSQL) instead of separated by `;` (SQLite).
    in_ctes: bool,
    statements: usize,
    returning: Option<usize>,
}

impl<DB: Database> Statements<DB> {
    pub(crate) fn new(in_ctes: bool) -> Self {
        Statements {
            query: QueryBuilder::new(""),
            in_ctes,
            statements: 0,
            returning: None,
        }
    }

    /// Starts the next statement: write it on the builder returned.
    pub(crate) fn statement(&mut self) -> &mut QueryBuilder<DB> {
        if self.in_ctes {
            self.query
                .push(if self.statements == 0 { "WITH " } else { "), " });
            self.query.push(format_args!("s{} AS (", self.statements));
        } else if self.statements > 0 {
            self.query.push("; ");
        }
        self.statements += 1;
        &mut self.query
    }

    /// Starts the statement whose `RETURNING` rows answer the batch (one per batch).
    pub(crate) fn returning_statement(&mut self) -> &mut QueryBuilder<DB> {
        assert!(
            self.returning.is_none(),
            "one returning statement per batch"
        );
        self.returning = Some(self.statements);
        self.statement()
    }

    /// The whole query, or `None` when no statement was added. Its rows are the returning
    /// statement's (on PostgreSQL a batch without one answers one row, to be ignored).
    pub(crate) fn finish(mut self) -> Option<QueryBuilder<DB>> {
        if self.statements == 0 {
            return None;
        }
        if self.in_ctes {
            match self.returning {
                Some(i) => self.query.push(format_args!(") SELECT * FROM s{i}")),
                None => self.query.push(") SELECT 1"),
            };
        }
        Some(self.query)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sql(b: Statements<sqlx::Postgres>) -> String {
        b.finish()
            .map(|q| q.sql().as_str().to_string())
            .unwrap_or_default()
    }

    #[test]
    fn statements_become_ctes_or_a_list() {
        let mut pg = Statements::<sqlx::Postgres>::new(true);
        push_sql!(pg.statement(), "UPDATE t SET a = ? WHERE k = ?", 1i64, "k");
        push_sql!(
            pg.returning_statement(),
            "INSERT INTO e (v) VALUES (?) RETURNING id",
            2i64
        );
        assert_eq!(
            sql(pg),
            "WITH s0 AS (UPDATE t SET a = $1 WHERE k = $2), \
             s1 AS (INSERT INTO e (v) VALUES ($3) RETURNING id) SELECT * FROM s1"
        );
        let mut pg = Statements::<sqlx::Postgres>::new(true);
        push_sql!(pg.statement(), "DELETE FROM t WHERE k = ?", "k");
        assert_eq!(sql(pg), "WITH s0 AS (DELETE FROM t WHERE k = $1) SELECT 1");
        assert_eq!(sql(Statements::new(true)), "");

        let mut lite = Statements::<sqlx::Sqlite>::new(false);
        push_sql!(
            lite.statement(),
            "UPDATE t SET a = ? WHERE k = ?",
            1i64,
            "k"
        );
        push_sql!(
            lite.returning_statement(),
            "INSERT INTO e (v) VALUES (?) RETURNING id",
            2i64
        );
        let q = lite.finish().unwrap();
        assert_eq!(
            q.sql().as_str(),
            "UPDATE t SET a = ? WHERE k = ?; INSERT INTO e (v) VALUES (?) RETURNING id"
        );
    }
}
