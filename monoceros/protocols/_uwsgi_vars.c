/* The uwsgi vars block of a well-formed request, parsed in C: monoceros's one hand-written
 * extension (see docs/performance.md, "The compiled core").
 *
 * parse_vars(block: bytes) -> dict[str, str] | None is the twin of
 * monoceros.protocols.uwsgi._vars_fast: the same contract, pinned to it case by case by
 * tests/unit/test_uwsgi_vars_native.py. It returns the dict of a block whose every pair is
 * well formed, and None for anything unusual (an overrun, an empty key, a repeated key, a CR,
 * LF or NUL in a key or value): the Python _vars_slow then raises the precise error or merges
 * the repeats. Keys and values are decoded latin-1 (PEP 3333).
 *
 * header_fields(environ: dict) -> list[tuple[bytes, bytes]] | None is the twin of
 * monoceros.protocols.uwsgi._header_fields (an ASGI scope's headers from the vars), pinned by the
 * same test file; None leaves a dict it does not take (a name not ASCII, a value not latin-1)
 * to the Python loop.
 *
 * What C buys over the mypyc build of the same loop (per nginx request of 16 vars): the dict is
 * made at its final size once (no resizes as it fills, nor as the environ builder adds its
 * defaults), a key or short value seen before is the same str object (no new string; a key's
 * hash is kept in it), and the CR/LF/NUL check reads eight bytes at a time instead of a join
 * and three searches.
 *
 * The GIL is held throughout: the str caches below need no other lock. They are process-wide
 * (single-phase init, no per-module state), which is right for monoceros's workers, one
 * interpreter each; the module is not meant for subinterpreters.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* Two direct-mapped caches of str objects, one for keys and one for short values: front ends
 * send the same few dozen names on every request, and most values too ("GET", "HTTP/1.1",
 * the host, the scheme). A hit costs a hash of at most 16 bytes and a memcmp instead of a new
 * str (and, for a key, its hashing by the dict). A miss replaces the slot: the caches are
 * bounded (KEY_SLOTS keys of at most KEY_MAX bytes, VALUE_SLOTS values of at most VALUE_MAX),
 * and a peer that sends odd names only costs itself the uncached price. Only clean strings
 * (no CR, LF or NUL) are cached, so a hit needs no check. */
#define KEY_SLOTS 256 /* powers of two */
#define KEY_MAX 64
#define VALUE_SLOTS 256
#define VALUE_MAX 32

/* Entries the environ gets beyond the vars: the WSGI builder's defaults and wsgi.* keys. */
#define ENVIRON_EXTRA 16

static PyObject *key_slots[KEY_SLOTS];
static PyObject *value_slots[VALUE_SLOTS];

static const uint64_t ONES = 0x0101010101010101u;
static const uint64_t HIGHS = 0x8080808080808080u;

static inline uint64_t
load64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* Nonzero when the word holds a zero byte (exact: no false positives). */
static inline uint64_t
zero_byte(uint64_t v)
{
    return (v - ONES) & ~v & HIGHS;
}

/* Nonzero when p[0:n] holds a CR, LF or NUL: eight bytes at a time. */
static int
has_bad_byte(const unsigned char *p, Py_ssize_t n)
{
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v = load64(p + i);
        if (zero_byte(v) | zero_byte(v ^ (ONES * '\n')) | zero_byte(v ^ (ONES * '\r'))) {
            return 1;
        }
    }
    for (; i < n; i++) {
        unsigned char c = p[i];
        if (c == 0 || c == '\n' || c == '\r') {
            return 1;
        }
    }
    return 0;
}

/* A slot for p[0:n] in a table of 2**bits: from the length and the first and last 8 bytes. */
static inline size_t
slot_of(const unsigned char *p, Py_ssize_t n, int bits)
{
    uint64_t h;
    if (n >= 8) {
        h = load64(p) ^ (load64(p + n - 8) << 7 | load64(p + n - 8) >> 57);
    }
    else {
        h = 0;
        memcpy(&h, p, (size_t)n);
    }
    h = (h ^ (uint64_t)n) * 0x9E3779B97F4A7C15u;
    return (size_t)(h >> (64 - bits));
}

/* The str of p[0:n] decoded latin-1: the cached object when the slot holds these bytes, else a
 * new one, which takes the slot when clean. A new reference; NULL with an exception set, or
 * NULL without one when p[0:n] holds a CR, LF or NUL. */
static PyObject *
cached_str(PyObject **slots, int bits, Py_ssize_t max, int intern, const unsigned char *p,
           Py_ssize_t n)
{
    PyObject **slot = NULL;
    if (n <= max) {
        slot = slots + slot_of(p, n, bits);
        PyObject *hit = *slot;
        if (hit != NULL && PyUnicode_GET_LENGTH(hit) == n &&
            memcmp(PyUnicode_DATA(hit), p, (size_t)n) == 0) {
            Py_INCREF(hit);
            return hit;
        }
    }
    if (has_bad_byte(p, n)) {
        return NULL;
    }
    PyObject *str = PyUnicode_DecodeLatin1((const char *)p, n, NULL);
    if (str == NULL || slot == NULL) {
        return str;
    }
    if (intern) {
        PyUnicode_InternInPlace(&str); /* the app's literal "REQUEST_METHOD" is this object */
    }
    Py_INCREF(str);
    Py_XSETREF(*slot, str);
    return str;
}

/* After cached_str returned NULL: None for a CR/LF/NUL, NULL when an exception is set. */
static PyObject *
bad_or_error(void)
{
    if (PyErr_Occurred()) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
parse_vars(PyObject *module, PyObject *arg)
{
    (void)module;
    if (!PyBytes_CheckExact(arg)) {
        PyErr_Format(PyExc_TypeError, "parse_vars() takes bytes, not %.100s",
                     Py_TYPE(arg)->tp_name);
        return NULL;
    }
    const unsigned char *blk = (const unsigned char *)PyBytes_AS_STRING(arg);
    Py_ssize_t size = PyBytes_GET_SIZE(arg);

    /* First pass: the pairs fit the block exactly and no key is empty; count them. */
    Py_ssize_t pairs = 0;
    Py_ssize_t i = 0;
    while (i < size) {
        if (i + 2 > size) {
            Py_RETURN_NONE;
        }
        Py_ssize_t key_len = blk[i] | blk[i + 1] << 8;
        if (key_len == 0) {
            Py_RETURN_NONE;
        }
        i += 2 + key_len;
        if (i + 2 > size) {
            Py_RETURN_NONE;
        }
        i += 2 + (blk[i] | blk[i + 1] << 8);
        pairs++;
    }
    if (i != size) {
        Py_RETURN_NONE;
    }

    PyObject *environ = _PyDict_NewPresized(pairs + ENVIRON_EXTRA);
    if (environ == NULL) {
        return NULL;
    }
    i = 0;
    while (i < size) {
        Py_ssize_t key_len = blk[i] | blk[i + 1] << 8;
        const unsigned char *key_at = blk + i + 2;
        i += 2 + key_len;
        Py_ssize_t value_len = blk[i] | blk[i + 1] << 8;
        const unsigned char *value_at = blk + i + 2;
        i += 2 + value_len;
        PyObject *key = cached_str(key_slots, 8, KEY_MAX, 1, key_at, key_len);
        if (key == NULL) {
            Py_DECREF(environ);
            return bad_or_error();
        }
        PyObject *value = cached_str(value_slots, 8, VALUE_MAX, 0, value_at, value_len);
        if (value == NULL) {
            Py_DECREF(key);
            Py_DECREF(environ);
            return bad_or_error();
        }
        Py_ssize_t before = PyDict_GET_SIZE(environ);
        int failed = PyDict_SetItem(environ, key, value);
        Py_DECREF(key);
        Py_DECREF(value);
        if (failed) {
            Py_DECREF(environ);
            return NULL;
        }
        if (PyDict_GET_SIZE(environ) == before) { /* a repeated key */
            Py_DECREF(environ);
            Py_RETURN_NONE;
        }
    }
    return environ;
}

/* header_fields: a vars dict's HTTP header fields, for an ASGI scope. Key str -> field name
 * bytes (b"" for a var that is not a header), cached by the key's hash in a direct-mapped table
 * that holds its keys (so a slot's key is never a freed object's address). */
#define NAME_SLOTS 256

static PyObject *name_keys[NAME_SLOTS];
static PyObject *name_values[NAME_SLOTS];

/* The field name of a var, or b"" for a var that is not a header; NULL without an exception
 * for a name this function leaves to the Python twin (not ASCII). A new reference. */
static PyObject *
field_name(PyObject *key)
{
    Py_hash_t hash = PyObject_Hash(key);
    if (hash == -1) {
        return NULL;
    }
    size_t slot = (size_t)hash & (NAME_SLOTS - 1);
    PyObject *cached = name_keys[slot];
    if (cached == key ||
        (cached != NULL && PyUnicode_GET_LENGTH(cached) == PyUnicode_GET_LENGTH(key) &&
         PyUnicode_Compare(cached, key) == 0)) {
        Py_INCREF(name_values[slot]);
        return name_values[slot];
    }
    if (!PyUnicode_IS_ASCII(key)) {
        return NULL;
    }
    const char *text = (const char *)PyUnicode_DATA(key);
    Py_ssize_t n = PyUnicode_GET_LENGTH(key);
    PyObject *name;
    if (n == 12 && memcmp(text, "CONTENT_TYPE", 12) == 0) {
        name = PyBytes_FromString("content-type");
    }
    else if (n == 14 && memcmp(text, "CONTENT_LENGTH", 14) == 0) {
        name = PyBytes_FromString("content-length");
    }
    else if (n >= 5 && memcmp(text, "HTTP_", 5) == 0) {
        name = PyBytes_FromStringAndSize(NULL, n - 5);
        if (name != NULL) {
            char *out = PyBytes_AS_STRING(name);
            for (Py_ssize_t i = 5; i < n; i++) {
                char c = text[i];
                out[i - 5] = c == '_' ? '-' : (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
            }
        }
    }
    else {
        name = PyBytes_FromStringAndSize("", 0);
    }
    if (name == NULL) {
        return NULL;
    }
    Py_INCREF(key);
    Py_INCREF(name);
    Py_XSETREF(name_keys[slot], key);
    Py_XSETREF(name_values[slot], name);
    return name;
}

static PyObject *
header_fields(PyObject *module, PyObject *env)
{
    (void)module;
    if (!PyDict_CheckExact(env)) {
        Py_RETURN_NONE;
    }
    PyObject *fields = PyList_New(0);
    if (fields == NULL) {
        return NULL;
    }
    Py_ssize_t pos = 0;
    PyObject *key;
    PyObject *value;
    while (PyDict_Next(env, &pos, &key, &value)) {
        if (!PyUnicode_CheckExact(key) || !PyUnicode_CheckExact(value) ||
            PyUnicode_KIND(value) != PyUnicode_1BYTE_KIND) {
            goto python_twin;
        }
        PyObject *name = field_name(key);
        if (name == NULL) {
            if (PyErr_Occurred()) {
                Py_DECREF(fields);
                return NULL;
            }
            goto python_twin;
        }
        Py_ssize_t length = PyUnicode_GET_LENGTH(value);
        if (PyBytes_GET_SIZE(name) == 0 ||
            (length == 0 && !(PyUnicode_GET_LENGTH(key) >= 5 &&
                              memcmp(PyUnicode_DATA(key), "HTTP_", 5) == 0))) {
            Py_DECREF(name);
            continue;
        }
        PyObject *bytes = PyBytes_FromStringAndSize(PyUnicode_DATA(value), length);
        PyObject *pair = bytes == NULL ? NULL : PyTuple_Pack(2, name, bytes);
        Py_DECREF(name);
        Py_XDECREF(bytes);
        if (pair == NULL || PyList_Append(fields, pair) < 0) {
            Py_XDECREF(pair);
            Py_DECREF(fields);
            return NULL;
        }
        Py_DECREF(pair);
    }
    return fields;
python_twin:
    Py_DECREF(fields);
    Py_RETURN_NONE;
}


/* 1 when p[0:n] is all ASCII digits, with *number their value (exact up to 18 digits); else 0. */
static int
ascii_digits(const unsigned char *p, Py_ssize_t n, uint64_t *number)
{
    uint64_t sum = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned digit = (unsigned)p[i] - '0';
        if (digit > 9) {
            return 0;
        }
        sum = sum * 10 + digit;
    }
    *number = sum;
    return 1;
}

/* A port var's bytes as an int; None when empty or not all ASCII digits. Up to 18 digits are
 * summed here; a longer run of ASCII digits is left to int()'s own parser (an int of any size,
 * as the Python twin makes). */
static PyObject *
port_of(const unsigned char *p, Py_ssize_t n)
{
    uint64_t number;
    if (n == 0 || !ascii_digits(p, n, &number)) {
        Py_RETURN_NONE;
    }
    if (n > 18) {
        PyObject *text = PyUnicode_DecodeLatin1((const char *)p, n, NULL);
        if (text == NULL) {
            return NULL;
        }
        PyObject *result = PyLong_FromUnicodeObject(text, 10);
        Py_DECREF(text);
        return result;
    }
    return PyLong_FromUnsignedLongLong(number);
}

/* The twin of uwsgi._port_number: a port var as an int, None when empty or not all ASCII
 * digits (port_of). Anything but a str or None: TypeError. */
static PyObject *
port_number(PyObject *module, PyObject *value)
{
    (void)module;
    if (value == Py_None) {
        Py_RETURN_NONE;
    }
    if (!PyUnicode_Check(value)) {
        PyErr_Format(PyExc_TypeError, "str or None expected; got %.200s",
                     Py_TYPE(value)->tp_name);
        return NULL;
    }
    if (PyUnicode_KIND(value) != PyUnicode_1BYTE_KIND) {
        Py_RETURN_NONE; /* a wider str has a char past U+00FF: not all ASCII digits */
    }
    return port_of(PyUnicode_1BYTE_DATA(value), PyUnicode_GET_LENGTH(value));
}

/* A tuple of the n new references in items, which it takes over; NULL when one of them is NULL
 * (an exception set) or the tuple cannot be made, with every item released. */
static PyObject *
stolen_tuple(Py_ssize_t n, PyObject **items)
{
    PyObject *tuple = NULL;
    for (Py_ssize_t k = 0; k < n; k++) {
        if (items[k] == NULL) {
            goto fail;
        }
    }
    tuple = PyTuple_New(n);
    if (tuple == NULL) {
        goto fail;
    }
    for (Py_ssize_t k = 0; k < n; k++) {
        PyTuple_SET_ITEM(tuple, k, items[k]);
    }
    return tuple;
fail:
    for (Py_ssize_t k = 0; k < n; k++) {
        Py_XDECREF(items[k]);
    }
    return NULL;
}

/* ---------------------------------------------------------------- http_scope
 *
 * http_scope(packet, max_vars, template, server, state) -> (scope, used, content_length) | None
 * is the twin of monoceros.asgi.scope.UwsgiScopeBuilder._packet_scope (pinned to it case by case
 * by tests/unit/test_uwsgi_scope_native.py): the ASGI http scope of a uwsgi packet that starts
 * with a well-formed request head, straight from the vars block, with no environ dict between
 * them. Header values are the block's bytes, header names come from a cache keyed by the var's
 * bytes, and the dozen vars the scope reads are found in the same pass. None for everything
 * else, which the general path (parse_head and UwsgiScopeBuilder.build) then takes as before:
 * an incomplete head, a modifier1 other than 0 or 30, a vars block parse_vars leaves to the
 * slow parser, a key that is not ASCII, more than MAX_PAIRS vars, a request parse_head refuses
 * (no REQUEST_METHOD, a method that is not a token, a CONTENT_LENGTH that is not digits) or
 * with a CONTENT_LENGTH of more than 18 digits, and the vars that change the request's kind or
 * framing (HTTP_UPGRADE, HTTP_TRANSFER_ENCODING). HTTP_CONTENT_LENGTH and HTTP_CONTENT_TYPE, which
 * nginx sends with every request that has a body, are dropped, as parse_head drops them. */

#define MAX_PAIRS 256
#define SEEN_SLOTS 512 /* > 2 * MAX_PAIRS: an open-addressed set of the keys, for repeats */
#define RAW_SLOTS 256

/* A var's field name by the var's bytes: raw_keys holds the var as bytes (its name in the
 * block), raw_names the header name (b"user-agent" for HTTP_USER_AGENT). */
static PyObject *raw_keys[RAW_SLOTS];
static PyObject *raw_names[RAW_SLOTS];

typedef struct {
    const unsigned char *at;
    Py_ssize_t len;
    int present;
} var_t;

enum {
    V_CONTENT_TYPE, /* (for the headers: a var the scope reads is never one) */
    V_METHOD,
    V_PATH_INFO,
    V_SCRIPT_NAME,
    V_REQUEST_URI,
    V_QUERY_STRING,
    V_PROTOCOL,
    V_REMOTE_ADDR,
    V_REMOTE_PORT,
    V_SERVER_NAME,
    V_SERVER_PORT,
    V_HTTPS,
    V_UWSGI_SCHEME,
    V_REQUEST_SCHEME,
    V_CONTENT_LENGTH,
    V_COUNT
};

static PyObject *s_http_version, *s_server, *s_client, *s_scheme, *s_method, *s_root_path,
    *s_path, *s_raw_path, *s_query_string, *s_headers, *s_state;
static PyObject *s_http, *s_https, *s_empty, *v_11, *v_10, *v_20, *v_2;
static PyObject *b_empty, *b_content_type, *b_content_length;

/* p[0:n] is the string literal: a compare of known size the compiler inlines. */
#define keyeq(p, n, literal) \
    ((n) == (Py_ssize_t)sizeof(literal) - 1 && memcmp((p), (literal), sizeof(literal) - 1) == 0)

/* Nonzero when p[0:n] holds a CR, LF or NUL, or a byte that is not ASCII. */
static int
bad_key(const unsigned char *p, Py_ssize_t n)
{
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v = load64(p + i);
        if ((v & HIGHS) | zero_byte(v) | zero_byte(v ^ (ONES * '\n')) |
            zero_byte(v ^ (ONES * '\r'))) {
            return 1;
        }
    }
    for (; i < n; i++) {
        unsigned char c = p[i];
        if (c == 0 || c == '\n' || c == '\r' || c >= 0x80) {
            return 1;
        }
    }
    return 0;
}

/* Which of the scope's vars the key is (V_COUNT: none of them). */
static int
known_var(const unsigned char *k, Py_ssize_t n)
{
    switch (n) {
    case 5:
        return keyeq(k, n, "HTTPS") ? V_HTTPS : V_COUNT;
    case 9:
        return keyeq(k, n, "PATH_INFO") ? V_PATH_INFO : V_COUNT;
    case 11:
        if (keyeq(k, n, "SCRIPT_NAME")) return V_SCRIPT_NAME;
        if (keyeq(k, n, "REQUEST_URI")) return V_REQUEST_URI;
        if (keyeq(k, n, "REMOTE_ADDR")) return V_REMOTE_ADDR;
        if (keyeq(k, n, "REMOTE_PORT")) return V_REMOTE_PORT;
        if (keyeq(k, n, "SERVER_NAME")) return V_SERVER_NAME;
        if (keyeq(k, n, "SERVER_PORT")) return V_SERVER_PORT;
        return V_COUNT;
    case 12:
        if (keyeq(k, n, "QUERY_STRING")) return V_QUERY_STRING;
        if (keyeq(k, n, "CONTENT_TYPE")) return V_CONTENT_TYPE;
        if (keyeq(k, n, "UWSGI_SCHEME")) return V_UWSGI_SCHEME;
        return V_COUNT;
    case 14:
        if (keyeq(k, n, "REQUEST_METHOD")) return V_METHOD;
        if (keyeq(k, n, "REQUEST_SCHEME")) return V_REQUEST_SCHEME;
        if (keyeq(k, n, "CONTENT_LENGTH")) return V_CONTENT_LENGTH;
        return V_COUNT;
    case 15:
        return keyeq(k, n, "SERVER_PROTOCOL") ? V_PROTOCOL : V_COUNT;
    default:
        return V_COUNT;
    }
}

/* 1 for a tchar of RFC 9110 (what uwsgi._TOKEN matches). */
static int
is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')) {
        return 1;
    }
    return c != 0 && strchr("-!#$%&'*+.^_`|~", c) != NULL;
}

/* 1 when p[0:n] equals the lower-case ASCII word, ignoring ASCII case. */
static int
ascii_ieq(const unsigned char *p, Py_ssize_t n, const char *word)
{
    if ((size_t)n != strlen(word)) {
        return 0;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = p[i];
        if (c >= 'A' && c <= 'Z') {
            c = (unsigned char)(c + 32);
        }
        if (c != (unsigned char)word[i]) {
            return 0;
        }
    }
    return 1;
}

/* The header name of an HTTP_ var (its bytes k[0:n]): cached, else made and cached. */
static PyObject *
raw_field_name(const unsigned char *k, Py_ssize_t n)
{
    size_t slot = slot_of(k, n, 8);
    PyObject *cached = raw_keys[slot];
    if (cached != NULL && PyBytes_GET_SIZE(cached) == n &&
        memcmp(PyBytes_AS_STRING(cached), k, (size_t)n) == 0) {
        Py_INCREF(raw_names[slot]);
        return raw_names[slot];
    }
    PyObject *name = PyBytes_FromStringAndSize(NULL, n - 5);
    if (name == NULL) {
        return NULL;
    }
    char *out = PyBytes_AS_STRING(name);
    for (Py_ssize_t i = 5; i < n; i++) {
        char c = (char)k[i];
        out[i - 5] = c == '_' ? '-' : (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
    }
    if (n <= KEY_MAX) {
        PyObject *key = PyBytes_FromStringAndSize((const char *)k, n);
        if (key == NULL) {
            Py_DECREF(name);
            return NULL;
        }
        Py_INCREF(name);
        Py_XSETREF(raw_keys[slot], key);
        Py_XSETREF(raw_names[slot], name);
    }
    return name;
}

/* A path var's bytes as text: UTF-8, undecodable bytes as U+FFFD (scope._path_text). */
static PyObject *
path_text(const unsigned char *p, Py_ssize_t n)
{
    if (n == 0) {
        Py_INCREF(s_empty);
        return s_empty;
    }
    return PyUnicode_DecodeUTF8((const char *)p, n, "replace");
}

/* A latin-1 var as str, through the short values' cache. A new reference, NULL on error. */
static PyObject *
var_str(const var_t *v)
{
    PyObject *str = cached_str(value_slots, 8, VALUE_MAX, 0, v->at, v->len);
    if (str == NULL && !PyErr_Occurred()) { /* cannot be: the block was checked */
        PyErr_SetString(PyExc_SystemError, "http_scope: a checked var held a bad byte");
    }
    return str;
}

/* (str of name, port) for a host var and its port var. */
static PyObject *
address(const var_t *host, const var_t *port)
{
    PyObject *pair[] = {var_str(host), port_of(port->at, port->present ? port->len : 0)};
    return stolen_tuple(2, pair);
}

/* scope["scheme"] as uwsgi.url_scheme decides it. Borrowed. */
static PyObject *
scheme_of(const var_t *vars)
{
    const var_t *https = &vars[V_HTTPS];
    if (https->present && https->len) {
        return ascii_ieq(https->at, https->len, "on") || ascii_ieq(https->at, https->len, "1") ||
                       ascii_ieq(https->at, https->len, "yes")
                   ? s_https
                   : s_http;
    }
    const var_t *scheme = &vars[V_UWSGI_SCHEME];
    if (!scheme->present || !scheme->len) {
        scheme = &vars[V_REQUEST_SCHEME];
    }
    if (!scheme->present || !scheme->len) {
        return s_http;
    }
    return ascii_ieq(scheme->at, scheme->len, "https") ? s_https : s_http;
}

/* scope["http_version"] from SERVER_PROTOCOL. A new reference. */
static PyObject *
version_of(const var_t *protocol)
{
    const unsigned char *p = protocol->at;
    Py_ssize_t n = protocol->present ? protocol->len : 0;
    PyObject *known = NULL;
    if (keyeq(p, n, "HTTP/1.1")) known = v_11;
    else if (keyeq(p, n, "HTTP/1.0")) known = v_10;
    else if (keyeq(p, n, "HTTP/2.0")) known = v_20;
    else if (keyeq(p, n, "HTTP/2")) known = v_2;
    else if (n > 5 && memcmp(p, "HTTP/", 5) == 0) {
        return PyUnicode_DecodeLatin1((const char *)p + 5, n - 5, NULL);
    }
    else known = v_11;
    Py_INCREF(known);
    return known;
}

/* scope["raw_path"]: REQUEST_URI up to its query (an absolute-form target cut to its path),
 * else SCRIPT_NAME and PATH_INFO as the head has them. */
static PyObject *
raw_path_of(const var_t *uri, const unsigned char *script, Py_ssize_t script_len,
            const unsigned char *path, Py_ssize_t path_len)
{
    if (uri->present && uri->len) {
        const unsigned char *p = uri->at;
        const unsigned char *q = memchr(p, '?', (size_t)uri->len);
        Py_ssize_t n = q == NULL ? uri->len : q - p;
        if (n == 0 || p[0] != '/') {
            for (Py_ssize_t i = 0; i + 3 <= n; i++) {
                if (p[i] == ':' && p[i + 1] == '/' && p[i + 2] == '/') {
                    const unsigned char *rest = p + i + 3;
                    Py_ssize_t rest_len = n - i - 3;
                    const unsigned char *slash = memchr(rest, '/', (size_t)rest_len);
                    if (slash == NULL) {
                        return PyBytes_FromStringAndSize("/", 1);
                    }
                    Py_ssize_t after_host = rest_len - (slash - rest);
                    return PyBytes_FromStringAndSize((const char *)slash, after_host);
                }
            }
        }
        return PyBytes_FromStringAndSize((const char *)p, n);
    }
    PyObject *raw = PyBytes_FromStringAndSize(NULL, script_len + path_len);
    if (raw != NULL) {
        if (script_len) memcpy(PyBytes_AS_STRING(raw), script, (size_t)script_len);
        if (path_len) memcpy(PyBytes_AS_STRING(raw) + script_len, path, (size_t)path_len);
    }
    return raw;
}

static PyObject *
http_scope(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 5 || !PyBytes_CheckExact(args[0]) || !PyLong_CheckExact(args[1]) ||
        !PyDict_CheckExact(args[2]) || !PyTuple_CheckExact(args[3]) ||
        !(args[4] == Py_None || PyDict_CheckExact(args[4]))) {
        PyErr_SetString(PyExc_TypeError,
                        "http_scope(packet: bytes, max_vars: int, template: dict, server: tuple, "
                        "state: dict | None)");
        return NULL;
    }
    const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    Py_ssize_t n = PyBytes_GET_SIZE(args[0]);
    Py_ssize_t max_vars = PyLong_AsSsize_t(args[1]);
    if (max_vars == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (n < 4) {
        Py_RETURN_NONE;
    }
    Py_ssize_t size = data[1] | data[2] << 8;
    if ((data[0] != 0 && data[0] != 30) || size == 0 || size > max_vars || n < 4 + size) {
        Py_RETURN_NONE;
    }
    const unsigned char *blk = data + 4;

    /* The pairs fit the block exactly, no key is empty, not too many. */
    Py_ssize_t pairs = 0;
    Py_ssize_t i = 0;
    while (i < size) {
        if (i + 2 > size) Py_RETURN_NONE;
        Py_ssize_t key_len = blk[i] | blk[i + 1] << 8;
        if (key_len == 0) Py_RETURN_NONE;
        i += 2 + key_len;
        if (i + 2 > size) Py_RETURN_NONE;
        i += 2 + (blk[i] | blk[i + 1] << 8);
        if (++pairs > MAX_PAIRS) Py_RETURN_NONE;
    }
    if (i != size) {
        Py_RETURN_NONE;
    }

    /* Every key once, ASCII, clean; every value clean; the scope's vars and the headers found. */
    uint16_t seen[SEEN_SLOTS]; /* 1 + where a key's pair starts; 0: a free slot */
    memset(seen, 0, sizeof seen);
    var_t vars[V_COUNT];
    memset(vars, 0, sizeof vars);
    uint16_t header_at[MAX_PAIRS]; /* where each header's pair starts */
    Py_ssize_t headers = 0;
    i = 0;
    while (i < size) {
        Py_ssize_t key_len = blk[i] | blk[i + 1] << 8;
        const unsigned char *key = blk + i + 2;
        Py_ssize_t value_at = i + 2 + key_len;
        Py_ssize_t value_len = blk[value_at] | blk[value_at + 1] << 8;
        const unsigned char *value = blk + value_at + 2;
        if (bad_key(key, key_len) || has_bad_byte(value, value_len)) {
            Py_RETURN_NONE;
        }
        size_t slot = slot_of(key, key_len, 9);
        while (seen[slot]) {
            Py_ssize_t other = seen[slot] - 1;
            if ((blk[other] | blk[other + 1] << 8) == key_len &&
                memcmp(blk + other + 2, key, (size_t)key_len) == 0) {
                Py_RETURN_NONE; /* a repeated key: parse_vars leaves it to the slow parser */
            }
            slot = (slot + 1) & (SEEN_SLOTS - 1);
        }
        seen[slot] = (uint16_t)(i + 1);
        if (key_len > 5 && memcmp(key, "HTTP_", 5) == 0) {
            if (keyeq(key, key_len, "HTTP_UPGRADE") ||
                keyeq(key, key_len, "HTTP_TRANSFER_ENCODING")) {
                Py_RETURN_NONE;
            }
            /* nginx's copies of the body's headers: CONTENT_LENGTH and CONTENT_TYPE stand for
             * them (PEP 3333), as in parse_head, which drops them */
            if (!keyeq(key, key_len, "HTTP_CONTENT_LENGTH") &&
                !keyeq(key, key_len, "HTTP_CONTENT_TYPE")) {
                header_at[headers++] = (uint16_t)i;
            }
        }
        else {
            int which = known_var(key, key_len);
            if (which != V_COUNT) {
                vars[which].at = value;
                vars[which].len = value_len;
                vars[which].present = 1;
                if (value_len && (which == V_CONTENT_LENGTH || which == V_CONTENT_TYPE)) {
                    header_at[headers++] = (uint16_t)i;
                }
            }
        }
        i = value_at + 2 + value_len;
    }

    /* What parse_head refuses, and a length it would take int()'s parser for. */
    const var_t *method = &vars[V_METHOD];
    if (!method->present || method->len == 0) {
        Py_RETURN_NONE;
    }
    for (Py_ssize_t j = 0; j < method->len; j++) {
        if (!is_tchar(method->at[j])) Py_RETURN_NONE;
    }
    uint64_t content_length = 0;
    const var_t *cl = &vars[V_CONTENT_LENGTH];
    if (cl->present && cl->len &&
        (cl->len > 18 || !ascii_digits(cl->at, cl->len, &content_length))) {
        Py_RETURN_NONE;
    }

    /* SCRIPT_NAME without its trailing slashes, cut from the front of PATH_INFO at a '/'. */
    const unsigned char *script = vars[V_SCRIPT_NAME].at;
    Py_ssize_t script_len = vars[V_SCRIPT_NAME].present ? vars[V_SCRIPT_NAME].len : 0;
    while (script_len && script[script_len - 1] == '/') {
        script_len--;
    }
    const unsigned char *path = vars[V_PATH_INFO].at;
    Py_ssize_t path_len = vars[V_PATH_INFO].present ? vars[V_PATH_INFO].len : 0;
    if (script_len && vars[V_PATH_INFO].present && path_len >= script_len &&
        memcmp(path, script, (size_t)script_len) == 0 &&
        (path_len == script_len || path[script_len] == '/')) {
        path += script_len;
        path_len -= script_len;
    }

    /* The headers, in the vars' order. */
    PyObject *fields = PyList_New(headers);
    if (fields == NULL) {
        return NULL;
    }
    for (Py_ssize_t h = 0; h < headers; h++) {
        Py_ssize_t at = header_at[h];
        Py_ssize_t key_len = blk[at] | blk[at + 1] << 8;
        const unsigned char *key = blk + at + 2;
        Py_ssize_t value_at = at + 2 + key_len;
        Py_ssize_t value_len = blk[value_at] | blk[value_at + 1] << 8;
        PyObject *name;
        if (key[0] == 'H') { /* HTTP_... */
            name = raw_field_name(key, key_len);
        }
        else {
            name = key_len == 12 ? b_content_type : b_content_length;
            Py_INCREF(name);
        }
        PyObject *pair[] = {
            name,
            name == NULL ? NULL
                         : PyBytes_FromStringAndSize((const char *)blk + value_at + 2, value_len),
        };
        PyObject *field = stolen_tuple(2, pair);
        if (field == NULL) {
            Py_DECREF(fields);
            return NULL;
        }
        PyList_SET_ITEM(fields, h, field);
    }

    /* The scope's values, in the template's order (state last); NULL where making one failed. */
    const var_t *remote = &vars[V_REMOTE_ADDR];
    const var_t *server_name = &vars[V_SERVER_NAME];
    const var_t *query = &vars[V_QUERY_STRING];
    PyObject *root_path = NULL;
    PyObject *path_str = path_text(path, path_len);
    if (script_len && path_str != NULL) {
        root_path = path_text(script, script_len);
        Py_SETREF(path_str, root_path == NULL ? NULL : PyUnicode_Concat(root_path, path_str));
    }
    else {
        root_path = s_empty;
        Py_INCREF(root_path);
    }
    PyObject *scheme = scheme_of(vars);
    Py_INCREF(scheme);
    PyObject *keys[] = {s_http_version, s_server,   s_client,       s_scheme,
                        s_method,       s_root_path, s_path,        s_raw_path,
                        s_query_string, s_headers,   s_state};
    PyObject *values[] = {
        version_of(&vars[V_PROTOCOL]),
        server_name->len ? address(server_name, &vars[V_SERVER_PORT])
                         : (Py_INCREF(args[3]), args[3]),
        remote->len ? address(remote, &vars[V_REMOTE_PORT]) : (Py_INCREF(Py_None), Py_None),
        scheme,
        var_str(method),
        root_path,
        path_str,
        raw_path_of(&vars[V_REQUEST_URI], script, script_len, path, path_len),
        query->len ? PyBytes_FromStringAndSize((const char *)query->at, query->len)
                   : (Py_INCREF(b_empty), b_empty),
        fields,
        args[4] == Py_None ? NULL : PyDict_Copy(args[4]),
    };
    const size_t count = sizeof values / sizeof values[0] - (args[4] == Py_None);
    PyObject *scope = NULL;
    for (size_t k = 0; k < count; k++) {
        if (values[k] == NULL) {
            goto done;
        }
    }
    scope = PyDict_Copy(args[2]);
    for (size_t k = 0; scope != NULL && k < count; k++) {
        if (PyDict_SetItem(scope, keys[k], values[k]) < 0) {
            Py_CLEAR(scope);
        }
    }
done:
    for (size_t k = 0; k < count; k++) {
        Py_XDECREF(values[k]);
    }
    if (scope == NULL) {
        return NULL;
    }
    PyObject *result[] = {
        scope,
        PyLong_FromSsize_t(4 + size),
        PyLong_FromUnsignedLongLong(content_length),
    };
    return stolen_tuple(3, result);
}

static PyMethodDef methods[] = {
    {"parse_vars", parse_vars, METH_O,
     "parse_vars(block, /)\n--\n\n"
     "The dict of a well-formed uwsgi vars block (keys and values decoded latin-1), or None\n"
     "when anything is unusual: an overrun, an empty key, a repeated key, a CR, LF or NUL."},
    {"header_fields", header_fields, METH_O,
     "header_fields(environ, /)\n--\n\n"
     "The HTTP header fields of a vars dict as (name, value) bytes pairs, in its order: each\n"
     "HTTP_* var, and CONTENT_TYPE and CONTENT_LENGTH when not empty; None for a dict left to\n"
     "the Python twin (a key not ASCII, a key or value not a latin-1 str)."},
    {"http_scope", (PyCFunction)(void (*)(void))http_scope, METH_FASTCALL,
     "http_scope(packet, max_vars, template, server, state, /)\n--\n\n"
     "(scope, bytes used, content length) of a packet starting with a well-formed uwsgi\n"
     "request head, straight from its vars block; None for anything the general path takes."},
    {"port_number", port_number, METH_O,
     "port_number(value, /)\n--\n\n"
     "A port var (str or None) as an int; None when empty, absent or not all ASCII digits."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    "monoceros.protocols._uwsgi_vars",
    "The uwsgi vars block in C (the twins of uwsgi._vars_fast, uwsgi._header_fields, "
    "uwsgi._port_number and scope.UwsgiScopeBuilder._packet_scope).",
    -1,
    methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

static int
make_constants(void)
{
    struct {
        PyObject **slot;
        const char *text;
    } strs[] = {
        {&s_http_version, "http_version"}, {&s_server, "server"}, {&s_client, "client"},
        {&s_scheme, "scheme"}, {&s_method, "method"}, {&s_root_path, "root_path"},
        {&s_path, "path"}, {&s_raw_path, "raw_path"}, {&s_query_string, "query_string"},
        {&s_headers, "headers"}, {&s_state, "state"}, {&s_http, "http"}, {&s_https, "https"},
        {&s_empty, ""}, {&v_11, "1.1"}, {&v_10, "1.0"}, {&v_20, "2.0"}, {&v_2, "2"},
    };
    for (size_t k = 0; k < sizeof strs / sizeof strs[0]; k++) {
        if ((*strs[k].slot = PyUnicode_InternFromString(strs[k].text)) == NULL) {
            return -1;
        }
    }
    b_empty = PyBytes_FromStringAndSize("", 0);
    b_content_type = PyBytes_FromString("content-type");
    b_content_length = PyBytes_FromString("content-length");
    return b_empty == NULL || b_content_type == NULL || b_content_length == NULL ? -1 : 0;
}

PyMODINIT_FUNC
PyInit__uwsgi_vars(void)
{
    if (make_constants() < 0) {
        return NULL;
    }
    return PyModule_Create(&module_def);
}
