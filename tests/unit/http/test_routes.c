/*
 * The API routes over a real SQLite store in a temp dir: every rule of SPEC §4 and §5
 * broken once, with the status, the error code and the envelope checked.
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
#include <jansson.h>

#include <vocohook/vocohook.h>

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
};

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

    json_decref(f->json);
    vh_api_free(f->api);
    vh_store_close(f->st);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* Sends one request; keeps status, Retry-After and the parsed body in the fixture. */
static int req(struct fx *f, const char *method, const char *path, const char *key,
               const char *body)
{
    struct vh_api_req r;
    struct vh_api_resp resp;
    char auth[160];
    json_error_t jerr;

    memset(&r, 0, sizeof(r));
    r.method = method;
    r.path = path;
    if (key) {
        snprintf(auth, sizeof(auth), "Bearer %s", key);
        r.authorization = auth;
    }
    r.content_type = body ? "application/json" : NULL;
    r.body = body;
    r.body_len = body ? strlen(body) : 0;
    r.request_id = "test";
    r.now_ms = f->now;
    vh_api_resp_init(&resp);
    vh_api_handle(f->api, &r, &resp);
    f->status = resp.status;
    f->retry_after = resp.retry_after_s;
    json_decref(f->json);
    f->json = json_loadb(resp.body.data, resp.body.len, 0, &jerr);
    if (!f->json)
        fail_msg("response is not JSON: %s", vh_buf_cstr(&resp.body));
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
    assert_non_null(strstr(resp.body.data, "\"total\":3,\"limit\":2,\"offset\":2}"));
    assert_non_null(strstr(resp.body.data, "\"session_id\":\"p-0\""));
    assert_null(strstr(resp.body.data, "\"session_id\":\"p-1\""));
    vh_api_resp_release(&resp);

    r.query[0] = (struct vh_api_kv){"limit", "101"};
    r.n_query = 1;
    vh_api_resp_init(&resp);
    vh_api_handle(f->api, &r, &resp);
    assert_int_equal(resp.status, 400);
    vh_api_resp_release(&resp);

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(healthz, setup, teardown),
        cmocka_unit_test_setup_teardown(endpoint_lifecycle, setup, teardown),
        cmocka_unit_test_setup_teardown(endpoint_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(http_urls_when_allowed, setup_http, teardown),
        cmocka_unit_test_setup_teardown(auth_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(content_type_and_size, setup, teardown),
        cmocka_unit_test_setup_teardown(rate_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(legacy_put_and_config, setup, teardown),
        cmocka_unit_test_setup_teardown(ingest_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(calls_read_back, setup, teardown),
        cmocka_unit_test_setup_teardown(calls_paging, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
