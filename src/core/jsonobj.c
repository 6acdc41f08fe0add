/*
 * NEEDSWORK: merge into json.c (the one file that includes jansson) once the session
 * parser there has landed; kept apart only while both were being written at once.
 */
#include <vocohook/json.h>

#include <string.h>

#include <jansson.h>

#include <vocohook/alloc.h>

#include "core/banned.h"

void vh_json_fields_release(struct vh_jfield *fields, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        vh_free(fields[i].str);
        fields[i].str = NULL;
        fields[i].str_len = 0;
        fields[i].present = false;
        fields[i].is_null = false;
        fields[i].b = false;
        fields[i].i = 0;
    }
}

static const char *type_name(enum vh_jtype t)
{
    switch (t) {
    case VH_JSTRING:
        return "a string";
    case VH_JBOOL:
        return "a boolean";
    case VH_JINT:
        return "an integer";
    }
    return "a value";
}

static int fill_field(struct vh_jfield *f, json_t *v, struct vh_error *err)
{
    f->present = true;
    if (json_is_null(v)) {
        if (!f->nullable)
            return vh_error_set(err, VH_EINVAL, "%s: must be %s, not null", f->name,
                                type_name(f->type));
        f->is_null = true;
        return 0;
    }
    switch (f->type) {
    case VH_JSTRING: {
        const char *s = json_string_value(v);
        size_t len = json_string_length(v);

        if (!json_is_string(v))
            break;
        if (len > f->max_len)
            return vh_error_set(err, VH_ETOOBIG, "%s: longer than %zu bytes", f->name, f->max_len);
        if (memchr(s, '\0', len))
            return vh_error_set(err, VH_EINVAL, "%s: must not contain NUL", f->name);
        f->str = vh_strndup(s, len);
        if (!f->str)
            return vh_error_set(err, VH_ENOMEM, "%s: out of memory", f->name);
        f->str_len = len;
        return 0;
    }
    case VH_JBOOL:
        if (!json_is_boolean(v))
            break;
        f->b = json_is_true(v);
        return 0;
    case VH_JINT:
        if (!json_is_integer(v))
            break;
        f->i = (int64_t)json_integer_value(v);
        return 0;
    }
    return vh_error_set(err, VH_EINVAL, "%s: must be %s", f->name, type_name(f->type));
}

int vh_json_parse_fields(const char *json, size_t len, struct vh_jfield *fields, size_t n,
                         struct vh_error *err)
{
    json_error_t jerr;
    json_t *root = NULL, *v;
    const char *key;
    size_t i;
    int rc = 0;

    vh_json_fields_release(fields, n);
    root = json_loadb(json ? json : "", len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return vh_error_set(err, VH_EINVAL, "json: %s at byte %d", jerr.text, jerr.position);
    if (!json_is_object(root)) {
        rc = vh_error_set(err, VH_EINVAL, "body: must be a JSON object");
        goto out;
    }
    json_object_foreach(root, key, v)
    {
        for (i = 0; i < n; i++)
            if (strcmp(fields[i].name, key) == 0)
                break;
        if (i == n) {
            rc = vh_error_set(err, VH_EINVAL, "body: unknown key \"%.64s\"", key);
            goto out;
        }
        rc = fill_field(&fields[i], v, err);
        if (rc < 0)
            goto out;
    }
    for (i = 0; i < n; i++)
        if (fields[i].required && !fields[i].present) {
            rc = vh_error_set(err, VH_EINVAL, "%s: missing", fields[i].name);
            goto out;
        }
out:
    json_decref(root);
    if (rc < 0)
        vh_json_fields_release(fields, n);
    return rc;
}

int vh_json_add_string(struct vh_buf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t start = b->len, i, run = 0;
    int rc;

    rc = vh_buf_addc(b, '"');
    for (i = 0; rc == 0 && i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[6];
        size_t esc_len = 2;

        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        rc = vh_buf_add(b, s + run, i - run);
        run = i + 1;
        esc[0] = '\\';
        switch (c) {
        case '"':
            esc[1] = '"';
            break;
        case '\\':
            esc[1] = '\\';
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 0xf];
            esc_len = 6;
        }
        if (rc == 0)
            rc = vh_buf_add(b, esc, esc_len);
    }
    if (rc == 0)
        rc = vh_buf_add(b, s + run, len - run);
    if (rc == 0)
        rc = vh_buf_addc(b, '"');
    if (rc < 0) {
        b->len = start;
        if (b->data)
            b->data[start] = '\0';
    }
    return rc;
}
