/* The application's header lines of a response, checked and joined in C.
 *
 * header_block(headers, kinds, text) -> tuple[bytes, int | None, bool] | None is the twin of
 * monoceros.protocols.response._header_block, pinned to it case by case by
 * tests/unit/test_response_head_native.py. It answers for the headers every application sends
 * on every response: a list or tuple of (name, value) tuples whose names it finds in ``kinds``
 * (the names the Python twin has checked and classified before: tokens, each with its kind)
 * and whose values are exact str (latin-1) when ``text`` (WSGI), exact bytes otherwise (ASGI).
 * It returns the joined "name: value\r\n" lines of the ordinary fields, the Content-Length the
 * application gave (None if none) and whether its Connection field asked to close; hop-by-hop
 * fields are dropped. Anything else -- a name not seen before, another type, a value holding a
 * control character (RFC 9110 5.5: none but HTAB), a Content-Length that is not plain digits --
 * returns None, and the Python twin checks, caches the name, or raises the precise error.
 *
 * What C buys over the mypyc build of the same loop (per response of two headers, about 4k
 * instructions): no list of parts and no join, no attribute lookups for the type checks, and
 * the control-character check made while copying instead of a translate and a count over the
 * joined block.
 *
 * The GIL is held throughout. Nothing is cached here: ``kinds`` is the Python twin's table.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

/* The kinds of monoceros.protocols.response: write it, read its length, hear its close, drop. */
#define KIND_ORDINARY 0
#define KIND_CONTENT_LENGTH 1
#define KIND_CONNECTION 2
#define KIND_HOP 3

/* A Content-Length of at most this many digits is read here (it fits a long long). */
#define LENGTH_DIGITS_MAX 18

/* 1 for the controls a field may not hold: CTL but HTAB (0x00-0x08, 0x0a-0x1f, 0x7f). */
static unsigned char forbidden[256];

/* The lines are built in a buffer on the stack while they fit, then on the heap. */
#define STACK_BUFFER 1024

typedef struct {
    char *data;
    Py_ssize_t used;
    Py_ssize_t size;
    char local[STACK_BUFFER];
} Buffer;

static int
buffer_reserve(Buffer *buffer, Py_ssize_t more)
{
    if (buffer->used + more <= buffer->size) {
        return 0;
    }
    Py_ssize_t size = buffer->size;
    while (size < buffer->used + more) {
        if (size > PY_SSIZE_T_MAX / 2) {
            PyErr_NoMemory();
            return -1;
        }
        size *= 2;
    }
    char *data;
    if (buffer->data == buffer->local) {
        data = PyMem_Malloc((size_t)size);
        if (data != NULL) {
            memcpy(data, buffer->local, (size_t)buffer->used);
        }
    }
    else {
        data = PyMem_Realloc(buffer->data, (size_t)size);
    }
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    buffer->data = data;
    buffer->size = size;
    return 0;
}

static void
buffer_free(Buffer *buffer)
{
    if (buffer->data != buffer->local) {
        PyMem_Free(buffer->data);
    }
}

/* Copy n bytes to the buffer; 1 if one of them is a forbidden control (nothing is kept then). */
static int
clean_copy(char *out, const unsigned char *text, Py_ssize_t n)
{
    unsigned char seen = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        seen |= forbidden[text[i]];
    }
    if (seen) {
        return 1;
    }
    memcpy(out, text, (size_t)n);
    return 0;
}

/* The bytes of a name or value: an exact bytes, or an exact latin-1 str when text. */
static int
field_bytes(PyObject *object, int text, const unsigned char **data, Py_ssize_t *size)
{
    if (text) {
        if (!PyUnicode_CheckExact(object) || PyUnicode_KIND(object) != PyUnicode_1BYTE_KIND) {
            return -1;
        }
        *data = (const unsigned char *)PyUnicode_DATA(object);
        *size = PyUnicode_GET_LENGTH(object);
        return 0;
    }
    if (!PyBytes_CheckExact(object)) {
        return -1;
    }
    *data = (const unsigned char *)PyBytes_AS_STRING(object);
    *size = PyBytes_GET_SIZE(object);
    return 0;
}

/* "close" anywhere in the value, ASCII letters in any case (what ``value.lower()`` finds: no
 * other latin-1 letter lowers to an ASCII one). */
static int
asks_to_close(const unsigned char *text, Py_ssize_t n)
{
    static const char close[] = "close";
    for (Py_ssize_t i = 0; i + 5 <= n; i++) {
        Py_ssize_t j = 0;
        while (j < 5 && (text[i + j] | 0x20) == (unsigned char)close[j]) {
            j++;
        }
        if (j == 5) {
            return 1;
        }
    }
    return 0;
}

static PyObject *
header_block(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "header_block() takes 3 arguments (%zd given)", nargs);
        return NULL;
    }
    PyObject *headers = args[0];
    PyObject *kinds = args[1];
    int text = PyObject_IsTrue(args[2]);
    if (text < 0) {
        return NULL;
    }
    if ((!PyList_CheckExact(headers) && !PyTuple_CheckExact(headers)) ||
        !PyDict_CheckExact(kinds)) {
        Py_RETURN_NONE;
    }
    Buffer buffer;
    buffer.data = buffer.local;
    buffer.used = 0;
    buffer.size = STACK_BUFFER;
    long long length = -1;
    int closes = 0;
    /* The size is read on every turn: a dict lookup can run Python code (a key's __eq__). */
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(headers); i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(headers, i); /* a list's or a tuple's */
        if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 2) {
            goto python_twin;
        }
        Py_INCREF(item); /* held while the lookup runs; its name and value are held by it */
        PyObject *name = PyTuple_GET_ITEM(item, 0);
        PyObject *value = PyTuple_GET_ITEM(item, 1);
        const unsigned char *name_data;
        const unsigned char *value_data;
        Py_ssize_t name_size;
        Py_ssize_t value_size;
        if (field_bytes(name, text, &name_data, &name_size) < 0 ||
            field_bytes(value, text, &value_data, &value_size) < 0) {
            Py_DECREF(item);
            goto python_twin;
        }
        PyObject *kind_object = PyDict_GetItemWithError(kinds, name); /* borrowed */
        if (kind_object == NULL || !PyLong_CheckExact(kind_object)) {
            Py_DECREF(item);
            if (PyErr_Occurred()) {
                buffer_free(&buffer);
                return NULL;
            }
            goto python_twin;
        }
        long kind = PyLong_AsLong(kind_object);
        if (kind == KIND_ORDINARY) {
            if (buffer_reserve(&buffer, name_size + value_size + 4) < 0) {
                Py_DECREF(item);
                buffer_free(&buffer);
                return NULL;
            }
            char *out = buffer.data + buffer.used;
            if (clean_copy(out, name_data, name_size) ||
                clean_copy(out + name_size + 2, value_data, value_size)) {
                Py_DECREF(item);
                goto python_twin;
            }
            out[name_size] = ':';
            out[name_size + 1] = ' ';
            out[name_size + 2 + value_size] = '\r';
            out[name_size + 3 + value_size] = '\n';
            buffer.used += name_size + value_size + 4;
        }
        else if (kind == KIND_CONTENT_LENGTH) {
            if (value_size < 1 || value_size > LENGTH_DIGITS_MAX) {
                Py_DECREF(item);
                goto python_twin;
            }
            long long number = 0;
            for (Py_ssize_t j = 0; j < value_size; j++) {
                unsigned char digit = (unsigned char)(value_data[j] - '0');
                if (digit > 9) {
                    Py_DECREF(item);
                    goto python_twin;
                }
                number = number * 10 + digit;
            }
            length = number; /* the last one counts, as in the twin */
        }
        else if (kind == KIND_CONNECTION) {
            closes |= asks_to_close(value_data, value_size);
        }
        else if (kind != KIND_HOP) {
            Py_DECREF(item);
            goto python_twin;
        }
        Py_DECREF(item);
    }
    PyObject *block = PyBytes_FromStringAndSize(buffer.data, buffer.used);
    buffer_free(&buffer);
    if (block == NULL) {
        return NULL;
    }
    PyObject *number;
    if (length < 0) {
        number = Py_None;
        Py_INCREF(number);
    }
    else {
        number = PyLong_FromLongLong(length);
        if (number == NULL) {
            Py_DECREF(block);
            return NULL;
        }
    }
    PyObject *result = PyTuple_New(3);
    if (result == NULL) {
        Py_DECREF(block);
        Py_DECREF(number);
        return NULL;
    }
    PyObject *flag = closes ? Py_True : Py_False;
    Py_INCREF(flag);
    PyTuple_SET_ITEM(result, 0, block);
    PyTuple_SET_ITEM(result, 1, number);
    PyTuple_SET_ITEM(result, 2, flag);
    return result;
python_twin:
    buffer_free(&buffer);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"header_block", (PyCFunction)(void (*)(void))header_block, METH_FASTCALL,
     "header_block(headers, kinds, text, /)\n--\n\n"
     "The joined header lines of a response, its Content-Length (None if none) and whether\n"
     "its Connection field asks to close; None for headers left to the Python twin (a name\n"
     "not in kinds, another type, a control character, a length not plain digits)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    "monoceros.protocols._response_head",
    "A response's header lines in C (the twin of response._header_block).",
    -1,
    methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit__response_head(void)
{
    for (int c = 0; c < 256; c++) {
        forbidden[c] = (c < 0x20 && c != '\t') || c == 0x7f;
    }
    return PyModule_Create(&module_def);
}
