#!/usr/bin/env python3
"""Writes the bad-input corpus and MANIFEST.tsv (run from anywhere: python3 _generate.py).

Each case is one small input that a parser of include/vocohook/event.h must refuse, with
the mode to parse it in and the exact error it must give. MANIFEST.tsv columns, TAB
separated, one case a line, '#' lines are comments:

    file    mode    code    message

mode:    session (vh_session_parse, strict), ingest (vh_ingest_parse),
         event (vh_event_parse, strict), event-lenient (vh_event_parse with
         VH_PARSE_ALLOW_UNKNOWN)
code:    EINVAL or ETOOBIG
message: the exact text of struct vh_error.msg (one line, no TAB)

The expected messages are written by hand here, not captured from the implementation.
Cases too large for a small file (over-long content, too many turns, a body over 1 MiB)
are tested in tests/unit/core/test_event.c instead.
"""
import copy
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))

TURNS = [
    {"role": "bot", "content": "Hi", "timestamp": "2026-03-15T14:30:01.000Z"},
    {"role": "user", "content": "Hello", "timestamp": "2026-03-15T14:30:02.000Z",
     "latency_ms": None},
    {"role": "bot", "content": "Yes?", "timestamp": "2026-03-15T14:30:03.000Z",
     "latency_ms": 700},
]
SESSION = {
    "session_id": "s1", "agent_id": "a1", "agent_name": "Bot", "duration_seconds": 10,
    "credits_used": 1.5, "transcript": TURNS, "recording_url": None,
    "latency": {"min_ms": 700, "max_ms": 700, "avg_ms": 700},
    "call": {"call_id": "c1", "from_number": "+14155551234", "to_number": "+919876543210",
             "direction": "outbound", "status": "completed"},
}
EVENT = {"event": "session.completed", "timestamp": "2026-03-15T14:32:08.000Z",
         "data": SESSION}
INGEST = {"partner_id": "p1", "session": SESSION}

BASES = {"session": SESSION, "ingest": INGEST, "event": EVENT, "event-lenient": EVENT}
TIME_LEN_MSG = ("must be an ISO 8601 UTC time like 2026-03-15T14:32:08.000Z "
                "(24 characters, got %d)")
ID_MSG = "must be 1 to 64 characters of [A-Za-z0-9_-]"
E164_MSG = "must be E.164 (+ then 2 to 15 digits, first not 0)"
STATUS_MSG = "must be one of completed, failed, no_answer, busy, canceled"

CASES = []


def dump(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def case(name, mode, code, message, data):
    """data: bytes, or a function editing a deep copy of the mode's base document."""
    if callable(data):
        doc = copy.deepcopy(BASES[mode])
        data(doc)
        data = dump(doc)
    CASES.append((name + ".json", mode, code, message, data))


def sess(doc):
    """The session object inside a base document of any mode."""
    return doc.get("data") or doc.get("session") or doc


def edit(path, value):
    """An edit setting (or, with value DELETE, removing) a key inside the session."""
    def f(doc):
        target = sess(doc)
        for key in path[:-1]:
            target = target[key]
        if value is DELETE:
            del target[path[-1]]
        else:
            target[path[-1]] = value
    return f


DELETE = object()

# --- the document and its syntax ---------------------------------------------------------
case("root_array", "event", "EINVAL", "(root): must be an object", b"[]")
case("root_string", "session", "EINVAL", "(root): must be an object", b'"session"')
case("root_number", "ingest", "EINVAL", "(root): must be an object", b"42")
case("empty", "event", "EINVAL", "json: empty input", b"")
case("whitespace_only", "session", "EINVAL", "json: empty input", b" \n\t\r\n")
case("trailing_garbage", "event", "EINVAL", "json: unexpected 'x' at byte 3",
     b"{} x")
case("trailing_comma", "session", "EINVAL", "json: expected a string key at byte 7",
     b'{"a":1,}')
case("truncated", "event", "EINVAL", "json: unexpected end of input at byte 11",
     b'{"event":"s')
case("raw_newline_in_string", "session", "EINVAL", "json: control character in a string at byte 7",
     b'{"s":"a\nb"}')
case("bom", "event", "EINVAL", "json: unexpected byte 0xef at byte 0", b"\xef\xbb\xbf{}")
case("duplicate_key_root", "event", "EINVAL",
     'json: duplicate key "event" at byte 29',
     b'{"event":"session.completed","event":"session.completed"}')
case("duplicate_key_escaped", "session", "EINVAL",
     'json: duplicate key "session_id" at byte 19',
     b'{"session_id":"s1","session\\u005fid":"s2"}')
case("duplicate_key_turn", "session", "EINVAL",
     'json: duplicate key "role" at byte 29',
     b'{"transcript":[{"role":"bot","role":"user"}]}')
case("utf8_invalid_byte", "event", "EINVAL",
     "json: invalid UTF-8 at byte 17",
     b'{"agent_name":"Bo\xff"}')
case("utf8_overlong", "session", "EINVAL",
     "json: invalid UTF-8 at byte 12",
     b'{"content":"\xc0\x80"}')
case("utf8_surrogate", "ingest", "EINVAL",
     "json: invalid UTF-8 at byte 12",
     b'{"content":"\xed\xa0\x80"}')
case("utf8_truncated", "event", "EINVAL",
     "json: invalid UTF-8 at byte 14",
     b'{"content":"ab\xe6\x97"}')
case("nul_escape", "session", "EINVAL",
     "json: \\u0000 is not allowed in strings at byte 13",
     b'{"content":"a\\u0000b"}')
case("integer_too_big", "event", "EINVAL",
     "data.duration_seconds: must be between 0 and 604800",
     edit(["duration_seconds"], 99999999999999999999999))
case("integer_overflows_double", "event", "EINVAL", "json: number out of range at byte 20",
     b'{"duration_seconds":1' + b"0" * 400 + b'}')
case("real_overflow", "event", "EINVAL",
     "json: number out of range at byte 16",
     b'{"credits_used":1e400}')
deep = b'{"event":"session.completed","x":' + b"[" * 32 + b"]" * 32 + b"}"
case("depth_over_limit", "event", "ETOOBIG", "json: nested deeper than 32 levels at byte 64",
     deep)
deep_lenient = copy.deepcopy(EVENT)
deep_lenient["data"]["variables"] = "placeholder"
deep_lenient = dump(deep_lenient).replace(b'"placeholder"', b"[" * 40 + b"]" * 40)
case("depth_over_limit_lenient", "event-lenient", "ETOOBIG",
     "json: nested deeper than 32 levels at byte %d"
     % (deep_lenient.index(b"[" * 40) + 30), deep_lenient)

# --- unknown and missing keys --------------------------------------------------------------
case("unknown_key_root", "event", "EINVAL", '(root): unknown key "id"',
     lambda d: d.update(id="e1"))
case("unknown_key_data", "event", "EINVAL", 'data: unknown key "foo"', edit(["foo"], 1))
case("unknown_key_turn", "event", "EINVAL", 'data.transcript[1]: unknown key "extra"',
     edit(["transcript", 1, "extra"], True))
case("unknown_key_call", "event", "EINVAL", 'data.call: unknown key "country"',
     edit(["call", "country"], "US"))
case("unknown_key_latency", "event", "EINVAL", 'data.latency: unknown key "p50_ms"',
     edit(["latency", "p50_ms"], 600))
case("unknown_key_ingest_root", "ingest", "EINVAL", '(root): unknown key "token"',
     lambda d: d.update(token="x"))
case("unknown_key_ingest_session", "ingest", "EINVAL", 'session: unknown key "variables"',
     edit(["variables"], {}))
case("unknown_key_session", "session", "EINVAL", '(root): unknown key "extraction"',
     edit(["extraction"], {"name": "x"}))
case("unknown_key_quoted", "event", "EINVAL", 'data: unknown key "a\\"b\\u0001c"',
     edit(['a"b\x01c'], 1))
case("unknown_key_long", "event", "EINVAL",
     'data: unknown key "%s..."' % ("k" * 45), edit(["k" * 60], 1))
case("recording_key_in_payload", "event", "EINVAL", 'data: unknown key "recording_key"',
     edit(["recording_key"], "rec/1.wav"))
case("missing_event", "event", "EINVAL", '(root): missing key "event"',
     lambda d: d.pop("event"))
case("missing_data", "event-lenient", "EINVAL", '(root): missing key "data"',
     lambda d: d.pop("data"))
case("missing_agent_id", "event", "EINVAL", 'data: missing key "agent_id"',
     edit(["agent_id"], DELETE))
case("missing_session_id", "session", "EINVAL", '(root): missing key "session_id"',
     edit(["session_id"], DELETE))
case("missing_transcript", "ingest", "EINVAL", 'session: missing key "transcript"',
     edit(["transcript"], DELETE))
case("missing_turn_timestamp", "event", "EINVAL", 'data.transcript[0]: missing key "timestamp"',
     edit(["transcript", 0, "timestamp"], DELETE))
case("missing_user_latency_strict", "event", "EINVAL",
     'data.transcript[1]: missing key "latency_ms"',
     edit(["transcript", 1, "latency_ms"], DELETE))
case("missing_recording_url", "event", "EINVAL", 'data: missing key "recording_url"',
     edit(["recording_url"], DELETE))
case("missing_latency", "event-lenient", "EINVAL", 'data: missing key "latency"',
     edit(["latency"], DELETE))
case("missing_call", "event", "EINVAL", 'data: missing key "call"', edit(["call"], DELETE))
case("missing_partner_id", "ingest", "EINVAL", '(root): missing key "partner_id"',
     lambda d: d.pop("partner_id"))
case("missing_call_status", "event", "EINVAL", 'data.call: missing key "status"',
     edit(["call", "status"], DELETE))
case("missing_latency_avg", "session", "EINVAL", 'latency: missing key "avg_ms"',
     edit(["latency", "avg_ms"], DELETE))

# --- the envelope --------------------------------------------------------------------------
case("event_wrong_type", "event", "EINVAL", 'event: must be "session.completed"',
     lambda d: d.update(event="session.started"))
case("event_number", "event-lenient", "EINVAL", 'event: must be "session.completed"',
     lambda d: d.update(event=1))
case("timestamp_no_ms", "event", "EINVAL", "timestamp: " + TIME_LEN_MSG % 20,
     lambda d: d.update(timestamp="2026-03-15T14:32:08Z"))
case("timestamp_number", "event", "EINVAL", "timestamp: must be a string",
     lambda d: d.update(timestamp=1773585128000))
case("data_null", "event", "EINVAL", "data: must be an object", lambda d: d.update(data=None))
case("ingest_session_array", "ingest", "EINVAL", "session: must be an object",
     lambda d: d.update(session=[]))
case("partner_id_empty", "ingest", "EINVAL", "partner_id: " + ID_MSG,
     lambda d: d.update(partner_id=""))

# --- ids and names -------------------------------------------------------------------------
case("session_id_number", "event", "EINVAL", "data.session_id: must be a string",
     edit(["session_id"], 1234))
case("session_id_too_long", "event", "EINVAL", "data.session_id: " + ID_MSG,
     edit(["session_id"], "s" * 65))
case("agent_id_bad_char", "session", "EINVAL", "agent_id: " + ID_MSG, edit(["agent_id"], "a/1"))
case("call_id_space", "event", "EINVAL", "data.call.call_id: " + ID_MSG,
     edit(["call", "call_id"], "c 1"))
case("agent_name_number", "event", "EINVAL", "data.agent_name: must be a string",
     edit(["agent_name"], 5))
case("agent_name_empty", "event", "EINVAL", "data.agent_name: must not be empty",
     edit(["agent_name"], ""))
case("agent_name_too_long", "session", "ETOOBIG", "agent_name: longer than 256 bytes",
     edit(["agent_name"], "\u00e9" * 128 + "x"))

# --- numbers -------------------------------------------------------------------------------
case("duration_real", "event", "EINVAL", "data.duration_seconds: must be an integer",
     edit(["duration_seconds"], 12.5))
case("duration_negative", "event", "EINVAL",
     "data.duration_seconds: must be between 0 and 604800", edit(["duration_seconds"], -1))
case("duration_too_long", "session", "EINVAL", "duration_seconds: must be between 0 and 604800",
     edit(["duration_seconds"], 604801))
case("duration_string", "ingest", "EINVAL", "session.duration_seconds: must be an integer",
     edit(["duration_seconds"], "127"))
case("credits_string", "event", "EINVAL", "data.credits_used: must be a number",
     edit(["credits_used"], "2.12"))
case("credits_null", "event", "EINVAL", "data.credits_used: must be a number",
     edit(["credits_used"], None))
case("credits_too_big", "event", "EINVAL", "data.credits_used: must be between 0 and 1000000000",
     edit(["credits_used"], 1e10))
case("credits_negative", "session", "EINVAL", "credits_used: must be between 0 and 1000000000",
     edit(["credits_used"], -0.01))

# --- the transcript ------------------------------------------------------------------------
case("transcript_object", "event", "EINVAL", "data.transcript: must be an array",
     edit(["transcript"], {}))
case("turn_not_object", "event", "EINVAL", "data.transcript[0]: must be an object",
     edit(["transcript"], [1]))
case("role_unknown", "event", "EINVAL", 'data.transcript[2].role: must be "user" or "bot"',
     edit(["transcript", 2, "role"], "assistant"))
case("role_unknown_two_digits", "event", "EINVAL",
     'data.transcript[12].role: must be "user" or "bot"',
     edit(["transcript"], copy.deepcopy(TURNS) * 4 + [dict(TURNS[0], role="agent")]))
case("role_null", "session", "EINVAL", 'transcript[0].role: must be "user" or "bot"',
     edit(["transcript", 0, "role"], None))
case("content_number", "event", "EINVAL", "data.transcript[0].content: must be a string",
     edit(["transcript", 0, "content"], 5))
case("turn_timestamp_offset", "event", "EINVAL",
     "data.transcript[0].timestamp: " + TIME_LEN_MSG % 29,
     edit(["transcript", 0, "timestamp"], "2026-03-15T14:30:01.000+01:00"))
case("turn_timestamp_offset_24", "session", "EINVAL",
     "transcript[0].timestamp: must be an ISO 8601 UTC time like 2026-03-15T14:32:08.000Z "
     "(expected '.' at character 20)",
     edit(["transcript", 0, "timestamp"], "2026-03-15T14:30:01+0100"))
case("turn_timestamp_feb30", "session", "EINVAL",
     "transcript[0].timestamp: day 30 does not exist in 2026-02",
     edit(["transcript", 0, "timestamp"], "2026-02-30T10:00:00.000Z"))
case("turn_timestamp_number", "ingest", "EINVAL",
     "session.transcript[1].timestamp: must be a string",
     edit(["transcript", 1, "timestamp"], 1773585002000))
case("latency_bot_null", "event", "EINVAL",
     "data.transcript[2].latency_ms: must be an integer or absent on bot turns",
     edit(["transcript", 2, "latency_ms"], None))
case("latency_bot_real", "session", "EINVAL",
     "transcript[2].latency_ms: must be an integer or absent on bot turns",
     edit(["transcript", 2, "latency_ms"], 700.5))
case("latency_bot_negative", "event", "EINVAL",
     "data.transcript[2].latency_ms: must be between 0 and 3600000",
     edit(["transcript", 2, "latency_ms"], -5))
case("latency_user_integer", "event", "EINVAL",
     "data.transcript[1].latency_ms: must be null on user turns",
     edit(["transcript", 1, "latency_ms"], 300))
case("latency_user_integer_ingest", "ingest", "EINVAL",
     "session.transcript[1].latency_ms: must be null on user turns",
     edit(["transcript", 1, "latency_ms"], 0))

# --- latency, recording, call ----------------------------------------------------------------
case("latency_min_over_max", "event", "EINVAL",
     "data.latency: must have min_ms <= avg_ms <= max_ms",
     edit(["latency"], {"min_ms": 900, "max_ms": 700, "avg_ms": 800}))
case("latency_avg_over_max", "ingest", "EINVAL",
     "session.latency: must have min_ms <= avg_ms <= max_ms",
     edit(["latency"], {"min_ms": 100, "max_ms": 200, "avg_ms": 300}))
case("latency_null_payload", "event", "EINVAL", "data.latency: must be an object",
     edit(["latency"], None))
case("latency_min_string", "event", "EINVAL", "data.latency.min_ms: must be an integer",
     edit(["latency", "min_ms"], "450"))
case("latency_max_too_big", "event", "EINVAL",
     "data.latency.max_ms: must be between 0 and 3600000", edit(["latency", "max_ms"], 3600001))
case("recording_url_ftp", "event", "EINVAL",
     "data.recording_url: must be an http:// or https:// URL",
     edit(["recording_url"], "ftp://example.com/rec.wav"))
case("recording_url_scheme_only", "session", "EINVAL",
     "recording_url: must be an http:// or https:// URL", edit(["recording_url"], "https://"))
case("recording_url_space", "event", "EINVAL",
     "data.recording_url: must not contain spaces or control characters",
     edit(["recording_url"], "https://example.com/a b.wav"))
case("recording_url_number", "event", "EINVAL", "data.recording_url: must be a string or null",
     edit(["recording_url"], 5))
case("recording_url_too_long", "session", "ETOOBIG", "recording_url: longer than 4096 bytes",
     edit(["recording_url"], "https://example.com/" + "a" * 4077))
case("recording_url_and_key", "ingest", "EINVAL",
     "session.recording_key: not allowed together with recording_url",
     lambda d: d["session"].update(recording_url="https://example.com/r.wav",
                                   recording_key="rec/r.wav"))
case("recording_key_empty", "session", "EINVAL", "recording_key: must not be empty",
     edit(["recording_key"], ""))
case("recording_key_control", "ingest", "EINVAL",
     "session.recording_key: must not contain control characters",
     edit(["recording_key"], "rec/\x01.wav"))
case("call_string", "event", "EINVAL", "data.call: must be an object or null",
     edit(["call"], "yes"))
case("call_direction_inbound", "event", "EINVAL", 'data.call.direction: must be "outbound"',
     edit(["call", "direction"], "inbound"))
case("call_status_unknown", "event", "EINVAL", "data.call.status: " + STATUS_MSG,
     edit(["call", "status"], "ringing"))
case("call_status_case", "ingest", "EINVAL", "session.call.status: " + STATUS_MSG,
     edit(["call", "status"], "Completed"))
case("call_from_leading_zero", "event", "EINVAL", "data.call.from_number: " + E164_MSG,
     edit(["call", "from_number"], "+0123456789"))
case("call_to_no_plus", "ingest", "EINVAL", "session.call.to_number: " + E164_MSG,
     edit(["call", "to_number"], "14155551234"))
case("call_to_too_long", "event", "EINVAL", "data.call.to_number: " + E164_MSG,
     edit(["call", "to_number"], "+1234567890123456"))

# --- edges of session 22's adversarial review of ingest validation (all held) ----------------
TIME_FORM_MSG = ("must be an ISO 8601 UTC time like 2026-03-15T14:32:08.000Z "
                 "(expected '%s' at character %d)")
case("turn_timestamp_leap_second", "ingest", "EINVAL",
     "session.transcript[0].timestamp: second 60 is out of range",
     edit(["transcript", 0, "timestamp"], "2016-12-31T23:59:60.000Z"))
case("turn_timestamp_lowercase_t", "session", "EINVAL",
     "transcript[0].timestamp: " + TIME_FORM_MSG % ("T", 11),
     edit(["transcript", 0, "timestamp"], "2026-03-15t14:30:01.000Z"))
case("turn_timestamp_lowercase_z", "ingest", "EINVAL",
     "session.transcript[1].timestamp: " + TIME_FORM_MSG % ("Z", 24),
     edit(["transcript", 1, "timestamp"], "2026-03-15T14:30:02.000z"))
case("turn_timestamp_nine_fraction_digits", "ingest", "EINVAL",
     "session.transcript[0].timestamp: " + TIME_LEN_MSG % 30,
     edit(["transcript", 0, "timestamp"], "2026-03-15T14:30:01.123456789Z"))
case("turn_timestamp_no_fraction", "session", "EINVAL",
     "transcript[2].timestamp: " + TIME_LEN_MSG % 20,
     edit(["transcript", 2, "timestamp"], "2026-03-15T14:30:03Z"))
case("turn_timestamp_year_0000", "ingest", "EINVAL",
     "session.transcript[0].timestamp: year 0000 is before 1970",
     edit(["transcript", 0, "timestamp"], "0000-01-01T00:00:00.000Z"))
case("turn_timestamp_2100_feb29", "ingest", "EINVAL",
     "session.transcript[0].timestamp: day 29 does not exist in 2100-02",
     edit(["transcript", 0, "timestamp"], "2100-02-29T00:00:00.000Z"))
case("turn_timestamp_hour_24", "ingest", "EINVAL",
     "session.transcript[0].timestamp: hour 24 is out of range",
     edit(["transcript", 0, "timestamp"], "2026-03-15T24:00:00.000Z"))
case("duration_exponent", "ingest", "EINVAL", "session.duration_seconds: must be an integer",
     dump(INGEST).replace(b'"duration_seconds":10', b'"duration_seconds":1e2'))
case("duration_one_point_zero", "ingest", "EINVAL",
     "session.duration_seconds: must be an integer",
     dump(INGEST).replace(b'"duration_seconds":10', b'"duration_seconds":10.0'))
case("latency_bot_exponent", "ingest", "EINVAL",
     "session.transcript[2].latency_ms: must be an integer or absent on bot turns",
     dump(INGEST).replace(b'"latency_ms":700', b'"latency_ms":7e2'))
case("latency_bot_string", "ingest", "EINVAL",
     "session.transcript[2].latency_ms: must be an integer or absent on bot turns",
     edit(["transcript", 2, "latency_ms"], "700"))
case("credits_nan", "ingest", "EINVAL", "json: unexpected 'N' at byte 120",
     dump(INGEST).replace(b'"credits_used":1.5', b'"credits_used":NaN'))
case("recording_url_javascript", "ingest", "EINVAL",
     "session.recording_url: must be an http:// or https:// URL",
     edit(["recording_url"], "javascript:alert(1)//https://x"))
case("recording_url_empty", "ingest", "EINVAL",
     "session.recording_url: must be an http:// or https:// URL", edit(["recording_url"], ""))
case("recording_url_newline", "ingest", "EINVAL",
     "session.recording_url: must not contain spaces or control characters",
     edit(["recording_url"], "https://example.com/a\nb.wav"))
case("session_id_dot", "ingest", "EINVAL", "session.session_id: " + ID_MSG,
     edit(["session_id"], "s.1"))
case("session_id_non_ascii", "ingest", "EINVAL", "session.session_id: " + ID_MSG,
     edit(["session_id"], "s\u00e9"))
case("partner_id_null", "ingest", "EINVAL", "partner_id: must be a string",
     lambda d: d.update(partner_id=None))
case("call_from_one_digit", "ingest", "EINVAL", "session.call.from_number: " + E164_MSG,
     edit(["call", "from_number"], "+1"))
case("call_null_status", "ingest", "EINVAL", "session.call.status: must be a string",
     edit(["call", "status"], None))
case("session_null", "ingest", "EINVAL", "session: must be an object",
     lambda d: d.update(session=None))
case("duplicate_key_ingest_partner", "ingest", "EINVAL",
     'json: duplicate key "partner_id" at byte 19',
     b'{"partner_id":"p1","partner_id":"p2","session":{}}')

# --- lenient mode still checks what it knows ------------------------------------------------
case("lenient_type_still_checked", "event-lenient", "EINVAL",
     "data.duration_seconds: must be an integer",
     lambda d: d["data"].update(variables={"a": 1}, duration_seconds="10"))
case("lenient_role_still_checked", "event-lenient", "EINVAL",
     'data.transcript[0].role: must be "user" or "bot"',
     edit(["transcript", 0, "role"], "system"))
case("lenient_bot_null_latency", "event-lenient", "EINVAL",
     "data.transcript[2].latency_ms: must be an integer or absent on bot turns",
     edit(["transcript", 2, "latency_ms"], None))


def main():
    for name in os.listdir(HERE):
        if name.endswith(".json"):
            os.remove(os.path.join(HERE, name))
    rows = ["# file\tmode\tcode\tmessage  (generated by _generate.py: edit there)"]
    for name, mode, code, message, data in CASES:
        assert "\t" not in message and "\n" not in message
        with open(os.path.join(HERE, name), "wb") as f:
            f.write(data)
        rows.append("\t".join([name, mode, code, message]))
    with open(os.path.join(HERE, "MANIFEST.tsv"), "w", encoding="utf-8") as f:
        f.write("\n".join(rows) + "\n")
    print("%d cases" % len(CASES))


main()
