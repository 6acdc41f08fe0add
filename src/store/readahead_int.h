/*
 * Private to src/store/: a SQLite VFS that reads the main database file ahead
 * (docs/decisions.md, "SQLite: reading the database file ahead").
 *
 * SQLite reads its database file one page at a time, one pread(2) per page. A drain reads
 * the outbox's bodies and rows in file order (they were written in the order they are
 * sent), so nearly every read is the page after the last one: a read that goes on from
 * where the last one ended fills a window of READAHEAD_BYTES with one pread, and the
 * pages after it are copied from there. Other reads, and every file but the main
 * database (the WAL, journals), go straight to the system's VFS ("unix").
 *
 * What keeps the window true. The window lives only between two of SQLite's lock calls on
 * the file: every read transaction in WAL mode takes and drops a read lock of the
 * wal-index (xShmLock), and a rollback-mode one locks the file itself (xLock), so the
 * window never outlives the transaction it was filled in. Within one read transaction
 * SQLite itself guarantees that a page it reads from the database file does not change
 * (a checkpoint copies to the file only frames every reader's snapshot reads from the
 * WAL, and waits for readers that read the file alone), so a page read ahead is the page
 * SQLite would have read. Any write, truncation or file control through the handle drops
 * the window too. A read past the end of the file is never served from the window: a fill
 * that comes back short is thrown away and the page read by itself.
 */
#ifndef VH_STORE_READAHEAD_INT_H
#define VH_STORE_READAHEAD_INT_H

#include <stdint.h>

/* The VFS's name, for sqlite3_open_v2; it is never the default VFS. */
#define VH__READAHEAD_VFS "vh-readahead"

/* How much one read ahead fills: one pread(2) in place of up to 16 of 4 KiB pages. */
#define VH__READAHEAD_BYTES (64 * 1024)

/*
 * sqlite3_file_control(db, "main", VH__READAHEAD_FCNTL_STATS, &stats) fills a struct
 * vh__readahead_stats with the counts of the connection's database file so far (for tests
 * and benchmarks). SQLite's own opcodes are below 100.
 */
#define VH__READAHEAD_FCNTL_STATS 0x7668

struct vh__readahead_stats {
    uint64_t reads;  /* xRead calls on the main database file */
    uint64_t hits;   /* served from the window, no system call */
    uint64_t fills;  /* reads that filled the window (one pread of up to a window) */
    uint64_t direct; /* reads passed to the system's VFS as they came */
    uint64_t failed; /* fills that did not come back whole (the file shrank): thrown away */
};

/*
 * Registers the VFS (once per process; thread-safe). Returns SQLITE_OK, or SQLite's code
 * when there is no default VFS to wrap or registration failed.
 */
int vh__readahead_register(void);

#endif
