/*
 * Small JSON helpers for the API layer: reading a flat request object into typed fields,
 * and writing escaped strings. (The session payload has its own parser and encoder in
 * event.h.)
 */
#ifndef VOCOHOOK_JSON_H
#define VOCOHOOK_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <vocohook/buf.h>
#include <vocohook/common.h>
#include <vocohook/error.h>

enum vh_jtype { VH_JSTRING = 1, VH_JBOOL, VH_JINT };

/* One expected key of a flat object: the caller fills name/type/required/max_len. */
struct vh_jfield {
    const char *name;
    enum vh_jtype type;
    bool required;
    bool nullable;  /* null is accepted (present and is_null set) */
    size_t max_len; /* strings: the longest accepted, in bytes */
    /* filled by vh_json_parse_fields: */
    bool present;
    bool is_null;
    char *str; /* owned (release with vh_json_fields_release); NUL-terminated */
    size_t str_len;
    bool b;
    int64_t i;
};

/*
 * Parses `json` as one object whose keys must all be among `fields`; fills each field.
 * Rejects (VH_EINVAL, message `<name>: <reason>`) bad syntax, a non-object, an unknown or
 * duplicate key, a wrong type, a missing required key, a string over max_len (VH_ETOOBIG),
 * a string with a NUL, an integer outside int64 (`<name>: must be an integer between
 * -9223372036854775808 and 9223372036854775807`). On failure every field is left released.
 */
VH_API int vh_json_parse_fields(const char *json, size_t len, struct vh_jfield *fields, size_t n,
                                struct vh_error *err);

/* Frees the strings vh_json_parse_fields stored and clears the results. */
VH_API void vh_json_fields_release(struct vh_jfield *fields, size_t n);

/*
 * Appends `s` (UTF-8, `len` bytes; NULL when `len` is 0) as a quoted JSON string, escaped as
 * JSON.stringify does. Returns 0, VH_EINVAL (`s` is not well-formed UTF-8, or holds a NUL
 * byte, or is NULL with a length), VH_ENOMEM or VH_ETOOBIG; on failure the buffer is as it
 * was (still unallocated, if it was).
 */
VH_API int vh_json_add_string(struct vh_buf *b, const char *s, size_t len);

#endif
