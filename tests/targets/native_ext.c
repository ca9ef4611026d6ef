/* A C extension for tests/integration/native.rs, built at test time against the interpreter's
 * own headers: descend(n, fn) calls back into Python, fn(n), so that Python and C frames
 * alternate on the stack a known number of times. Built with -O0 so the call stays a call
 * (no tail call) and the frame is where its DWARF says. Python 2.7 and 3.x. */
#include <Python.h>

static PyObject *descend(PyObject *self, PyObject *args)
{
    int n;
    PyObject *fn;
    PyObject *result;
    (void)self;
    if (!PyArg_ParseTuple(args, "iO", &n, &fn))
        return NULL;
    result = PyObject_CallFunction(fn, "i", n); /* @c:call */
    return result;
}

static PyMethodDef methods[] = {
    {"descend", descend, METH_VARARGS, "descend(n, fn): return fn(n), called from C."},
    {NULL, NULL, 0, NULL},
};

#if PY_MAJOR_VERSION >= 3
static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "native_ext", NULL, -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit_native_ext(void)
{
    return PyModule_Create(&module);
}
#else
PyMODINIT_FUNC initnative_ext(void)
{
    Py_InitModule("native_ext", methods);
}
#endif
