// rnnfused host code: the hand-written CPython module rnnfused._C. Importing it loads the
// library, which registers the ops (registration.cpp) with the dispatcher; its functions answer a
// few questions about the build:
//   built_with_cuda()   whether this build has the CUDA kernels
//   switches()          every RNNFUSED_* environment switch (csrc/switches.h)
//   cpu_isa()           the instruction set the CPU kernels run with now
//   cuda_kernel_name()  the CUDA launcher's kernel choice (only where the CUDA path is built)
#include <Python.h>

#include <ATen/ATen.h>

#include <exception>
#include <string>

#include "../cpu/rnn_cpu.h"
#include "../switches.h"
#include "backend.h"

namespace {

PyObject* py_built_with_cuda(PyObject*, PyObject*) {
  return PyBool_FromLong(rnnfused::backend::kBuiltWithCuda ? 1 : 0);
}

PyObject* py_cpu_isa(PyObject*, PyObject*) {
  try {
    return PyUnicode_FromString(rnnfused::cpu_isa_name());
  } catch (const std::exception& e) {  // e.g. RNNFUSED_CPU_ISA names one the processor lacks
    PyErr_SetString(PyExc_RuntimeError, e.what());
    return nullptr;
  }
}

// [(name, [choices], what)] for every environment switch (csrc/switches.h).
PyObject* py_switches(PyObject*, PyObject*) {
  const auto& all = rnnfused::switches::all();
  PyObject* list = PyList_New(static_cast<Py_ssize_t>(all.size()));
  if (!list) return nullptr;
  for (size_t i = 0; i < all.size(); ++i) {
    PyObject* choices = PyList_New(static_cast<Py_ssize_t>(all[i].choices.size()));
    if (!choices) { Py_DECREF(list); return nullptr; }
    for (size_t j = 0; j < all[i].choices.size(); ++j)
      PyList_SET_ITEM(choices, j, PyUnicode_FromString(all[i].choices[j].c_str()));
    PyList_SET_ITEM(list, i, Py_BuildValue("(sNs)", all[i].name.c_str(), choices, all[i].what.c_str()));
  }
  return list;
}

PyObject* py_cuda_kernel_name(PyObject*, PyObject* args) {
  long long B = 0, H = 0;
  const char* dtype = nullptr;
  int backward = 0;
  if (!PyArg_ParseTuple(args, "LLsp", &B, &H, &dtype, &backward)) return nullptr;
  const std::string d(dtype);
  c10::ScalarType st = d == "float64"   ? at::kDouble
                       : d == "float16" ? at::kHalf
                       : d == "bfloat16" ? at::kBFloat16
                                         : at::kFloat;
  try {
    return PyUnicode_FromString(rnnfused::backend::cuda_kernel_name(B, H, st, backward != 0));
  } catch (const std::exception& e) {  // never let a C++ exception cross into Python's C API
    PyErr_SetString(PyExc_RuntimeError, e.what());
    return nullptr;
  }
}

PyMethodDef methods[] = {
    {"built_with_cuda", py_built_with_cuda, METH_NOARGS,
     "True if this build has the CUDA kernels."},
    {"switches", py_switches, METH_NOARGS,
     "[(name, choices, what)] for every RNNFUSED_* environment switch the extension reads."},
    {"cpu_isa", py_cpu_isa, METH_NOARGS,
     "The instruction set the CPU kernels run with now: 'avx512', 'avx2', 'default' or 'vec16' "
     "(RNNFUSED_CPU_ISA if set, else the best this processor has)."},
    {nullptr, nullptr, 0, nullptr}};

// Added only where this build has the CUDA code path (a GPU build, or the emulation build).
PyMethodDef cuda_path_methods[] = {
    {"cuda_kernel_name", py_cuda_kernel_name, METH_VARARGS,
     "cuda_kernel_name(B, H, dtype: str, backward: bool) -> the kernel the CUDA launcher picks."},
    {nullptr, nullptr, 0, nullptr}};

#ifndef TORCH_EXTENSION_NAME  // set by torch.utils.cpp_extension: the module's own name
#define TORCH_EXTENSION_NAME _C
#endif
#define RNNFUSED_PY_STR2(x) #x
#define RNNFUSED_PY_STR(x) RNNFUSED_PY_STR2(x)
#define RNNFUSED_PY_CAT2(a, b) a##b
#define RNNFUSED_PY_CAT(a, b) RNNFUSED_PY_CAT2(a, b)

PyModuleDef module_def = {PyModuleDef_HEAD_INIT, RNNFUSED_PY_STR(TORCH_EXTENSION_NAME),
                          "rnnfused C++/CUDA ops", -1, methods};

}  // namespace

PyMODINIT_FUNC RNNFUSED_PY_CAT(PyInit_, TORCH_EXTENSION_NAME)(void) {
  PyObject* module = PyModule_Create(&module_def);
  if (module && rnnfused::backend::kHasCudaPath &&
      PyModule_AddFunctions(module, cuda_path_methods) < 0) {
    Py_DECREF(module);
    return nullptr;
  }
  return module;
}
