/* A worker's request counting, in C: the stores of monoceros.worker_metrics.Recorder into the
 * worker's shared block (see docs/performance.md, "The compiled core").
 *
 * count(q, d, section, status, duration, start_at) is the twin of
 * monoceros.worker_metrics._count, and pack_slot(block, offset, method, path, start) of
 * monoceros.worker_metrics._pack_slot: the same contract, pinned to them case by case by
 * tests/unit/test_counting_native.py. The Python twins index memoryview casts of the block
 * (each item a boxed int or float: about 400 instructions a counter) and pack the request slot
 * with struct.pack_into; here a counter is one load and one store.
 *
 * The order of the stores is the Python twins' (count goes statement by statement as _count
 * does, so even an error leaves what it leaves) and is what the master's reader relies on
 * (monoceros.worker_metrics): count frees the request slot (its start = 0.0) after the counts;
 * pack_slot stores 0.0 as the start first, then the text, then the start. A release store
 * keeps the compiler from moving the other stores past it; x86-64 and arm64 keep aligned 8-byte
 * stores whole.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* A request slot: the method (cut to METHOD_MAX bytes), the path (to TEXT_MAX - METHOD_MAX),
 * both NUL-padded, then the start as a native double: struct "@16s224sd". */
#define METHOD_MAX 16
#define TEXT_MAX 240
#define SLOT_SIZE (TEXT_MAX + 8)

static inline void
store_double_release(char *at, double value)
{
    uint64_t bits;
    memcpy(&bits, &value, 8);
    __atomic_store_n((uint64_t *)at, bits, __ATOMIC_RELEASE);
}

/* Item i of a buffer of n 8-byte items, a negative i counted from the end as a memoryview
 * does; NULL and IndexError outside it. */
static char *
item_at(Py_buffer *view, Py_ssize_t i)
{
    Py_ssize_t n = view->len / 8;
    if (i < 0) {
        i += n;
    }
    if (i < 0 || i >= n) {
        PyErr_SetString(PyExc_IndexError, "index out of bounds on dimension 1");
        return NULL;
    }
    return (char *)view->buf + i * 8;
}

static int
get_items(PyObject *obj, Py_buffer *view)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_WRITABLE) < 0) {
        if (PyErr_ExceptionMatches(PyExc_BufferError)) { /* read-only: as the twin says it */
            PyErr_Clear();
            PyErr_SetString(PyExc_TypeError,
                            "count: expected writable memoryviews of 8-byte items");
        }
        return -1;
    }
    if (view->itemsize != 8) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_TypeError, "count: expected memoryviews of 8-byte items");
        return -1;
    }
    return 0;
}

/* a counter += 1, as the memoryview does it: ValueError at the largest value */
static int
increment(char *at)
{
    int64_t n;
    memcpy(&n, at, 8);
    if (n == INT64_MAX) {
        PyErr_SetString(PyExc_ValueError, "memoryview: invalid value for format 'q'");
        return -1;
    }
    n += 1;
    memcpy(at, &n, 8);
    return 0;
}

/* The duration histogram's finite upper bounds (seconds): worker_metrics.BUCKETS. */
static const double BOUNDS[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0};
#define NBOUNDS ((Py_ssize_t)(sizeof(BOUNDS) / sizeof(BOUNDS[0])))

/* An int argument as an index: clamped beyond any block when it does not fit (the Python twin
 * then meets an IndexError too); -1 and an exception for anything but an int. */
static int
index_of(PyObject *obj, Py_ssize_t *out)
{
    if (!PyLong_Check(obj)) {
        PyErr_SetString(PyExc_TypeError, "count: an index must be an int");
        return -1;
    }
    int overflow;
    long long value = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (value == -1 && PyErr_Occurred()) {
        return -1;
    }
    *out = overflow < 0                        ? PY_SSIZE_T_MIN
           : overflow > 0                      ? PY_SSIZE_T_MAX
           : value < (long long)PY_SSIZE_T_MIN ? PY_SSIZE_T_MIN
           : value > (long long)PY_SSIZE_T_MAX ? PY_SSIZE_T_MAX
                                               : (Py_ssize_t)value;
    return 0;
}

/* base + offset, clamped as index_of clamps */
static Py_ssize_t
offset_index(Py_ssize_t base, Py_ssize_t offset)
{
    Py_ssize_t sum;
    if (__builtin_add_overflow(base, offset, &sum)) {
        return offset < 0 ? PY_SSIZE_T_MIN : PY_SSIZE_T_MAX;
    }
    return sum;
}

static PyObject *
count(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_Format(PyExc_TypeError, "count expected 6 arguments, got %zd", nargs);
        return NULL;
    }
    PyObject *section = args[2];
    if (!PyTuple_Check(section)) {
        PyErr_SetString(PyExc_TypeError, "count: the section must be a tuple of 3 ints");
        return NULL;
    }
    if (PyTuple_GET_SIZE(section) != 3) { /* as the twin's unpacking */
        PyErr_SetString(PyExc_ValueError, "count: the section must be a tuple of 3 ints");
        return NULL;
    }
    Py_ssize_t counts, histogram, total, status, start_at;
    if (index_of(PyTuple_GET_ITEM(section, 0), &counts) < 0 ||
        index_of(PyTuple_GET_ITEM(section, 1), &histogram) < 0 ||
        index_of(PyTuple_GET_ITEM(section, 2), &total) < 0 || index_of(args[3], &status) < 0 ||
        index_of(args[5], &start_at) < 0) {
        return NULL;
    }
    if (!PyFloat_Check(args[4]) && !PyLong_Check(args[4])) {
        PyErr_SetString(PyExc_TypeError, "count: the duration must be a float");
        return NULL;
    }
    double duration = PyFloat_AsDouble(args[4]);
    if (duration == -1.0 && PyErr_Occurred()) { /* an int too large: as compiled code says */
        PyErr_SetString(PyExc_TypeError, "count: the duration must be a float");
        return NULL;
    }
    /* counts + status as Python adds them: two ints beyond an index may sum to one */
    Py_ssize_t status_at = offset_index(counts, status);
    if (counts == PY_SSIZE_T_MIN || counts == PY_SSIZE_T_MAX || status == PY_SSIZE_T_MIN ||
        status == PY_SSIZE_T_MAX) {
        PyObject *sum = PyNumber_Add(PyTuple_GET_ITEM(section, 0), args[3]);
        if (sum == NULL || index_of(sum, &status_at) < 0) {
            Py_XDECREF(sum);
            return NULL;
        }
        Py_DECREF(sum);
    }
    Py_buffer q, d;
    if (get_items(args[0], &q) < 0) {
        return NULL;
    }
    if (get_items(args[1], &d) < 0) {
        PyBuffer_Release(&q);
        return NULL;
    }
    /* statement by statement as the Python twin, so an error leaves what it leaves */
    int ok = 0;
    char *item = item_at(&q, status_at);
    if (item == NULL || increment(item) < 0) {
        goto done;
    }
    if (duration > BOUNDS[0]) { /* the first bucket is derived: total minus the others */
        Py_ssize_t bucket = 1; /* bisect_left: the first bound >= duration */
        while (bucket < NBOUNDS && BOUNDS[bucket] < duration) {
            bucket++;
        }
        item = item_at(&q, offset_index(histogram, bucket));
        if (item == NULL || increment(item) < 0) {
            goto done;
        }
    }
    item = item_at(&d, total);
    if (item == NULL) {
        goto done;
    }
    double sum;
    memcpy(&sum, item, 8);
    sum += duration;
    memcpy(item, &sum, 8);
    item = item_at(&d, start_at);
    if (item == NULL) {
        goto done;
    }
    store_double_release(item, 0.0); /* free last */
    ok = 1;
done:
    PyBuffer_Release(&d);
    PyBuffer_Release(&q);
    if (!ok) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* The bytes of a str or bytes, a str's as latin-1: 1, or 0 for a str that is not latin-1. */
static int
latin1_of(PyObject *obj, const char **data, Py_ssize_t *size)
{
    if (PyBytes_CheckExact(obj)) {
        *data = PyBytes_AS_STRING(obj);
        *size = PyBytes_GET_SIZE(obj);
        return 1;
    }
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(obj) < 0) {
        return -1;
    }
#endif
    if (PyUnicode_KIND(obj) != PyUnicode_1BYTE_KIND) {
        return 0;
    }
    *data = (const char *)PyUnicode_1BYTE_DATA(obj);
    *size = PyUnicode_GET_LENGTH(obj);
    return 1;
}

static PyObject *
pack_slot(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_Format(PyExc_TypeError, "pack_slot expected 5 arguments, got %zd", nargs);
        return NULL;
    }
    PyObject *path_obj = args[3];
    if (!PyUnicode_CheckExact(args[2]) ||
        !(PyUnicode_CheckExact(path_obj) || PyBytes_CheckExact(path_obj)) ||
        !PyLong_Check(args[1]) || !(PyFloat_Check(args[4]) || PyLong_Check(args[4]))) {
        PyErr_SetString(PyExc_TypeError,
                        "pack_slot: expected an int offset, a str method, a str or bytes path "
                        "and a float start");
        return NULL;
    }
    double start = PyFloat_AsDouble(args[4]);
    if (start == -1.0 && PyErr_Occurred()) { /* an int too large: as compiled code says */
        PyErr_SetString(PyExc_TypeError, "pack_slot: the start must be a float");
        return NULL;
    }
    Py_ssize_t offset = PyLong_AsSsize_t(args[1]);
    if (offset == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        offset = -1; /* outside the block, as below */
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (offset < 0 || offset > view.len - SLOT_SIZE) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "pack_slot: the slot is outside the block");
        return NULL;
    }
    if (view.readonly) { /* struct.pack_into's error, after the offset's as in the twin */
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_TypeError, "pack_slot: the block is read-only");
        return NULL;
    }
    const char *method, *path;
    Py_ssize_t method_size, path_size;
    int ok = latin1_of(args[2], &method, &method_size);
    if (ok == 1) {
        ok = latin1_of(path_obj, &path, &path_size);
    }
    if (ok != 1) {
        PyBuffer_Release(&view);
        if (ok < 0) {
            return NULL;
        }
        Py_RETURN_FALSE; /* not latin-1: the caller writes it with replacements */
    }
    char *slot = (char *)view.buf + offset;
    store_double_release(slot + TEXT_MAX, 0.0); /* read as free while the text changes */
    if (method_size > METHOD_MAX) {
        method_size = METHOD_MAX;
    }
    if (path_size > TEXT_MAX - METHOD_MAX) {
        path_size = TEXT_MAX - METHOD_MAX;
    }
    memcpy(slot, method, method_size);
    memset(slot + method_size, 0, METHOD_MAX - method_size);
    memcpy(slot + METHOD_MAX, path, path_size);
    memset(slot + METHOD_MAX + path_size, 0, TEXT_MAX - METHOD_MAX - path_size);
    store_double_release(slot + TEXT_MAX, start);
    PyBuffer_Release(&view);
    Py_RETURN_TRUE;
}

static PyMethodDef methods[] = {
    {"count", (PyCFunction)(void (*)(void))count, METH_FASTCALL,
     "count(q, d, section, status, duration, start_at, /)\n--\n\n"
     "Count one response in a counter section (its status counters', histogram's and\n"
     "duration sum's indices): its status, its duration's bucket (none below the first\n"
     "bound), the sum; then d[start_at] = 0.0 (q, d: memoryviews of 8-byte items)."},
    {"pack_slot", (PyCFunction)(void (*)(void))pack_slot, METH_FASTCALL,
     "pack_slot(block, offset, method, path, start, /)\n--\n\n"
     "Write a request slot (struct \"@16s224sd\": method, path, start) at offset: True, or\n"
     "False with nothing written when method or path is a str that is not latin-1."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    "monoceros._counting",
    "A worker's request counting in C (the twins of worker_metrics._count and _pack_slot).",
    -1,
    methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit__counting(void)
{
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL) {
        return NULL;
    }
    PyObject *bounds = PyTuple_New(NBOUNDS);
    if (bounds == NULL) {
        Py_DECREF(module);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < NBOUNDS; i++) {
        PyObject *bound = PyFloat_FromDouble(BOUNDS[i]);
        if (bound == NULL) {
            Py_DECREF(bounds);
            Py_DECREF(module);
            return NULL;
        }
        PyTuple_SET_ITEM(bounds, i, bound);
    }
    if (PyModule_AddIntConstant(module, "METHOD_MAX", METHOD_MAX) < 0 ||
        PyModule_AddIntConstant(module, "TEXT_MAX", TEXT_MAX) < 0 ||
        PyModule_AddObject(module, "BUCKETS", bounds) < 0) {
        Py_XDECREF(bounds);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
