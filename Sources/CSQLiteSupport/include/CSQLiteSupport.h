#ifndef ASPIRE_CSQLITESUPPORT_H
#define ASPIRE_CSQLITESUPPORT_H

/// Turns on SQLite's query planner stability guarantee for the connection `db` (a `sqlite3 *`
/// of SQLiteNIO's bundled library): a statement's plan no longer depends on the values bound to
/// it, so a statement kept prepared is not prepared again whenever one of them changes (SQLite
/// otherwise does that for a value compared with a partial index's condition or used as a
/// LIMIT). `sqlite3_db_config` takes variable arguments, which Swift cannot call. 0 or an error code.
int aspire_sqlite_stable_plans(void *db);

#endif
