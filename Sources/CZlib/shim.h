#ifndef RAPL_CZLIB_SHIM_H
#define RAPL_CZLIB_SHIM_H
// zlib (zlib1g-dev): gzip for OTLP requests (OTEL_EXPORTER_OTLP_COMPRESSION=gzip).
#include <zlib.h>
#endif
