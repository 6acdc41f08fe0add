/*
 * The read-ahead VFS (src/store/readahead_int.h) over real SQLite files: it reads what the
 * system's VFS reads, in fewer reads, and a page it read ahead is never served once the
 * file may have changed under it (another connection's writes and checkpoints, between
 * and during transactions).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include <vocohook/alloc.h>

#include "store/readahead_int.h"
#include "unit/oom.h"
#include "unit/store/sqlfile.h"

#define ROWS 2000

static int setup(void **state)
{
    return fixture_new(state, "vh-readahead");
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    unlink_db(f->path);
    rmdir(f->dir);
    free(f);
    return 0;
}

static sqlite3 *open_db(const char *path, const char *vfs)
{
    sqlite3 *db = NULL;

    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs),
                     SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA journal_mode = WAL", NULL, NULL, NULL), SQLITE_OK);
    return db;
}

/* Writes every row's body of generation `gen` (ids 1..ROWS), in one transaction. */
static void write_rows(sqlite3 *db, int gen)
{
    unsigned char body[BODY_SIZE];
    sqlite3_stmt *st = NULL;
    int id;

    /*
     * `pad` first, so that t's root is page 3: a transaction reads page 1, then t's root,
     * not the page after page 1, and goes on into the leaves a window may still hold.
     */
    exec(db, "CREATE TABLE IF NOT EXISTS pad (x INTEGER)");
    exec(db, "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, body BLOB NOT NULL)");
    exec(db, "BEGIN");
    assert_int_equal(
        sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO t (id, body) VALUES (?, ?)", -1, &st, NULL),
        SQLITE_OK);
    for (id = 1; id <= ROWS; id++) {
        body_of(id, gen, body);
        sqlite3_bind_int(st, 1, id);
        sqlite3_bind_blob(st, 2, body, BODY_SIZE, SQLITE_STATIC);
        assert_int_equal(sqlite3_step(st), SQLITE_DONE);
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    exec(db, "COMMIT");
}

/*
 * Reads rows [from, to] in order on `db` (in its open transaction, if any) and checks each
 * one is generation `gen`'s. Returns the rows read.
 */
static int check_rows(sqlite3 *db, int from, int to, int gen)
{
    unsigned char want[BODY_SIZE];
    sqlite3_stmt *st = NULL;
    int n = 0, id;

    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT id, body FROM t WHERE id BETWEEN ? AND ? "
                                        "ORDER BY id",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_int(st, 1, from);
    sqlite3_bind_int(st, 2, to);
    while (sqlite3_step(st) == SQLITE_ROW) {
        id = sqlite3_column_int(st, 0);
        body_of(id, gen, want);
        assert_int_equal(sqlite3_column_bytes(st, 1), BODY_SIZE);
        if (memcmp(sqlite3_column_blob(st, 1), want, BODY_SIZE) != 0)
            fail_msg("row %d is not generation %d's", id, gen);
        n++;
    }
    assert_int_equal(sqlite3_finalize(st), SQLITE_OK);
    return n;
}

/*
 * The file with generation 1's rows, all in it (the WAL checkpointed and empty), and two
 * connections to it: `plain` through the system's VFS, `ra` through the read-ahead one.
 */
static void open_pair(const struct fixture *f, sqlite3 **plain, sqlite3 **ra)
{
    assert_int_equal(vh__readahead_register(), SQLITE_OK);
    *plain = open_db(f->path, NULL);
    write_rows(*plain, 1);
    exec(*plain, "PRAGMA wal_checkpoint(TRUNCATE)");
    *ra = open_db(f->path, VH__READAHEAD_VFS);
}

/* A file read in order: the same rows, in a fifth of the reads or fewer. */
static void test_reads_in_order_in_few_reads(void **state)
{
    struct fixture *f = *state;
    struct vh__readahead_stats s;
    sqlite3 *plain, *ra;

    open_pair(f, &plain, &ra);
    assert_int_equal(check_rows(ra, 1, ROWS, 1), ROWS);
    s = stats_of(ra);
    /* A page for every two rows, at least. */
    assert_true(s.reads >= ROWS / 2);
    assert_int_equal(s.reads, s.hits + s.fills + s.direct);
    if ((s.fills + s.direct) * 5 > s.reads)
        fail_msg("%llu reads took %llu fills and %llu direct reads", (unsigned long long)s.reads,
                 (unsigned long long)s.fills, (unsigned long long)s.direct);
    /* The last pages of the file too: a window is never filled past its end. */
    assert_int_equal(check_rows(ra, ROWS - 5, ROWS, 1), 6);
    check_integrity(ra);
    /* A connection of the system's VFS has no such counts: the opcode is ours. */
    {
        struct vh__readahead_stats none;

        assert_int_equal(sqlite3_file_control(plain, "main", VH__READAHEAD_FCNTL_STATS, &none),
                         SQLITE_NOTFOUND);
    }
    sqlite3_close(ra);
    sqlite3_close(plain);
}

/*
 * Another connection rewrites every row and checkpoints them into the file between two
 * transactions of the reader: the second transaction reads the file again, not what the
 * first one read ahead. The reader's last transaction before each rewrite reads the start
 * of the file, as the next one does first: the file's header (page 1, the schema) and the
 * first rows, all within one window.
 */
static void test_checkpoint_between_transactions(void **state)
{
    struct fixture *f = *state;
    sqlite3 *plain, *ra;
    int gen;

    open_pair(f, &plain, &ra);
    for (gen = 1; gen <= 4; gen++) {
        if (gen > 1) {
            write_rows(plain, gen);
            /* TRUNCATE: every page back in the file, the WAL empty; the reader is idle. */
            exec(plain, "PRAGMA wal_checkpoint(TRUNCATE)");
        }
        assert_int_equal(check_rows(ra, 1, 8, gen), 8);
        assert_int_equal(check_rows(ra, 1, ROWS, gen), ROWS);
        assert_int_equal(check_rows(ra, 1, 8, gen), 8);
    }
    /* A new table changes page 1, the schema, which the reader has read ahead. */
    exec(plain, "CREATE TABLE u (x INTEGER)");
    exec(plain, "PRAGMA wal_checkpoint(TRUNCATE)");
    exec(ra, "INSERT INTO u VALUES (1)");
    sqlite3_close(ra);
    sqlite3_close(plain);
}

/*
 * During one read transaction the reader keeps its snapshot while another connection
 * rewrites the rows and checkpoints what it can; after it, the reader sees the new rows.
 */
static void test_snapshot_during_checkpoint(void **state)
{
    struct fixture *f = *state;
    sqlite3 *plain, *ra;

    open_pair(f, &plain, &ra);
    exec(ra, "BEGIN");
    assert_int_equal(check_rows(ra, 1, ROWS / 4, 1), ROWS / 4);
    write_rows(plain, 2);
    exec(plain, "PRAGMA wal_checkpoint(PASSIVE)");
    assert_int_equal(check_rows(ra, ROWS / 4 + 1, ROWS, 1), ROWS - ROWS / 4);
    assert_int_equal(check_rows(ra, 1, ROWS / 4, 1), ROWS / 4);
    exec(ra, "COMMIT");
    exec(plain, "PRAGMA wal_checkpoint(TRUNCATE)");
    assert_int_equal(check_rows(ra, 1, ROWS, 2), ROWS);
    sqlite3_close(ra);
    sqlite3_close(plain);
}

/* Its own writes and checkpoints, through the same handle, drop what it read ahead. */
static void test_own_writes(void **state)
{
    struct fixture *f = *state;
    sqlite3 *ra;
    int gen;

    assert_int_equal(vh__readahead_register(), SQLITE_OK);
    ra = open_db(f->path, VH__READAHEAD_VFS);
    for (gen = 1; gen <= 3; gen++) {
        write_rows(ra, gen);
        exec(ra, "PRAGMA wal_checkpoint(TRUNCATE)");
        assert_int_equal(check_rows(ra, 1, ROWS, gen), ROWS);
    }
    exec(ra, "DELETE FROM t WHERE id > 10");
    exec(ra, "VACUUM");
    exec(ra, "PRAGMA wal_checkpoint(TRUNCATE)");
    assert_int_equal(check_rows(ra, 1, ROWS, 3), 10);
    check_integrity(ra);
    sqlite3_close(ra);
}

/*
 * The file shrinks under a reader that knows its old size (another connection deletes most
 * rows, vacuums and checkpoints): a window filled past the new end comes back short, is
 * thrown away, and the page is read by itself.
 */
static void test_file_shrinks_under_reader(void **state)
{
    struct fixture *f = *state;
    struct vh__readahead_stats before, after;
    sqlite3 *plain, *ra;

    open_pair(f, &plain, &ra);
    assert_int_equal(check_rows(ra, 1, ROWS, 1), ROWS);
    exec(plain, "DELETE FROM t WHERE id > 40");
    exec(plain, "VACUUM");
    exec(plain, "PRAGMA wal_checkpoint(TRUNCATE)");
    before = stats_of(ra);
    assert_int_equal(check_rows(ra, 1, ROWS, 1), 40);
    check_integrity(ra);
    after = stats_of(ra);
    /* A fill came back short and was thrown away; its page was read by itself. */
    assert_true(after.failed > before.failed);
    assert_true(after.direct > before.direct);
    assert_int_equal(after.reads, after.hits + after.fills + after.direct);
    sqlite3_close(ra);
    sqlite3_close(plain);
}

/*
 * The window's memory cannot be had at the first fill: that read goes to the system's VFS
 * as it came, and the next fill tries again. The window is freed with the connection.
 */
static void test_no_memory_for_the_window(void **state)
{
    struct fixture *f = *state;
    struct vh__readahead_stats s;
    sqlite3 *plain, *ra;
    long live;

    live = live_blocks;
    alloc_count = 0;
    alloc_fail_at = 1; /* the first allocation through vh_malloc: the window */
    open_pair(f, &plain, &ra);
    assert_int_equal(check_rows(ra, 1, ROWS, 1), ROWS);
    s = stats_of(ra);
    assert_true(alloc_count >= 2);
    assert_true(s.direct >= 1);
    assert_true(s.fills >= 1);
    assert_int_equal(s.reads, s.hits + s.fills + s.direct);
    sqlite3_close(ra);
    sqlite3_close(plain);
    assert_int_equal(live_blocks, live);
    alloc_fail_at = 0;
}

/*
 * Registering the VFSes, which the store and the inbox do before they open anything, turns
 * SQLite's memory statistics off (readahead.c), so that SQLite's allocations and frees
 * skip a global mutex: a connection through our VFS writes and reads, and SQLite counted
 * none of the memory it used. This test runs first, since the setting holds only when it
 * comes before SQLite initializes, and nothing in this process has used SQLite before.
 */
static void test_memory_statistics_off(void **state)
{
    struct fixture *f = *state;
    sqlite3 *db;

    assert_int_equal(vh__readahead_register(), SQLITE_OK);
    db = open_db(f->path, VH__READAHEAD_VFS);
    write_rows(db, 1);
    check_integrity(db);
    assert_int_equal(sqlite3_memory_used(), 0);
    sqlite3_close(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_memory_statistics_off, setup, teardown), /* first */
        cmocka_unit_test_setup_teardown(test_reads_in_order_in_few_reads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint_between_transactions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_during_checkpoint, setup, teardown),
        cmocka_unit_test_setup_teardown(test_own_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_shrinks_under_reader, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_memory_for_the_window, setup, teardown),
    };

    /* Counted from the start (oom.h): memory must not move between allocators. */
    vh_replace_allocator(t_malloc, t_realloc, t_free);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
