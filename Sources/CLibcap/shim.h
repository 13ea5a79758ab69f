#ifndef RAPL_CLIBCAP_SHIM_H
#define RAPL_CLIBCAP_SHIM_H
// libcap (libcap-dev): capability queries for backend selection and dropping privileges.
#include <sys/capability.h>
#endif
