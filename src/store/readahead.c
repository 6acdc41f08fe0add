/*
 * SQLite VFSes that read the main database file ahead and write the WAL behind
 * (readahead_int.h): the system's VFS underneath, with one window per database file handle
 * and one run of writes per WAL handle. The store opens its connections through the first
 * (sqlite.c, conn_open), the inbox through the second (receive/inbox.c, conn_open).
 */
#include "store/readahead_int.h"

#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#include <sqlite3.h>

#include <vocohook/alloc.h>

#include "core/banned.h"

struct ra_file {
    sqlite3_file base;  /* pMethods: one of ra_io */
    sqlite3_file *real; /* the system VFS's file, in the same allocation after this */
    bool main_db;       /* reads ahead; any other file's reads are only passed through */
    /* Writing behind: a WAL and its main database file know each other while both are open. */
    struct ra_file *wal; /* a main database file's WAL, or NULL */
    struct ra_file *db;  /* a WAL's main database file; NULL: the WAL is written through */
    unsigned char *run;  /* the writes held: run_len bytes from run_off (cap: run_cap) */
    size_t run_len, run_cap;
    sqlite3_int64 run_off;
    int run_err;        /* a run a barrier or a lock could not write: every later call fails */
    unsigned char *win; /* VH__READAHEAD_BYTES, from the first fill to the close */
    sqlite3_int64 win_off;
    sqlite3_int64 win_len; /* bytes of the file in `win`; 0: nothing */
    sqlite3_int64 next;    /* where the last read ended: a read from there goes on */
    sqlite3_int64 size;    /* the file's size when last asked; -1: not known */
    bool size_fresh;       /* `size` was asked since the window was last dropped */
    struct vh__readahead_stats stats;
};

/* The real file's handle starts at this offset of ours, aligned as SQLite aligns. */
#define REAL_OFFSET ((sizeof(struct ra_file) + 7) & ~(size_t)7)

#define RUN_MIN ((size_t)64 * 1024) /* a run's first buffer; it doubles up to the most */

/* What each of the two VFSes is: its pAppData. */
struct ra_kind {
    sqlite3_vfs *root; /* the system's VFS */
    bool read_ahead;   /* false: writes the WAL behind only */
};

static sqlite3_vfs *root_of(sqlite3_vfs *vfs)
{
    return ((const struct ra_kind *)vfs->pAppData)->root;
}

static struct ra_file *to_ra(sqlite3_file *f)
{
    return (struct ra_file *)f;
}

/* The window can hold pages SQLite will not read as they are now: dropped. */
static void drop(struct ra_file *p)
{
    p->win_len = 0;
    p->size_fresh = false;
}

/* ---- writing the WAL behind ------------------------------------------------------------------ */

/* Writes the run held, if any. SQLITE_OK, or the error of that write (or of an earlier one). */
static int run_write(struct ra_file *p)
{
    int rc;

    if (p->run_err != SQLITE_OK || p->run_len == 0)
        return p->run_err;
    rc = p->real->pMethods->xWrite(p->real, p->run, (int)p->run_len, p->run_off);
    p->run_len = 0;
    p->stats.wal_runs++;
    return rc;
}

/* The same where nothing can be returned: a failure fails every later call on the WAL. */
static void run_write_now(struct ra_file *wal)
{
    int rc;

    if (wal && wal->run_len) {
        rc = run_write(wal);
        if (rc != SQLITE_OK)
            wal->run_err = rc;
    }
}

/* Makes the run's buffer hold at least `need` bytes (at most VH__WAL_BEHIND_MAX). */
static bool run_reserve(struct ra_file *p, size_t need)
{
    size_t cap = p->run_cap ? p->run_cap : RUN_MIN;
    unsigned char *run;

    if (need <= p->run_cap)
        return true;
    if (need > VH__WAL_BEHIND_MAX)
        return false;
    while (cap < need)
        cap *= 2;
    if (cap > VH__WAL_BEHIND_MAX)
        cap = VH__WAL_BEHIND_MAX;
    run = vh_realloc(p->run, cap);
    if (!run)
        return false;
    p->run = run;
    p->run_cap = cap;
    return true;
}

/*
 * A write to the WAL: into the run when it lands within it or right after it, else the run
 * is written and this write starts a new one; a write no run can take (no memory, too
 * large) goes through as it came, after the run.
 */
static int wal_write(struct ra_file *p, const void *data, int amt, sqlite3_int64 off)
{
    sqlite3_int64 end = p->run_off + (sqlite3_int64)p->run_len;
    size_t at, need;
    int rc;

    if (p->run_err != SQLITE_OK)
        return p->run_err;
    p->stats.wal_writes++;
    if (p->run_len && off >= p->run_off && off <= end) {
        at = (size_t)(off - p->run_off);
        need = at + (size_t)amt;
        if (run_reserve(p, need)) {
            memcpy(p->run + at, data, (size_t)amt);
            if (need > p->run_len)
                p->run_len = need;
            return SQLITE_OK;
        }
    }
    rc = run_write(p);
    if (rc != SQLITE_OK)
        return rc;
    if (run_reserve(p, (size_t)amt)) {
        memcpy(p->run, data, (size_t)amt);
        p->run_off = off;
        p->run_len = (size_t)amt;
        return SQLITE_OK;
    }
    p->stats.wal_runs++;
    return p->real->pMethods->xWrite(p->real, data, amt, off);
}

/* ---- the file ------------------------------------------------------------------------------ */

static int ra_close(sqlite3_file *f)
{
    struct ra_file *p = to_ra(f);
    int wrc = run_write(p);
    int rc = p->real->pMethods ? p->real->pMethods->xClose(p->real) : SQLITE_OK;

    /* SQLite closes a connection's WAL before its database file; either may go first here. */
    if (p->db)
        p->db->wal = NULL;
    if (p->wal)
        p->wal->db = NULL;
    p->db = p->wal = NULL;
    vh_free(p->run);
    p->run = NULL;
    p->run_len = p->run_cap = 0;
    vh_free(p->win);
    p->win = NULL;
    p->win_len = 0;
    return wrc != SQLITE_OK ? wrc : rc;
}

/*
 * Fills the window from `off` with one read, at most to the end of the file as last known,
 * and serves [off, off + amt) from it. Returns false, with nothing served, when a window
 * would hold no more than this read or the fill did not come back whole.
 */
static bool fill(struct ra_file *p, void *out, int amt, sqlite3_int64 off)
{
    sqlite3_int64 len = VH__READAHEAD_BYTES;
    int rc;

    if (off + len > p->size && !p->size_fresh) {
        if (p->real->pMethods->xFileSize(p->real, &p->size) != SQLITE_OK)
            p->size = -1;
        p->size_fresh = true;
    }
    if (off + len > p->size)
        len = p->size - off;
    if (len < 2 * (sqlite3_int64)amt)
        return false;
    if (!p->win) {
        p->win = vh_malloc(VH__READAHEAD_BYTES);
        if (!p->win)
            return false;
    }
    rc = p->real->pMethods->xRead(p->real, p->win, (int)len, off);
    if (rc != SQLITE_OK) {
        /* A short read (the file shrank) zero-fills: nothing of it is trusted. */
        drop(p);
        p->stats.failed++;
        p->size = -1;
        return false;
    }
    p->win_off = off;
    p->win_len = len;
    memcpy(out, p->win, (size_t)amt);
    p->stats.fills++;
    return true;
}

static int ra_read(sqlite3_file *f, void *out, int amt, sqlite3_int64 off)
{
    struct ra_file *p = to_ra(f);
    bool goes_on;

    if (p->db) {
        int rc = run_write(p);

        if (rc != SQLITE_OK)
            return rc;
    }
    if (!p->main_db)
        return p->real->pMethods->xRead(p->real, out, amt, off);
    p->stats.reads++;
    if (p->win_len && off >= p->win_off && off + amt <= p->win_off + p->win_len) {
        memcpy(out, p->win + (off - p->win_off), (size_t)amt);
        p->next = off + amt;
        p->stats.hits++;
        return SQLITE_OK;
    }
    goes_on = off == p->next || (p->win_len && off == p->win_off + p->win_len);
    p->next = off + amt;
    if (goes_on && amt > 0 && amt <= VH__READAHEAD_BYTES / 2 && fill(p, out, amt, off))
        return SQLITE_OK;
    p->stats.direct++;
    return p->real->pMethods->xRead(p->real, out, amt, off);
}

static int ra_write(sqlite3_file *f, const void *data, int amt, sqlite3_int64 off)
{
    struct ra_file *p = to_ra(f);

    if (p->db)
        return wal_write(p, data, amt, off);
    drop(p);
    return p->real->pMethods->xWrite(p->real, data, amt, off);
}

static int ra_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    struct ra_file *p = to_ra(f);
    int rc = run_write(p);

    drop(p);
    return rc != SQLITE_OK ? rc : p->real->pMethods->xTruncate(p->real, size);
}

static int ra_sync(sqlite3_file *f, int flags)
{
    struct ra_file *p = to_ra(f);
    int rc = run_write(p);

    return rc != SQLITE_OK ? rc : p->real->pMethods->xSync(p->real, flags);
}

static int ra_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
    struct ra_file *p = to_ra(f);
    int rc = run_write(p);

    return rc != SQLITE_OK ? rc : p->real->pMethods->xFileSize(p->real, size);
}

static int ra_lock(sqlite3_file *f, int level)
{
    struct ra_file *p = to_ra(f);

    drop(p);
    return p->real->pMethods->xLock(p->real, level);
}

static int ra_unlock(sqlite3_file *f, int level)
{
    struct ra_file *p = to_ra(f);

    drop(p);
    return p->real->pMethods->xUnlock(p->real, level);
}

static int ra_check_reserved(sqlite3_file *f, int *out)
{
    struct ra_file *p = to_ra(f);

    return p->real->pMethods->xCheckReservedLock(p->real, out);
}

static int ra_file_control(sqlite3_file *f, int op, void *arg)
{
    struct ra_file *p = to_ra(f);
    struct vh__readahead_stats *st = arg;
    int rc;

    if (op == VH__READAHEAD_FCNTL_STATS) {
        memcpy(st, &p->stats, sizeof(*st));
        st->wal_writes = p->wal ? p->wal->stats.wal_writes : 0;
        st->wal_runs = p->wal ? p->wal->stats.wal_runs : 0;
        return SQLITE_OK;
    }
    rc = run_write(p);
    if (rc != SQLITE_OK)
        return rc;
    drop(p);
    return p->real->pMethods->xFileControl(p->real, op, arg);
}

static int ra_sector_size(sqlite3_file *f)
{
    struct ra_file *p = to_ra(f);

    return p->real->pMethods->xSectorSize(p->real);
}

static int ra_device_characteristics(sqlite3_file *f)
{
    struct ra_file *p = to_ra(f);

    return p->real->pMethods->xDeviceCharacteristics(p->real);
}

static int ra_shm_map(sqlite3_file *f, int region, int size, int extend, void volatile **out)
{
    struct ra_file *p = to_ra(f);

    return p->real->pMethods->xShmMap(p->real, region, size, extend, out);
}

/*
 * Every read transaction in WAL mode takes and drops a read lock here: the window goes.
 * The WAL's run is written before any lock changes, so that a run a transaction left
 * (one rolled back) never lands after another connection's writes to the same frames.
 */
static int ra_shm_lock(sqlite3_file *f, int offset, int n, int flags)
{
    struct ra_file *p = to_ra(f);

    run_write_now(p->wal);
    drop(p);
    return p->real->pMethods->xShmLock(p->real, offset, n, flags);
}

/* SQLite publishes a commit's wal-index header around this barrier: its frames go first. */
static void ra_shm_barrier(sqlite3_file *f)
{
    struct ra_file *p = to_ra(f);

    run_write_now(p->wal);
    p->real->pMethods->xShmBarrier(p->real);
}

static int ra_shm_unmap(sqlite3_file *f, int delete_flag)
{
    struct ra_file *p = to_ra(f);

    return p->real->pMethods->xShmUnmap(p->real, delete_flag);
}

/* Memory-mapped pages bypass the window; the store leaves mmap_size at 0 all the same. */
static int ra_fetch(sqlite3_file *f, sqlite3_int64 off, int amt, void **out)
{
    struct ra_file *p = to_ra(f);

    return p->real->pMethods->xFetch(p->real, off, amt, out);
}

static int ra_unfetch(sqlite3_file *f, sqlite3_int64 off, void *page)
{
    struct ra_file *p = to_ra(f);

    return p->real->pMethods->xUnfetch(p->real, off, page);
}

/* One table per version of the system VFS's files: SQLite calls what the version has. */
#define RA_IO(version)                                                                             \
    {                                                                                              \
        .iVersion = (version), .xClose = ra_close, .xRead = ra_read, .xWrite = ra_write,           \
        .xTruncate = ra_truncate, .xSync = ra_sync, .xFileSize = ra_file_size, .xLock = ra_lock,   \
        .xUnlock = ra_unlock, .xCheckReservedLock = ra_check_reserved,                             \
        .xFileControl = ra_file_control, .xSectorSize = ra_sector_size,                            \
        .xDeviceCharacteristics = ra_device_characteristics, .xShmMap = ra_shm_map,                \
        .xShmLock = ra_shm_lock, .xShmBarrier = ra_shm_barrier, .xShmUnmap = ra_shm_unmap,         \
        .xFetch = ra_fetch, .xUnfetch = ra_unfetch,                                                \
    }
static const sqlite3_io_methods ra_io[3] = {RA_IO(1), RA_IO(2), RA_IO(3)};

/* ---- the VFS: the system's, with files wrapped ---------------------------------------------- */

static bool is_ours(const sqlite3_file *f)
{
    return f && (f->pMethods == &ra_io[0] || f->pMethods == &ra_io[1] || f->pMethods == &ra_io[2]);
}

static int ra_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *out_flags)
{
    const struct ra_kind *kind = vfs->pAppData;
    struct ra_file *p = to_ra(f);
    sqlite3_file *db;
    int rc, version;

    memset(p, 0, sizeof(*p));
    p->real = (sqlite3_file *)((char *)f + REAL_OFFSET);
    p->main_db = kind->read_ahead && (flags & SQLITE_OPEN_MAIN_DB) != 0;
    p->size = -1;
    rc = root_of(vfs)->xOpen(root_of(vfs), name, p->real, flags, out_flags);
    /* SQLite closes a file whose pMethods is set, even when its open failed. */
    if (p->real->pMethods) {
        version = p->real->pMethods->iVersion;
        p->base.pMethods = &ra_io[version < 1 ? 0 : version > 3 ? 2 : version - 1];
    }
    /*
     * A WAL is written behind only when its database file is one of ours, whose barrier
     * and locks write the run (readahead_int.h); a WAL of a database opened otherwise is
     * written through.
     */
    if (rc == SQLITE_OK && (flags & SQLITE_OPEN_WAL) && name) {
        db = sqlite3_database_file_object(name);
        if (is_ours(db) && !to_ra(db)->wal) {
            p->db = to_ra(db);
            p->db->wal = p;
        }
    }
    return rc;
}

static int ra_delete(sqlite3_vfs *vfs, const char *name, int sync_dir)
{
    return root_of(vfs)->xDelete(root_of(vfs), name, sync_dir);
}

static int ra_access(sqlite3_vfs *vfs, const char *name, int flags, int *out)
{
    return root_of(vfs)->xAccess(root_of(vfs), name, flags, out);
}

static int ra_full_pathname(sqlite3_vfs *vfs, const char *name, int n, char *out)
{
    return root_of(vfs)->xFullPathname(root_of(vfs), name, n, out);
}

static void *ra_dlopen(sqlite3_vfs *vfs, const char *name)
{
    return root_of(vfs)->xDlOpen(root_of(vfs), name);
}

static void ra_dlerror(sqlite3_vfs *vfs, int n, char *out)
{
    root_of(vfs)->xDlError(root_of(vfs), n, out);
}

static void (*ra_dlsym(sqlite3_vfs *vfs, void *handle, const char *sym))(void)
{
    return root_of(vfs)->xDlSym(root_of(vfs), handle, sym);
}

static void ra_dlclose(sqlite3_vfs *vfs, void *handle)
{
    root_of(vfs)->xDlClose(root_of(vfs), handle);
}

static int ra_randomness(sqlite3_vfs *vfs, int n, char *out)
{
    return root_of(vfs)->xRandomness(root_of(vfs), n, out);
}

static int ra_sleep(sqlite3_vfs *vfs, int us)
{
    return root_of(vfs)->xSleep(root_of(vfs), us);
}

static int ra_current_time(sqlite3_vfs *vfs, double *out)
{
    return root_of(vfs)->xCurrentTime(root_of(vfs), out);
}

static int ra_last_error(sqlite3_vfs *vfs, int n, char *out)
{
    return root_of(vfs)->xGetLastError(root_of(vfs), n, out);
}

static int ra_current_time64(sqlite3_vfs *vfs, sqlite3_int64 *out)
{
    return root_of(vfs)->xCurrentTimeInt64(root_of(vfs), out);
}

static sqlite3_vfs ra_vfs[2];
static struct ra_kind ra_kinds[2];
static int ra_registered = SQLITE_ERROR;
static pthread_once_t ra_once = PTHREAD_ONCE_INIT;

static int register_one(sqlite3_vfs *root, size_t i, const char *name, bool read_ahead)
{
    ra_kinds[i] = (struct ra_kind){.root = root, .read_ahead = read_ahead};
    ra_vfs[i] = (sqlite3_vfs){
        .iVersion = 2,
        .szOsFile = (int)REAL_OFFSET + root->szOsFile,
        .mxPathname = root->mxPathname,
        .zName = name,
        .pAppData = &ra_kinds[i],
        .xOpen = ra_open,
        .xDelete = ra_delete,
        .xAccess = ra_access,
        .xFullPathname = ra_full_pathname,
        .xDlOpen = ra_dlopen,
        .xDlError = ra_dlerror,
        .xDlSym = ra_dlsym,
        .xDlClose = ra_dlclose,
        .xRandomness = ra_randomness,
        .xSleep = ra_sleep,
        .xCurrentTime = ra_current_time,
        .xGetLastError = ra_last_error,
        .xCurrentTimeInt64 = ra_current_time64,
    };
    return sqlite3_vfs_register(&ra_vfs[i], 0);
}

static void ra_register_once(void)
{
    sqlite3_vfs *root;
    int rc;

    /*
     * Before SQLite initializes (sqlite3_vfs_find does): without memory statistics, each of
     * SQLite's allocations and frees skips a global mutex (docs/decisions.md). An
     * application that initialized SQLite before keeps its setting (SQLITE_MISUSE).
     */
    (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    root = sqlite3_vfs_find(NULL);
    /* Version 2 at least: the system's VFS on every platform SQLite builds for. */
    if (!root || root->iVersion < 2)
        return;
    rc = register_one(root, 0, VH__READAHEAD_VFS, true);
    if (rc == SQLITE_OK)
        rc = register_one(root, 1, VH__WAL_BEHIND_VFS, false);
    ra_registered = rc;
}

int vh__readahead_register(void)
{
    pthread_once(&ra_once, ra_register_once);
    return ra_registered;
}
