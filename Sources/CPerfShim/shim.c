#define _GNU_SOURCE
#include "CPerfShim.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <linux/perf_event.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int rapl_perf_open_counter(uint32_t type, uint64_t config, int cpu) {
    struct perf_event_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.size = sizeof(attr);
    attr.type = type;
    attr.config = config;
    long fd = syscall(SYS_perf_event_open, &attr, (pid_t)-1, cpu, -1, PERF_FLAG_FD_CLOEXEC);
    return fd < 0 ? -errno : (int)fd;
}

ssize_t rapl_perf_read_counter(int fd, uint64_t *value) {
    ssize_t n;
    do { n = read(fd, value, sizeof(*value)); } while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : n;
}

ssize_t rapl_msr_read(int fd, uint32_t reg, uint64_t *value) {
    ssize_t n;
    do { n = pread(fd, value, sizeof(*value), (off_t)reg); } while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : n;
}

int rapl_set_thread_name(const char *name) {
    char cut[16];
    strncpy(cut, name, sizeof(cut) - 1);
    cut[sizeof(cut) - 1] = 0;
    return -pthread_setname_np(pthread_self(), cut);
}

int rapl_set_timer_slack(unsigned long nanoseconds) {
    return prctl(PR_SET_TIMERSLACK, nanoseconds, 0, 0, 0) == 0 ? 0 : -errno;
}

long rapl_get_timer_slack(void) {
    int slack = prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);
    return slack < 0 ? -errno : (long)slack;
}

int rapl_futex_wait_until(uint32_t *word, uint32_t expected, int64_t deadline_ns) {
    struct timespec deadline = {.tv_sec = deadline_ns / 1000000000, .tv_nsec = deadline_ns % 1000000000};
    for (;;) {
        if (__atomic_load_n(word, __ATOMIC_ACQUIRE) != expected) return 1;
        long rc = syscall(SYS_futex, word, FUTEX_WAIT_BITSET_PRIVATE, expected, &deadline, NULL, FUTEX_BITSET_MATCH_ANY);
        if (rc == 0 || errno == EAGAIN || errno == EINTR) continue;
        return errno == ETIMEDOUT ? 0 : -errno;
    }
}

int rapl_futex_store_and_wake(uint32_t *word, uint32_t value) {
    __atomic_store_n(word, value, __ATOMIC_RELEASE);
    return syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0) < 0 ? -errno : 0;
}

int rapl_terminal_size(int fd, unsigned short *rows, unsigned short *columns) {
    struct winsize size;
    if (ioctl(fd, TIOCGWINSZ, &size) != 0) return -errno;
    *rows = size.ws_row;
    *columns = size.ws_col;
    return 0;
}

int rapl_signalfd_open(const int *signals, int count) {
    sigset_t mask;
    sigemptyset(&mask);
    for (int i = 0; i < count; i++) sigaddset(&mask, signals[i]);
    if (sigprocmask(SIG_BLOCK, &mask, NULL) != 0) return -errno;
    int fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    return fd < 0 ? -errno : fd;
}

int rapl_signalfd_read(int fd) {
    struct signalfd_siginfo info;
    ssize_t n = read(fd, &info, sizeof(info));
    if (n < 0) return -errno;
    return n == sizeof(info) ? (int)info.ssi_signo : -EIO;
}
