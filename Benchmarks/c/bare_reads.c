// The bare syscalls of one full reading, and nothing else, for comparison with rapl-bench reading.
//   bare_reads sysfs SECONDS FILE…           pread(fd, buf, 32, 0) of each energy_uj
//   bare_reads msr SECONDS FILE REG…         pread(fd, &v, 8, REG) of each register
//   bare_reads perf SECONDS TYPE CONFIG N    read(fd, &v, 8) of N counters (cpu 0)
// Prints ns per full reading.
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/perf_event.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }

int main(int argc, char **argv) {
    if (argc < 4) return 2;
    double seconds = atof(argv[2]);
    int fds[256]; uint64_t regs[256]; int n = 0;
    int mode = strcmp(argv[1], "sysfs") == 0 ? 0 : strcmp(argv[1], "msr") == 0 ? 1 : 2;
    if (mode == 0) { for (int i = 3; i < argc; i++) fds[n++] = open(argv[i], O_RDONLY); }
    else if (mode == 1) { int fd = open(argv[3], O_RDONLY); for (int i = 4; i < argc; i++) { fds[n] = fd; regs[n++] = strtoull(argv[i], 0, 0); } }
    else {
        struct perf_event_attr a; memset(&a, 0, sizeof a); a.size = sizeof a; a.type = atoi(argv[3]); a.config = strtoull(argv[4], 0, 0);
        int count = atoi(argv[5]);
        for (int i = 0; i < count; i++) fds[n++] = syscall(SYS_perf_event_open, &a, -1, 0, -1, PERF_FLAG_FD_CLOEXEC);
    }
    for (int i = 0; i < n; i++) if (fds[i] < 0) { perror("open"); return 1; }
    char buf[64]; uint64_t v, sink = 0; long iterations = 0;
    double start = now(), end = start + seconds;
    while (now() < end) {
        for (int k = 0; k < 1000; k++) {
            for (int i = 0; i < n; i++) {
                if (mode == 0) { ssize_t r = pread(fds[i], buf, 32, 0); sink += r > 0 ? (uint64_t)buf[0] : 0; }
                else if (mode == 1) { if (pread(fds[i], &v, 8, (off_t)regs[i]) == 8) sink += v; }
                else { if (read(fds[i], &v, 8) == 8) sink += v; }
            }
        }
        iterations += 1000;
    }
    printf("%.1f %lu\n", (now() - start) * 1e9 / iterations, (unsigned long)(sink & 1));
    return 0;
}
