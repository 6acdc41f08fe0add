/*
 * The public store API: checks arguments, picks the backend by URL scheme, and dispatches
 * through its ops table (store_int.h). Nothing here knows which database is behind.
 */
#include <vocohook/store.h>

#include <limits.h>
#include <stdint.h>
#include <string.h>

#include <vocohook/alloc.h>
#include <vocohook/clock.h>
#include <vocohook/event.h>
#include <vocohook/id.h>
#include <vocohook/sign.h>

#include "store/store_int.h"
#include "core/utf8_int.h"
#include "core/banned.h"

/* ---- argument checks ------------------------------------------------------------------ */

static bool has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* An id the store could hold: an incoming-id form no longer than `max` bytes. */
static bool id_fits(const char *s, size_t max)
{
    size_t len = strnlen(s, max + 1);

    return len <= max && vh_id_is_valid(s, len);
}

/*
 * Ids used to look something up: a malformed one cannot name a row, so it is not found
 * (not quoted: it may hold any bytes). NULL is a programming error.
 */
static int check_lookup_id(const char *id, size_t max, const char *what, struct vh_error *err)
{
    if (!id)
        return vh_error_set(err, VH_EINVAL, "%s id: missing", what);
    if (!id_fits(id, max))
        return vh_error_set(err, VH_ENOTFOUND, "%s not found: malformed id", what);
    return 0;
}

/* Ids the caller chose for a new row. */
static int check_new_id(const char *id, size_t max, const char *what, struct vh_error *err)
{
    if (!id)
        return vh_error_set(err, VH_EINVAL, "%s id: missing", what);
    if (!id_fits(id, max))
        return vh_error_set(err, VH_EINVAL, "%s id: must be 1 to %zu of [A-Za-z0-9_-]", what, max);
    return 0;
}

static bool is_hex_lower(const char *s, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

static int check_key_hash(const char *h, struct vh_error *err)
{
    if (!h || strnlen(h, VH_SHA256_HEX_LEN + 1) != VH_SHA256_HEX_LEN ||
        !is_hex_lower(h, VH_SHA256_HEX_LEN))
        return vh_error_set(err, VH_EINVAL, "api key hash: must be 64 lowercase hex digits");
    return 0;
}

static int check_time(int64_t ms, const char *what, struct vh_error *err)
{
    if (ms < VH_TIME_MIN_MS || ms > VH_TIME_MAX_MS)
        return vh_error_set(err, VH_EINVAL, "%s: time %lld is out of range", what, (long long)ms);
    return 0;
}

/*
 * Well-formed UTF-8 without control characters (C0, DEL, and C1: U+0080 to U+009F, which
 * some terminals obey, U+009B as CSI): text that JSON and terminals can show.
 */
static bool is_clean_text(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, k;

    while (i < len) {
        if (u[i] < 0x80) {
            if (u[i] < 0x20 || u[i] == 0x7f)
                return false;
            i++;
            continue;
        }
        k = vh__utf8_seq_len(u + i, len - i);
        if (!k || (u[i] == 0xc2 && u[i + 1] < 0xa0))
            return false;
        i += k;
    }
    return true;
}

static bool is_label(const char *s)
{
    size_t i, len = strnlen(s, VH_LABEL_MAX + 1);

    if (len < 1 || len > VH_LABEL_MAX)
        return false;
    for (i = 0; i < len; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c == '-' && i > 0);

        if (!ok)
            return false;
    }
    return true;
}

/*
 * The alphabet of a schedule ("5s, 5m,30m"), NUL-terminated within the field. Its syntax
 * is the retry policy's to check, above the store; this only keeps odd bytes out.
 */
static bool is_schedule_text(const char *s)
{
    size_t i, len = strnlen(s, VH_ENDPOINT_SCHEDULE_MAX + 1);

    if (len > VH_ENDPOINT_SCHEDULE_MAX)
        return false;
    for (i = 0; i < len; i++) {
        char c = s[i];

        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || c == ',' || c == ' '))
            return false;
    }
    return true;
}

/* The fields endpoint_create and endpoint_update both write. */
static int check_endpoint(const struct vh_endpoint *ep, struct vh_error *err)
{
    size_t url_len, secret_len;
    int rc;

    rc = check_new_id(ep->id, VH_UUID_LEN, "endpoint", err);
    if (rc < 0)
        return rc;
    rc = check_lookup_id(ep->partner_id, VH_UUID_LEN, "partner", err);
    if (rc < 0)
        return rc;
    if (!is_label(ep->label))
        return vh_error_set(err, VH_EINVAL, "endpoint label: must match ^[a-z0-9][a-z0-9-]{0,30}$");
    url_len = strnlen(ep->url, VH_ENDPOINT_URL_MAX + 1);
    if (url_len < 1 || url_len > VH_ENDPOINT_URL_MAX || !is_clean_text(ep->url, url_len))
        return vh_error_set(err, VH_EINVAL,
                            "endpoint url: must be 1 to %d bytes of text without control "
                            "characters",
                            VH_ENDPOINT_URL_MAX);
    secret_len = strnlen(ep->secret, VH_SECRET_LEN + 1);
    if (secret_len < 1 || secret_len > VH_SECRET_LEN || !is_clean_text(ep->secret, secret_len))
        return vh_error_set(err, VH_EINVAL, "endpoint secret: must be 1 to %d bytes of text",
                            VH_SECRET_LEN);
    if (!is_schedule_text(ep->retry_schedule))
        return vh_error_set(err, VH_EINVAL,
                            "endpoint retry schedule: must be at most %d bytes of [0-9a-z, ]",
                            VH_ENDPOINT_SCHEDULE_MAX);
    if (ep->timeout_ms < 0 || ep->timeout_ms > VH_ENDPOINT_TIMEOUT_MAX_MS)
        return vh_error_set(err, VH_EINVAL, "endpoint timeout: %lld ms is not in 0..%lld",
                            (long long)ep->timeout_ms, (long long)VH_ENDPOINT_TIMEOUT_MAX_MS);
    return check_time(ep->updated_ms, "endpoint updated_ms", err);
}

/* ---- open and close -------------------------------------------------------------------- */

int vh_store_open(const char *url, struct vh_store **out, struct vh_error *err)
{
    const char *sep;
    size_t scheme_len;

    if (!url || !out)
        return vh_error_set(err, VH_EINVAL, "open store: missing url");
    if (!*url)
        return vh_error_set(err, VH_EINVAL, "open store: empty url");
    /* `sqlite:///abs/path` and `sqlite:path` both name a file. */
    if (has_prefix(url, "sqlite://"))
        return vh__store_sqlite_ops.open(url + strlen("sqlite://"), out, err);
    if (has_prefix(url, "sqlite:"))
        return vh__store_sqlite_ops.open(url + strlen("sqlite:"), out, err);
    /* libpq reads the whole URL, and the PG* environment variables for what it leaves out. */
    if (has_prefix(url, "postgres://") || has_prefix(url, "postgresql://"))
        return vh__store_postgres_ops.open(url, out, err);
    sep = strstr(url, "://");
    if (sep) {
        scheme_len = (size_t)(sep - url);
        if (scheme_len > 32)
            scheme_len = 32;
        return vh_error_set(err, VH_EINVAL, "open store: unknown scheme '%.*s'", (int)scheme_len,
                            url);
    }
    return vh__store_sqlite_ops.open(url, out, err);
}

void vh_store_close(struct vh_store *st)
{
    if (st)
        st->ops->close(st);
}

const char *vh_store_backend(const struct vh_store *st)
{
    return st ? st->ops->name : "";
}

int vh_store_schema_version(struct vh_store *st, int *out, struct vh_error *err)
{
    int v = 0, rc;

    if (!st || !out)
        return vh_error_set(err, VH_EINVAL, "schema version: missing argument");
    rc = st->ops->schema_version(st, &v, err);
    if (rc < 0)
        return rc;
    *out = v;
    return 0;
}

/* ---- partners ------------------------------------------------------------------------ */

int vh_store_partner_create(struct vh_store *st, const char *name,
                            const char key_hash[VH_SHA256_HEX_LEN + 1], int64_t now_ms,
                            struct vh_partner *out, struct vh_error *err)
{
    struct vh_partner p;
    char id[VH_UUID_LEN + 1];
    size_t name_len;
    int rc;

    if (!st || !name || !out)
        return vh_error_set(err, VH_EINVAL, "create partner: missing argument");
    name_len = strnlen(name, VH_PARTNER_NAME_MAX + 1);
    if (name_len < 1 || name_len > VH_PARTNER_NAME_MAX || !is_clean_text(name, name_len))
        return vh_error_set(err, VH_EINVAL,
                            "partner name: must be 1 to %d bytes of UTF-8 without control "
                            "characters",
                            VH_PARTNER_NAME_MAX);
    rc = check_key_hash(key_hash, err);
    if (rc < 0)
        return rc;
    rc = check_time(now_ms, "create partner", err);
    if (rc < 0)
        return rc;
    rc = vh_uuid_new(id, err);
    if (rc < 0)
        return rc;
    memset(&p, 0, sizeof(p));
    rc = st->ops->partner_create(st, id, name, key_hash, now_ms, &p, err);
    if (rc < 0)
        return rc;
    *out = p;
    return 0;
}

/* A name as read: what create would refuse now (an older row's) shown, not obeyed. */
static void partner_name_clean(struct vh_partner *p)
{
    vh__utf8_repair(p->name, strnlen(p->name, sizeof(p->name)), true);
}

int vh_store_partner_list(struct vh_store *st, struct vh_partner **out, size_t *n,
                          struct vh_error *err)
{
    struct vh_partner *arr = NULL;
    size_t len = 0, i;
    int rc;

    if (!st || !out || !n)
        return vh_error_set(err, VH_EINVAL, "list partners: missing argument");
    rc = st->ops->partner_list(st, &arr, &len, err);
    if (rc < 0)
        return rc;
    for (i = 0; i < len; i++)
        partner_name_clean(&arr[i]);
    *out = arr;
    *n = len;
    return 0;
}

int vh_store_partner_get(struct vh_store *st, const char *id, struct vh_partner *out,
                         struct vh_error *err)
{
    struct vh_partner p;
    int rc;

    if (!st || !out)
        return vh_error_set(err, VH_EINVAL, "get partner: missing argument");
    rc = check_lookup_id(id, VH_UUID_LEN, "partner", err);
    if (rc < 0)
        return rc;
    memset(&p, 0, sizeof(p));
    rc = st->ops->partner_get(st, id, &p, err);
    if (rc < 0)
        return rc;
    partner_name_clean(&p);
    *out = p;
    return 0;
}

int vh_store_partner_rotate_key(struct vh_store *st, const char *id,
                                const char key_hash[VH_SHA256_HEX_LEN + 1], int64_t now_ms,
                                struct vh_error *err)
{
    int rc;

    if (!st)
        return vh_error_set(err, VH_EINVAL, "rotate key: missing argument");
    rc = check_lookup_id(id, VH_UUID_LEN, "partner", err);
    if (rc < 0)
        return rc;
    rc = check_key_hash(key_hash, err);
    if (rc < 0)
        return rc;
    rc = check_time(now_ms, "rotate key", err);
    if (rc < 0)
        return rc;
    return st->ops->partner_rotate_key(st, id, key_hash, now_ms, err);
}

int vh_store_partner_by_key(struct vh_store *st, const char key_hash[VH_SHA256_HEX_LEN + 1],
                            struct vh_partner *out, struct vh_error *err)
{
    char stored[VH_SHA256_HEX_LEN + 1] = {0};
    struct vh_partner p;
    int rc;

    if (!st || !out)
        return vh_error_set(err, VH_EINVAL, "find partner by key: missing argument");
    /* Anything but a well-formed hash cannot match; say only "not found" to a guesser. */
    if (!key_hash || strnlen(key_hash, VH_SHA256_HEX_LEN + 1) != VH_SHA256_HEX_LEN)
        return vh_error_set(err, VH_ENOTFOUND, "api key not found");
    memset(&p, 0, sizeof(p));
    rc = st->ops->partner_by_key(st, key_hash, &p, stored, err);
    if (rc < 0)
        return rc;
    /*
     * The index lookup already matched; comparing again in constant time means a
     * collation or index quirk can never accept a near-miss, and costs nothing.
     */
    if (!vh_mem_equal_ct(stored, key_hash, VH_SHA256_HEX_LEN))
        return vh_error_set(err, VH_ENOTFOUND, "api key not found");
    partner_name_clean(&p);
    *out = p;
    return 0;
}

/* ---- endpoints ------------------------------------------------------------------------- */

int vh_store_endpoint_create(struct vh_store *st, const struct vh_endpoint *ep, int max,
                             struct vh_error *err)
{
    int rc;

    if (!st || !ep)
        return vh_error_set(err, VH_EINVAL, "create endpoint: missing argument");
    if (max < 0)
        return vh_error_set(err, VH_EINVAL, "create endpoint: negative maximum %d", max);
    rc = check_endpoint(ep, err);
    if (rc < 0)
        return rc;
    rc = check_time(ep->created_ms, "endpoint created_ms", err);
    if (rc < 0)
        return rc;
    return st->ops->endpoint_create(st, ep, max, err);
}

int vh_store_endpoint_get(struct vh_store *st, const char *partner_id, const char *id,
                          struct vh_endpoint *out, struct vh_error *err)
{
    struct vh_endpoint ep;
    int rc;

    if (!st || !out)
        return vh_error_set(err, VH_EINVAL, "get endpoint: missing argument");
    rc = check_lookup_id(partner_id, VH_UUID_LEN, "partner", err);
    if (rc < 0)
        return rc;
    rc = check_lookup_id(id, VH_UUID_LEN, "endpoint", err);
    if (rc < 0)
        return rc;
    memset(&ep, 0, sizeof(ep));
    rc = st->ops->endpoint_get(st, partner_id, id, &ep, err);
    if (rc < 0)
        return rc;
    *out = ep;
    return 0;
}

int vh_store_endpoint_get_by_label(struct vh_store *st, const char *partner_id, const char *label,
                                   struct vh_endpoint *out, struct vh_error *err)
{
    struct vh_endpoint ep;
    int rc;

    if (!st || !out || !label)
        return vh_error_set(err, VH_EINVAL, "get endpoint by label: missing argument");
    rc = check_lookup_id(partner_id, VH_UUID_LEN, "partner", err);
    if (rc < 0)
        return rc;
    if (!is_label(label))
        return vh_error_set(err, VH_ENOTFOUND, "endpoint not found: malformed label");
    memset(&ep, 0, sizeof(ep));
    rc = st->ops->endpoint_get_by_label(st, partner_id, label, &ep, err);
    if (rc < 0)
        return rc;
    *out = ep;
    return 0;
}

int vh_store_endpoint_list(struct vh_store *st, const char *partner_id, struct vh_endpoint **out,
                           size_t *n, struct vh_error *err)
{
    struct vh_endpoint *arr = NULL;
    size_t len = 0;
    int rc;

    if (!st || !out || !n)
        return vh_error_set(err, VH_EINVAL, "list endpoints: missing argument");
    rc = check_lookup_id(partner_id, VH_UUID_LEN, "partner", err);
    if (rc == VH_ENOTFOUND) {
        /* A partner that cannot exist has no endpoints. */
        vh_error_clear(err);
        *out = NULL;
        *n = 0;
        return 0;
    }
    if (rc < 0)
        return rc;
    rc = st->ops->endpoint_list(st, partner_id, &arr, &len, err);
    if (rc < 0)
        return rc;
    *out = arr;
    *n = len;
    return 0;
}

bool vh__endpoint_unchanged(const struct vh_endpoint *seen, const struct vh_endpoint *row)
{
    return strcmp(seen->label, row->label) == 0 && strcmp(seen->url, row->url) == 0 &&
           strcmp(seen->secret, row->secret) == 0 && seen->enabled == row->enabled &&
           strcmp(seen->retry_schedule, row->retry_schedule) == 0 &&
           seen->timeout_ms == row->timeout_ms;
}

static int endpoint_update(struct vh_store *st, const struct vh_endpoint *seen,
                           const struct vh_endpoint *ep, struct vh_error *err)
{
    int rc;

    if (!st || !ep)
        return vh_error_set(err, VH_EINVAL, "update endpoint: missing argument");
    /* An id that cannot exist is not found, as for a lookup. */
    rc = check_lookup_id(ep->id, VH_UUID_LEN, "endpoint", err);
    if (rc < 0)
        return rc;
    rc = check_endpoint(ep, err);
    if (rc < 0)
        return rc;
    return st->ops->endpoint_update(st, seen, ep, err);
}

int vh_store_endpoint_update(struct vh_store *st, const struct vh_endpoint *ep,
                             struct vh_error *err)
{
    return endpoint_update(st, NULL, ep, err);
}

int vh_store_endpoint_update_if(struct vh_store *st, const struct vh_endpoint *seen,
                                const struct vh_endpoint *ep, struct vh_error *err)
{
    if (!seen)
        return vh_error_set(err, VH_EINVAL, "update endpoint: missing argument");
    return endpoint_update(st, seen, ep, err);
}

int vh_store_endpoint_delete(struct vh_store *st, const char *partner_id, const char *id,
                             int64_t now_ms, struct vh_error *err)
{
    int rc;

    if (!st)
        return vh_error_set(err, VH_EINVAL, "delete endpoint: missing argument");
    rc = check_lookup_id(partner_id, VH_UUID_LEN, "partner", err);
    if (rc < 0)
        return rc;
    rc = check_lookup_id(id, VH_UUID_LEN, "endpoint", err);
    if (rc < 0)
        return rc;
    rc = check_time(now_ms, "delete endpoint", err);
    if (rc < 0)
        return rc;
    return st->ops->endpoint_delete(st, partner_id, id, now_ms, err);
}

/* ---- events ---------------------------------------------------------------------------- */

static int check_event_put(const struct vh_event_put *ev, struct vh_error *err)
{
    size_t key_len;
    int rc;

    rc = check_lookup_id(ev->partner_id, VH_UUID_LEN, "partner", err);
    if (rc < 0)
        return rc;
    if (!ev->session_id || !id_fits(ev->session_id, VH_ID_MAX))
        return vh_error_set(err, VH_EINVAL, "session_id: must be 1 to %d of [A-Za-z0-9_-]",
                            VH_ID_MAX);
    if (ev->call_id) {
        if (!id_fits(ev->call_id, VH_ID_MAX))
            return vh_error_set(err, VH_EINVAL, "call_id: must be 1 to %d of [A-Za-z0-9_-]",
                                VH_ID_MAX);
        if (!vh_call_status_name((enum vh_call_status)ev->call_status))
            return vh_error_set(err, VH_EINVAL, "call status: unknown value %d", ev->call_status);
    } else if (ev->call_status != 0) {
        return vh_error_set(err, VH_EINVAL, "call status: set without a call_id");
    }
    if (ev->recording_key) {
        key_len = strnlen(ev->recording_key, VH_OBJECT_KEY_MAX + 1);
        if (key_len < 1 || key_len > VH_OBJECT_KEY_MAX)
            return vh_error_set(err, VH_EINVAL, "recording_key: must be 1 to %d bytes",
                                VH_OBJECT_KEY_MAX);
    }
    if (!ev->body || ev->body_len == 0)
        return vh_error_set(err, VH_EINVAL, "event body: empty");
    if (ev->body_len > VH__STORE_BODY_MAX)
        return vh_error_set(err, VH_ETOOBIG, "event body: %zu bytes, over the %zu byte limit",
                            ev->body_len, VH__STORE_BODY_MAX);
    return check_time(ev->accepted_ms, "event accepted_ms", err);
}

/*
 * What both puts do first: the argument checks (`has_answer`: the caller gave where the
 * answer goes), and the id a new event will get.
 */
static int put_begin(struct vh_store *st, const struct vh_event_put *ev, bool has_answer,
                     char id[VH_UUID_LEN + 1], struct vh_error *err)
{
    int rc;

    if (!st || !ev || !has_answer)
        return vh_error_set(err, VH_EINVAL, "put event: missing argument");
    rc = check_event_put(ev, err);
    if (rc < 0)
        return rc;
    return vh_uuid_new(id, err);
}

int vh_store_event_put(struct vh_store *st, const struct vh_event_put *ev,
                       struct vh_event_put_result *out, struct vh_error *err)
{
    struct vh_event_put_result res;
    char id[VH_UUID_LEN + 1];
    int rc;

    rc = put_begin(st, ev, out != NULL, id, err);
    if (rc < 0)
        return rc;
    memset(&res, 0, sizeof(res));
    rc = st->ops->event_put(st, ev, id, &res, err);
    if (rc < 0)
        return rc;
    *out = res;
    return 0;
}

int vh_store_event_put_async(struct vh_store *st, const struct vh_event_put *ev,
                             vh_store_put_done_fn *done, void *ud, struct vh_error *err)
{
    struct vh_error put_err = VH_ERROR_INIT;
    struct vh_event_put_result res;
    char id[VH_UUID_LEN + 1];
    int rc;

    rc = put_begin(st, ev, done != NULL, id, err);
    if (rc < 0)
        return rc;
    if (st->ops->event_put_post)
        return st->ops->event_put_post(st, ev, id, done, ud, err);
    memset(&res, 0, sizeof(res));
    rc = st->ops->event_put(st, ev, id, &res, &put_err);
    done(ud, rc, rc == 0 ? &res : NULL, &put_err);
    return 0;
}

void vh_call_rec_release(struct vh_call_rec *rec)
{
    if (!rec)
        return;
    vh_free(rec->recording_key);
    rec->recording_key = NULL;
    vh_buf_release(&rec->body);
}

int vh_store_call_get(struct vh_store *st, const char *partner_id, const char *id,
                      struct vh_call_rec *out, struct vh_error *err)
{
    struct vh_call_rec rec;
    int rc;

    if (!st || !out)
        return vh_error_set(err, VH_EINVAL, "get call: missing argument");
    rc = check_lookup_id(partner_id, VH_UUID_LEN, "partner", err);
    if (rc < 0)
        return rc;
    rc = check_lookup_id(id, VH_ID_MAX, "call", err);
    if (rc < 0)
        return rc;
    memset(&rec, 0, sizeof(rec));
    vh_buf_init(&rec.body, VH__STORE_BODY_MAX);
    rc = st->ops->call_get(st, partner_id, id, &rec, err);
    if (rc < 0)
        return rc;
    *out = rec;
    return 0;
}

int vh_store_call_list(struct vh_store *st, const char *partner_id, size_t limit, size_t offset,
                       int call_status, struct vh_call_rec **out, size_t *n, size_t *total,
                       struct vh_error *err)
{
    struct vh_call_rec *arr = NULL;
    size_t len = 0, all = 0;
    int rc;

    if (!st || !out || !n)
        return vh_error_set(err, VH_EINVAL, "list calls: missing argument");
    if (limit < 1 || limit > 100)
        return vh_error_set(err, VH_EINVAL, "list calls: limit %zu is not in 1..100", limit);
    if (offset > (size_t)INT64_MAX)
        return vh_error_set(err, VH_EINVAL, "list calls: offset %zu is too large", offset);
    if (call_status != 0 && !vh_call_status_name((enum vh_call_status)call_status))
        return vh_error_set(err, VH_EINVAL, "list calls: unknown call status %d", call_status);
    rc = check_lookup_id(partner_id, VH_UUID_LEN, "partner", err);
    if (rc == VH_ENOTFOUND) {
        vh_error_clear(err);
        *out = NULL;
        *n = 0;
        if (total)
            *total = 0;
        return 0;
    }
    if (rc < 0)
        return rc;
    rc = st->ops->call_list(st, partner_id, limit, offset, call_status, &arr, &len, &all, err);
    if (rc < 0)
        return rc;
    *out = arr;
    *n = len;
    if (total)
        *total = all;
    return 0;
}

int vh_store_event_deliveries(struct vh_store *st, const char *event_id,
                              struct vh_delivery_brief **out, size_t *n, struct vh_error *err)
{
    struct vh_delivery_brief *arr = NULL;
    size_t len = 0;
    int rc;

    if (!st || !out || !n)
        return vh_error_set(err, VH_EINVAL, "list deliveries: missing argument");
    rc = check_lookup_id(event_id, VH_UUID_LEN, "event", err);
    if (rc < 0)
        return rc;
    rc = st->ops->event_deliveries(st, event_id, &arr, &len, err);
    if (rc < 0)
        return rc;
    *out = arr;
    *n = len;
    return 0;
}

/* ---- the delivery engine's side ------------------------------------------------------------ */

static const char *const state_names[] = {"pending", "in_flight", "succeeded", "abandoned",
                                          "canceled"};

static bool is_state(const char *s)
{
    size_t i;

    for (i = 0; i < sizeof(state_names) / sizeof(state_names[0]); i++)
        if (strcmp(s, state_names[i]) == 0)
            return true;
    return false;
}

static int check_node_id(const char *node_id, struct vh_error *err)
{
    if (!node_id || !id_fits(node_id, VH_NODE_ID_MAX))
        return vh_error_set(err, VH_EINVAL, "node id: must be 1 to %d of [A-Za-z0-9_-]",
                            VH_NODE_ID_MAX);
    return 0;
}

/* An error class: 1..VH_ERROR_CLASS_MAX of [a-z0-9_], as vh_attempt_result_name gives. */
static bool is_error_class(const char *s)
{
    size_t i, len = strnlen(s, VH_ERROR_CLASS_MAX + 1);

    if (len < 1 || len > VH_ERROR_CLASS_MAX)
        return false;
    for (i = 0; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return false;
    return true;
}

void vh_delivery_job_rec_release(struct vh_delivery_job_rec *rec)
{
    volatile char *v;
    size_t i;

    if (!rec)
        return;
    /* The secret signs requests: do not leave it in freed memory (volatile: not elided). */
    v = rec->secret;
    for (i = 0; i < sizeof(rec->secret); i++)
        v[i] = '\0';
    vh_buf_release(&rec->body);
}

void vh_delivery_job_recs_free(struct vh_delivery_job_rec *recs, size_t n)
{
    size_t i;

    if (!recs)
        return;
    for (i = 0; i < n; i++)
        vh_delivery_job_rec_release(&recs[i]);
    vh_free(recs);
}

int vh_store_delivery_claim(struct vh_store *st, const char *node_id, int64_t now_ms,
                            int64_t lease_ms, size_t max, struct vh_delivery_job_rec **out,
                            size_t *n, struct vh_error *err)
{
    return vh_store_delivery_claim_bounded(st, node_id, now_ms, lease_ms, max, 0, out, n, err);
}

int vh_store_delivery_claim_bounded(struct vh_store *st, const char *node_id, int64_t now_ms,
                                    int64_t lease_ms, size_t max, size_t max_bytes,
                                    struct vh_delivery_job_rec **out, size_t *n,
                                    struct vh_error *err)
{
    struct vh_delivery_job_rec *arr = NULL;
    size_t len = 0;
    int rc;

    if (!st || !out || !n)
        return vh_error_set(err, VH_EINVAL, "claim deliveries: missing argument");
    rc = check_node_id(node_id, err);
    if (rc < 0)
        return rc;
    rc = check_time(now_ms, "claim deliveries", err);
    if (rc < 0)
        return rc;
    if (lease_ms < 1 || lease_ms > VH_LEASE_MAX_MS || now_ms > VH_TIME_MAX_MS - lease_ms)
        return vh_error_set(err, VH_EINVAL, "claim deliveries: lease %lld ms is not in 1..%lld",
                            (long long)lease_ms, (long long)VH_LEASE_MAX_MS);
    if (max < 1 || max > VH_CLAIM_MAX)
        return vh_error_set(err, VH_EINVAL, "claim deliveries: maximum %zu is not in 1..%d", max,
                            VH_CLAIM_MAX);
    rc = st->ops->delivery_claim(st, node_id, now_ms, lease_ms, max, max_bytes, &arr, &len, err);
    if (rc < 0)
        return rc;
    *out = arr;
    *n = len;
    return 0;
}

/* One result of a batch; `i` names it in messages. */
static int check_result(const struct vh_delivery_result *r, size_t i, struct vh_error *err)
{
    bool success;

    if (!r->delivery_id || !id_fits(r->delivery_id, VH_UUID_LEN))
        return vh_error_set(err, VH_EINVAL, "record result %zu: bad delivery id", i);
    if (r->endpoint_id && !id_fits(r->endpoint_id, VH_UUID_LEN))
        return vh_error_set(err, VH_EINVAL, "record result %zu: bad endpoint id", i);
    if (r->row < 0)
        return vh_error_set(err, VH_EINVAL, "record result %zu: row %lld is negative", i,
                            (long long)r->row);
    if (!r->node_id || !id_fits(r->node_id, VH_NODE_ID_MAX))
        return vh_error_set(err, VH_EINVAL, "record result %zu: bad node id", i);
    if (r->attempt < 1 || r->attempt > INT32_MAX)
        return vh_error_set(err, VH_EINVAL, "record result %zu: attempt %u is out of range", i,
                            r->attempt);
    if (r->started_ms < VH_TIME_MIN_MS || r->started_ms > VH_TIME_MAX_MS)
        return vh_error_set(err, VH_EINVAL, "record result %zu: start time %lld is out of range", i,
                            (long long)r->started_ms);
    if (r->duration_ms < 0 || r->duration_ms > VH_TIME_MAX_MS - r->started_ms)
        return vh_error_set(err, VH_EINVAL, "record result %zu: duration %lld is out of range", i,
                            (long long)r->duration_ms);
    /* Any three digits a receiver sent are kept: its answer must not fail the batch. */
    if (r->http_status < 0 || r->http_status > 999)
        return vh_error_set(err, VH_EINVAL, "record result %zu: http status %d", i, r->http_status);
    if (r->error_class && !is_error_class(r->error_class))
        return vh_error_set(err, VH_EINVAL,
                            "record result %zu: error class must be 1 to %d of [a-z0-9_]", i,
                            VH_ERROR_CLASS_MAX);
    if (!r->response_head && r->response_len != 0)
        return vh_error_set(err, VH_EINVAL, "record result %zu: response length without data", i);
    if (!r->new_state)
        return vh_error_set(err, VH_EINVAL, "record result %zu: missing new state", i);
    success = r->error_class == NULL;
    if (r->interrupted) {
        if (success || strcmp(r->new_state, "pending") != 0)
            return vh_error_set(err, VH_EINVAL,
                                "record result %zu: an interrupted attempt must fail and leave "
                                "the delivery pending",
                                i);
    } else if (strcmp(r->new_state, "succeeded") == 0) {
        if (!success)
            return vh_error_set(err, VH_EINVAL,
                                "record result %zu: 'succeeded' with error class '%s'", i,
                                r->error_class);
    } else if (strcmp(r->new_state, "pending") == 0 || strcmp(r->new_state, "abandoned") == 0) {
        if (success)
            return vh_error_set(err, VH_EINVAL, "record result %zu: a success must be 'succeeded'",
                                i);
    } else {
        return vh_error_set(err, VH_EINVAL,
                            "record result %zu: new state must be pending, succeeded or "
                            "abandoned",
                            i);
    }
    if (strcmp(r->new_state, "pending") == 0 &&
        (r->next_attempt_ms < VH_TIME_MIN_MS || r->next_attempt_ms > VH_TIME_MAX_MS))
        return vh_error_set(err, VH_EINVAL, "record result %zu: due time %lld is out of range", i,
                            (long long)r->next_attempt_ms);
    return 0;
}

int vh_store_delivery_record(struct vh_store *st, const struct vh_delivery_result *results,
                             size_t n, struct vh_error *err)
{
    size_t i;
    int rc;

    if (!st || !results)
        return vh_error_set(err, VH_EINVAL, "record attempts: missing argument");
    if (n < 1 || n > VH_CLAIM_MAX)
        return vh_error_set(err, VH_EINVAL, "record attempts: %zu results, not 1..%d", n,
                            VH_CLAIM_MAX);
    for (i = 0; i < n; i++) {
        rc = check_result(&results[i], i, err);
        if (rc < 0)
            return rc;
    }
    return st->ops->delivery_record(st, results, n, err);
}

size_t vh__store_last_per_endpoint(const struct vh_delivery_result *results,
                                   const char *const *endpoint_ids, size_t n, size_t *out)
{
    size_t i, k, found = 0;

    for (i = 0; i < n; i++) {
        if (results[i].interrupted)
            continue;
        for (k = 0; k < found && strcmp(endpoint_ids[out[k]], endpoint_ids[i]) != 0; k++)
            ;
        if (k == found)
            out[found++] = i;
        else if (results[i].started_ms >= results[out[k]].started_ms)
            out[k] = i;
    }
    return found;
}

static int delivery_recover(struct vh_store *st, const char *node_id, bool expired, int64_t now_ms,
                            struct vh_error *err)
{
    int64_t count = 0;
    int rc;

    if (!st || (!expired && !node_id))
        return vh_error_set(err, VH_EINVAL, "recover deliveries: missing argument");
    if (node_id) {
        rc = check_node_id(node_id, err);
        if (rc < 0)
            return rc;
    }
    rc = check_time(now_ms, "recover deliveries", err);
    if (rc < 0)
        return rc;
    rc = st->ops->delivery_recover(st, node_id, expired ? now_ms : INT64_MIN, now_ms, &count, err);
    if (rc < 0)
        return rc;
    return count > INT_MAX ? INT_MAX : (int)count;
}

int vh_store_delivery_recover(struct vh_store *st, const char *node_id, int64_t now_ms,
                              struct vh_error *err)
{
    return delivery_recover(st, node_id, true, now_ms, err);
}

int vh_store_delivery_recover_node(struct vh_store *st, const char *node_id, int64_t now_ms,
                                   struct vh_error *err)
{
    return delivery_recover(st, node_id, false, now_ms, err);
}

int vh_store_delivery_next_due(struct vh_store *st, int64_t *out_ms, struct vh_error *err)
{
    int64_t v = 0;
    int rc;

    if (!st || !out_ms)
        return vh_error_set(err, VH_EINVAL, "next due delivery: missing argument");
    rc = st->ops->delivery_next_due(st, &v, err);
    if (rc < 0)
        return rc;
    *out_ms = v;
    return 0;
}

int vh_store_delivery_stats(struct vh_store *st, int64_t now_ms, struct vh_delivery_stats *out,
                            struct vh_error *err)
{
    struct vh_delivery_stats s;
    int rc;

    if (!st || !out)
        return vh_error_set(err, VH_EINVAL, "delivery stats: missing argument");
    rc = check_time(now_ms, "delivery stats", err);
    if (rc < 0)
        return rc;
    memset(&s, 0, sizeof(s));
    rc = st->ops->delivery_stats(st, now_ms, &s, err);
    if (rc < 0)
        return rc;
    *out = s;
    return 0;
}

int vh_store_delivery_counts(struct vh_store *st, struct vh_delivery_counts *out,
                             struct vh_error *err)
{
    struct vh_delivery_counts c;
    int rc;

    if (!st || !out)
        return vh_error_set(err, VH_EINVAL, "delivery counts: missing argument");
    memset(&c, 0, sizeof(c));
    rc = st->ops->delivery_counts(st, &c, err);
    if (rc < 0)
        return rc;
    *out = c;
    return 0;
}

/* ---- delivery history -------------------------------------------------------------------- */

int vh_store_delivery_list(struct vh_store *st, const char *partner_id, const char *endpoint_id,
                           const char *state, size_t limit, size_t offset,
                           struct vh_delivery_info **out, size_t *n, size_t *total,
                           struct vh_error *err)
{
    struct vh_delivery_info *arr = NULL;
    size_t len = 0, all = 0;
    int rc;

    if (!st || !out || !n)
        return vh_error_set(err, VH_EINVAL, "list deliveries: missing argument");
    if (limit < 1 || limit > 100)
        return vh_error_set(err, VH_EINVAL, "list deliveries: limit %zu is not in 1..100", limit);
    if (offset > (size_t)INT64_MAX)
        return vh_error_set(err, VH_EINVAL, "list deliveries: offset %zu is too large", offset);
    if (state && !is_state(state))
        return vh_error_set(err, VH_EINVAL,
                            "list deliveries: state must be pending, in_flight, succeeded, "
                            "abandoned or canceled");
    rc = check_lookup_id(partner_id, VH_UUID_LEN, "partner", err);
    if (rc == 0)
        rc = check_lookup_id(endpoint_id, VH_UUID_LEN, "endpoint", err);
    if (rc < 0)
        return rc;
    rc = st->ops->delivery_list(st, partner_id, endpoint_id, state, limit, offset, &arr, &len, &all,
                                err);
    if (rc < 0)
        return rc;
    *out = arr;
    *n = len;
    if (total)
        *total = all;
    return 0;
}

int vh_store_delivery_get(struct vh_store *st, const char *partner_id, const char *delivery_id,
                          struct vh_delivery_info *out, struct vh_attempt_info **attempts,
                          size_t *n_attempts, size_t *older, struct vh_error *err)
{
    struct vh_attempt_info *arr = NULL;
    struct vh_delivery_info info;
    size_t len = 0, before = 0;
    int rc;

    if (!st || !out || !attempts || !n_attempts)
        return vh_error_set(err, VH_EINVAL, "get delivery: missing argument");
    rc = check_lookup_id(partner_id, VH_UUID_LEN, "partner", err);
    if (rc == 0)
        rc = check_lookup_id(delivery_id, VH_UUID_LEN, "delivery", err);
    if (rc < 0)
        return rc;
    memset(&info, 0, sizeof(info));
    rc = st->ops->delivery_get(st, partner_id, delivery_id, &info, &arr, &len, &before, err);
    if (rc < 0)
        return rc;
    *out = info;
    *attempts = arr;
    *n_attempts = len;
    if (older)
        *older = before;
    return 0;
}

int vh_store_delivery_retry(struct vh_store *st, const char *partner_id, const char *delivery_id,
                            int64_t now_ms, struct vh_error *err)
{
    int rc;

    if (!st)
        return vh_error_set(err, VH_EINVAL, "retry delivery: missing argument");
    rc = check_lookup_id(partner_id, VH_UUID_LEN, "partner", err);
    if (rc == 0)
        rc = check_lookup_id(delivery_id, VH_UUID_LEN, "delivery", err);
    if (rc == 0)
        rc = check_time(now_ms, "retry delivery", err);
    if (rc < 0)
        return rc;
    return st->ops->delivery_retry(st, partner_id, delivery_id, now_ms, err);
}

int vh_store_endpoint_replay(struct vh_store *st, const char *partner_id, const char *endpoint_id,
                             int64_t since_ms, int64_t until_ms, int64_t now_ms, size_t *created,
                             struct vh_error *err)
{
    size_t made = 0;
    int rc;

    if (!st)
        return vh_error_set(err, VH_EINVAL, "replay: missing argument");
    rc = check_lookup_id(partner_id, VH_UUID_LEN, "partner", err);
    if (rc == 0)
        rc = check_lookup_id(endpoint_id, VH_UUID_LEN, "endpoint", err);
    if (rc == 0)
        rc = check_time(since_ms, "replay since", err);
    if (rc == 0)
        rc = check_time(until_ms, "replay until", err);
    if (rc == 0)
        rc = check_time(now_ms, "replay", err);
    if (rc < 0)
        return rc;
    if (since_ms > until_ms)
        return vh_error_set(err, VH_EINVAL, "replay: since is after until");
    rc = st->ops->endpoint_replay(st, partner_id, endpoint_id, since_ms, until_ms, now_ms, &made,
                                  err);
    if (rc < 0)
        return rc;
    if (created)
        *created = made;
    return 0;
}

/* ---- counts ---------------------------------------------------------------------------- */

/* The allow-list: caller text only ever selects an enum value, never reaches SQL. */
static const struct {
    const char *name;
    enum vh__store_table table;
} count_tables[] = {
    {"partners", VH__TABLE_PARTNERS},     {"api_keys", VH__TABLE_API_KEYS},
    {"endpoints", VH__TABLE_ENDPOINTS},   {"events", VH__TABLE_EVENTS},
    {"deliveries", VH__TABLE_DELIVERIES}, {"attempts", VH__TABLE_ATTEMPTS},
};

int vh_store_count(struct vh_store *st, const char *table, int64_t *out, struct vh_error *err)
{
    int64_t v = 0;
    size_t i;
    int rc;

    if (!st || !table || !out)
        return vh_error_set(err, VH_EINVAL, "count: missing argument");
    for (i = 0; i < sizeof(count_tables) / sizeof(count_tables[0]); i++) {
        if (strcmp(table, count_tables[i].name) != 0)
            continue;
        rc = st->ops->count(st, count_tables[i].table, &v, err);
        if (rc < 0)
            return rc;
        *out = v;
        return 0;
    }
    return vh_error_set(err, VH_EINVAL, "count: unknown table");
}

/* ---- shared by every node ---------------------------------------------------------------- */

int vh_store_rate_take(struct vh_store *st, const char key_hash[VH_SHA256_HEX_LEN + 1],
                       const struct vh_rate_limits *lim, bool calls, int64_t now_ms, int *wait_s,
                       struct vh_rate_window *window, struct vh_error *err)
{
    struct vh_rate_window w;
    int wait = 0, rc;

    if (!st || !lim || !wait_s)
        return vh_error_set(err, VH_EINVAL, "rate limit: missing argument");
    if (!key_hash || strnlen(key_hash, VH_SHA256_HEX_LEN + 1) != VH_SHA256_HEX_LEN)
        return vh_error_set(err, VH_EINVAL, "rate limit: the key hash is not %d characters",
                            VH_SHA256_HEX_LEN);
    rc = check_time(now_ms, "rate limit", err);
    if (rc < 0)
        return rc;
    if (!st->ops->rate_take)
        return vh_error_set(err, VH_ENOTSUP, "rate limit: the %s store keeps no shared windows",
                            st->ops->name);
    memset(&w, 0, sizeof(w));
    rc = st->ops->rate_take(st, key_hash, lim, calls, now_ms, &wait, &w, err);
    if (rc < 0)
        return rc;
    *wait_s = wait;
    if (window)
        *window = w;
    return 0;
}

int vh_store_watch(struct vh_store *st, void (*on_due)(void *ud), void *ud, struct vh_error *err)
{
    if (!st)
        return vh_error_set(err, VH_EINVAL, "watch: missing argument");
    if (!st->ops->watch)
        return 0;
    return st->ops->watch(st, on_due, ud, err);
}

int vh_store_watch_endpoints(struct vh_store *st,
                             void (*on_changed)(void *ud, const char *endpoint_id), void *ud,
                             struct vh_error *err)
{
    if (!st)
        return vh_error_set(err, VH_EINVAL, "watch endpoints: missing argument");
    if (!st->ops->watch_endpoints)
        return 0;
    return st->ops->watch_endpoints(st, on_changed, ud, err);
}
