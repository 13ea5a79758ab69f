#ifndef RAPL_CSNAPPY_SHIM_H
#define RAPL_CSNAPPY_SHIM_H
// libsnappy (libsnappy-dev): the snappy block format that remote write requires, through its C API.
#include <snappy-c.h>
#endif
