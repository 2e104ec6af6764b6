#include "CSQLiteSupport.h"

// SQLiteNIO's bundled SQLite, whose functions carry the prefix sqlite_nio_; linked into every
// binary that links the store. Declared here as its header declares it.
struct sqlite3;
int sqlite_nio_sqlite3_db_config(struct sqlite3 *, int op, ...);

enum { ASPIRE_SQLITE_DBCONFIG_ENABLE_QPSG = 1007 };

int aspire_sqlite_stable_plans(void *db) {
    int enabled = 0;
    int status = sqlite_nio_sqlite3_db_config((struct sqlite3 *)db, ASPIRE_SQLITE_DBCONFIG_ENABLE_QPSG, 1, &enabled);
    return status != 0 ? status : (enabled == 1 ? 0 : 1);
}
