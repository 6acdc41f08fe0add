/*
 * The receiver's transfers over libcurl: recording downloads and --forward POSTs. The only
 * file of src/receive/ that includes <curl/curl.h>.
 *
 * Each attempt is one blocking easy transfer on a worker thread (the receiver has few,
 * long transfers: a multi handle would buy nothing). A transfer is cut short when the
 * receiver stops (the progress callback watches the stop flag) or when its timeout passes,
 * and a stalled one (under 1 byte/s for LOW_SPEED_TIME_S) ends too.
 *
 * Downloads: only the body of a 200 is written, so an S3 error document never lands in a
 * recording. The SSRF guard runs when each connection opens (after DNS, on redirects too),
 * with the sender's address rules (vh__addr_is_blocked).
 */
#include "receive/receive_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <curl/curl.h>

#include <vocohook/alloc.h>

#include "deliver/deliver_int.h"
#include "core/banned.h"

#define USER_AGENT        "vocohook-receive/" VH_VERSION_STRING
#define CONNECT_TIMEOUT_S 30L
#define LOW_SPEED_TIME_S  60L
#define MAX_REDIRS        5L
#define CA_CACHE_S        86400L

/* One transfer's state, shared with the callbacks. */
struct xfer {
    const struct vh__fetch_opts *o;
    CURL *easy;
    int fd;           /* downloads: where a 200 body goes; -1 for posts */
    uint64_t written; /* body bytes written to fd */
    bool too_large;   /* the body passed max_bytes */
    bool io_failed;   /* writing to fd failed */
    int io_errno;
    bool blocked; /* the SSRF guard refused an address */
    char blocked_addr[INET6_ADDRSTRLEN];
    char errbuf[CURL_ERROR_SIZE];
};

static char *curl_strdup(const char *s)
{
    return vh_strndup(s, strlen(s));
}

static void *curl_calloc(size_t n, size_t size)
{
    void *p;

    if (size && n > SIZE_MAX / size)
        return NULL;
    p = vh_malloc(n * size);
    if (p)
        memset(p, 0, n * size);
    return p;
}

int vh__fetch_global_init(struct vh_error *err)
{
    /* Reference-counted by libcurl: the first init picks the allocator, later ones count. */
    if (curl_global_init_mem(CURL_GLOBAL_DEFAULT, vh_malloc, vh_free, vh_realloc, curl_strdup,
                             curl_calloc) != CURLE_OK)
        return vh_error_set(err, VH_ENOMEM, "receiver: libcurl could not initialize");
    return 0;
}

void vh__fetch_global_release(void)
{
    curl_global_cleanup();
}

/* Writes all of `p` to `fd`. Returns 0 or an errno value. */
static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);

        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return errno;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static size_t on_download_body(char *p, size_t size, size_t n, void *ud)
{
    struct xfer *x = ud;
    size_t len = size * n;
    long status = 0;
    int e;

    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200)
        return len; /* an error document or a redirect's body: read and dropped */
    if (len > x->o->max_bytes || x->written > x->o->max_bytes - len) {
        x->too_large = true;
        return 0; /* a short count aborts the transfer */
    }
    e = write_all(x->fd, p, len);
    if (e) {
        x->io_failed = true;
        x->io_errno = e;
        return 0;
    }
    x->written += len;
    return len;
}

static size_t on_discard(char *p, size_t size, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return size * n;
}

static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    const struct xfer *x = ud;

    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    (void)ulnow;
    return x->o->stop && atomic_load(x->o->stop) ? 1 : 0;
}

/* The SSRF guard, at connect time (see the top of the file and deliver/engine.c). */
static curl_socket_t on_open_socket(void *ud, curlsocktype purpose, struct curl_sockaddr *sa)
{
    struct xfer *x = ud;
    int type = sa->socktype;

    if (purpose != CURLSOCKTYPE_IPCXN)
        return CURL_SOCKET_BAD;
    if (x->fd >= 0 && !x->o->allow_private && vh__addr_is_blocked(&sa->addr, sa->addrlen)) {
        const void *bytes = NULL;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;

        if (sa->family == AF_INET && sa->addrlen >= sizeof(in4)) {
            memcpy(&in4, &sa->addr, sizeof(in4));
            bytes = &in4.sin_addr;
        } else if (sa->family == AF_INET6 && sa->addrlen >= sizeof(in6)) {
            memcpy(&in6, &sa->addr, sizeof(in6));
            bytes = &in6.sin6_addr;
        }
        if (!bytes || !inet_ntop(sa->family, bytes, x->blocked_addr, sizeof(x->blocked_addr)))
            snprintf(x->blocked_addr, sizeof(x->blocked_addr), "(family %d)", sa->family);
        x->blocked = true;
        return CURL_SOCKET_BAD;
    }
#ifdef SOCK_CLOEXEC
    type |= SOCK_CLOEXEC; /* --exec children must not inherit our sockets */
#endif
    return socket(sa->family, type, sa->protocol);
}

#define SETOPT(opt, val)                                                                           \
    do {                                                                                           \
        if (rc == CURLE_OK)                                                                        \
            rc = curl_easy_setopt(x->easy, opt, val);                                              \
    } while (0)

static CURLcode common_options(struct xfer *x, const char *url, bool allow_http)
{
    const char *protocols = allow_http ? "http,https" : "https";
    CURLcode rc = CURLE_OK;

    SETOPT(CURLOPT_URL, url);
    SETOPT(CURLOPT_PROTOCOLS_STR, protocols);
    SETOPT(CURLOPT_REDIR_PROTOCOLS_STR, protocols);
    SETOPT(CURLOPT_PROXY, "");
    SETOPT(CURLOPT_NOSIGNAL, 1L);
    SETOPT(CURLOPT_USERAGENT, USER_AGENT);
    SETOPT(CURLOPT_TIMEOUT_MS, (long)x->o->timeout_ms);
    SETOPT(CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_S);
    SETOPT(CURLOPT_LOW_SPEED_LIMIT, 1L);
    SETOPT(CURLOPT_LOW_SPEED_TIME, LOW_SPEED_TIME_S);
    SETOPT(CURLOPT_ERRORBUFFER, x->errbuf);
    SETOPT(CURLOPT_NOPROGRESS, 0L);
    SETOPT(CURLOPT_XFERINFOFUNCTION, on_progress);
    SETOPT(CURLOPT_XFERINFODATA, x);
    SETOPT(CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
    SETOPT(CURLOPT_OPENSOCKETDATA, x);
    SETOPT(CURLOPT_CAPATH, NULL);
    if (x->o->ca_file)
        SETOPT(CURLOPT_CAINFO, x->o->ca_file);
    if (rc == CURLE_OK)
        (void)curl_easy_setopt(x->easy, CURLOPT_CA_CACHE_TIMEOUT, CA_CACHE_S);
    return rc;
}

static void report(struct vh__report *rep, enum vh__outcome outcome, const char *fmt, ...)
    VH_PRINTF(3, 4);

static void report(struct vh__report *rep, enum vh__outcome outcome, const char *fmt, ...)
{
    va_list ap;

    rep->outcome = outcome;
    va_start(ap, fmt);
    vsnprintf(rep->error, sizeof(rep->error), fmt, ap);
    va_end(ap);
}

/* What a curl failure (not an HTTP status) means for another attempt. */
static void classify_failure(const struct xfer *x, CURLcode rc, struct vh__report *rep)
{
    const char *text = x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc);

    if (x->o->stop && atomic_load(x->o->stop))
        report(rep, VH__OUTCOME_INTERRUPTED, "interrupted by shutdown");
    else if (x->too_large || rc == CURLE_FILESIZE_EXCEEDED)
        report(rep, VH__OUTCOME_FINAL, "recording is larger than %llu bytes",
               (unsigned long long)x->o->max_bytes);
    else if (x->blocked && rc == CURLE_COULDNT_CONNECT)
        report(rep, VH__OUTCOME_FINAL,
               "destination %s is not a public address (allow_private_networks is off)",
               x->blocked_addr);
    else if (x->io_failed)
        report(rep, VH__OUTCOME_RETRY, "writing the recording: %s", strerror(x->io_errno));
    else if (rc == CURLE_UNSUPPORTED_PROTOCOL || rc == CURLE_URL_MALFORMAT ||
             rc == CURLE_TOO_MANY_REDIRECTS)
        report(rep, VH__OUTCOME_FINAL, "%s%s", text,
               rc == CURLE_UNSUPPORTED_PROTOCOL && !x->o->allow_http ? " (only https:// URLs)"
                                                                     : "");
    else if (rc == CURLE_OUT_OF_MEMORY)
        report(rep, VH__OUTCOME_RETRY, "out of memory");
    else
        report(rep, VH__OUTCOME_RETRY, "%s", text);
}

/* What a complete download answer with status `status` means. */
static void classify_download_status(long status, struct vh__report *rep)
{
    if (status == 200) {
        rep->outcome = VH__OUTCOME_OK;
        return;
    }
    if (status == 403 || status == 404 || status == 408 || status == 425 || status == 429 ||
        status >= 500 || (status >= 200 && status <= 299))
        report(rep, VH__OUTCOME_RETRY, "HTTP %ld", status);
    else
        report(rep, VH__OUTCOME_FINAL, "HTTP %ld", status);
}

void vh__fetch_download(const struct vh__fetch_opts *o, const char *url, int fd,
                        struct vh__report *rep)
{
    struct xfer *x;
    CURLcode rc = CURLE_OK;
    long status = 0;

    memset(rep, 0, sizeof(*rep));
    x = vh_malloc(sizeof(*x));
    if (!x) {
        report(rep, VH__OUTCOME_RETRY, "out of memory");
        return;
    }
    memset(x, 0, sizeof(*x));
    x->o = o;
    x->fd = fd;
    x->easy = curl_easy_init();
    if (!x->easy) {
        report(rep, VH__OUTCOME_RETRY, "out of memory");
        vh_free(x);
        return;
    }
    rc = common_options(x, url, o->allow_http);
    SETOPT(CURLOPT_FOLLOWLOCATION, 1L);
    SETOPT(CURLOPT_MAXREDIRS, MAX_REDIRS);
    SETOPT(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)o->max_bytes);
    SETOPT(CURLOPT_WRITEFUNCTION, on_download_body);
    SETOPT(CURLOPT_WRITEDATA, x);
    if (rc == CURLE_OK)
        rc = curl_easy_perform(x->easy);
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    rep->status = status > 0 && status <= 999 ? (int)status : 0;
    rep->bytes = x->written;
    if (rc != CURLE_OK)
        classify_failure(x, rc, rep);
    else
        classify_download_status(status, rep);
    curl_easy_cleanup(x->easy);
    vh_free(x);
}

void vh__fetch_post(const struct vh__fetch_opts *o, const char *url, const char *const *headers,
                    const void *body, size_t body_len, struct vh__report *rep)
{
    struct curl_slist *h = NULL, *n;
    struct xfer *x;
    CURLcode rc = CURLE_OK;
    long status = 0;
    size_t i;

    memset(rep, 0, sizeof(*rep));
    x = vh_malloc(sizeof(*x));
    if (!x) {
        report(rep, VH__OUTCOME_RETRY, "out of memory");
        return;
    }
    memset(x, 0, sizeof(*x));
    x->o = o;
    x->fd = -1;
    x->easy = curl_easy_init();
    for (i = 0; headers && headers[i] && rc == CURLE_OK; i++) {
        n = curl_slist_append(h, headers[i]);
        if (!n)
            rc = CURLE_OUT_OF_MEMORY;
        else
            h = n;
    }
    if (!x->easy)
        rc = CURLE_OUT_OF_MEMORY;
    if (rc == CURLE_OK)
        rc = common_options(x, url, true);
    SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
    SETOPT(CURLOPT_HTTPHEADER, h);
    SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    SETOPT(CURLOPT_POSTFIELDS, body_len ? body : "");
    SETOPT(CURLOPT_WRITEFUNCTION, on_discard);
    SETOPT(CURLOPT_WRITEDATA, x);
    if (rc == CURLE_OK)
        rc = curl_easy_perform(x->easy);
    if (x->easy)
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    rep->status = status > 0 && status <= 999 ? (int)status : 0;
    if (rc != CURLE_OK)
        classify_failure(x, rc, rep);
    else if (status >= 200 && status <= 299)
        rep->outcome = VH__OUTCOME_OK;
    else
        report(rep, VH__OUTCOME_RETRY, "HTTP %ld", status);
    curl_easy_cleanup(x->easy);
    curl_slist_free_all(h);
    vh_free(x);
}
