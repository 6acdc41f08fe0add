/*
 * Private to src/http/: the API object shared by the route files, and the response
 * helpers they all use.
 */
#ifndef VH_HTTP_API_INT_H
#define VH_HTTP_API_INT_H

#include <pthread.h>

#include <vocohook/api.h>
#include <vocohook/event.h>

#define RATE_SLOTS 4096

/*
 * One API key's windows as this process last saw them: the whole truth with a store that
 * keeps no shared windows, else a copy of the store's (not ahead of it, so a request it
 * refuses the store would refuse too, and floods are turned away without a query; only
 * while the store is failing does this process count alone, and may then run ahead).
 */
struct rate_slot {
    char key[VH_SHA256_HEX_LEN + 1]; /* "" when free */
    struct vh_rate_window w;
};

struct vh_api {
    struct vh_store *st;
    bool has_ingest_token;
    char ingest_token_hex[VH_SHA256_HEX_LEN + 1]; /* SHA-256 of the token; never the token */
    bool allow_http;
    int max_endpoints;
    struct vh_rate_limits rate;
    bool rate_shared; /* the store keeps the windows for every node (vh_store_rate_take) */
    char *s3_endpoint, *s3_region, *s3_bucket, *s3_access_key, *s3_secret_key;
    bool s3_path_style;
    vh_log_fn *log;
    void *log_ud;
    void (*on_due)(void *ud);
    void *on_due_ud;
    void (*on_endpoint_changed)(void *ud, const char *endpoint_id);
    void *on_endpoint_changed_ud;
    int (*metrics)(void *ud, int64_t now_ms, struct vh_buf *out);
    void *metrics_ud;
    pthread_mutex_t rate_lock; /* guards rates */
    struct rate_slot *rates;   /* RATE_SLOTS entries, open addressing */
};

/* Logs one record: {"ts","level","msg","request_id"?}. The message must hold no secret. */
void vh__api_log(struct vh_api *api, enum vh_log_level level, const char *request_id,
                 const char *fmt, ...) VH_PRINTF(4, 5);

#endif
