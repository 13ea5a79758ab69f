// The floor of periodic sampling on this machine: a C loop that sleeps until each absolute deadline
// (clock_nanosleep TIMER_ABSTIME, timer slack 1 µs like the daemon's sampling thread at 1 kHz) and then
// preads each file, nothing else.
//   bare_timer HZ SECONDS FILE…
// Prints: cpu_seconds p50_us p99_us max_us missed windows   (window-length error = |length − 1/HZ|)
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static long ns(struct timespec t) { return t.tv_sec * 1000000000L + t.tv_nsec; }
static int cmp(const void *a, const void *b) { long x = *(const long *)a, y = *(const long *)b; return x < y ? -1 : x > y; }

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    double hz = atof(argv[1]), seconds = atof(argv[2]);
    long interval = (long)(1e9 / hz), n = (long)(seconds * hz);
    long slack = interval / 1000 < 1000 ? 1000 : interval / 1000;
    if (slack < 50000) prctl(PR_SET_TIMERSLACK, slack, 0, 0, 0);
    int fds[256], nf = 0;
    for (int i = 3; i < argc && nf < 256; i++) if ((fds[nf] = open(argv[i], O_RDONLY)) >= 0) nf++;
    long *err = malloc(n * sizeof(long));
    char buf[32];
    struct timespec t0, now, prev;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    prev = t0;
    long next = 1, missed = 0, windows = 0;
    while (windows < n) {
        long d = ns(t0) + next * interval;
        struct timespec deadline = {d / 1000000000L, d % 1000000000L};
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &deadline, 0);
        clock_gettime(CLOCK_MONOTONIC, &now);
        for (int k = 0; k < nf; k++) pread(fds[k], buf, sizeof buf, 0);
        long length = ns(now) - ns(prev), e = length > interval ? length - interval : interval - length;
        err[windows++] = e / 1000;
        prev = now;
        long late = ns(now) - d, skip = late >= interval ? late / interval : 0;
        missed += skip;
        next += 1 + skip;
    }
    qsort(err, windows, sizeof(long), cmp);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    printf("%.6f %ld %ld %ld %ld %ld\n", cpu, err[windows / 2], err[windows * 99 / 100], err[windows - 1], missed, windows);
    return 0;
}
