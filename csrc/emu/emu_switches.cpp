// The environment switches (csrc/switches.cpp) for the emulator's standalone checker, which links
// no extension (the Python emulation build compiles csrc/switches.cpp itself).
#include "../switches.cpp"
