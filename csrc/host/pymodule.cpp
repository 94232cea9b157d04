// rnnfused host code: the hand-written CPython module rnnfused._C. Importing it loads the
// library, which registers the ops (registration.cpp) with the dispatcher; its functions answer a
// few questions about the build:
//   built_with_cuda()   whether this build has the CUDA kernels
//   switches()          every RNNFUSED_* environment switch (csrc/switches.h)
//   cpu_isa()           the instruction set the CPU kernels run with now
//   cuda_kernel_name()  the CUDA launcher's kernel choice (only where the CUDA path is built)
//   cuda_persistent_plan()  the persistent kernel's plan and co-residency (likewise)
//   cuda_archs()        the architectures the CUDA code was compiled for (likewise)
#include <Python.h>

#include <ATen/ATen.h>

#include <exception>
#include <string>
#include <utility>
#include <vector>

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

c10::ScalarType dtype_of(const std::string& d) {
  return d == "float64" ? at::kDouble : d == "float16" ? at::kHalf : d == "bfloat16" ? at::kBFloat16 : at::kFloat;
}

PyObject* py_cuda_kernel_name(PyObject*, PyObject* args) {
  long long B = 0, H = 0;
  const char* dtype = nullptr;
  int backward = 0;
  if (!PyArg_ParseTuple(args, "LLsp", &B, &H, &dtype, &backward)) return nullptr;
  const c10::ScalarType st = dtype_of(dtype);
  try {
    return PyUnicode_FromString(rnnfused::backend::cuda_kernel_name(B, H, st, backward != 0));
  } catch (const std::exception& e) {  // never let a C++ exception cross into Python's C API
    PyErr_SetString(PyExc_RuntimeError, e.what());
    return nullptr;
  }
}

// {"ok": 0/1, "why": str, "G", "NBg", "ctas", "threads", "regs", "smem", "sm_count",
//  "driver_per_sm", "rule_per_sm"}
PyObject* py_cuda_persistent_plan(PyObject*, PyObject* args) {
  long long B = 0, H = 0;
  const char* dtype = nullptr;
  int backward = 0;
  if (!PyArg_ParseTuple(args, "LLsp", &B, &H, &dtype, &backward)) return nullptr;
  std::string why;
  std::vector<std::pair<std::string, int64_t>> fields;
  try {
    fields = rnnfused::backend::cuda_persistent_plan(B, H, dtype_of(dtype), backward != 0, &why);
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
    return nullptr;
  }
  PyObject* d = PyDict_New();
  if (!d) return nullptr;
  for (const auto& [k, v] : fields) {
    PyObject* o = PyLong_FromLongLong(v);
    if (!o || PyDict_SetItemString(d, k.c_str(), o) < 0) { Py_XDECREF(o); Py_DECREF(d); return nullptr; }
    Py_DECREF(o);
  }
  PyObject* w = PyUnicode_FromString(why.c_str());
  if (!w || PyDict_SetItemString(d, "why", w) < 0) { Py_XDECREF(w); Py_DECREF(d); return nullptr; }
  Py_DECREF(w);
  return d;
}

PyObject* int_list(const std::vector<int>& v) {
  PyObject* l = PyList_New(static_cast<Py_ssize_t>(v.size()));
  if (!l) return nullptr;
  for (size_t i = 0; i < v.size(); ++i) PyList_SET_ITEM(l, i, PyLong_FromLong(v[i]));
  return l;
}

// ([XY of each sm_XY], [XY of each compute_XY])
PyObject* py_cuda_archs(PyObject*, PyObject*) {
  std::vector<int> sass, ptx;
  try {
    rnnfused::backend::cuda_built_archs(&sass, &ptx);
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
    return nullptr;
  }
  return Py_BuildValue("(NN)", int_list(sass), int_list(ptx));
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
    {"cuda_persistent_plan", py_cuda_persistent_plan, METH_VARARGS,
     "cuda_persistent_plan(B, H, dtype: str, backward: bool) -> the persistent kernel's plan on the "
     "current device and its co-resident CTAs per SM, from the driver and from CUDA's rule."},
    {"cuda_archs", py_cuda_archs, METH_NOARGS,
     "cuda_archs() -> ([XY of each sm_XY], [XY of each compute_XY (PTX)]): the architectures the "
     "CUDA code was compiled for."},
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
