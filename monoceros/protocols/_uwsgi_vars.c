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


/* The twin of uwsgi._port_number: a port var as an int, None when empty or not all ASCII
 * digits. Up to 18 digits are summed here; a longer run of ASCII digits is left to int()'s
 * own parser (an int of any size, as the twin makes). Anything but a str or None: TypeError. */
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
    Py_ssize_t n = PyUnicode_GET_LENGTH(value);
    if (n == 0 || PyUnicode_KIND(value) != PyUnicode_1BYTE_KIND) {
        Py_RETURN_NONE; /* a wider str has a char past U+00FF: not all ASCII digits */
    }
    const unsigned char *p = PyUnicode_1BYTE_DATA(value);
    uint64_t number = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned digit = (unsigned)p[i] - '0';
        if (digit > 9) {
            Py_RETURN_NONE;
        }
        number = number * 10 + digit;
    }
    if (n > 18) {
        return PyLong_FromUnicodeObject(value, 10);
    }
    return PyLong_FromUnsignedLongLong(number);
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
    {"port_number", port_number, METH_O,
     "port_number(value, /)\n--\n\n"
     "A port var (str or None) as an int; None when empty, absent or not all ASCII digits."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    "monoceros.protocols._uwsgi_vars",
    "The uwsgi vars block in C (the twins of uwsgi._vars_fast, uwsgi._header_fields and "
    "uwsgi._port_number).",
    -1,
    methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit__uwsgi_vars(void)
{
    return PyModule_Create(&module_def);
}
