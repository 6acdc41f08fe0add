/*
 * The API routes over a real SQLite store in a temp dir: every rule of SPEC §4 and §5
 * broken once, with the status, the error code and the envelope checked. Then the same
 * API through vh_api_handle_async (what the HTTP server calls): the same answers, an
 * ingest's through `done`, exactly once, also under concurrency and out of memory.
 */
#include <pthread.h>
#include <semaphore.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <sqlite3.h>

#include <vocohook/vocohook.h>

#include "unit/oom.h"
#include "unit/wait.h"

#define TOKEN "ingest-token-0123456789abcdef"
#define NOW   INT64_C(1773585128000)

struct fx {
    char dir[64];
    struct vh_store *st;
    struct vh_api *api;
    struct vh_api_config cfg;
    char key_a[VH_APIKEY_LEN + 1], key_b[VH_APIKEY_LEN + 1];
    struct vh_partner a, b;
    int status;
    int retry_after;
    json_t *json; /* the last response, parsed */
    int64_t now;
    atomic_int due; /* calls of cfg.on_due (any thread) */
    int changed;    /* calls of cfg.on_endpoint_changed (the request's thread) */
    char changed_id[VH_UUID_LEN + 1];
    bool abandoned; /* a `done` was lost, or may yet come: teardown leaves all alive */
};

/* The api's on_due: counts the wakeups of the sender. */
static void count_due(void *ud)
{
    struct fx *f = ud;

    atomic_fetch_add(&f->due, 1);
}

/* The api's on_endpoint_changed: counts the calls, keeps the last id. */
static void count_changed(void *ud, const char *endpoint_id)
{
    struct fx *f = ud;

    f->changed++;
    snprintf(f->changed_id, sizeof(f->changed_id), "%s", endpoint_id);
}

static void make_partner(struct fx *f, const char *name, char *key, struct vh_partner *p)
{
    char hash[VH_SHA256_HEX_LEN + 1];

    assert_int_equal(vh_apikey_new(key, NULL), 0);
    assert_int_equal(vh_sha256_hex(key, strlen(key), hash, NULL), 0);
    assert_int_equal(vh_store_partner_create(f->st, name, hash, NOW, p, NULL), 0);
}

static int setup_with(void **state, bool allow_http)
{
    struct fx *f = calloc(1, sizeof(*f));
    char url[128];
    struct vh_error err = VH_ERROR_INIT;

    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/vh-routes-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(url, sizeof(url), "sqlite:%s/db", f->dir);
    assert_int_equal(vh_store_open(url, &f->st, &err), 0);
    f->cfg.ingest_token = TOKEN;
    f->cfg.allow_http = allow_http;
    f->cfg.on_due = count_due;
    f->cfg.on_due_ud = f;
    f->cfg.on_endpoint_changed = count_changed;
    f->cfg.on_endpoint_changed_ud = f;
    atomic_init(&f->due, 0);
    assert_int_equal(vh_api_new(f->st, &f->cfg, &f->api, &err), 0);
    make_partner(f, "Acme", f->key_a, &f->a);
    make_partner(f, "Other", f->key_b, &f->b);
    f->now = NOW;
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return setup_with(state, false);
}

static int setup_http(void **state)
{
    return setup_with(state, true);
}

static int teardown(void **state)
{
    struct fx *f = *state;
    char cmd[128];

    if (f->abandoned)
        return 0; /* the commit thread may still use the API, the store and `f` */
    json_decref(f->json);
    vh_api_free(f->api);
    vh_store_close(f->st);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

#define AUTH_MAX 160

/* Fills `r` as a client would send it; `auth` (AUTH_MAX bytes) holds its header. */
static void make_req(const struct fx *f, struct vh_api_req *r, char *auth, const char *method,
                     const char *path, const char *key, const char *body)
{
    memset(r, 0, sizeof(*r));
    r->method = method;
    r->path = path;
    if (key) {
        snprintf(auth, AUTH_MAX, "Bearer %s", key);
        r->authorization = auth;
    }
    r->content_type = body ? "application/json" : NULL;
    r->body = body;
    r->body_len = body ? strlen(body) : 0;
    r->request_id = "test";
    r->now_ms = f->now;
}

/* Keeps the status, Retry-After and the parsed body of `resp` in the fixture. */
static void keep(struct fx *f, const struct vh_api_resp *resp)
{
    json_error_t jerr;

    f->status = resp->status;
    f->retry_after = resp->retry_after_s;
    json_decref(f->json);
    f->json = json_loadb(resp->body.data, resp->body.len, 0, &jerr);
    if (!f->json)
        fail_msg("response is not JSON: %s", vh_buf_cstr(&resp->body));
}

/* Sends one request; keeps status, Retry-After and the parsed body in the fixture. */
static int req(struct fx *f, const char *method, const char *path, const char *key,
               const char *body)
{
    struct vh_api_req r;
    struct vh_api_resp resp;
    char auth[AUTH_MAX];

    make_req(f, &r, auth, method, path, key, body);
    vh_api_resp_init(&resp);
    vh_api_handle(f->api, &r, &resp);
    keep(f, &resp);
    vh_api_resp_release(&resp);
    return f->status;
}

static const char *str_at(json_t *o, const char *path)
{
    json_t *v = o;
    char buf[128], *p, *save = NULL;

    snprintf(buf, sizeof(buf), "%s", path);
    for (p = strtok_r(buf, ".", &save); p; p = strtok_r(NULL, ".", &save))
        v = json_object_get(v, p);
    return json_string_value(v);
}

static json_t *at(json_t *o, const char *path)
{
    json_t *v = o;
    char buf[128], *p, *save = NULL;

    snprintf(buf, sizeof(buf), "%s", path);
    for (p = strtok_r(buf, ".", &save); p; p = strtok_r(NULL, ".", &save))
        v = json_object_get(v, p);
    return v;
}

/* Asserts an error envelope with this status and code. */
static void expect_error(struct fx *f, int status, const char *code)
{
    if (f->status != status)
        fail_msg("status %d, want %d: %s", f->status, status, json_dumps(f->json, 0));
    assert_true(json_is_false(at(f->json, "success")));
    assert_string_equal(str_at(f->json, "error.code"), code);
    assert_non_null(str_at(f->json, "error.message"));
    assert_true(strlen(str_at(f->json, "error.message")) > 0);
}

static void create(struct fx *f, const char *label, const char *url, bool enabled, char *id_out)
{
    char body[512];

    snprintf(body, sizeof(body), "{\"label\":\"%s\",\"url\":\"%s\",\"enabled\":%s}", label, url,
             enabled ? "true" : "false");
    if (req(f, "POST", "/api/v2/config/webhooks", f->key_a, body) != 201)
        fail_msg("create %s: %d %s", label, f->status, json_dumps(f->json, 0));
    if (id_out)
        snprintf(id_out, VH_UUID_LEN + 1, "%s", str_at(f->json, "data.id"));
}

static void healthz(void **state)
{
    struct fx *f = *state;

    assert_int_equal(req(f, "GET", "/healthz", NULL, NULL), 200);
    assert_true(json_is_true(at(f->json, "success")));
    assert_string_equal(str_at(f->json, "data.status"), "ok");
}

static void endpoint_lifecycle(void **state)
{
    struct fx *f = *state;
    char id[VH_UUID_LEN + 1], path[128], secret[VH_SECRET_LEN + 1];

    create(f, "primary", "https://example.com/hooks", true, id);
    assert_true(json_is_true(at(f->json, "success")));
    assert_string_equal(str_at(f->json, "data.label"), "primary");
    assert_string_equal(str_at(f->json, "data.url"), "https://example.com/hooks");
    assert_true(json_is_true(at(f->json, "data.enabled")));
    assert_int_equal(strlen(str_at(f->json, "data.secret")), VH_SECRET_LEN);
    assert_memory_equal(str_at(f->json, "data.secret"), "whsec_", 6);
    snprintf(secret, sizeof(secret), "%s", str_at(f->json, "data.secret"));
    assert_string_equal(str_at(f->json, "data.message"),
                        "Save this secret \xe2\x80\x94 it will not be shown again.");
    assert_true(json_is_null(at(f->json, "data.last_delivery_at")));
    assert_true(json_is_null(at(f->json, "data.last_delivery_status")));

    /* list and get never show the secret */
    assert_int_equal(req(f, "GET", "/api/v2/config/webhooks", f->key_a, NULL), 200);
    assert_int_equal(json_array_size(at(f->json, "data")), 1);
    assert_null(json_object_get(json_array_get(at(f->json, "data"), 0), "secret"));
    snprintf(path, sizeof(path), "/api/v2/config/webhooks/%s", id);
    assert_int_equal(req(f, "GET", path, f->key_a, NULL), 200);
    assert_string_equal(str_at(f->json, "data.id"), id);
    assert_null(at(f->json, "data.secret"));

    /* update */
    assert_int_equal(req(f, "PATCH", path, f->key_a, "{\"enabled\":false,\"label\":\"renamed\"}"),
                     200);
    assert_true(json_is_false(at(f->json, "data.enabled")));
    assert_string_equal(str_at(f->json, "data.label"), "renamed");
    assert_string_equal(str_at(f->json, "data.url"), "https://example.com/hooks");
    assert_int_equal(req(f, "GET", path, f->key_a, NULL), 200);
    assert_string_equal(str_at(f->json, "data.label"), "renamed");

    /* rotate: a new secret, returned once */
    snprintf(path, sizeof(path), "/api/v2/config/webhooks/%s/rotate-secret", id);
    assert_int_equal(req(f, "POST", path, f->key_a, NULL), 200);
    assert_string_equal(str_at(f->json, "data.id"), id);
    assert_string_equal(str_at(f->json, "data.label"), "renamed");
    assert_int_equal(strlen(str_at(f->json, "data.secret")), VH_SECRET_LEN);
    assert_string_not_equal(str_at(f->json, "data.secret"), secret);
    assert_non_null(str_at(f->json, "data.message"));

    /* delete, then it is gone */
    snprintf(path, sizeof(path), "/api/v2/config/webhooks/%s", id);
    assert_int_equal(req(f, "DELETE", path, f->key_a, NULL), 200);
    assert_int_equal(req(f, "GET", path, f->key_a, NULL), 404);
    expect_error(f, 404, "NOT_FOUND");
    assert_int_equal(req(f, "DELETE", path, f->key_a, NULL), 404);
}

/*
 * A change of an endpoint's URL, secret, enabled flag or existence is reported once it is
 * stored (the sender then drops the attempts queued with the old ones); other changes and
 * refused requests are not.
 */
static void endpoint_changes_are_reported(void **state)
{
    struct fx *f = *state;
    char id[VH_UUID_LEN + 1], path[128];

    create(f, "moving", "https://example.com/hooks", true, id);
    assert_int_equal(f->changed, 0);
    snprintf(path, sizeof(path), "/api/v2/config/webhooks/%s", id);
    assert_int_equal(req(f, "PATCH", path, f->key_a,
                         "{\"label\":\"renamed\",\"retry_schedule\":\"0,1s\",\"timeout_ms\":500}"),
                     200);
    assert_int_equal(req(f, "PATCH", path, f->key_a, "{\"enabled\":true}"), 200);
    assert_int_equal(req(f, "PATCH", path, f->key_a, "{\"url\":\"https://example.com/hooks\"}"),
                     200);
    assert_int_equal(f->changed, 0);
    req(f, "PATCH", path, f->key_b, "{\"enabled\":false}");
    expect_error(f, 404, "NOT_FOUND");
    req(f, "PATCH", path, f->key_a, "{\"url\":\"ftp://example.com/\"}");
    expect_error(f, 400, "VALIDATION_ERROR");
    assert_int_equal(f->changed, 0);

    assert_int_equal(req(f, "PATCH", path, f->key_a, "{\"enabled\":false}"), 200);
    assert_int_equal(f->changed, 1);
    assert_string_equal(f->changed_id, id);
    assert_int_equal(req(f, "PATCH", path, f->key_a, "{\"url\":\"https://moved.example/h\"}"), 200);
    assert_int_equal(f->changed, 2);
    snprintf(path, sizeof(path), "/api/v2/config/webhooks/%s/rotate-secret", id);
    assert_int_equal(req(f, "POST", path, f->key_a, NULL), 200);
    assert_int_equal(f->changed, 3);
    snprintf(path, sizeof(path), "/api/v2/config/webhooks/%s", id);
    assert_int_equal(req(f, "DELETE", path, f->key_a, NULL), 200);
    assert_int_equal(f->changed, 4);
    assert_string_equal(f->changed_id, id);

    assert_int_equal(req(f, "PUT", "/api/v2/config/webhook", f->key_a,
                         "{\"webhook_url\":\"https://legacy.example/wh\"}"),
                     200);
    f->changed = 0;
    assert_int_equal(req(f, "PUT", "/api/v2/config/webhook", f->key_a,
                         "{\"webhook_url\":\"https://legacy.example/wh\"}"),
                     200); /* the same URL, a new secret */
    assert_int_equal(f->changed, 1);
}

static void endpoint_rules(void **state)
{
    struct fx *f = *state;
    static const char *bad_labels[] = {
        "Upper", "-lead", "has space", "", "a_b", "abcdefghijabcdefghijabcdefghijab" /* 32 */};
    char body[256], label[16];
    size_t i;

    for (i = 0; i < sizeof(bad_labels) / sizeof(bad_labels[0]); i++) {
        snprintf(body, sizeof(body), "{\"label\":\"%s\",\"url\":\"https://x.example/h\"}",
                 bad_labels[i]);
        req(f, "POST", "/api/v2/config/webhooks", f->key_a, body);
        expect_error(f, 400, "VALIDATION_ERROR");
        assert_non_null(strstr(str_at(f->json, "error.message"), "label"));
    }
    create(f, "abcdefghijabcdefghijabcdefghija", "https://x.example/h", true, NULL); /* 31 */
    req(f, "POST", "/api/v2/config/webhooks", f->key_a,
        "{\"label\":\"default\",\"url\":\"https://x.example/h\"}");
    expect_error(f, 400, "VALIDATION_ERROR");
    assert_non_null(strstr(str_at(f->json, "error.message"), "reserved"));
    req(f, "POST", "/api/v2/config/webhooks", f->key_a,
        "{\"label\":\"plain\",\"url\":\"http://x.example/h\"}");
    expect_error(f, 400, "VALIDATION_ERROR");
    assert_non_null(strstr(str_at(f->json, "error.message"), "https://"));
    req(f, "POST", "/api/v2/config/webhooks", f->key_a,
        "{\"label\":\"creds\",\"url\":\"https://u:p@x.example/h\"}");
    expect_error(f, 400, "VALIDATION_ERROR");
    req(f, "POST", "/api/v2/config/webhooks", f->key_a,
        "{\"label\":\"nohost\",\"url\":\"https:///h\"}");
    expect_error(f, 400, "VALIDATION_ERROR");
    req(f, "POST", "/api/v2/config/webhooks", f->key_a, "{\"label\":\"x\"}");
    expect_error(f, 400, "VALIDATION_ERROR");
    assert_string_equal(str_at(f->json, "error.message"), "url: missing");
    req(f, "POST", "/api/v2/config/webhooks", f->key_a,
        "{\"label\":\"x\",\"url\":\"https://a.b/\",\"extra\":1}");
    expect_error(f, 400, "VALIDATION_ERROR");
    req(f, "POST", "/api/v2/config/webhooks", f->key_a, "{\"label\":\"x\",");
    expect_error(f, 400, "VALIDATION_ERROR");
    assert_non_null(strstr(str_at(f->json, "error.message"), "json"));
    req(f, "POST", "/api/v2/config/webhooks", f->key_a, "{\"label\":\"x\",\"url\":5}");
    expect_error(f, 400, "VALIDATION_ERROR");
    assert_string_equal(str_at(f->json, "error.message"), "url: must be a string");

    /* duplicate label */
    req(f, "POST", "/api/v2/config/webhooks", f->key_a,
        "{\"label\":\"abcdefghijabcdefghijabcdefghija\",\"url\":\"https://x.example/2\"}");
    expect_error(f, 409, "CONFLICT");
    /* the same label is fine for another partner */
    assert_int_equal(
        req(f, "POST", "/api/v2/config/webhooks", f->key_b,
            "{\"label\":\"abcdefghijabcdefghijabcdefghija\",\"url\":\"https://x.example/2\"}"),
        201);
    /* five at most */
    for (i = 2; i <= 5; i++) {
        snprintf(label, sizeof(label), "ep%zu", i);
        create(f, label, "https://x.example/h", true, NULL);
    }
    req(f, "POST", "/api/v2/config/webhooks", f->key_a,
        "{\"label\":\"ep6\",\"url\":\"https://x.example/h\"}");
    expect_error(f, 409, "CONFLICT");
    assert_int_equal(req(f, "GET", "/api/v2/config/webhooks", f->key_a, NULL), 200);
    assert_int_equal(json_array_size(at(f->json, "data")), 5);
}

/*
 * An error message that holds bytes that are not UTF-8 (a path segment MHD decoded from
 * %FF, a long path cut inside a character, a non-ASCII URL host) still gets the JSON error
 * envelope. Before (found in a security review) the envelope refused such a message, and the
 * answer went out with its status and an empty body.
 */
static void errors_that_quote_bytes_not_utf8(void **state)
{
    struct fx *f = *state;
    char path[1024], id[VH_UUID_LEN + 1];
    size_t i, n;

    req(f, "GET", "/api/v2/\xff", f->key_a, NULL);
    expect_error(f, 404, "NOT_FOUND");
    req(f, "GET", "/\xc3", NULL, NULL);
    expect_error(f, 404, "NOT_FOUND");
    /* Only the ill-formed bytes are replaced: a character around them is kept. */
    req(f, "GET", "/caf\xc3\xa9\xff", NULL, NULL);
    expect_error(f, 404, "NOT_FOUND");
    assert_non_null(strstr(str_at(f->json, "error.message"), "/caf\xc3\xa9?"));
    /* a path of two-byte characters, longer than a message holds: cut inside one */
    n = (size_t)snprintf(path, sizeof(path), "/nothing/");
    for (i = 0; i < 300; i++)
        path[n++] = (char)(i % 2 ? 0xa9 : 0xc3);
    path[n] = '\0';
    req(f, "GET", path, NULL, NULL);
    expect_error(f, 404, "NOT_FOUND");

    req(f, "POST", "/api/v2/config/webhooks", f->key_a,
        "{\"label\":\"idn\",\"url\":\"https://\xc3\xa9.example/h\"}");
    expect_error(f, 400, "VALIDATION_ERROR");
    assert_non_null(strstr(str_at(f->json, "error.message"), "ASCII"));
    create(f, "plain", "https://x.example/h", true, id);
    snprintf(path, sizeof(path), "/api/v2/config/webhooks/%s", id);
    req(f, "PATCH", path, f->key_a, "{\"url\":\"https://x.\xc3\xa9/h\"}");
    expect_error(f, 400, "VALIDATION_ERROR");
    req(f, "PUT", "/api/v2/config/webhook", f->key_a,
        "{\"webhook_url\":\"https://\xe2\x82\xac.example/\"}");
    expect_error(f, 400, "VALIDATION_ERROR");
}

static void http_urls_when_allowed(void **state)
{
    struct fx *f = *state;

    create(f, "dev", "http://127.0.0.1:9000/hook", true, NULL);
    assert_string_equal(str_at(f->json, "data.url"), "http://127.0.0.1:9000/hook");
}

static void auth_rules(void **state)
{
    struct fx *f = *state;
    char hash[VH_SHA256_HEX_LEN + 1], newkey[VH_APIKEY_LEN + 1];
    char id[VH_UUID_LEN + 1], path[128];

    req(f, "GET", "/api/v2/config/webhooks", NULL, NULL);
    expect_error(f, 401, "UNAUTHORIZED");
    req(f, "GET", "/api/v2/config/webhooks", "rg_live_nope", NULL);
    expect_error(f, 401, "UNAUTHORIZED");
    req(f, "GET", "/api/v2/config/webhooks", TOKEN, NULL); /* the ingest token is no API key */
    expect_error(f, 401, "UNAUTHORIZED");

    /* another partner's endpoint: 404, never 403 */
    create(f, "mine", "https://x.example/h", true, id);
    snprintf(path, sizeof(path), "/api/v2/config/webhooks/%s", id);
    req(f, "GET", path, f->key_b, NULL);
    expect_error(f, 404, "NOT_FOUND");
    req(f, "PATCH", path, f->key_b, "{\"enabled\":false}");
    expect_error(f, 404, "NOT_FOUND");
    req(f, "DELETE", path, f->key_b, NULL);
    expect_error(f, 404, "NOT_FOUND");
    snprintf(path, sizeof(path), "/api/v2/config/webhooks/%s/rotate-secret", id);
    req(f, "POST", path, f->key_b, NULL);
    expect_error(f, 404, "NOT_FOUND");

    /* a revoked key */
    assert_int_equal(vh_apikey_new(newkey, NULL), 0);
    assert_int_equal(vh_sha256_hex(newkey, strlen(newkey), hash, NULL), 0);
    assert_int_equal(vh_store_partner_rotate_key(f->st, f->a.id, hash, NOW, NULL), 0);
    req(f, "GET", "/api/v2/config/webhooks", f->key_a, NULL);
    expect_error(f, 401, "UNAUTHORIZED");
    assert_int_equal(req(f, "GET", "/api/v2/config/webhooks", newkey, NULL), 200);
}

static void content_type_and_size(void **state)
{
    struct fx *f = *state;
    struct vh_api_req r;
    struct vh_api_resp resp;
    char auth[160];

    memset(&r, 0, sizeof(r));
    snprintf(auth, sizeof(auth), "Bearer %s", f->key_a);
    r.method = "POST";
    r.path = "/api/v2/config/webhooks";
    r.authorization = auth;
    r.content_type = "text/plain";
    r.body = "{\"label\":\"x\",\"url\":\"https://a.b/\"}";
    r.body_len = strlen(r.body);
    r.now_ms = NOW;
    vh_api_resp_init(&resp);
    vh_api_handle(f->api, &r, &resp);
    assert_int_equal(resp.status, 400);
    assert_non_null(strstr(resp.body.data, "Content-Type"));
    vh_api_resp_release(&resp);

    r.content_type = "application/json";
    r.body_too_large = true;
    vh_api_resp_init(&resp);
    vh_api_handle(f->api, &r, &resp);
    assert_int_equal(resp.status, 413);
    assert_non_null(strstr(resp.body.data, "\"PAYLOAD_TOO_LARGE\""));
    vh_api_resp_release(&resp);

    assert_int_equal(req(f, "GET", "/api/v2/nowhere", f->key_a, NULL), 404);
    expect_error(f, 404, "NOT_FOUND");
    assert_int_equal(req(f, "GET", "/nowhere", NULL, NULL), 404);
}

static void rate_limits(void **state)
{
    struct fx *f = *state;
    int i;

    for (i = 0; i < 10; i++)
        assert_int_equal(req(f, "GET", "/api/v2/calls", f->key_a, NULL), 200);
    req(f, "GET", "/api/v2/calls", f->key_a, NULL);
    expect_error(f, 429, "RATE_LIMITED");
    assert_true(f->retry_after >= 1 && f->retry_after <= 60);
    /* the general limit still has room; another key is unaffected */
    assert_int_equal(req(f, "GET", "/api/v2/config", f->key_a, NULL), 200);
    assert_int_equal(req(f, "GET", "/api/v2/calls", f->key_b, NULL), 200);
    for (i = 0; i < 60 - 11; i++)
        assert_int_equal(req(f, "GET", "/api/v2/config", f->key_a, NULL), 200);
    req(f, "GET", "/api/v2/config", f->key_a, NULL);
    expect_error(f, 429, "RATE_LIMITED");
    /* a minute later the window reopens */
    f->now += 60000;
    assert_int_equal(req(f, "GET", "/api/v2/config", f->key_a, NULL), 200);
    assert_int_equal(req(f, "GET", "/api/v2/calls", f->key_a, NULL), 200);
}

static void legacy_put_and_config(void **state)
{
    struct fx *f = *state;
    char secret[VH_SECRET_LEN + 1];

    assert_int_equal(req(f, "GET", "/api/v2/config", f->key_a, NULL), 200);
    assert_string_equal(str_at(f->json, "data.name"), "Acme");
    assert_true(json_is_false(at(f->json, "data.webhook.configured")));
    assert_true(json_is_null(at(f->json, "data.webhook.url")));

    assert_int_equal(req(f, "PUT", "/api/v2/config/webhook", f->key_a,
                         "{\"webhook_url\":\"https://legacy.example/wh\"}"),
                     200);
    assert_string_equal(str_at(f->json, "data.webhook_url"), "https://legacy.example/wh");
    assert_int_equal(strlen(str_at(f->json, "data.webhook_secret")), VH_SECRET_LEN);
    assert_non_null(str_at(f->json, "data.message"));
    snprintf(secret, sizeof(secret), "%s", str_at(f->json, "data.webhook_secret"));

    assert_int_equal(req(f, "PUT", "/api/v2/config/webhook", f->key_a,
                         "{\"webhook_url\":\"https://legacy.example/v2\"}"),
                     200);
    assert_string_not_equal(str_at(f->json, "data.webhook_secret"), secret);

    assert_int_equal(req(f, "GET", "/api/v2/config", f->key_a, NULL), 200);
    assert_true(json_is_true(at(f->json, "data.webhook.configured")));
    assert_string_equal(str_at(f->json, "data.webhook.url"), "https://legacy.example/v2");
    assert_true(json_is_null(at(f->json, "data.webhook.secret")));
    assert_int_equal(json_array_size(at(f->json, "data.webhooks")), 1);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(at(f->json, "data.webhooks"), 0), "label")),
                        "default");
    req(f, "PUT", "/api/v2/config/webhook", f->key_a, "{\"webhook_url\":\"ftp://x/\"}");
    expect_error(f, 400, "VALIDATION_ERROR");
}

static char *read_data_file(const char *rel)
{
    const char *src = getenv("VH_SOURCE_DIR");
    char path[1024];
    FILE *fp;
    char *buf;
    long n;

    snprintf(path, sizeof(path), "%s/tests/data/%s", src ? src : ".", rel);
    fp = fopen(path, "rb");
    if (!fp)
        fail_msg("cannot open %s", path);
    fseek(fp, 0, SEEK_END);
    n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    buf = calloc(1, (size_t)n + 1);
    assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    return buf;
}

/* An ingest body for partner `pid` around the seed session with `session_id` replaced. */
static char *ingest_body(const char *pid, const char *session_id, const char *call_id)
{
    char *seed = read_data_file("good/seed_session.json");
    json_t *s = json_loads(seed, 0, NULL), *root;
    char *out;

    assert_non_null(s);
    json_object_set_new(s, "session_id", json_string(session_id));
    if (call_id)
        json_object_set_new(json_object_get(s, "call"), "call_id", json_string(call_id));
    else
        json_object_set_new(s, "call", json_null());
    root = json_pack("{s:s,s:o}", "partner_id", pid, "session", s);
    out = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    free(seed);
    return out;
}

static void ingest_rules(void **state)
{
    struct fx *f = *state;
    char *body;
    int64_t n;
    char eid[VH_UUID_LEN + 1];

    create(f, "e1", "https://one.example/h", true, NULL);
    create(f, "e2", "https://two.example/h", true, NULL);
    create(f, "e3", "https://three.example/h", true, NULL);
    create(f, "off", "https://four.example/h", false, NULL);

    body = ingest_body(f->a.id, "sess-1", "call-1");
    req(f, "POST", "/internal/v1/sessions", NULL, body);
    expect_error(f, 401, "UNAUTHORIZED");
    req(f, "POST", "/internal/v1/sessions", "wrong-token-0123456789", body);
    expect_error(f, 401, "UNAUTHORIZED");
    req(f, "POST", "/internal/v1/sessions", f->key_a, body); /* an API key is no ingest token */
    expect_error(f, 401, "UNAUTHORIZED");
    assert_int_equal(vh_store_count(f->st, "events", &n, NULL), 0);
    assert_int_equal(n, 0);

    assert_int_equal(req(f, "POST", "/internal/v1/sessions", TOKEN, body), 202);
    assert_int_equal(json_integer_value(at(f->json, "data.deliveries")), 3);
    snprintf(eid, sizeof(eid), "%s", str_at(f->json, "data.event_id"));
    assert_int_equal(strlen(eid), VH_UUID_LEN);
    /* a repeat: the original event, nothing new */
    assert_int_equal(req(f, "POST", "/internal/v1/sessions", TOKEN, body), 200);
    assert_string_equal(str_at(f->json, "data.event_id"), eid);
    assert_int_equal(json_integer_value(at(f->json, "data.deliveries")), 3);
    assert_true(json_is_true(at(f->json, "data.duplicate")));
    assert_int_equal(vh_store_count(f->st, "events", &n, NULL), 0);
    assert_int_equal(n, 1);
    assert_int_equal(vh_store_count(f->st, "deliveries", &n, NULL), 0);
    assert_int_equal(n, 3);
    free(body);

    /* bad input: path and reason, nothing stored */
    req(f, "POST", "/internal/v1/sessions", TOKEN,
        "{\"partner_id\":\"p\",\"session\":{\"session_id\":\"s\"}}");
    expect_error(f, 400, "VALIDATION_ERROR");
    assert_memory_equal(str_at(f->json, "error.message"), "session", 7);
    body = ingest_body("no-such-partner", "sess-2", "call-2");
    req(f, "POST", "/internal/v1/sessions", TOKEN, body);
    expect_error(f, 404, "NOT_FOUND");
    free(body);
    /* the same session id for another partner */
    body = ingest_body(f->b.id, "sess-1", "call-1");
    req(f, "POST", "/internal/v1/sessions", TOKEN, body);
    expect_error(f, 409, "CONFLICT");
    free(body);
    assert_int_equal(vh_store_count(f->st, "events", &n, NULL), 0);
    assert_int_equal(n, 1);
}

static void calls_read_back(void **state)
{
    struct fx *f = *state;
    char *body;
    json_t *data;
    int i;

    for (i = 0; i < 12; i++) {
        char sid[32], cid[32];

        snprintf(sid, sizeof(sid), "sess-%02d", i);
        snprintf(cid, sizeof(cid), "call-%02d", i);
        body = ingest_body(f->a.id, sid, i == 11 ? NULL : cid);
        f->now = NOW + i * 1000;
        assert_int_equal(req(f, "POST", "/internal/v1/sessions", TOKEN, body), 202);
        free(body);
    }
    /* by call id and by session id */
    assert_int_equal(req(f, "GET", "/api/v2/calls/call-03", f->key_a, NULL), 200);
    data = at(f->json, "data");
    assert_string_equal(str_at(data, "call_id"), "call-03");
    assert_string_equal(str_at(data, "from_number"), "+14155551234");
    assert_string_equal(str_at(data, "status"), "completed");
    assert_string_equal(str_at(data, "session.session_id"), "sess-03");
    assert_string_equal(str_at(data, "session.agent_name"), "Sales Assistant");
    assert_int_equal(json_array_size(at(data, "session.transcript")), 3);
    assert_int_equal(json_integer_value(at(data, "session.latency.avg_ms")), 680);
    assert_int_equal(req(f, "GET", "/api/v2/calls/sess-03", f->key_a, NULL), 200);
    assert_string_equal(str_at(f->json, "data.call_id"), "call-03");
    /* a session without a call */
    assert_int_equal(req(f, "GET", "/api/v2/calls/sess-11", f->key_a, NULL), 200);
    assert_true(json_is_null(at(f->json, "data.call_id")));
    /* another partner cannot see it */
    req(f, "GET", "/api/v2/calls/call-03", f->key_b, NULL);
    expect_error(f, 404, "NOT_FOUND");

    /* list: newest first, default limit 10, paging, bounds */
    assert_int_equal(req(f, "GET", "/api/v2/calls", f->key_a, NULL), 200);
    assert_int_equal(json_array_size(at(f->json, "data.calls")), 10);
    assert_int_equal(json_integer_value(at(f->json, "data.total")), 12);
    assert_int_equal(json_integer_value(at(f->json, "data.next_offset")), 10);
    assert_string_equal(
        json_string_value(json_object_get(
            json_object_get(json_array_get(at(f->json, "data.calls"), 0), "session"),
            "session_id")),
        "sess-11");
}

static void calls_paging(void **state)
{
    struct fx *f = *state;
    struct vh_api_req r;
    struct vh_api_resp resp;
    char auth[160];
    char *body;
    int i;

    for (i = 0; i < 3; i++) {
        char sid[32], cid[32];

        snprintf(sid, sizeof(sid), "p-%d", i);
        snprintf(cid, sizeof(cid), "pc-%d", i);
        body = ingest_body(f->a.id, sid, cid);
        f->now = NOW + i;
        assert_int_equal(req(f, "POST", "/internal/v1/sessions", TOKEN, body), 202);
        free(body);
    }
    memset(&r, 0, sizeof(r));
    snprintf(auth, sizeof(auth), "Bearer %s", f->key_a);
    r.method = "GET";
    r.path = "/api/v2/calls";
    r.authorization = auth;
    r.now_ms = NOW;
    r.query[0] = (struct vh_api_kv){"limit", "2"};
    r.query[1] = (struct vh_api_kv){"offset", "2"};
    r.n_query = 2;
    vh_api_resp_init(&resp);
    vh_api_handle(f->api, &r, &resp);
    assert_int_equal(resp.status, 200);
    assert_non_null(
        strstr(resp.body.data, "\"total\":3,\"limit\":2,\"offset\":2,\"next_offset\":null}"));
    assert_non_null(strstr(resp.body.data, "\"session_id\":\"p-0\""));
    assert_null(strstr(resp.body.data, "\"session_id\":\"p-1\""));
    vh_api_resp_release(&resp);

    r.query[0] = (struct vh_api_kv){"limit", "101"};
    r.n_query = 1;
    vh_api_resp_init(&resp);
    vh_api_handle(f->api, &r, &resp);
    assert_int_equal(resp.status, 400);
    vh_api_resp_release(&resp);

    /* digits only: strtol alone took these as 5 */
    for (i = 0; i < 3; i++) {
        static const char *const odd[] = {"+5", " 5", "\t5"};

        r.query[0] = (struct vh_api_kv){"limit", odd[i]};
        vh_api_resp_init(&resp);
        vh_api_handle(f->api, &r, &resp);
        assert_int_equal(resp.status, 400);
        assert_non_null(strstr(resp.body.data, "limit: must be an integer"));
        vh_api_resp_release(&resp);
    }

    r.query[0] = (struct vh_api_kv){"status", "busy"};
    vh_api_resp_init(&resp);
    vh_api_handle(f->api, &r, &resp);
    assert_int_equal(resp.status, 200);
    assert_non_null(strstr(resp.body.data, "\"calls\":[],\"total\":0"));
    vh_api_resp_release(&resp);

    r.query[0] = (struct vh_api_kv){"status", "exploded"};
    vh_api_resp_init(&resp);
    vh_api_handle(f->api, &r, &resp);
    assert_int_equal(resp.status, 400);
    vh_api_resp_release(&resp);
}

/* ---- vh_api_handle_async ----------------------------------------------------------------- */

/* One request's put-off answer: how often `done` ran, and a semaphore to await it by. */
/* An ingest body whose session is about `kb` KB: turns of 60 000 bytes of content. */
static char *big_ingest_body(const char *pid, const char *session_id, size_t kb)
{
    char *seed = read_data_file("good/seed_session.json");
    json_t *s = json_loads(seed, 0, NULL), *root, *turns;
    char *content = malloc(60001), *out;
    size_t i;

    assert_non_null(s);
    assert_non_null(content);
    memset(content, 'x', 60000);
    content[60000] = '\0';
    json_object_set_new(s, "session_id", json_string(session_id));
    json_object_set_new(s, "call", json_null());
    turns = json_array();
    for (i = 0; i < kb / 60; i++)
        json_array_append_new(turns, json_pack("{s:s,s:s,s:s}", "role", "user", "content", content,
                                               "timestamp", "2026-03-15T14:30:04.500Z"));
    json_object_set_new(s, "transcript", turns);
    root = json_pack("{s:s,s:o}", "partner_id", pid, "session", s);
    out = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    free(content);
    free(seed);
    return out;
}

/*
 * A delivery retried without end keeps every attempt, and its answer must stay under the
 * 4 MiB bound: the newest 200 attempts are shown, the older ones counted. 800 attempts
 * with response heads that escape to 6 bytes a byte (about 6 KB each) passed the bound, and
 * the delivery answered 500 on every read.
 */
static void delivery_history_shows_the_newest_attempts(void **state)
{
    struct fx *f = *state;
    struct vh_error err = VH_ERROR_INIT;
    char head[VH_ATTEMPT_HEAD_MAX], path[128], delivery[VH_UUID_LEN + 1];
    char *body;
    json_t *hist;
    int i;

    create(f, "many", "https://example.com/hook", true, NULL);
    body = ingest_body(f->a.id, "sess-many", "call-many");
    assert_int_equal(req(f, "POST", "/internal/v1/sessions", TOKEN, body), 202);
    free(body);
    memset(head, 0x01, sizeof(head)); /* each byte escapes to \u0001 */
    for (i = 0; i < 800; i++) {
        struct vh_delivery_job_rec *recs = NULL;
        struct vh_delivery_result r;
        size_t n = 0;

        if (vh_store_delivery_claim(f->st, "n1", NOW + i, 60000, 1, &recs, &n, &err) < 0)
            fail_msg("claim: %s", err.msg);
        assert_int_equal(n, 1);
        memset(&r, 0, sizeof(r));
        r.delivery_id = recs[0].delivery_id;
        r.endpoint_id = recs[0].endpoint_id;
        r.row = recs[0].row;
        r.node_id = "n1";
        r.lease_until_ms = recs[0].lease_until_ms;
        r.attempt = recs[0].attempts + 1;
        r.started_ms = NOW + i;
        r.http_status = 500;
        r.error_class = "http_status";
        r.error = "status 500";
        r.response_head = head;
        r.response_len = sizeof(head);
        r.new_state = "pending";
        r.next_attempt_ms = NOW + i + 1;
        snprintf(delivery, sizeof(delivery), "%s", recs[0].delivery_id);
        if (vh_store_delivery_record(f->st, &r, 1, &err) < 0)
            fail_msg("record: %s", err.msg);
        vh_delivery_job_recs_free(recs, n);
    }
    snprintf(path, sizeof(path), "/api/v2/deliveries/%s", delivery);
    assert_int_equal(req(f, "GET", path, f->key_a, NULL), 200);
    hist = at(f->json, "data.attempt_history");
    assert_int_equal(json_array_size(hist), 200);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(hist, 0), "n")), 601);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(hist, 199), "n")), 800);
    assert_int_equal(json_integer_value(at(f->json, "data.attempts_omitted")), 600);
    assert_int_equal(json_integer_value(at(f->json, "data.attempts")), 800);
}

/* Lists the partner's calls with `limit` and `offset`; keeps the answer as req() does. */
static int list_calls(struct fx *f, const char *limit, const char *offset)
{
    struct vh_api_req r;
    struct vh_api_resp resp;
    char auth[AUTH_MAX];

    make_req(f, &r, auth, "GET", "/api/v2/calls", f->key_a, NULL);
    r.query[0] = (struct vh_api_kv){"limit", limit};
    r.query[1] = (struct vh_api_kv){"offset", offset};
    r.n_query = 2;
    vh_api_resp_init(&resp);
    vh_api_handle(f->api, &r, &resp);
    keep(f, &resp);
    vh_api_resp_release(&resp);
    return f->status;
}

/* A page stops short of the 4 MiB answer bound and says where the next one starts. */
static void calls_page_stops_at_the_answer_bound(void **state)
{
    struct fx *f = *state;
    json_t *calls;
    char *body;
    int i;

    for (i = 0; i < 6; i++) {
        char sid[32];

        snprintf(sid, sizeof(sid), "big-%d", i);
        body = big_ingest_body(f->a.id, sid, 900);
        assert_true(strlen(body) < VH_BODY_MAX);
        assert_true(strlen(body) > 800 * 1024);
        f->now = NOW + i;
        assert_int_equal(req(f, "POST", "/internal/v1/sessions", TOKEN, body), 202);
        free(body);
    }
    /* 6 × 0.9 MB: a page of 6 would be 5.5 MB; it holds 4 (3.7 MB). */
    assert_int_equal(list_calls(f, "6", "0"), 200);
    calls = at(f->json, "data.calls");
    assert_int_equal(json_array_size(calls), 4);
    assert_string_equal(str_at(json_array_get(calls, 0), "session.session_id"), "big-5");
    assert_string_equal(str_at(json_array_get(calls, 3), "session.session_id"), "big-2");
    assert_int_equal(json_integer_value(at(f->json, "data.total")), 6);
    assert_int_equal(json_integer_value(at(f->json, "data.limit")), 6);
    assert_int_equal(json_integer_value(at(f->json, "data.next_offset")), 4);
    /* the next page, from next_offset, ends the list */
    assert_int_equal(list_calls(f, "6", "4"), 200);
    calls = at(f->json, "data.calls");
    assert_int_equal(json_array_size(calls), 2);
    assert_string_equal(str_at(json_array_get(calls, 0), "session.session_id"), "big-1");
    assert_string_equal(str_at(json_array_get(calls, 1), "session.session_id"), "big-0");
    assert_true(json_is_null(at(f->json, "data.next_offset")));
    /* one at a time, each call fits */
    assert_int_equal(req(f, "GET", "/api/v2/calls/big-3", f->key_a, NULL), 200);
    assert_int_equal(json_array_size(at(f->json, "data.session.transcript")), 15);
}

/*
 * A session ingested with a recording_key is read back with its link presigned afresh; a
 * server restarted without S3 settings serves the link presigned at ingest instead of
 * failing the read.
 */
static void calls_with_a_key_and_no_s3_settings(void **state)
{
    struct fx *f = *state;
    struct vh_api *plain = f->api, *s3 = NULL;
    struct vh_api_config cfg = f->cfg;
    json_t *root;
    char *body, *at_ingest;

    cfg.s3_endpoint = "https://s3.eu-west-1.amazonaws.com";
    cfg.s3_region = "eu-west-1";
    cfg.s3_bucket = "recordings";
    cfg.s3_access_key = "AKIDEXAMPLE";
    cfg.s3_secret_key = "wJalrXUtnFEMIK7MDENGbPxRfiCY";
    assert_int_equal(vh_api_new(f->st, &cfg, &s3, NULL), 0);
    body = ingest_body(f->a.id, "sess-key", "call-key");
    root = json_loads(body, 0, NULL);
    free(body);
    json_object_del(json_object_get(root, "session"), "recording_url");
    json_object_set_new(json_object_get(root, "session"), "recording_key", json_string("r/1.wav"));
    body = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    f->api = s3;
    assert_int_equal(req(f, "POST", "/internal/v1/sessions", TOKEN, body), 202);
    free(body);
    assert_int_equal(req(f, "GET", "/api/v2/calls/call-key", f->key_a, NULL), 200);
    at_ingest = strdup(str_at(f->json, "data.session.recording_url"));
    assert_non_null(strstr(at_ingest, "X-Amz-Date=20260315T"));

    /* a minute later, presigned afresh */
    f->now = NOW + 60000;
    assert_int_equal(req(f, "GET", "/api/v2/calls/call-key", f->key_a, NULL), 200);
    assert_string_not_equal(str_at(f->json, "data.session.recording_url"), at_ingest);
    assert_non_null(strstr(str_at(f->json, "data.session.recording_url"),
                           "recordings.s3.eu-west-1.amazonaws.com/r/1.wav?"));

    /* without S3 settings: the link of the ingest, in the call and in the list */
    f->api = plain;
    assert_int_equal(req(f, "GET", "/api/v2/calls/call-key", f->key_a, NULL), 200);
    assert_string_equal(str_at(f->json, "data.session.recording_url"), at_ingest);
    assert_int_equal(req(f, "GET", "/api/v2/calls", f->key_a, NULL), 200);
    assert_string_equal(
        str_at(json_array_get(at(f->json, "data.calls"), 0), "session.recording_url"), at_ingest);
    free(at_ingest);
    vh_api_free(s3);
}

struct answer {
    sem_t sem;
    atomic_int calls;
};

static void answer_init(struct answer *a)
{
    assert_int_equal(sem_init(&a->sem, 0, 0), 0);
    atomic_init(&a->calls, 0);
}

/* The vh_api_done_fn of the tests: counts, then wakes the test waiting for it. */
static void on_answer(void *ud)
{
    struct answer *a = ud;

    atomic_fetch_add(&a->calls, 1);
    sem_post(&a->sem);
}

/*
 * Frees the API, then closes the store, which returns only once every posted commit's
 * completion has returned (its commit thread is joined): after this, no `done` can come.
 */
static void quiesce(struct fx *f)
{
    vh_api_free(f->api);
    f->api = NULL;
    vh_store_close(f->st);
    f->st = NULL;
}

/*
 * A `done` did not come in time, or may still come: the fixture, the API and the store are
 * left alive (and leaked), since closing the store would wait for that answer forever, and
 * its commit thread may still use them. The test then fails.
 */
static void abandon(struct fx *f)
{
    f->abandoned = true;
}

/*
 * Sends `r` through vh_api_handle_async, which must put it off, and waits (with a deadline)
 * for its `done`.
 */
static void send_async(struct fx *f, const struct vh_api_req *r, struct vh_api_resp *resp,
                       struct answer *a)
{
    int rc;

    vh_api_resp_init(resp);
    rc = vh_api_handle_async(f->api, r, resp, on_answer, a);
    if (rc != VH_API_LATER) {
        /* A `done` that comes anyway must not find the API freed, nor this frame gone. */
        bool also_done = posted_within(&a->sem, 1000);

        if (!also_done)
            abandon(f);
        fail_msg("%s %s: returned %d with %d %s, want VH_API_LATER%s", r->method, r->path, rc,
                 resp->status, vh_buf_cstr(&resp->body), also_done ? " (and done ran too)" : "");
    }
    if (!wait_sem(&a->sem)) {
        abandon(f);
        fail_msg("%s %s: put off, and done never ran", r->method, r->path);
    }
}

/* Asserts that vh_api_handle answers `r` byte for byte as `got` was answered. */
static void expect_same_as_sync(struct fx *f, const struct vh_api_req *r,
                                const struct vh_api_resp *got)
{
    struct vh_api_resp want;

    vh_api_resp_init(&want);
    vh_api_handle(f->api, r, &want);
    if (got->status != want.status || strcmp(vh_buf_cstr(&got->body), vh_buf_cstr(&want.body)))
        fail_msg("%s %s: async %d %s, sync %d %s", r->method, r->path, got->status,
                 vh_buf_cstr(&got->body), want.status, vh_buf_cstr(&want.body));
    assert_int_equal(got->body.len, want.body.len);
    assert_int_equal(got->retry_after_s, want.retry_after_s);
    assert_string_equal(got->content_type ? got->content_type : "-",
                        want.content_type ? want.content_type : "-");
    vh_api_resp_release(&want);
}

/*
 * Asserts that vh_api_handle_async answers `r` at once (returns 0, `a` untouched) with
 * `status`, exactly as vh_api_handle does; keeps the answer in the fixture.
 */
static void expect_at_once(struct fx *f, const struct vh_api_req *r, struct answer *a, int status)
{
    struct vh_api_resp resp;
    int rc;

    vh_api_resp_init(&resp);
    rc = vh_api_handle_async(f->api, r, &resp, on_answer, a);
    if (rc == VH_API_LATER) {
        /* Wait, so the failure below leaves nothing writing to `resp`. */
        if (!wait_sem(&a->sem))
            abandon(f);
        fail_msg("%s %s: put off, want an answer at once", r->method, r->path);
    }
    if (rc != 0)
        fail_msg("%s %s: returned %d, want 0", r->method, r->path, rc);
    if (resp.status != status)
        fail_msg("%s %s: status %d, want %d: %s", r->method, r->path, resp.status, status,
                 vh_buf_cstr(&resp.body));
    expect_same_as_sync(f, r, &resp);
    keep(f, &resp);
    vh_api_resp_release(&resp);
}

/* The answer vh_api_handle gives a new or repeated session, to compare bodies with. */
static void ingest_answer_text(char *out, size_t cap, const char *event_id, int deliveries,
                               bool duplicate)
{
    snprintf(out, cap,
             "{\"success\":true,\"data\":{\"event_id\":\"%s\",\"deliveries\":%d,"
             "\"duplicate\":%s}}",
             event_id, deliveries, duplicate ? "true" : "false");
}

/* A new session through vh_api_handle_async: put off, then 202 through `done`, once. */
static void async_ingest(void **state)
{
    struct fx *f = *state;
    struct vh_api_req r;
    struct vh_api_resp resp, sync_resp;
    struct answer a;
    struct vh_call_rec rec;
    char auth[AUTH_MAX], want[256], eid[VH_UUID_LEN + 1];
    char *body, *sync_body;
    int64_t n;

    create(f, "e1", "https://one.example/h", true, NULL);
    create(f, "e2", "https://two.example/h", true, NULL);
    create(f, "off", "https://three.example/h", false, NULL);
    answer_init(&a);
    body = ingest_body(f->a.id, "async-1", "call-async-1");
    make_req(f, &r, auth, "POST", "/internal/v1/sessions", TOKEN, body);
    send_async(f, &r, &resp, &a);
    assert_int_equal(atomic_load(&a.calls), 1);
    assert_int_equal(resp.status, 202);
    assert_int_equal(resp.retry_after_s, 0);
    assert_null(resp.content_type);
    keep(f, &resp);
    assert_non_null(str_at(f->json, "data.event_id"));
    snprintf(eid, sizeof(eid), "%s", str_at(f->json, "data.event_id"));
    assert_int_equal(strlen(eid), VH_UUID_LEN);
    ingest_answer_text(want, sizeof(want), eid, 2, false);
    assert_string_equal(vh_buf_cstr(&resp.body), want);

    /* durable by the time `done` ran, with a delivery per enabled endpoint; sender woken */
    assert_int_equal(vh_store_call_get(f->st, f->a.id, "async-1", &rec, NULL), 0);
    assert_string_equal(rec.event_id, eid);
    assert_string_equal(rec.call_id, "call-async-1");
    vh_call_rec_release(&rec);
    assert_int_equal(vh_store_count(f->st, "events", &n, NULL), 0);
    assert_int_equal(n, 1);
    assert_int_equal(vh_store_count(f->st, "deliveries", &n, NULL), 0);
    assert_int_equal(n, 2);
    assert_int_equal(atomic_load(&f->due), 1);

    /* vh_api_handle answers a new session in the very same form */
    sync_body = ingest_body(f->a.id, "sync-1", "call-sync-1");
    make_req(f, &r, auth, "POST", "/internal/v1/sessions", TOKEN, sync_body);
    vh_api_resp_init(&sync_resp);
    assert_int_equal(vh_api_handle(f->api, &r, &sync_resp), 0);
    assert_int_equal(sync_resp.status, 202);
    keep(f, &sync_resp);
    assert_non_null(str_at(f->json, "data.event_id"));
    assert_string_not_equal(str_at(f->json, "data.event_id"), eid);
    ingest_answer_text(want, sizeof(want), str_at(f->json, "data.event_id"), 2, false);
    assert_string_equal(vh_buf_cstr(&sync_resp.body), want);
    assert_int_equal(atomic_load(&f->due), 2);
    vh_api_resp_release(&sync_resp);

    quiesce(f);
    assert_int_equal(atomic_load(&a.calls), 1); /* and never again */
    vh_api_resp_release(&resp);
    sem_destroy(&a.sem);
    free(sync_body);
    free(body);
}

/* A partner without endpoints: 202 with no deliveries, and no wakeup of the sender. */
static void async_ingest_no_endpoint(void **state)
{
    struct fx *f = *state;
    struct vh_api_req r;
    struct vh_api_resp resp;
    struct answer a;
    struct vh_call_rec rec;
    char auth[AUTH_MAX], want[256];
    char *body;

    answer_init(&a);
    body = ingest_body(f->b.id, "lonely-1", NULL);
    make_req(f, &r, auth, "POST", "/internal/v1/sessions", TOKEN, body);
    send_async(f, &r, &resp, &a);
    assert_int_equal(resp.status, 202);
    keep(f, &resp);
    assert_non_null(str_at(f->json, "data.event_id"));
    ingest_answer_text(want, sizeof(want), str_at(f->json, "data.event_id"), 0, false);
    assert_string_equal(vh_buf_cstr(&resp.body), want);
    assert_int_equal(vh_store_call_get(f->st, f->b.id, "lonely-1", &rec, NULL), 0);
    assert_string_equal(rec.event_id, str_at(f->json, "data.event_id"));
    vh_call_rec_release(&rec);
    assert_int_equal(atomic_load(&f->due), 0);
    quiesce(f);
    assert_int_equal(atomic_load(&a.calls), 1);
    assert_int_equal(atomic_load(&f->due), 0);
    vh_api_resp_release(&resp);
    sem_destroy(&a.sem);
    free(body);
}

/* The same session again, through vh_api_handle_async: 200, the first event, no wakeup. */
static void async_ingest_repeat(void **state)
{
    struct fx *f = *state;
    struct vh_api_req r;
    struct vh_api_resp first, again;
    struct answer a1, a2;
    char auth[AUTH_MAX], want[256], eid[VH_UUID_LEN + 1];
    char *body;
    int64_t n;

    create(f, "e1", "https://one.example/h", true, NULL);
    answer_init(&a1);
    answer_init(&a2);
    body = ingest_body(f->a.id, "again-1", "call-again-1");
    make_req(f, &r, auth, "POST", "/internal/v1/sessions", TOKEN, body);
    send_async(f, &r, &first, &a1);
    assert_int_equal(first.status, 202);
    keep(f, &first);
    assert_non_null(str_at(f->json, "data.event_id"));
    snprintf(eid, sizeof(eid), "%s", str_at(f->json, "data.event_id"));
    assert_int_equal(atomic_load(&f->due), 1);

    f->now += 5000; /* a retry by the producer, later */
    make_req(f, &r, auth, "POST", "/internal/v1/sessions", TOKEN, body);
    send_async(f, &r, &again, &a2);
    assert_int_equal(again.status, 200);
    ingest_answer_text(want, sizeof(want), eid, 1, true);
    assert_string_equal(vh_buf_cstr(&again.body), want);
    expect_same_as_sync(f, &r, &again);
    assert_int_equal(atomic_load(&f->due), 1);
    assert_int_equal(vh_store_count(f->st, "events", &n, NULL), 0);
    assert_int_equal(n, 1);
    assert_int_equal(vh_store_count(f->st, "deliveries", &n, NULL), 0);
    assert_int_equal(n, 1);

    quiesce(f);
    assert_int_equal(atomic_load(&a1.calls), 1);
    assert_int_equal(atomic_load(&a2.calls), 1);
    vh_api_resp_release(&first);
    vh_api_resp_release(&again);
    sem_destroy(&a1.sem);
    sem_destroy(&a2.sem);
    free(body);
}

/* What needs no commit is answered at once, as vh_api_handle answers it; `done` never runs. */
static void async_answers_at_once(void **state)
{
    struct fx *f = *state;
    struct vh_api_req r;
    struct answer a;
    char auth[AUTH_MAX];
    char *body, *stranger;
    int64_t n;

    create(f, "e1", "https://one.example/h", true, NULL);
    answer_init(&a);
    body = ingest_body(f->a.id, "once-1", "call-once-1");

    /* the ingest token: missing, wrong, or an API key */
    make_req(f, &r, auth, "POST", "/internal/v1/sessions", NULL, body);
    expect_at_once(f, &r, &a, 401);
    expect_error(f, 401, "UNAUTHORIZED");
    make_req(f, &r, auth, "POST", "/internal/v1/sessions", "wrong-token-0123456789", body);
    expect_at_once(f, &r, &a, 401);
    expect_error(f, 401, "UNAUTHORIZED");
    assert_string_equal(str_at(f->json, "error.message"), "invalid ingest token");
    make_req(f, &r, auth, "POST", "/internal/v1/sessions", f->key_a, body);
    expect_at_once(f, &r, &a, 401);

    /* the Content-Type: wrong, or missing */
    make_req(f, &r, auth, "POST", "/internal/v1/sessions", TOKEN, body);
    r.content_type = "text/plain";
    expect_at_once(f, &r, &a, 400);
    expect_error(f, 400, "VALIDATION_ERROR");
    assert_string_equal(str_at(f->json, "error.message"), "Content-Type must be application/json");
    r.content_type = NULL;
    expect_at_once(f, &r, &a, 400);

    /* a body that is no JSON, and one whose session breaks a rule (the path is named) */
    make_req(f, &r, auth, "POST", "/internal/v1/sessions", TOKEN, "{\"partner_id\":");
    expect_at_once(f, &r, &a, 400);
    expect_error(f, 400, "VALIDATION_ERROR");
    make_req(f, &r, auth, "POST", "/internal/v1/sessions", TOKEN,
             "{\"partner_id\":\"p\",\"session\":{\"session_id\":\"s\"}}");
    expect_at_once(f, &r, &a, 400);
    expect_error(f, 400, "VALIDATION_ERROR");
    assert_memory_equal(str_at(f->json, "error.message"), "session", 7);
    assert_non_null(strstr(str_at(f->json, "error.message"), "agent_id"));

    /* an unknown partner */
    stranger = ingest_body("no-such-partner", "once-2", "call-once-2");
    make_req(f, &r, auth, "POST", "/internal/v1/sessions", TOKEN, stranger);
    expect_at_once(f, &r, &a, 404);
    expect_error(f, 404, "NOT_FOUND");
    assert_string_equal(str_at(f->json, "error.message"),
                        "partner_id: no partner 'no-such-partner'");

    /* a body over the server's bound */
    make_req(f, &r, auth, "POST", "/internal/v1/sessions", TOKEN, body);
    r.body_too_large = true;
    expect_at_once(f, &r, &a, 413);

    /* routes other than the ingest */
    make_req(f, &r, auth, "GET", "/healthz", NULL, NULL);
    expect_at_once(f, &r, &a, 200);
    assert_string_equal(str_at(f->json, "data.status"), "ok");
    make_req(f, &r, auth, "GET", "/api/v2/config", f->key_a, NULL);
    expect_at_once(f, &r, &a, 200);
    assert_string_equal(str_at(f->json, "data.name"), "Acme");
    make_req(f, &r, auth, "GET", "/internal/v1/sessions", TOKEN, NULL);
    expect_at_once(f, &r, &a, 405);

    assert_int_equal(vh_store_count(f->st, "events", &n, NULL), 0);
    assert_int_equal(n, 0);
    assert_int_equal(atomic_load(&f->due), 0);
    quiesce(f);
    assert_int_equal(atomic_load(&a.calls), 0);
    sem_destroy(&a.sem);
    free(stranger);
    free(body);
}

/* A session_id another partner owns: found in the commit, so the 409 comes through `done`. */
static void async_conflict(void **state)
{
    struct fx *f = *state;
    struct vh_api_req r;
    struct vh_api_resp resp;
    struct vh_call_rec rec;
    struct answer a;
    char auth[AUTH_MAX];
    char *mine, *theirs;
    int64_t n;

    answer_init(&a);
    mine = ingest_body(f->a.id, "shared-1", "call-shared-1");
    theirs = ingest_body(f->b.id, "shared-1", "call-shared-1");
    assert_int_equal(req(f, "POST", "/internal/v1/sessions", TOKEN, mine), 202);

    make_req(f, &r, auth, "POST", "/internal/v1/sessions", TOKEN, theirs);
    send_async(f, &r, &resp, &a);
    keep(f, &resp);
    expect_error(f, 409, "CONFLICT");
    assert_string_equal(str_at(f->json, "error.message"),
                        "session_id 'shared-1' belongs to another partner");
    expect_same_as_sync(f, &r, &resp);
    assert_int_equal(vh_store_call_get(f->st, f->b.id, "shared-1", &rec, NULL), VH_ENOTFOUND);
    assert_int_equal(vh_store_count(f->st, "events", &n, NULL), 0);
    assert_int_equal(n, 1);

    quiesce(f);
    assert_int_equal(atomic_load(&a.calls), 1);
    vh_api_resp_release(&resp);
    sem_destroy(&a.sem);
    free(theirs);
    free(mine);
}

/* Without a `done` the answer could never be sent: an error, answered 500, nothing stored. */
static void async_without_done(void **state)
{
    struct fx *f = *state;
    struct vh_api_req r;
    struct vh_api_resp resp;
    char auth[AUTH_MAX], url[128];
    char *body;
    int64_t n;
    int rc;

    body = ingest_body(f->a.id, "nodone-1", "call-nodone-1");
    make_req(f, &r, auth, "POST", "/internal/v1/sessions", TOKEN, body);
    vh_api_resp_init(&resp);
    rc = vh_api_handle_async(f->api, &r, &resp, NULL, NULL);
    assert_true(rc < 0);
    keep(f, &resp);
    expect_error(f, 500, "INTERNAL_ERROR");
    quiesce(f); /* a commit it might have queued anyway has run by now */
    snprintf(url, sizeof(url), "sqlite:%s/db", f->dir);
    assert_int_equal(vh_store_open(url, &f->st, NULL), 0);
    assert_int_equal(vh_store_count(f->st, "events", &n, NULL), 0);
    assert_int_equal(n, 0);
    vh_api_resp_release(&resp);
    free(body);
}

#define CONC_THREADS 8
#define CONC_EACH    25

/* One request of async_concurrent_ingests, with all it must keep alive until `done`. */
struct conc_req {
    struct vh_api_req r;
    struct vh_api_resp resp;
    struct answer a;
    char auth[AUTH_MAX];
    char sid[32];
    char *body;
    int rc;
    bool answered; /* `done` ran before the deadline */
};

struct conc_worker {
    struct vh_api *api;
    pthread_barrier_t *start;
    struct conc_req *reqs; /* CONC_EACH of them */
};

/* Sends all its requests before waiting for any (no cmocka asserts off the main thread). */
static void *conc_main(void *arg)
{
    struct conc_worker *w = arg;
    struct timespec dl;
    int i, rc;

    pthread_barrier_wait(w->start);
    for (i = 0; i < CONC_EACH; i++) {
        struct conc_req *q = &w->reqs[i];

        q->rc = vh_api_handle_async(w->api, &q->r, &q->resp, on_answer, &q->a);
    }
    dl = deadline_on(CLOCK_REALTIME, WAIT_S * 1000L); /* one deadline for them all */
    for (i = 0; i < CONC_EACH; i++) {
        struct conc_req *q = &w->reqs[i];

        if (q->rc != VH_API_LATER)
            continue;
        do
            rc = sem_timedwait(&q->a.sem, &dl);
        while (rc != 0 && errno == EINTR);
        q->answered = rc == 0;
    }
    return NULL;
}

/* Many threads ingesting at once, each with its own requests: every one answered once. */
static void async_concurrent_ingests(void **state)
{
    struct fx *f = *state;
    struct conc_worker w[CONC_THREADS];
    pthread_t th[CONC_THREADS];
    pthread_barrier_t start;
    struct conc_req *reqs;
    struct vh_call_rec rec;
    int64_t n;
    int i;

    create(f, "e1", "https://one.example/h", true, NULL);
    reqs = calloc(CONC_THREADS * CONC_EACH, sizeof(*reqs));
    assert_non_null(reqs);
    for (i = 0; i < CONC_THREADS * CONC_EACH; i++) {
        struct conc_req *q = &reqs[i];

        snprintf(q->sid, sizeof(q->sid), "conc-%d-%d", i / CONC_EACH, i % CONC_EACH);
        q->body = ingest_body(f->a.id, q->sid, NULL);
        make_req(f, &q->r, q->auth, "POST", "/internal/v1/sessions", TOKEN, q->body);
        vh_api_resp_init(&q->resp);
        answer_init(&q->a);
    }
    assert_int_equal(pthread_barrier_init(&start, NULL, CONC_THREADS), 0);
    for (i = 0; i < CONC_THREADS; i++) {
        w[i].api = f->api;
        w[i].start = &start;
        w[i].reqs = &reqs[i * CONC_EACH];
        assert_int_equal(pthread_create(&th[i], NULL, conc_main, &w[i]), 0);
    }
    for (i = 0; i < CONC_THREADS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    pthread_barrier_destroy(&start);

    /* Before any check fails: a `done` may still come (into `reqs`, which is left too). */
    for (i = 0; i < CONC_THREADS * CONC_EACH; i++)
        if (reqs[i].rc != VH_API_LATER || !reqs[i].answered)
            abandon(f);
    for (i = 0; i < CONC_THREADS * CONC_EACH; i++) {
        struct conc_req *q = &reqs[i];

        if (q->rc != VH_API_LATER || !q->answered)
            fail_msg("%s: returned %d, answered %d", q->sid, q->rc, q->answered);
        if (q->resp.status != 202)
            fail_msg("%s: %d %s", q->sid, q->resp.status, vh_buf_cstr(&q->resp.body));
        keep(f, &q->resp);
        assert_true(json_is_false(at(f->json, "data.duplicate")));
        assert_int_equal(json_integer_value(at(f->json, "data.deliveries")), 1);
        assert_int_equal(vh_store_call_get(f->st, f->a.id, q->sid, &rec, NULL), 0);
        assert_string_equal(rec.event_id, str_at(f->json, "data.event_id"));
        vh_call_rec_release(&rec);
    }
    assert_int_equal(vh_store_count(f->st, "events", &n, NULL), 0);
    assert_int_equal(n, CONC_THREADS * CONC_EACH);
    assert_int_equal(vh_store_count(f->st, "deliveries", &n, NULL), 0);
    assert_int_equal(n, CONC_THREADS * CONC_EACH);
    assert_int_equal(atomic_load(&f->due), CONC_THREADS * CONC_EACH);

    quiesce(f);
    for (i = 0; i < CONC_THREADS * CONC_EACH; i++) {
        struct conc_req *q = &reqs[i];

        assert_int_equal(atomic_load(&q->a.calls), 1);
        vh_api_resp_release(&q->resp);
        sem_destroy(&q->a.sem);
        free(q->body);
    }
    free(reqs);
}

#define OOM_RUNS 5000

/*
 * One async ingest on a fresh fixture with allocation `n` failing. Returns true when the
 * run needed fewer than `n` allocations (then it must have succeeded).
 */
static bool async_ingest_oom_once(long n)
{
    void *state = NULL;
    struct fx *f;
    struct vh_api_req r;
    struct vh_api_resp resp;
    struct vh_call_rec rec;
    struct vh_store *st;
    struct answer a;
    char auth[AUTH_MAX], sid[32], url[128];
    char *body;
    bool reached;
    int rc, got;

    setup_with(&state, false);
    f = state;
    create(f, "e1", "https://one.example/h", true, NULL);
    snprintf(sid, sizeof(sid), "oom-%ld", n);
    body = ingest_body(f->a.id, sid, "call-oom");
    make_req(f, &r, auth, "POST", "/internal/v1/sessions", TOKEN, body);
    answer_init(&a);
    vh_api_resp_init(&resp);
    alloc_count = 0;
    alloc_fail_at = n;
    rc = vh_api_handle_async(f->api, &r, &resp, on_answer, &a);
    if (rc == VH_API_LATER && !wait_sem(&a.sem))
        fail_msg("allocation %ld failing: put off, and done never ran", n); /* `f` is left */
    reached = alloc_count >= n;
    alloc_fail_at = 0;
    /*
     * The commit thread may still be returning from `done`, freeing its op: the plain counters
     * of unit/oom.h must not be changed by two threads at once, so this thread frees nothing
     * before the store is closed (which joins that thread). The API, whose release does not
     * touch the store, goes after it.
     */
    vh_store_close(f->st);
    f->st = NULL;
    vh_api_free(f->api);
    f->api = NULL;
    assert_int_equal(atomic_load(&a.calls), rc == VH_API_LATER ? 1 : 0);
    if (!reached && (rc != VH_API_LATER || resp.status != 202))
        fail_msg("no allocation failed, yet: %d %d %s", rc, resp.status, vh_buf_cstr(&resp.body));
    if (resp.status != 202 && resp.status != 500 && resp.status != 503)
        fail_msg("allocation %ld failing: %d %s", n, resp.status, vh_buf_cstr(&resp.body));
    if (rc != VH_API_LATER && resp.status != 202)
        assert_true(rc < 0);
    if (resp.body.len > 0 && resp.status != 202)
        assert_non_null(strstr(resp.body.data, "\"success\":false"));
    /*
     * A 202 is durable, and a 503 says nothing was saved. A 500 may come after the commit
     * (building the answer failed), as from vh_api_handle; a retry then finds the session.
     */
    snprintf(url, sizeof(url), "sqlite:%s/db", f->dir);
    assert_int_equal(vh_store_open(url, &st, NULL), 0);
    got = vh_store_call_get(st, f->a.id, sid, &rec, NULL);
    if (got == 0)
        vh_call_rec_release(&rec);
    vh_store_close(st);
    assert_true(got == 0 || got == VH_ENOTFOUND);
    if (resp.status == 202)
        assert_int_equal(got, 0);
    if (resp.status == 503)
        assert_int_equal(got, VH_ENOTFOUND);
    vh_api_resp_release(&resp);
    sem_destroy(&a.sem);
    free(body);
    teardown(&state);
    return !reached;
}

/*
 * Allocation 1, 2, ... N failing in one async ingest (STYLE.md §10): each request answered
 * exactly once, at once or through `done`, with success or a 500/503, and no memory held
 * afterwards. The counting allocator of unit/oom.h is installed for this test alone, not at
 * start-up: its counters are plain, and the other tests allocate on several threads at once.
 * No other thread runs when it is swapped, and both allocators are malloc's, so memory may
 * cross them.
 */
static void async_ingest_under_oom(void **state)
{
    long n, base;

    (void)state;
    assert_int_equal(vh_replace_allocator(t_malloc, t_realloc, t_free), 0);
    base = live_blocks;
    for (n = 1; n < OOM_RUNS; n++) {
        bool done = async_ingest_oom_once(n);

        assert_int_equal(live_blocks, base);
        if (done) {
            assert_true(n > 1);
            assert_int_equal(vh_replace_allocator(malloc, realloc, free), 0);
            return;
        }
    }
    fail_msg("the async ingest never succeeded");
}

/*
 * A rotate-secret that lands while a PATCH of the same endpoint is between its read and its
 * write. The hook below runs it from inside the PATCH, at its Nth allocation (every N is
 * tried): the secret the rotate answered must be the one stored afterwards, whatever the
 * PATCH changed. Before the fix the PATCH wrote back the whole row it had read, old secret
 * included: the rotate answered 200 with a secret that was never in effect, and the old
 * (perhaps leaked) secret stayed in use.
 */
static struct fx *race_fx;
static long race_at, race_count;
static char race_path[128], race_secret[VH_SECRET_LEN + 1];
static pthread_t race_thread;
static bool race_started;
static atomic_bool race_done;

static void *race_rotate(void *ud)
{
    struct fx *f = ud;
    struct vh_api_req r;
    struct vh_api_resp resp;
    char auth[AUTH_MAX];
    json_error_t jerr;
    json_t *j;

    make_req(f, &r, auth, "POST", race_path, f->key_a, NULL);
    vh_api_resp_init(&resp);
    vh_api_handle(f->api, &r, &resp);
    assert_int_equal(resp.status, 200);
    j = json_loadb(resp.body.data, resp.body.len, 0, &jerr);
    assert_non_null(j);
    snprintf(race_secret, sizeof(race_secret), "%s", str_at(j, "data.secret"));
    json_decref(j);
    vh_api_resp_release(&resp);
    atomic_store(&race_done, true);
    return NULL;
}

/* Starts the rotate on its own thread and gives it 300 ms to finish (it may have to wait). */
static void race_fire(void)
{
    int i;

    race_at = 0; /* once; the rotate's own allocations do not fire again */
    atomic_store(&race_done, false);
    assert_int_equal(pthread_create(&race_thread, NULL, race_rotate, race_fx), 0);
    race_started = true;
    for (i = 0; i < 300 && !atomic_load(&race_done); i++)
        nanosleep(&(struct timespec){0, 1000000}, NULL);
}

static void *race_malloc(size_t n)
{
    if (race_at && ++race_count == race_at)
        race_fire();
    return malloc(n);
}

static void *race_realloc(void *p, size_t n)
{
    if (race_at && ++race_count == race_at)
        race_fire();
    return realloc(p, n);
}

static void patch_racing_a_rotation_keeps_the_new_secret(void **state)
{
    struct fx *f = *state;
    char id[VH_UUID_LEN + 1], path[128];
    struct vh_endpoint ep;
    long n;
    int lost = 0;

    create(f, "racy", "https://example.com/hooks", true, id);
    snprintf(path, sizeof(path), "/api/v2/config/webhooks/%s", id);
    snprintf(race_path, sizeof(race_path), "/api/v2/config/webhooks/%s/rotate-secret", id);
    race_fx = f;
    assert_int_equal(vh_replace_allocator(race_malloc, race_realloc, free), 0);
    for (n = 1; n < 200; n++) {
        race_secret[0] = '\0';
        race_started = false;
        race_count = 0;
        race_at = n;
        req(f, "PATCH", path, f->key_a, "{\"url\":\"https://example.com/other\"}");
        race_at = 0;
        assert_int_equal(f->status, 200);
        if (race_started)
            assert_int_equal(pthread_join(race_thread, NULL), 0);
        if (!race_started)
            break; /* the PATCH made fewer than n allocations: every point was tried */
        assert_int_equal(vh_store_endpoint_get(f->st, f->a.id, id, &ep, NULL), 0);
        if (strcmp(ep.secret, race_secret) != 0)
            lost++;
    }
    assert_int_equal(vh_replace_allocator(malloc, realloc, free), 0);
    if (lost)
        fail_msg("%d of %ld interleavings: rotate-secret answered a secret the PATCH then "
                 "overwrote with the old one",
                 lost, n - 1);
}

/*
 * In the store's own SQLite file, puts a view named `endpoints` in front of the table (on)
 * that reads every endpoint with a new random secret each time, or takes it away (off).
 * To the store, every read-modify-write of an endpoint then finds the row changed between
 * its read and its write, as after a rotation by another request, however often it reads
 * again: two reads agree only if two 32-byte random blobs do. No thread, no timing; the
 * store's statements are prepared again for the new schema by SQLite itself.
 */
static void churn_endpoints(struct fx *f, bool on)
{
    static const char on_sql[] =
        "ALTER TABLE endpoints RENAME TO endpoints_stored;"
        "CREATE VIEW endpoints AS SELECT id, partner_id, label, url,"
        " 'whsec_' || lower(hex(randomblob(32))) AS secret, enabled, created_ms, updated_ms,"
        " last_delivery_ms, last_delivery_status, deleted_ms, retry_schedule, timeout_ms"
        " FROM endpoints_stored;";
    static const char off_sql[] =
        "DROP VIEW endpoints; ALTER TABLE endpoints_stored RENAME TO endpoints;";
    char path[128];
    char *msg = NULL;
    sqlite3 *db = NULL;

    snprintf(path, sizeof(path), "%s/db", f->dir);
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_busy_timeout(db, 10000), SQLITE_OK);
    if (sqlite3_exec(db, on ? on_sql : off_sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", on ? "on" : "off", msg);
    sqlite3_close(db);
}

/*
 * The 409 of a read-modify-write that loses every one of its tries (ENDPOINT_WRITE_TRIES)
 * to changes made between its read and its write, for the three routes that do one: PATCH,
 * rotate-secret and the legacy PUT. Nothing is written and no change is reported; once the
 * row holds still, the same requests go through.
 */
static void endpoint_changing_on_every_try_is_409(void **state)
{
    struct fx *f = *state;
    char id[VH_UUID_LEN + 1], legacy[VH_UUID_LEN + 1], path[128], rotate[160];
    struct vh_endpoint before, legacy_before, ep;
    char msg[128];

    create(f, "busy", "https://busy.example/h", true, id);
    assert_int_equal(req(f, "PUT", "/api/v2/config/webhook", f->key_a,
                         "{\"webhook_url\":\"https://legacy.example/wh\"}"),
                     200);
    assert_int_equal(
        vh_store_endpoint_get_by_label(f->st, f->a.id, "default", &legacy_before, NULL), 0);
    snprintf(legacy, sizeof(legacy), "%s", legacy_before.id);
    assert_int_equal(vh_store_endpoint_get(f->st, f->a.id, id, &before, NULL), 0);
    snprintf(path, sizeof(path), "/api/v2/config/webhooks/%s", id);
    snprintf(rotate, sizeof(rotate), "%s/rotate-secret", path);
    f->changed = 0;

    churn_endpoints(f, true);
    req(f, "PATCH", path, f->key_a, "{\"url\":\"https://moved.example/h\"}");
    expect_error(f, 409, "CONFLICT");
    snprintf(msg, sizeof(msg), "%s", str_at(f->json, "error.message"));
    if (!strstr(msg, "being changed by other requests"))
        fail_msg("PATCH: %s", msg);
    req(f, "POST", rotate, f->key_a, NULL);
    expect_error(f, 409, "CONFLICT");
    assert_string_equal(str_at(f->json, "error.message"), msg);
    req(f, "PUT", "/api/v2/config/webhook", f->key_a,
        "{\"webhook_url\":\"https://legacy.example/other\"}");
    expect_error(f, 409, "CONFLICT");
    assert_string_equal(str_at(f->json, "error.message"), msg);
    assert_int_equal(f->changed, 0);
    churn_endpoints(f, false);

    /* Nothing was written: url, secret and updated_ms as they were. */
    assert_int_equal(vh_store_endpoint_get(f->st, f->a.id, id, &ep, NULL), 0);
    assert_string_equal(ep.url, before.url);
    assert_string_equal(ep.secret, before.secret);
    assert_int_equal(ep.updated_ms, before.updated_ms);
    assert_int_equal(vh_store_endpoint_get(f->st, f->a.id, legacy, &ep, NULL), 0);
    assert_string_equal(ep.url, legacy_before.url);
    assert_string_equal(ep.secret, legacy_before.secret);

    /* The row holds still again: the same requests go through on their first try. */
    assert_int_equal(req(f, "PATCH", path, f->key_a, "{\"url\":\"https://moved.example/h\"}"), 200);
    assert_int_equal(req(f, "POST", rotate, f->key_a, NULL), 200);
    assert_int_equal(req(f, "PUT", "/api/v2/config/webhook", f->key_a,
                         "{\"webhook_url\":\"https://legacy.example/other\"}"),
                     200);
    assert_int_equal(f->changed, 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(healthz, setup, teardown),
        cmocka_unit_test_setup_teardown(endpoint_lifecycle, setup, teardown),
        cmocka_unit_test_setup_teardown(endpoint_changes_are_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(endpoint_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(errors_that_quote_bytes_not_utf8, setup, teardown),
        cmocka_unit_test_setup_teardown(patch_racing_a_rotation_keeps_the_new_secret, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(endpoint_changing_on_every_try_is_409, setup, teardown),
        cmocka_unit_test_setup_teardown(http_urls_when_allowed, setup_http, teardown),
        cmocka_unit_test_setup_teardown(auth_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(content_type_and_size, setup, teardown),
        cmocka_unit_test_setup_teardown(rate_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(legacy_put_and_config, setup, teardown),
        cmocka_unit_test_setup_teardown(ingest_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(calls_read_back, setup, teardown),
        cmocka_unit_test_setup_teardown(calls_paging, setup, teardown),
        cmocka_unit_test_setup_teardown(calls_page_stops_at_the_answer_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(calls_with_a_key_and_no_s3_settings, setup, teardown),
        cmocka_unit_test_setup_teardown(delivery_history_shows_the_newest_attempts, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(async_ingest, setup, teardown),
        cmocka_unit_test_setup_teardown(async_ingest_no_endpoint, setup, teardown),
        cmocka_unit_test_setup_teardown(async_ingest_repeat, setup, teardown),
        cmocka_unit_test_setup_teardown(async_answers_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(async_conflict, setup, teardown),
        cmocka_unit_test_setup_teardown(async_without_done, setup, teardown),
        cmocka_unit_test_setup_teardown(async_concurrent_ingests, setup, teardown),
        cmocka_unit_test(async_ingest_under_oom),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
