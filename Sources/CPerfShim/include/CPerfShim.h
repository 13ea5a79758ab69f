#ifndef RAPL_CPERFSHIM_H
#define RAPL_CPERFSHIM_H

#include <stdint.h>
#include <sys/types.h>

// Why this shim exists: perf_event_open(2) has no glibc wrapper and syscall(2) is variadic, which Swift
// cannot call; struct perf_event_attr is a bitfield-heavy kernel struct best filled in C. The MSR read is
// here too so that every register access goes through one audited 8-byte pread.
// Every function returns a non-negative result or -errno; none of them touches errno's global state
// in a way the caller must read.

/// Opens a CPU-wide counting event: perf_event_open(attr{type, config}, pid = -1, cpu, group = -1,
/// PERF_FLAG_FD_CLOEXEC). Returns the file descriptor, or -errno.
int rapl_perf_open_counter(uint32_t type, uint64_t config, int cpu);

/// Reads the 64-bit count of a perf counting fd with read(2).
/// Returns 8 on success, the short byte count, or -errno.
ssize_t rapl_perf_read_counter(int fd, uint64_t *value);

/// Reads the 8-byte model-specific register `reg` from an open /dev/cpu/N/msr fd: pread(2) at offset `reg`.
/// Returns 8 on success, the short byte count (0 past the end of a file), or -errno.
ssize_t rapl_msr_read(int fd, uint32_t reg, uint64_t *value);

/// Names the calling thread (`top -H`, /proc/PID/task/TID/comm): pthread_setname_np(pthread_self(), name),
/// the name cut to the kernel's 15 bytes. Here because glibc's pthread_setname_np is not in Swift's Glibc
/// module. Returns 0 or -errno.
int rapl_set_thread_name(const char *name);

/// Sets the calling thread's timer slack, how late the kernel may fire its timers to batch wake-ups:
/// prctl(PR_SET_TIMERSLACK, nanoseconds). Here because prctl(2) is variadic, which Swift cannot call; no
/// privilege is needed for the calling thread's own slack. Returns 0 or -errno.
int rapl_set_timer_slack(unsigned long nanoseconds);

/// The calling thread's timer slack in nanoseconds (prctl(PR_GET_TIMERSLACK)), or -errno.
long rapl_get_timer_slack(void);

/// The sampling thread's wait: sleeps until CLOCK_MONOTONIC reaches `deadline_ns` (absolute) or `*word`
/// differs from `expected` (futex(FUTEX_WAIT_BITSET_PRIVATE): one syscall per wait, where
/// pthread_cond_timedwait takes two, since its mutex is re-taken as contended and the unlock then wakes).
/// Here because futex(2) has no glibc wrapper and syscall(2) is variadic. Wake-ups by signals and
/// spurious wake-ups are waited out. Returns 0 at the deadline, 1 when `*word` != `expected`, or -errno.
int rapl_futex_wait_until(uint32_t *word, uint32_t expected, int64_t deadline_ns);

/// Stores `value` in `*word` and wakes every rapl_futex_wait_until on it. Returns 0 or -errno.
int rapl_futex_store_and_wake(uint32_t *word, uint32_t value);

/// The terminal size of `fd` (ioctl(TIOCGWINSZ)), for `rapl-exporter top`. Here because ioctl(2) is
/// variadic, which Swift cannot call. Returns 0 and sets `*rows`, `*columns`, or -errno (not a terminal).
int rapl_terminal_size(int fd, unsigned short *rows, unsigned short *columns);

/// Blocks the `count` signals in `signals` for the calling thread (sigprocmask: the process must be
/// single-threaded for that to cover it) and returns a signalfd(2) delivering them, or -errno. For
/// `rapl-exporter top`, which waits on keys and signals in one poll(2). Here because <sys/signalfd.h> is
/// not in Swift's Glibc module.
int rapl_signalfd_open(const int *signals, int count);

/// Reads one signal from a signalfd: its number, or -errno (-EAGAIN when none is pending).
int rapl_signalfd_read(int fd);

#endif
