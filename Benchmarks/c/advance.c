// Advances fake energy_uj counters in place (same inode, fixed width) at RATE Hz for SECONDS:
//   advance RATE SECONDS STEP_UJ MAX FILE…
// Absolute deadlines (clock_nanosleep TIMER_ABSTIME), like real RAPL's ~1 kHz update.
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 6) return 2;
    double rate = atof(argv[1]), seconds = atof(argv[2]);
    uint64_t step = strtoull(argv[3], 0, 10), max = strtoull(argv[4], 0, 10);
    int n = argc - 5; int fds[512]; uint64_t value[512];
    for (int i = 0; i < n; i++) { fds[i] = open(argv[5 + i], O_WRONLY); value[i] = 0; if (fds[i] < 0) { perror(argv[5 + i]); return 1; } }
    long period = (long)(1e9 / rate), ticks = (long)(seconds * rate);
    struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t);
    char buf[32];
    for (long k = 0; k < ticks; k++) {
        t.tv_nsec += period; while (t.tv_nsec >= 1000000000) { t.tv_nsec -= 1000000000; t.tv_sec++; }
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, 0);
        for (int i = 0; i < n; i++) {
            value[i] = (value[i] + step + i) % (max + 1);
            int len = snprintf(buf, sizeof buf, "%020llu\n", (unsigned long long)value[i]);
            pwrite(fds[i], buf, len, 0);
        }
    }
    return 0;
}
